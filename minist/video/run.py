r"""A clip painted frame by frame, stable in time (Ruder, Dosovitskiy & Brox 2016): the frame
loop of ``minist video``. This module only wires; the equations are in :mod:`minist.temporal`
(warping, reliability, the temporal loss, resizing a flow, the multi-pass blend), the temporal
term of a frame's objective in :mod:`minist.problem` (:class:`~minist.problem.TemporalTerm`),
clips in and out in :mod:`minist.video.frames`, the flows in :mod:`minist.video.flow`, and every
frame runs the same run loop as a still image (:class:`~minist.stylize.StyleTransfer`,
:mod:`minist.loop`).

For frames :math:`t = 1 \dots T` of the selection (output numbered from 1):

1. the flows of every pair :math:`(t-j, t)`, :math:`j \in J` (``--long-term``), computed once
   at the output size -- in local processes (``--workers``) or on a Dask cluster
   (``--scheduler``) -- and cached beside the output frames (``flows/``);
2. frame :math:`t`'s problem at each size of its schedule (every scale of ``--scales``): Eq. 7
   at the frame plus :math:`\gamma \sum_j \mathcal{L}_{temporal}(x, \omega_j, c_j)`, with
   :math:`\omega_j` the result of the neighbour :math:`t-j` warped into frame :math:`t` along
   the backward flow and :math:`c_j` its long-term weights; at a coarser scale the neighbour's
   result, the flow and the weights are resized to that scale
   (:func:`minist.temporal.resize_flow`, :func:`~minist.temporal.resize_weights`); with
   ``--original-colors luminance`` the term is on the optimised luminance, the warped results
   turned into luminance too (:func:`temporal_term_at`);
3. its start (``--init-frames``): the previous result warped, with the frame's content where
   the flow is unreliable, :math:`c \odot \omega_1 + (1 - c) \odot I_t` (``prev-warped``);
   the previous result (``prev``); the frame (``content``); noise (``noise``); the first frame
   starts from ``--init``;
4. the run loop, then the result written atomically as ``frame_NNNN.png``; the previous
   results are the frames as written (read back, 8-bit), so a resumed run continues from the
   very numbers an uninterrupted one would.

**Multi-pass** (``--passes N``, Ruder et al. §3.4): pass 1 is the above; pass :math:`k` goes
over the clip the other way round (pass 2 from the last frame to the first, ...), each frame
starting from its pass :math:`k-1` result blended with its neighbour's of this pass, warped
(:func:`minist.temporal.blend_neighbour`, Eq. M, :math:`\delta` = ``--blend-weight``), its
temporal term taking the neighbours in the pass's direction (:math:`t + j` on a backward
pass). The results of a pass before the last are kept in ``pass_K/`` beside the frames, and
removed once the last pass is done.

**Resuming.** The settings that make a frame's result (every option that shapes it, the input,
the styles, the first frame; with several passes also the last) are kept beside the frames
(``minist-video.json``); a rerun with the same settings continues after the frames written in
a row in the order of the pass under way (frame :math:`t` of one pass depends only on frames
before it, so with one pass a longer ``--frames A:B`` resumes a shorter one); other settings
start afresh, said in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from minist.backend import to_device
from minist.errors import MinistError
from minist.images import load_image, resize_to
from minist.loop import Observer
from minist.options import OPTION_NAMES, StylizeOptions, VideoOptions
from minist.problem import TemporalTerm, VideoLossParts
from minist.temporal import (
    blend_neighbour,
    long_term_weights,
    reliability,
    resize_flow,
    resize_weights,
    warp,
)
from minist.video import frames as clips
from minist.video import require_av
from minist.video.flow import (
    PairFlows,
    check_method,
    default_method,
    pair_flows,
    require_distributed,
)
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
    """What makes the frames' results: the options that shape them, the input, the styles, the
    first frame of the selection and the flow method; the last frame only with several passes
    (with one, frame t depends only on frames up to t)."""
    settings = options.as_metadata()
    settings.pop("frames", None)
    settings["flow"] = method
    out = {"input": os.path.abspath(source.path),
           "styles": [os.path.abspath(s) for s in styles], "first_frame": first,
           "options": settings}
    if options.passes > 1:
        out["last_frame"] = last
    return out


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path, suffix=".part.json") as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1) + "\n")


def _remove_results(folder: Path) -> None:
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
    path = folder / SETTINGS_NAME
    previous = None
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            previous = None
    if previous == settings:
        return (*clip_progress(folder, total, passes), None)
    message = None
    if previous is not None or clip_progress(folder, total, passes) != (1, 0):
        message = (f"minist: the settings differ from those of the frames in {folder}; "
                   "starting afresh")
    _remove_results(folder)
    return 1, 0, message


# ---------------------------------------------------------------------------------------------
# One frame's problem and start
# ---------------------------------------------------------------------------------------------


def neighbour_flows(flows: PairFlows, t: int, j: int,
                    direction: int = 1) -> tuple[Any, Any] | None:
    r"""The flows between frame ``t`` and its neighbour :math:`n = t - j` (``direction`` +1)
    or :math:`n = t + j` (-1, a backward pass), 0-based, as ``(towards, back)``: the flow from
    the neighbour to frame :math:`t` and the one from frame :math:`t` to the neighbour (the
    one that warps the neighbour's result into frame :math:`t`, Eq. W) -- a pair's forward and
    backward flows, swapped on a backward pass; None where the pair was not computed."""
    if direction > 0:
        key = (t, j)
        if key not in flows.backward:
            return None
        return flows.forward[key], flows.backward[key]
    key = (t + j, j)
    if key not in flows.backward:
        return None
    return flows.backward[key], flows.forward[key]


def temporal_term_at(t: int, results: dict[int, Any], flows: PairFlows,
                     long_term: Sequence[int], weight: float, device: str, direction: int = 1
                     ) -> Callable[[Any, tuple[int, int]], TemporalTerm] | None:
    r"""Frame ``t``'s (0-based) temporal term, as the function
    ``(problem, (H, W)) -> TemporalTerm`` that :class:`~minist.stylize.StyleTransfer` calls at
    each size it builds a problem at (``temporal_at``); None when no neighbour has a result.

    The neighbours: :math:`n = t - j` (``direction`` +1) or :math:`t + j` (-1) for each
    :math:`j` of ``long_term`` with a result in ``results`` (RGB at the output size, CPU).
    At the output size, their reliabilities :math:`c(j)` (Eq. C1, C2) become long-term weights
    :math:`c_{long}(j)` (Eq. L); at a size :math:`(H, W)` each result, its flow to frame
    :math:`t` and its weights are resized there, the result warped (Eq. W) and turned into
    the problem's variable (its luminance for a luminance-only run)."""
    offsets, pairs = [], []
    for j in sorted(long_term):
        pair = neighbour_flows(flows, t, j, direction)
        if pair is not None and t - direction * j in results:
            offsets.append(j)
            pairs.append(pair)
    if not offsets:
        return None
    weights = long_term_weights([reliability(towards, back) for towards, back in pairs])

    def at(problem, shape: tuple[int, int]) -> TemporalTerm:
        warped, resized = [], []
        for j, (_, back), c in zip(offsets, pairs, weights, strict=True):
            neighbour = resize_to(results[t - direction * j], shape)
            image, _ = warp(neighbour, resize_flow(back, shape))  # omega_j at this size
            warped.append(problem.variable(to_device(image, device, np.float32)))
            resized.append(to_device(resize_weights(c, shape), device, np.float32))
        return TemporalTerm(warped, resized, weight)

    return at


def start_image(init_frames: str, frame: np.ndarray, t: int, results: dict[int, Any],
                flows: PairFlows):
    """The start of frame ``t`` > 0 on the first pass (``--init-frames``): an array, or
    ``"content"`` / ``"noise"`` for :func:`minist.inputs.initial_image`."""
    if init_frames in ("content", "noise"):
        return init_frames
    previous = results[t - 1]
    if init_frames == "prev":
        return previous
    towards, back = neighbour_flows(flows, t, 1)
    c = reliability(towards, back)[None, None]
    return (c * warp(previous, back)[0] + (1 - c) * frame).astype(np.float32)


def later_pass_start(own: np.ndarray, t: int, results: dict[int, Any], flows: PairFlows,
                     direction: int, blend: float) -> np.ndarray:
    r"""The start of frame ``t`` on a pass after the first: its result of the pass before,
    ``own``, blended with the result of its neighbour :math:`t - ` ``direction`` on this pass
    (in ``results``), warped, where that is reliable (Eq. M,
    :func:`minist.temporal.blend_neighbour`, :math:`\delta` = ``blend``); ``own`` alone for
    the pass's first frame."""
    pair = neighbour_flows(flows, t, 1, direction)
    if pair is None or t - direction not in results:
        return own
    towards, back = pair
    warped, _ = warp(results[t - direction], back)
    return blend_neighbour(own, warped, reliability(towards, back), blend).astype(np.float32)


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
    _write_json(folder / SETTINGS_NAME, settings)
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
