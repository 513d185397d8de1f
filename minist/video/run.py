r"""A clip painted frame by frame, stable in time (Ruder, Dosovitskiy & Brox 2016): the frame
loop of ``minist video``. This module only wires; the equations are in :mod:`minist.temporal`
(warping, reliability, the temporal loss), the temporal term of a frame's objective in
:mod:`minist.problem` (:class:`~minist.problem.TemporalTerm`), clips in and out in
:mod:`minist.video.frames`, the flows in :mod:`minist.video.flow`, and every frame runs the
same run loop as a still image (:class:`~minist.stylize.StyleTransfer`, :mod:`minist.loop`).

For frames :math:`t = 1 \dots T` of the selection (output numbered from 1):

1. the flows of every pair :math:`(t-j, t)`, :math:`j \in J` (``--long-term``), computed once
   at the output size and cached beside the output frames (``flows/``);
2. frame :math:`t`'s problem: Eq. 7 at the frame plus :math:`\gamma \sum_j
   \mathcal{L}_{temporal}(x, \omega_j, c_j)`, with :math:`\omega_j` the result of frame
   :math:`t-j` warped into frame :math:`t` along the backward flow and :math:`c_j` its
   long-term weights (:func:`temporal_term`);
3. its start (``--init-frames``): the previous result warped, with the frame's content where
   the flow is unreliable, :math:`c \odot \omega_1 + (1 - c) \odot I_t` (``prev-warped``);
   the previous result (``prev``); the frame (``content``); noise (``noise``); the first frame
   starts from ``--init``;
4. the run loop, then the result written atomically as ``frame_NNNN.png``; the previous
   results are the frames as written (read back, 8-bit), so a resumed run continues from the
   very numbers an uninterrupted one would.

The settings that make a frame's result (every option that shapes it, the input, the styles,
the first frame) are kept beside the frames (``minist-video.json``); a rerun with the same
settings starts after the last frame written (frame :math:`t` depends only on frames
:math:`\le t`, so a longer ``--frames A:B`` resumes a shorter one), other settings start afresh.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from minist.backend import to_device
from minist.errors import MinistError
from minist.images import load_image
from minist.loop import Observer
from minist.options import OPTION_NAMES, StylizeOptions, VideoOptions
from minist.problem import TemporalTerm, VideoLossParts
from minist.temporal import long_term_weights, reliability, warp
from minist.video import frames as clips
from minist.video import require_av
from minist.video.flow import PairFlows, check_method, default_method, pair_flows
from minist.weights.atomic import atomic_path

SETTINGS_NAME = "minist-video.json"
FLOWS_NAME = "flows"


# ---------------------------------------------------------------------------------------------
# Where things go
# ---------------------------------------------------------------------------------------------


def frames_folder(out: str | os.PathLike) -> Path:
    """Where the output frames go: ``out`` itself for a folder, ``OUT.frames/`` beside a
    video (kept for resuming)."""
    if clips.output_kind(out) == "folder":
        return Path(out)
    path = Path(out)
    return path.with_name(path.name + ".frames")


def finished_frames(folder: str | os.PathLike, total: int) -> int:
    """How many frames ``frame_0001.png, frame_0002.png, ...`` are in ``folder`` in a row
    (at most ``total``)."""
    done = 0
    while done < total and clips.frame_path(folder, done + 1).is_file():
        done += 1
    return done


def run_settings(options: VideoOptions, source: Any, styles: Sequence[str], first: int,
                 method: str) -> dict[str, Any]:
    """What makes the frames' results: the options that shape them, the input, the styles, the
    first frame of the selection and the flow method (not the last frame: frame t depends
    only on frames up to t)."""
    settings = options.as_metadata()
    settings.pop("frames", None)
    settings["flow"] = method
    return {"input": os.path.abspath(source.path), "styles": [os.path.abspath(s) for s in styles],
            "first_frame": first, "options": settings}


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path, suffix=".part.json") as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1) + "\n")


def resume_point(folder: Path, settings: dict, total: int) -> tuple[int, str | None]:
    """``(frames already done, message)``: the frames in a row when ``folder``'s settings
    are these, else 0 and one line saying the run starts afresh (the old frames removed)."""
    path = folder / SETTINGS_NAME
    if not path.is_file():
        return 0, None
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = None
    if previous == settings:
        return finished_frames(folder, total), None
    for old in folder.glob("frame_[0-9][0-9][0-9][0-9].png"):
        old.unlink()
    return 0, (f"minist: the settings differ from those of the frames in {folder}; "
               "starting afresh")


# ---------------------------------------------------------------------------------------------
# One frame's problem and start
# ---------------------------------------------------------------------------------------------


def temporal_term(t: int, results: dict[int, Any], flows: PairFlows, long_term: Sequence[int],
                  weight: float, variable, device: str) -> TemporalTerm | None:
    r"""Frame ``t``'s (0-based) :class:`~minist.problem.TemporalTerm`: for each :math:`j` of
    ``long_term`` with a result of frame :math:`t - j` in ``results`` (RGB, CPU), that result
    warped into frame :math:`t`, :math:`\omega_j`, as the variable (``variable``: the
    problem's), and the long-term weights :math:`c_{long}(j)` of the flows' reliabilities
    :math:`c(j)`; None for the first frame."""
    offsets = [j for j in sorted(long_term) if (t, j) in flows.backward and t - j in results]
    if not offsets:
        return None
    warped, weights = [], []
    for j in offsets:
        backward = flows.backward[t, j]
        warped.append(variable(to_device(warp(results[t - j], backward)[0], device, np.float32)))
        weights.append(reliability(flows.forward[t, j], backward))
    weights = [to_device(c, device, np.float32) for c in long_term_weights(weights)]
    return TemporalTerm(warped, weights, weight)


def start_image(init_frames: str, frame: np.ndarray, t: int, results: dict[int, Any],
                flows: PairFlows):
    """The start of frame ``t`` > 0 (``--init-frames``): an array, or ``"content"`` /
    ``"noise"`` for :func:`minist.inputs.initial_image`."""
    if init_frames in ("content", "noise"):
        return init_frames
    previous = results[t - 1]
    if init_frames == "prev":
        return previous
    backward = flows.backward[t, 1]
    c = reliability(flows.forward[t, 1], backward)[None, None]
    return (c * warp(previous, backward)[0] + (1 - c) * frame).astype(np.float32)


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

    def __init__(self, bar, log, frame: int, pass_number: int = 1):
        self.bar, self.log, self.frame, self.pass_number = bar, log, frame, pass_number

    def on_step(self, record, run) -> None:
        parts = run.state.evaluation.parts if run.state.evaluation is not None else None
        temporal = parts.temporal if isinstance(parts, VideoLossParts) else None
        if self.bar is not None:
            shown = {"frame": self.frame, "it": record.iter + 1, "content": f"{record.content:.3g}",
                     "style": f"{record.style:.3g}"}
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


def plan_clip(input_path, styles: Sequence[str], out, options: VideoOptions) -> ClipPlan:
    """Every check that needs no frame decoded, in one line each (MinistError) before any
    work: the input, ``--frames``, the styles, the output and its writer, ``--keep-audio``,
    the flow method and the libraries the clip needs."""
    source = clips.open_clip(input_path)
    first, last = clips.check_selection(source, options.frames)
    for style in styles:
        if not Path(style).exists():
            raise MinistError(f"{style}: no such file (STYLE)")
    kind = clips.check_output(out, source if options.keep_audio else None)
    if kind not in ("folder", ".gif"):
        require_av()  # the writer at the end: refuse now rather than after the frames
    method = check_method(options.flow) if options.flow else default_method()
    return ClipPlan(source, first, last, kind, frames_folder(out), method)


def stylize_clip(plan: ClipPlan, styles: Sequence[str], out, options: VideoOptions, *,
                 network=None, log: str | os.PathLike | None = None, quiet: bool = False,
                 progress: bool | None = None) -> Path:
    """Paint the frames of ``plan`` (:func:`plan_clip`) in the style of ``styles``, resuming
    after the frames already done with the same settings; write them to ``out`` (a folder, or
    a video at the end). Returns the path written. Ctrl-C (KeyboardInterrupt) goes on to the
    caller after the frames done are kept."""
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
    settings = run_settings(o, plan.source, styles, plan.first, plan.method)
    folder.mkdir(parents=True, exist_ok=True)
    done, message = resume_point(folder, settings, total)
    if message:
        print(message, file=sys.stderr)
    _write_json(folder / SETTINGS_NAME, settings)
    say(f"minist: optical flow: {plan.method}{'' if o.flow else ' (default; --flow to choose)'}")
    flows = pair_flows(frames, plan.method, long_term=o.long_term,
                       cache_dir=folder / FLOWS_NAME, workers=None if total > 2 else 1)
    cached = sum(f.stat().st_size for f in (folder / FLOWS_NAME).glob("flow-*.npz"))
    say(f"minist: flows of {len(flows.backward)} pairs cached in {folder / FLOWS_NAME} "
        f"({cached / 1e6:.1f} MB)")
    if done:
        say(f"minist: resuming after frame {done} of {total} in {folder}")
    keep = max(o.long_term)
    results = {t: load_image(clips.frame_path(folder, t + 1))
               for t in range(max(0, done - keep), done)}
    log_file = open(log, "a" if done else "w") if log else None  # noqa: SIM115 - closed below
    from tqdm import tqdm

    bar = tqdm(total=total, initial=done, unit="frame", disable=quiet, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for t in range(done, total):
            init = o.init if t == 0 else start_image(o.init_frames, frames[t], t, results, flows)
            transfer = StyleTransfer(frames[t], style_images, replace(per_frame, init=init),
                                     network=net)
            if t > 0 and len(transfer.schedule.sizes) == 1:  # at the flows' size
                term = temporal_term(t, results, flows, o.long_term, o.temporal_weight,
                                     transfer.problem.variable, net.device)
                transfer.problem = replace(transfer.problem, temporal=term)
            transfer.run(observers=[FrameObserver(None if quiet else bar, log_file, t + 1)])
            path = clips.write_frame(folder, t + 1, transfer.result())
            results[t] = load_image(path)  # as written: what a resumed run reads back
            results.pop(t - keep, None)
            bar.update(1)
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    if plan.output_kind == "folder":
        return folder
    written = [load_image(clips.frame_path(folder, i + 1)) for i in range(total)]
    return clips.write_clip(out, written, o.fps or clip.fps,
                            audio=clip if o.keep_audio else None)


def _config(device: str):
    from minist.execution import ExecutionConfig

    return ExecutionConfig(device=device)


def temporal_error(results: Sequence[Any], flows: PairFlows) -> list[float]:
    r"""The frame-to-frame temporal error of a painted clip, :math:`E_t = \frac1D \sum c \odot
    (x_t - \omega(x_{t-1}))^2` for each consecutive pair (the short-term flows and their
    :math:`c`), e.g. to compare runs on the same flows."""
    from minist.temporal import temporal_loss

    out = []
    for t in range(1, len(results)):
        backward = flows.backward[t, 1]
        c = reliability(flows.forward[t, 1], backward)
        value, _ = temporal_loss(results[t], warp(results[t - 1], backward)[0], c)
        out.append(float(value))
    return out
