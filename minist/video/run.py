r"""A clip painted frame by frame, stable in time (Ruder, Dosovitskiy & Brox 2016): the frame
loop of ``minist video``. This module only wires: the equations are in :mod:`minist.temporal`
(warping, reliability, the temporal loss, resizing a flow, the multi-pass blend), a frame's
temporal term and start in :mod:`minist.video.frame`, the term inside a frame's objective in
:mod:`minist.problem` (:class:`~minist.problem.TemporalTerm`), the output folder's bookkeeping
(pass folders, settings, resuming) in :mod:`minist.video.store`, clips in and out in
:mod:`minist.video.frames`, the flows in :mod:`minist.video.flow`, and every frame runs the
same run loop as a still image (:class:`~minist.stylize.StyleTransfer`, :mod:`minist.loop`).

For frames :math:`t = 1 \dots T` of the selection (output numbered from 1):

1. every check first (:func:`plan_clip`), nothing written before them;
2. the flows of every pair :math:`(t-j, t)`, :math:`j \in J` (``--long-term``), computed once
   at the output size -- in local processes (``--workers``) or on a Dask cluster
   (``--scheduler``) -- and cached beside the output frames (``flows/``);
3. frame :math:`t`'s problem at each size of its schedule: Eq. 7 at the frame plus
   :math:`\gamma \sum_j \mathcal{L}_{temporal}(x, \omega_j, c_j)`
   (:func:`~minist.video.frame.temporal_term_at`), from its start (``--init-frames``,
   :func:`~minist.video.frame.start_image`; the first frame starts from ``--init``);
4. the run loop, then the result written atomically as ``frame_NNNN.png``; the previous
   results are the frames as written (read back, 8-bit), so a resumed run continues from the
   very numbers an uninterrupted one would.

**Multi-pass** (``--passes N``, Ruder et al. §3.4): pass :math:`k` goes over the clip the other
way round from pass :math:`k-1`, each frame starting from its pass :math:`k-1` result blended
with its neighbour's of this pass, warped (:func:`~minist.video.frame.later_pass_start`,
Eq. M, :math:`\delta` = ``--blend-weight``), its temporal term taking the neighbours in the
pass's direction. Where each pass's results go and how a rerun resumes:
:mod:`minist.video.store`.

The names of :mod:`minist.video.store` and :mod:`minist.video.frame` are importable from here too.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from minist.errors import MinistError
from minist.images import load_image
from minist.loop import Observer
from minist.options import OPTION_NAMES, StylizeOptions, VideoOptions
from minist.problem import VideoLossParts
from minist.video import frames as clips
from minist.video import require_av
from minist.video.flow import (
    check_method,
    default_method,
    pair_flows,
    require_distributed,
)
from minist.video.frame import (
    later_pass_start,
    neighbour_flows,
    start_image,
    temporal_error,
    temporal_term_at,
)
from minist.video.store import (
    FLOWS_NAME,
    SETTINGS_NAME,
    clip_progress,
    direction_of,
    finished_frames,
    frames_folder,
    pass_folder,
    pass_order,
    remove_results,
    resume_point,
    run_settings,
    write_settings,
)

__all__ = [
    # this module
    "ClipPlan", "FrameObserver", "FrameRecord", "plan_clip", "stylize_clip",
    # re-exported from minist.video.store
    "FLOWS_NAME", "SETTINGS_NAME", "clip_progress", "direction_of", "finished_frames",
    "frames_folder", "pass_folder", "pass_order", "remove_results", "resume_point",
    "run_settings", "write_settings",
    # re-exported from minist.video.frame
    "later_pass_start", "neighbour_flows", "start_image", "temporal_error", "temporal_term_at",
]


# ---------------------------------------------------------------------------------------------
# Observers of a frame's run
# ---------------------------------------------------------------------------------------------


@dataclass
class FrameRecord:
    """One line of a clip's log: stylize's record with the frame, the pass and the temporal
    loss (None for a frame without a previous one)."""

    frame: int
    pass_number: int
    record: Any
    temporal: float | None

    def _asdict(self) -> dict[str, Any]:
        r = self.record._asdict()
        head = {"frame": self.frame, "pass": self.pass_number}
        parts = {k: r[k] for k in ("iter", "content", "style", "tv")}
        rest = {k: v for k, v in r.items() if k not in parts}
        return {**head, **parts, "temporal": self.temporal, **rest}


class FrameObserver(Observer):
    """Each iteration of the current frame: the frames' progress bar's losses and the log."""

    def __init__(self, bar, log, frame: int, pass_number: int = 1, passes: int = 1):
        self.bar, self.log, self.frame, self.pass_number = bar, log, frame, pass_number
        self.passes = passes

    def on_step(self, record, run) -> None:
        parts = run.state.evaluation.parts if run.state.evaluation is not None else None
        temporal = parts.temporal if isinstance(parts, VideoLossParts) else None
        if self.bar is not None:
            shown = {"frame": self.frame}
            if self.passes > 1:
                shown["pass"] = self.pass_number
            shown.update({"it": record.iter + 1, "content": f"{record.content:.3g}",
                          "style": f"{record.style:.3g}"})
            if temporal is not None:
                shown["temporal"] = f"{temporal:.3g}"
            self.bar.set_postfix(shown, refresh=True)
        if self.log is not None:
            line = FrameRecord(self.frame, self.pass_number, record, temporal)._asdict()
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()


# ---------------------------------------------------------------------------------------------
# The clip
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipPlan:
    """Everything checked before any work: the input, the selection, the outputs."""

    source: Any  # minist.video.frames.ClipSource
    first: int
    last: int
    output_kind: str
    folder: Path
    method: str

    @property
    def total(self) -> int:
        """Frames in the selection."""
        return self.last - self.first + 1


def plan_clip(input_path, styles: Sequence[str], out, options: VideoOptions) -> ClipPlan:
    """Every check that needs no frame decoded, in one line each (MinistError) before any
    work: the input, ``--frames``, the styles, the output and its writer, ``--keep-audio``,
    the flow method and the libraries the clip needs (Dask for ``--scheduler``)."""
    source = clips.open_clip(input_path)
    first, last = clips.check_selection(source, options.frames)
    for style in styles:
        if not Path(style).exists():
            raise MinistError(f"{style}: no such file (STYLE)")
    kind = clips.check_output(out, source if options.keep_audio else None)
    if kind not in ("folder", ".gif"):
        require_av()  # the writer at the end: refuse now rather than after the frames
    method = check_method(options.flow) if options.flow else default_method()
    if options.scheduler:
        require_distributed()
    return ClipPlan(source, first, last, kind, frames_folder(out), method)


def stylize_clip(plan: ClipPlan, styles: Sequence[str], out, options: VideoOptions, *,
                 network=None, log: str | os.PathLike | None = None, quiet: bool = False,
                 progress: bool | None = None, preview=None) -> Path:
    """Paint the frames of ``plan`` (:func:`plan_clip`) in the style of ``styles`` (paths),
    ``options.passes`` times, resuming where a run with the same settings stopped; write them
    to ``out`` (a folder, or a video at the end). Returns the path written.

    ``network``: a :class:`~minist.vgg.VGG` to use instead of loading ``options.weights``;
    ``log``: a JSONL file, one line per iteration (stylize's, with ``frame``, ``pass`` and
    ``temporal``); ``quiet``: no messages and no progress bar; ``preview``: a
    :class:`~minist.preview.ClipPreviewObserver`. Ctrl-C (KeyboardInterrupt) goes on to the
    caller after the frames done are kept (:func:`clip_progress` says how many)."""
    from tqdm import tqdm

    from minist.inputs import load_network
    from minist.stylize import StyleTransfer

    o = options
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr))
    per_frame = StylizeOptions(**{n: getattr(o, n) for n in OPTION_NAMES}).validated()
    net = network if network is not None else load_network(
        o.weights, pooling=o.pooling, config=_config(o.device), progress=progress)
    style_images = [load_image(s) for s in styles]
    clip = clips.read_frames(plan.source, (plan.first, plan.last), o.size)
    frames, total = clip.frames, len(clip.frames)
    folder = plan.folder
    settings = run_settings(o, plan.source, styles, plan.first, plan.last, plan.method)
    folder.mkdir(parents=True, exist_ok=True)
    pass_number, done, message = resume_point(folder, settings, total, o.passes)
    if message:
        print(message, file=sys.stderr)
    write_settings(folder, settings)
    say(f"minist: optical flow: {plan.method}{'' if o.flow else ' (default; --flow to choose)'}")
    flows = pair_flows(frames, plan.method, long_term=o.long_term,
                       cache_dir=folder / FLOWS_NAME,
                       workers=o.workers if o.workers or total > 2 else 1,
                       scheduler=o.scheduler)
    cached = sum(f.stat().st_size for f in (folder / FLOWS_NAME).glob("flow-*.npz"))
    say(f"minist: flows of {len(flows.backward)} pairs cached in {folder / FLOWS_NAME} "
        f"({cached / 1e6:.1f} MB)")
    if (pass_number, done) == (o.passes, total):
        say(f"minist: the {total} frames are already done in {folder} (the same settings)")
    elif done or pass_number > 1:
        where = f" of pass {pass_number}" if o.passes > 1 else ""
        say(f"minist: resuming after {done} frame{'s' if done != 1 else ''}{where} of {total} "
            f"in {folder}")
    log_file = open(log, "a" if done or pass_number > 1 else "w") if log else None  # noqa: SIM115
    bar = tqdm(total=total * o.passes, initial=(pass_number - 1) * total + done, unit="frame",
               disable=quiet, file=sys.stderr, dynamic_ncols=True)
    keep = max(o.long_term)
    try:
        for p in range(pass_number, o.passes + 1):
            here = pass_folder(folder, p, o.passes)
            here.mkdir(parents=True, exist_ok=True)
            before = pass_folder(folder, p - 1, o.passes) if p > 1 else None
            direction, order = direction_of(p), list(pass_order(p, total))
            start_at = done if p == pass_number else 0
            results = {t: load_image(clips.frame_path(here, t + 1))  # this pass's, as written
                       for t in order[max(0, start_at - keep):start_at]}
            for k in range(start_at, total):
                t = order[k]
                if p == 1:
                    init = o.init if k == 0 else start_image(o.init_frames, frames[t], t,
                                                             results, flows)
                else:
                    own = load_image(clips.frame_path(before, t + 1))
                    init = later_pass_start(own, t, results, flows, direction, o.blend_weight)
                term_at = temporal_term_at(t, results, flows, o.long_term, o.temporal_weight,
                                           net.device, direction)
                transfer = StyleTransfer(frames[t], style_images, replace(per_frame, init=init),
                                         network=net, temporal_at=term_at)
                if preview is not None:
                    preview.frame_started(frame=t + 1, frames=total, passes=o.passes,
                                          done=(p - 1) * total + k, **{"pass": p})
                observers = [FrameObserver(None if quiet else bar, log_file, t + 1, p,
                                           o.passes)]
                transfer.run(observers=observers + ([preview] if preview is not None else []))
                path = clips.write_frame(here, t + 1, transfer.result())
                results[t] = load_image(path)  # as written: what a resumed run reads back
                if k >= keep:  # no later frame of this pass looks that far back
                    results.pop(order[k - keep], None)
                if preview is not None:
                    preview.frame_finished(results[t], (p - 1) * total + k + 1)
                bar.update(1)
        for p in range(1, o.passes):  # the last pass is done: the earlier ones are not needed
            shutil.rmtree(pass_folder(folder, p, o.passes), ignore_errors=True)
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    if preview is not None:
        preview.clip_ended()
    if plan.output_kind == "folder":
        return folder
    written = [load_image(clips.frame_path(folder, i + 1)) for i in range(total)]
    return clips.write_clip(out, written, o.fps or clip.fps,
                            audio=clip if o.keep_audio else None)


def _config(device: str):
    from minist.execution import ExecutionConfig

    return ExecutionConfig(device=device)
