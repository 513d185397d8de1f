r"""The output folder of ``minist video``: where each pass's frames go, how far a run got, and
whether a rerun may continue it. Bookkeeping only -- nothing here paints or decodes a frame.

**Layout.** The output frames go to a folder (``OUT/`` itself, or ``OUT.frames/`` beside a
video): ``frame_0001.png, frame_0002.png, ...`` of the last pass; the results of a pass
:math:`k` before the last in ``pass_K/`` inside it (removed once the last pass is done); the
flows' cache in ``flows/``; the settings of the run in ``minist-video.json``.

**Order.** Pass :math:`k` paints the frames first to last for odd :math:`k`, last to first for
even :math:`k` (Ruder et al. §3.4). Frame :math:`t` of a pass depends only on the frames
painted before it in that pass (and on the pass before), so the frames written *in a row* in
the pass's order are exactly what an interrupted run finished.

**Resuming.** The settings that make a frame's result (every option that shapes it, the input,
the styles, the first frame; with several passes also the last) are kept in
``minist-video.json``; a rerun with the same settings continues after the frames written in a
row in the order of the pass under way (with one pass a longer ``--frames A:B`` therefore
resumes a shorter one); other settings start afresh, said in one line, the old results removed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minist.options import VideoOptions
from minist.video import frames as clips
from minist.weights.atomic import atomic_path

SETTINGS_NAME = "minist-video.json"
FLOWS_NAME = "flows"


def frames_folder(out: str | os.PathLike) -> Path:
    """Where the output frames go: ``out`` itself for a folder, ``OUT.frames/`` beside a
    video (kept for resuming)."""
    if clips.output_kind(out) == "folder":
        return Path(out)
    path = Path(out)
    return path.with_name(path.name + ".frames")


def pass_folder(folder: str | os.PathLike, pass_number: int, passes: int) -> Path:
    """Where the results of pass ``pass_number`` go: the output frames' folder for the last
    pass, ``pass_K/`` inside it for an earlier one."""
    folder = Path(folder)
    return folder if pass_number == passes else folder / f"pass_{pass_number}"


def direction_of(pass_number: int) -> int:
    """+1 (first frame to last) for passes 1, 3, ...; -1 for passes 2, 4, ..."""
    return 1 if pass_number % 2 else -1


def pass_order(pass_number: int, total: int) -> range:
    """The 0-based frames of a pass in the order it paints them."""
    return range(total) if direction_of(pass_number) > 0 else range(total - 1, -1, -1)


def finished_frames(folder: str | os.PathLike, total: int, pass_number: int = 1) -> int:
    """How many frames ``frame_0001.png, frame_0002.png, ...`` are in ``folder`` in a row in
    the order of pass ``pass_number`` (from the last frame on a backward pass), at most
    ``total``."""
    done = 0
    for t in pass_order(pass_number, total):
        if not clips.frame_path(folder, t + 1).is_file():
            break
        done += 1
    return done


def clip_progress(folder: str | os.PathLike, total: int, passes: int = 1) -> tuple[int, int]:
    """``(pass under way, frames of it done)`` from the frames in ``folder`` (and its
    ``pass_K/``); ``(passes, total)`` when the clip is done."""
    for p in range(passes, 0, -1):
        done = finished_frames(pass_folder(folder, p, passes), total, p)
        if done:
            return (p + 1, 0) if done == total and p < passes else (p, done)
    return 1, 0


def run_settings(options: VideoOptions, source: Any, styles: Sequence[str], first: int,
                 last: int, method: str) -> dict[str, Any]:
    """What makes the frames' results: the options that shape them, the input (``source``:
    anything with a ``path``), the styles, the first frame of the selection and the flow
    method; the last frame only with several passes (with one, frame t depends only on frames
    up to t)."""
    settings = options.as_metadata()
    settings.pop("frames", None)
    settings["flow"] = method
    out = {"input": os.path.abspath(source.path),
           "styles": [os.path.abspath(s) for s in styles], "first_frame": first,
           "options": settings}
    if options.passes > 1:
        out["last_frame"] = last
    return out


def write_settings(folder: str | os.PathLike, settings: dict[str, Any]) -> Path:
    """Keep ``settings`` in ``folder/minist-video.json`` (written atomically); returns its
    path."""
    path = Path(folder) / SETTINGS_NAME
    with atomic_path(path, suffix=".part.json") as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=1) + "\n")
    return path


def read_settings(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The settings kept in ``folder``; None where there are none or they cannot be read."""
    path = Path(folder) / SETTINGS_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def remove_results(folder: str | os.PathLike) -> None:
    """Remove the frames ``frame_NNNN.png`` and the ``pass_K/`` folders in ``folder`` (the
    flows' cache and anything else stay)."""
    folder = Path(folder)
    for old in folder.glob("frame_[0-9][0-9][0-9][0-9].png"):
        old.unlink()
    for old in folder.glob("pass_[0-9]*"):
        if old.is_dir():
            shutil.rmtree(old)


def resume_point(folder: Path, settings: dict, total: int,
                 passes: int = 1) -> tuple[int, int, str | None]:
    """``(pass, frames of it done, message)``: where a run with ``settings`` continues in
    ``folder`` (:func:`clip_progress`) when the settings kept there are these; else pass 1
    from its start and, where results of other settings were there (removed now), one line
    saying the run starts afresh."""
    previous = read_settings(folder)
    if previous == settings:
        return (*clip_progress(folder, total, passes), None)
    message = None
    if previous is not None or clip_progress(folder, total, passes) != (1, 0):
        message = (f"minist: the settings differ from those of the frames in {folder}; "
                   "starting afresh")
    remove_results(folder)
    return 1, 0, message


def keep_finished_log_lines(log: str | os.PathLike, pass_number: int, done: int,
                            total: int) -> None:
    """Before a resumed run appends to ``log`` (JSONL, one line per iteration with ``frame``
    and ``pass``): keep only the lines of frames that were finished -- every pass before
    ``pass_number``, and the first ``done`` frames of that pass in its order -- so that the
    iterations of a frame that was cut short are not logged twice. Rewritten atomically; a
    missing log is left alone, and a line that is not JSON is kept."""
    path = Path(log)
    if not path.is_file():
        return
    finished = {k + 1 for k in list(pass_order(pass_number, total))[:done]}
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            record = json.loads(line)
            keep = record["pass"] < pass_number or (record["pass"] == pass_number
                                                    and record["frame"] in finished)
        except (ValueError, KeyError, TypeError):
            keep = True
        if keep:
            kept.append(line)
    with atomic_path(path, suffix=".part.jsonl") as tmp:
        Path(tmp).write_text("".join(kept))
