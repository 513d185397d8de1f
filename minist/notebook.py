"""A live view of a run in Jupyter: the image forming and the losses falling, in one output.

>>> from minist.notebook import NotebookView
>>> st = StyleTransfer("photo.jpg", "painting.jpg", size=256)
>>> image = st.run(observers=[NotebookView()])

:class:`NotebookView` is an observer of the run loop (:mod:`minist.loop`), like the
command line's ``--preview`` page (:mod:`minist.preview`), and shows the same things, made by
:mod:`minist.live`: the current image, the content, style and total loss curves on a log scale
(the same SVG), the step, the scale, it/s and the ETA. It draws into one output of the cell
and replaces it in place (an IPython *display handle*: ``display(..., display_id=True)`` and
``handle.update(...)``), at most every ``every_s`` seconds and once more when the run ends, so a
fast run is not slowed by drawing. No ipywidgets, no JavaScript, no matplotlib: the output is
HTML with the image inline (PNG, base64) and the SVG chart, which also stays in the saved
notebook.

Outside Jupyter (a lesson run as a script, a terminal) there is nowhere to draw: the view
says so once and does nothing else; the run goes on as without it. ``show=`` replaces the
display with any function ``show(html)`` (tests pass one; a GUI could too).
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable
from html import escape

from minist.images import encode_png
from minist.live import LiveRun, loss_chart_svg
from minist.loop import Observer, Outcome

_said_not_in_jupyter = False


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (where display handles reach a notebook)."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it; never import it here
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def jupyter_show() -> Callable[[str], None]:
    """A ``show(html)`` that puts ``html`` into one output of the running cell, replacing what
    it showed before (the first call creates the output)."""
    from IPython.display import HTML, display

    handle = None

    def show(html: str) -> None:
        nonlocal handle
        if handle is None:
            handle = display(HTML(html), display_id=True)
        else:
            handle.update(HTML(html))

    return show


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def render_html(live: LiveRun, title: str = "", chart_width: int = 520) -> str:
    """The view as HTML: image (PNG inline), loss chart (SVG), one line of numbers."""
    state = live.snapshot()
    version, image = live.image()
    picture = ""
    if image is not None:
        data = base64.b64encode(encode_png(image, max_side=live.max_image_side)).decode("ascii")
        picture = (f'<img src="data:image/png;base64,{data}" alt="current image" '
                   'style="width:360px;max-width:48%;height:auto">')
    done = state["step"]
    numbers = [f"step {done}" + (f" / {state['total']}" if state["total"] is not None else "")]
    if state["scale"] is not None:
        numbers.append(f"scale {state['scale']} px")
    if state["it_per_s"]:
        numbers.append(f"{state['it_per_s']:.3g} it/s")
    if not state["final"] and state["eta_s"] is not None:
        numbers.append(f"ETA {_duration(state['eta_s'])}")
    losses = state["losses"] or {}
    for name in ("content", "style", "total"):
        if losses.get(name) is not None:
            numbers.append(f"{name} {losses[name]:.4g}")
    heading = f"<b>{escape(title)}</b> &middot; " if title else ""
    return ('<div class="minist-live" style="font:13px sans-serif">'
            f'<div>{heading}{escape(state["status"])} &middot; {escape(" · ".join(numbers))}'
            '</div><div style="display:flex;gap:12px;align-items:flex-start;margin-top:4px">'
            f"{picture}<div>{loss_chart_svg(live.points(), width=chart_width, height=260)}"
            "</div></div></div>")


class NotebookView(Observer):
    """Show a run live in Jupyter (module docstring).

    ``every_s``: least time between two drawings (seconds); ``total``: steps the run is asked
    for (for the ETA; default the run's ``options.iters``); ``title``: a heading; ``show``: a
    function ``show(html)`` that replaces the view (default: a Jupyter display handle, or
    nothing outside Jupyter). One view may watch several runs: each gets its own output.
    """

    def __init__(self, *, every_s: float = 1.0, total: int | None = None, title: str = "",
                 show: Callable[[str], None] | None = None, clock=time.monotonic):
        self.every_s, self.title, self.clock = every_s, title, clock
        self.live = LiveRun(total)
        self._show_given, self._show = show, None
        self._drawn_at = -float("inf")

    def on_start(self, run) -> None:
        global _said_not_in_jupyter
        self.live.start(run)
        if self._show_given is not None:
            self._show = self._show_given
        elif in_jupyter():
            self._show = jupyter_show()  # a new output for each run
        else:
            self._show = None
            if not _said_not_in_jupyter:
                print("minist.notebook: not in Jupyter, so no live view (the run goes on)",
                      file=sys.stderr)
                _said_not_in_jupyter = True
            return
        self._draw()

    def on_step(self, record, run) -> None:
        if self._show is None:
            return
        due = self.clock() - self._drawn_at >= self.every_s
        self.live.step(record, run, look=due)  # the image is looked at only to be drawn
        if due:
            self._draw()

    def on_end(self, run, outcome: Outcome) -> None:
        if self._show is None:
            return
        self.live.end(run, outcome)
        self._draw()

    def _draw(self) -> None:
        self._show(render_html(self.live, self.title))
        self._drawn_at = self.clock()
