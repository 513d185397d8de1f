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

:func:`stylize_clip` is in parts of one job each: :func:`_prepare` (the network, the styles,
the frames, where to resume, the flows, the messages), :func:`_paint_pass` (one pass),
:func:`_paint_frame` (one frame), :class:`_Watchers` (progress bar, log, preview). The names
of :mod:`minist.video.store` and :mod:`minist.video.frame` are importable from here too.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from minist.errors import MinistError
from minist.images import load_image
from minist.loop import Observer
from minist.options import OPTION_NAMES, StylizeOptions, VideoOptions
from minist.problem import temporal_part
from minist.video import frames as clips
from minist.video import require_av
from minist.video.flow import (
    PairFlows,
    check_method,
    check_scheduler,
    default_method,
    pair_flows,
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
    keep_finished_log_lines,
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
        temporal = temporal_part(run.state.evaluation)
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
    the flow method and the libraries the clip needs, and that the ``--scheduler`` answers
    (Dask installed, the address reachable within a few seconds)."""
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
        check_scheduler(options.scheduler)
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
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr))
    work, clip = _prepare(plan, styles, options, network, say, progress)
    watch = _Watchers.open(work, log, quiet, preview)
    try:
        for p in range(work.pass_number, options.passes + 1):
            _paint_pass(work, watch, p, work.done if p == work.pass_number else 0)
        for p in range(1, options.passes):  # the last pass is done: the earlier ones are not
            shutil.rmtree(pass_folder(plan.folder, p, options.passes), ignore_errors=True)
    finally:
        watch.close()
    if preview is not None:
        preview.clip_ended()
    return _write_output(plan, out, options, clip)


@dataclass
class _ClipWork:
    """What every frame of a clip's run needs, set up once by :func:`_prepare`: the options,
    the per-frame ones (``--init`` replaced frame by frame), the network, the style images,
    the frames (``(1, 3, H, W)``, 0-based), their flows, the output folder, and where the run
    starts (pass, frames of it done)."""

    options: VideoOptions
    per_frame: StylizeOptions
    net: Any
    style_images: list
    frames: list
    flows: PairFlows
    folder: Path
    pass_number: int
    done: int

    @property
    def total(self) -> int:
        """Frames in the selection."""
        return len(self.frames)


def _prepare(plan: ClipPlan, styles: Sequence[str], o: VideoOptions, network, say,
             progress) -> tuple[_ClipWork, Any]:
    """The network, the style images, the frames, where the run resumes (the settings kept in
    the folder), the flows, and the messages that say so; returns the work and the clip read
    (its frame rate and sound go to the output)."""
    from minist.inputs import load_network

    per_frame = StylizeOptions(**{n: getattr(o, n) for n in OPTION_NAMES}).validated()
    net = network if network is not None else load_network(
        o.weights, pooling=o.pooling, config=_config(o.device), progress=progress)
    style_images = [load_image(s) for s in styles]
    clip = clips.read_frames(plan.source, (plan.first, plan.last), o.size)
    total = len(clip.frames)
    pass_number, done = _resume(plan, styles, o, total)
    flows = _flows(plan, clip.frames, o, say)
    if (pass_number, done) == (o.passes, total):
        say(f"minist: the {total} frames are already done in {plan.folder} (the same settings)")
    elif o.passes > 1 and (done or pass_number > 1):
        say(f"minist: resuming (pass {pass_number} of {o.passes}, after {done} of its {total} "
            f"frames) in {plan.folder}")
    elif done:
        say(f"minist: resuming after {done} frame{'s' if done != 1 else ''} of {total} in "
            f"{plan.folder}")
    work = _ClipWork(o, per_frame, net, style_images, clip.frames, flows, plan.folder,
                     pass_number, done)
    return work, clip


def _resume(plan: ClipPlan, styles: Sequence[str], o: VideoOptions,
            total: int) -> tuple[int, int]:
    """``(pass, frames of it done)`` where this run starts (:func:`resume_point`, its one line
    said even when quiet), the folder made and this run's settings kept in it."""
    settings = run_settings(o, plan.source, styles, plan.first, plan.last, plan.method)
    plan.folder.mkdir(parents=True, exist_ok=True)
    pass_number, done, message = resume_point(plan.folder, settings, total, o.passes)
    if message:
        print(message, file=sys.stderr)
    write_settings(plan.folder, settings)
    return pass_number, done


def _flows(plan: ClipPlan, frames: list, o: VideoOptions, say) -> PairFlows:
    """The flows of every pair (:func:`~minist.video.flow.pair_flows`, cached in ``flows/``),
    saying which method and what the cache holds."""
    cache = plan.folder / FLOWS_NAME
    say(f"minist: optical flow: {plan.method}{'' if o.flow else ' (default; --flow to choose)'}")
    flows = pair_flows(frames, plan.method, long_term=o.long_term, cache_dir=cache,
                       workers=o.workers if o.workers or len(frames) > 2 else 1,
                       scheduler=o.scheduler)
    cached = sum(f.stat().st_size for f in cache.glob("flow-*.npz"))
    pairs = len(flows.backward)
    say(f"minist: flows of {pairs} pair{'s' * (pairs != 1)} cached in {cache} "
        f"({cached / 1e6:.1f} MB)")
    return flows


@dataclass
class _Watchers:
    """Who hears of the frames: the progress bar (one tick a frame, over all passes), the log
    (a JSONL file, appended to on a resumed run after the lines of a frame cut short are
    dropped), the preview."""

    bar: Any
    log_file: Any
    preview: Any
    quiet: bool
    passes: int
    total: int

    @classmethod
    def open(cls, work: _ClipWork, log, quiet: bool, preview) -> _Watchers:
        from tqdm import tqdm

        resumed = work.done or work.pass_number > 1
        if log and resumed:
            keep_finished_log_lines(log, work.pass_number, work.done, work.total)
        log_file = open(log, "a" if resumed else "w") if log else None  # noqa: SIM115
        passes = work.options.passes
        bar = tqdm(total=work.total * passes, initial=(work.pass_number - 1) * work.total
                   + work.done, unit="frame", disable=quiet, file=sys.stderr, dynamic_ncols=True)
        if preview is not None:
            preview.clip_started(work.options.as_metadata())
        return cls(bar, log_file, preview, quiet, passes, work.total)

    def started(self, frame: int, p: int, k: int) -> list[Observer]:
        """Frame ``frame`` (1-based), the ``k``-th of pass ``p``, begins: its observers."""
        if self.preview is not None:
            self.preview.frame_started(frame=frame, frames=self.total, passes=self.passes,
                                       done=(p - 1) * self.total + k, **{"pass": p})
        observers = [FrameObserver(None if self.quiet else self.bar, self.log_file, frame, p,
                                   self.passes)]
        return observers + ([self.preview] if self.preview is not None else [])

    def finished(self, image, p: int, k: int) -> None:
        """The ``k``-th frame of pass ``p`` is written (``image``, as read back)."""
        if self.preview is not None:
            self.preview.frame_finished(image, (p - 1) * self.total + k + 1)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        if self.log_file is not None:
            self.log_file.close()


@dataclass
class _Pass:
    """One pass under way: its number, direction and order, its folder and the one before's,
    and the results of its frames painted so far that later frames still look back at
    (RGB ``(1, 3, H, W)`` as written, by 0-based frame)."""

    number: int
    order: list[int]
    here: Path
    before: Path | None
    results: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def direction(self) -> int:
        return direction_of(self.number)


def _paint_pass(work: _ClipWork, watch: _Watchers, p: int, start_at: int) -> None:
    """Pass ``p`` from its ``start_at``-th frame (in the pass's order) to its end; the frames
    it looks back at (up to ``max(--long-term)``) read back from its folder."""
    o = work.options
    here = pass_folder(work.folder, p, o.passes)
    here.mkdir(parents=True, exist_ok=True)
    before = pass_folder(work.folder, p - 1, o.passes) if p > 1 else None
    step = _Pass(p, list(pass_order(p, work.total)), here, before)
    keep = max(o.long_term)
    for t in step.order[max(0, start_at - keep):start_at]:  # this pass's, as written
        step.results[t] = load_image(clips.frame_path(here, t + 1))
    for k in range(start_at, work.total):
        t = step.order[k]
        step.results[t] = _paint_frame(work, watch, step, k)
        if k >= keep:  # no later frame of this pass looks that far back
            step.results.pop(step.order[k - keep], None)
        watch.finished(step.results[t], p, k)


def _paint_frame(work: _ClipWork, watch: _Watchers, step: _Pass, k: int) -> np.ndarray:
    """The ``k``-th frame of the pass ``step``: its start and temporal term, the run loop, the
    result written; returns the result as written (8-bit, read back: what a resumed run
    reads)."""
    from minist.stylize import StyleTransfer

    o, t = work.options, step.order[k]
    term_at = temporal_term_at(t, step.results, work.flows, o.long_term, o.temporal_weight,
                               work.net.device, step.direction)
    transfer = StyleTransfer(work.frames[t], work.style_images,
                             replace(work.per_frame, init=_frame_start(work, step, k)),
                             network=work.net, temporal_at=term_at)
    transfer.run(observers=watch.started(t + 1, step.number, k))
    return load_image(clips.write_frame(step.here, t + 1, transfer.result()))


def _frame_start(work: _ClipWork, step: _Pass, k: int):
    """Where the ``k``-th frame of the pass ``step`` starts: ``--init`` for the first frame of
    pass 1, :func:`start_image` for the others; on a later pass :func:`later_pass_start` from
    the frame's result of the pass before."""
    o, t = work.options, step.order[k]
    if step.number == 1:
        if k == 0:
            return o.init
        return start_image(o.init_frames, work.frames[t], t, step.results, work.flows)
    own = load_image(clips.frame_path(step.before, t + 1))
    return later_pass_start(own, t, step.results, work.flows, step.direction, o.blend_weight)


def _write_output(plan: ClipPlan, out, o: VideoOptions, clip) -> Path:
    """The path written: the frames' folder, or the video made from the frames there (at
    ``--fps`` or the clip's rate, with its sound for ``--keep-audio``)."""
    if plan.output_kind == "folder":
        return plan.folder
    written = [load_image(clips.frame_path(plan.folder, i + 1))
               for i in range(len(clip.frames))]
    return clips.write_clip(out, written, o.fps or clip.fps,
                            audio=clip if o.keep_audio else None)


def _config(device: str):
    from minist.execution import ExecutionConfig

    return ExecutionConfig(device=device)
