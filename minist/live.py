r"""What a live view of a run shows, kept apart from how it is shown.

Two views watch a run as it goes: the browser page of ``minist stylize --preview``
(:mod:`minist.preview`) and the Jupyter view (:mod:`minist.notebook`). Both are observers of the
one run loop (:mod:`minist.loop`) and both show the same things, made here:

* :class:`LiveRun` -- the run's state as the views read it: every iteration's losses on a
  **global step** counter of its own (a coarse-to-fine run may start ``iter`` again at 0 for
  each scale; the curves must not fold back), the scale when the record has one, the settings,
  the speed, the ETA, and a reference to the latest image. The run's thread writes it (from the
  observer's methods), other threads read it (the preview server's), under one lock that is
  held only to append or copy a few numbers.
* :func:`loss_chart_svg` -- the loss curves as an SVG document, on a logarithmic axis:
  :math:`y = \log_{10} L`, so that a loss falling by the same *factor* falls by the same height
  however large it is (style losses start orders of magnitude above where they end).
* :func:`minist.images.encode_png` -- the image as PNG bytes.

**Speed and ETA.** With :math:`t_k` the wall-clock time at which step :math:`k` ended, over the
last :math:`n \le` :data:`RATE_WINDOW` steps

.. math::

    \text{it/s} = \frac{n - 1}{t_k - t_{k-n+1}}, \qquad
    \text{ETA} = \frac{T - k}{\text{it/s}}

(:math:`T` the number of steps asked for); with one step only, :math:`1/\text{seconds}` of its
record. Wall-clock time counts what the observers cost too, which is what a watcher waits for.

**The image is never copied here.** Every ``image_interval`` seconds the view keeps a reference
to ``run.image_on_cpu()``; an array the run hands out is never changed later (each optimiser
step makes a new one), so a reader on another thread may encode it while the run goes on.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import OrderedDict, deque
from html import escape
from typing import Any, NamedTuple

from minist.images import encode_png, shrunk_pixels, write_gif
from minist.status import RunStatus

RATE_WINDOW = 20  # steps over which it/s is measured
# The clip so far (minist video --preview): each finished frame kept small, the latest version
# of each frame, at most this many (the ones finished longest ago dropped first), shown as a
# looping GIF at a flipbook's rate
CLIP_SIDE = 160  # px, the longest side of a frame in the flipbook
CLIP_FRAMES = 240
CLIP_FPS = 10


class LossPoint(NamedTuple):
    """One iteration as the curves show it."""

    step: int  # global step, 0, 1, 2, ... over the whole run (all scales)
    iter: int  # the record's own iteration number
    scale: int | None  # longest side in px at that step, when the run says (0 or absent: None)
    content: float
    style: float
    tv: float
    total: float
    temporal: float = 0.0  # a clip's frame (minist video): the temporal loss before gamma


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


class LiveRun:
    """The state of one run as a live view shows it (module docstring).

    Fed by the run's thread: :meth:`start`, :meth:`step`, :meth:`end` (the observer methods
    call them); read from any thread: :meth:`snapshot`, :meth:`points`, :meth:`image`,
    :meth:`png`. ``total``: the number of steps the run is asked for (for the ETA; default the
    run's ``schedule.total``, else its ``options.iters``); ``image_interval``: seconds between
    two looks at the image (0: every step); ``clock``: seconds, monotonic.
    """

    def __init__(self, total: int | None = None, image_interval: float = 0.5,
                 clock=time.perf_counter, max_image_side: int | None = 1024):
        self.total, self.image_interval, self.clock = total, image_interval, clock
        self.max_image_side = max_image_side
        self._lock = threading.Lock()
        self._points: list[LossPoint] = []
        self._times: deque[float] = deque(maxlen=RATE_WINDOW)
        self._status = RunStatus.WAITING
        self._settings: dict[str, Any] = {}
        self._started = None
        self._ended = None
        self._image = None  # the latest image looked at, (1, 3, H, W) on the CPU
        self._image_version = 0
        self._image_taken = -math.inf
        self._png: tuple[int, bytes] | None = None
        self._last_seconds = None
        self._clip: dict[str, Any] | None = None  # a clip's run (minist video), or None
        self._clip_settings: dict[str, Any] | None = None  # the clip's, shown for each frame
        self._finished = None  # a clip's latest finished frame, (1, 3, H, W) on the CPU
        self._finished_png: tuple[int, bytes] | None = None
        self._flipbook: OrderedDict[int, Any] = OrderedDict()  # frame -> small 8-bit pixels
        self._flipbook_gif: tuple[int, bytes] | None = None

    # --- written by the run's thread ------------------------------------------------------
    def start(self, run) -> None:
        """A run begins: its settings and length; the curves start empty."""
        options = getattr(run, "options", None)
        settings = self._clip_settings if self._clip_settings is not None else (
            options.as_metadata() if hasattr(options, "as_metadata") else {})
        schedule = getattr(run, "schedule", None)  # a coarse-to-fine run: all its scales
        total = self.total if self.total is not None else (
            getattr(schedule, "total", None) or getattr(options, "iters", None))
        with self._lock:
            self._points, self._settings, self.total = [], settings, total
            self._times.clear()
            self._status, self._started, self._ended = RunStatus.RUNNING, self.clock(), None
        self._look_at(run.image_on_cpu())

    def step(self, record, run, look: bool | None = None, temporal: float | None = None) -> None:
        """One step ended: keep its losses (``temporal``: a clip's temporal loss, when the
        frame has one); look at the image if ``image_interval`` has passed (``look``: True or
        False to decide instead)."""
        now = self.clock()
        with self._lock:
            self._points.append(LossPoint(len(self._points), record.iter,
                                          getattr(record, "scale", None) or None,
                                          record.content, record.style, record.tv,
                                          record.total, temporal or 0.0))
            self._times.append(now)
            self._last_seconds = record.seconds
        if look if look is not None else now - self._image_taken >= self.image_interval:
            self._look_at(run.image_on_cpu(), now)

    def end(self, run, outcome) -> None:
        """The run ended (``outcome.status``); the image to keep is the last one shown."""
        image = outcome.image
        if image is not None and image is getattr(run, "image", None):
            image = run.image_on_cpu()
        elif image is not None:
            from minist.backend import to_numpy

            image = to_numpy(image)
        if image is not None:
            self._look_at(image)
        with self._lock:
            self._status, self._ended = RunStatus(outcome.status), self.clock()

    def set_clip_settings(self, settings: dict[str, Any]) -> None:
        """A clip's settings (its options' metadata), shown for each of its frames instead of
        the frame's own run's (whose start is an array)."""
        with self._lock:
            self._clip_settings = dict(settings)

    def set_clip(self, **where: int) -> None:
        """A clip's run (``minist video``): where it stands -- ``frame`` (being painted, from
        1), ``frames``, ``pass``, ``passes``, ``done`` (frames finished, all passes together)
        -- shown in the state as ``clip``, with ``finished`` (the version of the latest
        finished frame, :meth:`finished_png`; 0: none yet)."""
        with self._lock:
            finished = self._clip["finished"] if self._clip else 0
            self._clip = {**where, "finished": finished}

    def finish_frame(self, image, done: int) -> None:
        """A frame of the clip is finished: ``image`` (1, 3, H, W) on the CPU, referenced not
        copied; ``done`` frames are finished now."""
        small = shrunk_pixels(image, CLIP_SIDE)
        with self._lock:
            clip = self._clip or {}
            self._finished = image
            self._clip = {**clip, "done": done, "finished": clip.get("finished", 0) + 1}
            frame = clip.get("frame", len(self._flipbook) + 1)
            self._flipbook.pop(frame, None)  # a later pass's version replaces the earlier one
            self._flipbook[frame] = small
            if len(self._flipbook) > CLIP_FRAMES:
                self._flipbook.popitem(last=False)

    def finished_png(self) -> bytes | None:
        """The latest finished frame of a clip as PNG bytes (encoded once per frame)."""
        with self._lock:
            version = self._clip["finished"] if self._clip else 0
            image, cached = self._finished, self._finished_png
        if image is None:
            return None
        if cached is not None and cached[0] == version:
            return cached[1]
        data = encode_png(image, max_side=self.max_image_side)
        self._finished_png = (version, data)
        return data

    def clip_gif(self) -> bytes | None:
        """The clip so far as a looping GIF: each frame's latest version in frame order, at
        most :data:`CLIP_FRAMES` of them, :data:`CLIP_SIDE` px, :data:`CLIP_FPS` frames a
        second (encoded once per finished frame); None before the first."""
        with self._lock:
            version = self._clip["finished"] if self._clip else 0
            frames = [self._flipbook[k] for k in sorted(self._flipbook)]
            cached = self._flipbook_gif
        if not frames:
            return None
        if cached is not None and cached[0] == version:
            return cached[1]
        out = io.BytesIO()
        write_gif(out, frames, CLIP_FPS)
        data = out.getvalue()
        self._flipbook_gif = (version, data)
        return data

    def _look_at(self, image, now: float | None = None) -> None:
        with self._lock:
            if image is not self._image:
                self._image, self._image_version = image, self._image_version + 1
            self._image_taken = self.clock() if now is None else now

    # --- read from any thread -------------------------------------------------------------
    @property
    def final(self) -> bool:
        """True once the run has ended, however."""
        return self._status.final

    def points(self) -> list[LossPoint]:
        with self._lock:
            return list(self._points)

    def image(self) -> tuple[int, Any]:
        """(version, image) of the latest image looked at; the version grows with each new one."""
        with self._lock:
            return self._image_version, self._image

    def png(self) -> bytes | None:
        """The latest image as PNG bytes, encoded once per version (by the thread that asks)."""
        version, image = self.image()
        cached = self._png
        if cached is not None and cached[0] == version:
            return cached[1]
        if image is None:
            return None
        data = encode_png(image, max_side=self.max_image_side)
        self._png = (version, data)
        return data

    def speed(self) -> float | None:
        """Iterations per second over the last :data:`RATE_WINDOW` steps (module docstring)."""
        with self._lock:
            times, n = list(self._times), len(self._points)
            last_seconds = self._last_seconds
        if len(times) >= 2 and times[-1] > times[0]:
            return (len(times) - 1) / (times[-1] - times[0])
        if n and last_seconds:
            return 1.0 / last_seconds
        return None

    def snapshot(self) -> dict[str, Any]:
        """The state as a JSON-ready dict: status, step, total, last iteration, scale, losses,
        it/s, ETA, elapsed seconds, image version, number of curve points, settings."""
        rate = self.speed()
        with self._lock:
            last = self._points[-1] if self._points else None
            steps, total = len(self._points), self.total
            started, ended = self._started, self._ended
            snapshot = {
                "status": self._status.value,
                "final": self._status.final,
                "step": steps,
                "total": total,
                "iter": last.iter if last else None,
                "scale": last.scale if last else None,
                "losses": {name: _finite_or_none(getattr(last, name))
                           for name in ("content", "style", "tv", "total")
                           + (("temporal",) if self._clip is not None else ())}
                if last else None,
                "image_version": self._image_version,
                "points": steps,
                "settings": self._settings,
            }
            if self._clip is not None:
                snapshot["clip"] = dict(self._clip)
        now = ended if ended is not None else self.clock()
        snapshot["elapsed_s"] = None if started is None else now - started
        snapshot["it_per_s"] = rate
        running = ended is None and started is not None
        snapshot["eta_s"] = ((total - steps) / rate if running and rate and total is not None
                             and total >= steps else None)
        return snapshot


# --- the loss curves as SVG -----------------------------------------------------------------
SERIES = (  # (field, label, colour): what the log and the progress bar call them
    ("content", "content (before \u03b1)", "#1f77b4"),
    ("style", "style (before \u03b2)", "#ff7f0e"),
    ("tv", "total variation", "#7f7f7f"),
    ("temporal", "temporal (before \u03b3)", "#9467bd"),  # a clip's frames only
    ("total", "total", "#111111"),
)
MAX_CHART_POINTS = 1500  # more steps than this: every k-th point is drawn (and the last)


def _nice_step(span: float, ticks: int = 5) -> int:
    """A step of 1, 2 or 5 times a power of ten giving at most about ``ticks`` ticks."""
    raw = max(span / ticks, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def loss_chart_svg(points: list[LossPoint], width: int = 640, height: int = 300) -> str:
    r"""The loss curves as an SVG document: losses against the global step, :math:`\log_{10}`
    vertical axis with a grid line per decade, one ``<polyline data-series="NAME">`` per loss
    (``content``, ``style``, ``tv``, ``temporal``, ``total``: those with a value > 0), dashed
    vertical lines where the scale changes. Values that are not > 0 (and not finite) have no
    place on a log axis and are left out.

    A point :math:`(s, L)` is drawn at
    :math:`x = x_0 + (s / s_{max})\,w`, :math:`y = y_0 + (d_{max} - \log_{10} L)/(d_{max} -
    d_{min})\,h` with :math:`d_{min} = \lfloor \log_{10} L_{min} \rfloor`,
    :math:`d_{max} = \lceil \log_{10} L_{max} \rceil` over the points shown.
    """
    left, right, top, bottom = 58, 12, 26, 34
    w, h = width - left - right, height - top - bottom
    drawn = [name for name, *_ in SERIES  # the losses with something to show (tv often 0)
             if any(math.isfinite(v := getattr(p, name)) and v > 0 for p in points)]
    if len(points) > MAX_CHART_POINTS:
        stride = math.ceil(len(points) / MAX_CHART_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    values = [getattr(p, name) for p in points for name in drawn]
    positive = [v for v in values if math.isfinite(v) and v > 0]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fff" stroke="#999"/>']
    if not positive:
        out.append(f'<text x="{left + w / 2}" y="{top + h / 2}" text-anchor="middle" '
                   'fill="#666">no losses yet</text></svg>')
        return "".join(out)
    d_min = math.floor(math.log10(min(positive)))
    d_max = math.ceil(math.log10(max(positive)))
    if d_max == d_min:
        d_max += 1
    s_max = max(points[-1].step, 1)

    def x_of(step):
        return left + step / s_max * w

    def y_of(value):
        return top + (d_max - math.log10(value)) / (d_max - d_min) * h

    every = max(1, math.ceil((d_max - d_min) / 8))  # at most about 8 labelled decades
    for d in range(d_min, d_max + 1):
        y = y_of(10.0**d)
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#ddd"/>')
        if (d - d_min) % every == 0:
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">1e{d}</text>')
    tick = _nice_step(s_max)
    for s in range(0, s_max + 1, tick):
        out.append(f'<text x="{x_of(s):.1f}" y="{top + h + 15}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 4}" text-anchor="middle" fill="#444">'
               'step</text>')
    for before, after in zip(points, points[1:], strict=False):
        if after.scale is not None and after.scale != before.scale:
            x = x_of(after.step)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + h}" '
                       'stroke="#aaa" stroke-dasharray="4 3"/>'
                       f'<text x="{x + 3:.1f}" y="{top + 11}" fill="#666">{after.scale} px</text>')
    colours = {name: colour for name, _, colour in SERIES}
    labels = {name: label for name, label, _ in SERIES}
    for name in drawn:
        xy = " ".join(f"{x_of(p.step):.1f},{y_of(v):.1f}" for p in points
                      if math.isfinite(v := getattr(p, name)) and v > 0)
        width_px = 2 if name == "total" else 1.5
        out.append(f'<polyline data-series="{name}" fill="none" stroke="{colours[name]}" '
                   f'stroke-width="{width_px}" points="{xy}"/>')
    x = left
    for name in drawn:
        out.append(f'<rect x="{x}" y="8" width="14" height="3" fill="{colours[name]}"/>'
                   f'<text x="{x + 18}" y="13">{escape(labels[name])}</text>')
        x += 26 + 6.5 * len(labels[name])
    out.append("</svg>")
    return "".join(out)

