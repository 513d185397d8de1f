"""The one run loop: steps of a style transfer, watched by observers.

Everything that watches a run -- the command line's progress bar, its JSON log, intermediate
images and the final save, a notebook's live view, a preview server, a sweep's progress -- is an
:class:`Observer` of the same loop, :func:`run_loop`, which :meth:`StyleTransfer.run
<minist.stylize.StyleTransfer.run>` runs. The loop is also the one place that decides how a run
ends: it finishes, an observer stops it, the user presses Ctrl-C (``KeyboardInterrupt``), or the
loss stops being finite (:class:`NonFiniteLossError`). Whatever the ending, every observer hears
of it (:meth:`Observer.on_end`, with the :class:`Outcome`: the image to keep -- for a loss that
is no longer finite, the last image whose loss was), and then the interrupt or the error goes on
to the caller, which decides what it means (the command line: exit status 130 or 2).

Observers get the current image on the CPU only when they ask for it
(``run.image_on_cpu()``, copied from the GPU at most once per iteration).
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

from minist.errors import MinistError
from minist.status import RunStatus


class IterationRecord(NamedTuple):
    """One line of the log: the losses of the image the iteration's update starts from."""

    iter: int  # counted from 0 at each scale of a coarse-to-fine run
    content: float  # sum_l w_l L_content^l, before alpha
    style: float  # sum_l w_l E_l, before beta
    tv: float  # L_TV, before its weight
    total: float  # alpha content + beta style + tv_weight tv
    seconds: float  # wall time of this iteration (evaluation + update)
    scale: int = 0  # the longest side of the image at this iteration, px


class NonFiniteLossError(MinistError):
    """The loss became NaN or infinite; ``image`` holds the last image with a finite loss."""

    def __init__(self, message: str, image=None):
        super().__init__(message)
        self.image = image

    def __reduce__(self):  # pickles with its message and image (a Dask client sees the error)
        return type(self), (str(self), self.image)


class RunState:
    """Where a run stands: the current ``image`` (the optimised variable, on the device), the
    ``iteration`` count, the ``history`` (one :class:`IterationRecord` per iteration) and the
    ``last_finite_image``, the last image whose loss was finite (what a run that ends on a
    non-finite loss keeps). ``version`` counts the images it has held (each assignment of
    ``image``), for those that keep something derived from the current image."""

    def __init__(self, image):
        self.iteration = 0
        self.history: list[IterationRecord] = []
        self.evaluation = None  # the last iteration's evaluation at its start image
        self.version = 0
        self.restart(image)

    @property
    def image(self):
        return self._image

    @image.setter
    def image(self, image) -> None:
        self._image = image
        self.version += 1

    def restart(self, image) -> None:
        """Go on from ``image`` (a start image, or the image carried over to a new size)."""
        self.image = self.last_finite_image = image

    def iterate(self, problem, optimizer, at_scale: int = 0, size: int = 0) -> IterationRecord:
        """One iteration: the loss at the current image -- which must be finite, else
        :class:`NonFiniteLossError` with the last image whose loss was -- then the
        ``optimizer``'s update on ``problem``; returns (and keeps) the record of the losses of
        the image the iteration started from. ``at_scale``: the iteration's number at its scale
        of a coarse-to-fine run; ``size``: that scale's size, px (both for the record)."""
        start = time.perf_counter()
        e = optimizer.evaluate(self.image, problem)  # the optimizer keeps it for its step
        if not all(math.isfinite(v) for v in (e.loss, *e.parts)):
            raise NonFiniteLossError(
                f"the loss became {e.loss} at iteration {self.iteration}; kept the last "
                "image with a finite loss; lower --lr (or --style-weight / --content-weight)",
                self.last_finite_image,
            )
        self.last_finite_image = self.image
        self.evaluation = e  # its parts beyond the record's (a clip's temporal term)
        self.image = optimizer.step(self.image, problem)
        parts = e.parts
        record = IterationRecord(at_scale, parts.content, parts.style, parts.tv, e.loss,
                                 time.perf_counter() - start, size)
        self.history.append(record)
        self.iteration += 1
        return record


class Outcome(NamedTuple):
    """How a run ended: ``status`` (a :class:`~minist.status.RunStatus` that is ``final``), the
    number of ``iterations`` done, the ``image`` to keep (on the run's device) and the
    ``error`` that ended it, if any."""

    status: RunStatus
    iterations: int
    image: Any
    error: BaseException | None = None


class Observer:
    """Watches a run; override what you need (every method may be left as it is)."""

    def on_start(self, run) -> None:
        """Before the first step of :func:`run_loop`."""

    def on_step(self, record: IterationRecord, run) -> bool | None:
        """After each step; return True to stop the run after this step."""

    def on_end(self, run, outcome: Outcome) -> None:
        """Once, however the run ended (also on Ctrl-C and on a non-finite loss)."""


class CallbackObserver(Observer):
    """A function ``callback(record, run) -> stop?`` as an observer."""

    def __init__(self, callback):
        self.callback = callback

    def on_step(self, record, run):
        return self.callback(record, run)


def run_loop(run, iters: int, observers=()) -> Outcome:
    """Run ``iters`` steps of ``run`` (anything with ``step()``, ``iteration`` and ``image``,
    such as a :class:`~minist.stylize.StyleTransfer`; its ``output_image(image)``, when it has
    one, turns the optimised image into the one to keep), telling ``observers`` (module
    docstring).

    Returns the :class:`Outcome`; after every observer has heard of it, re-raises the
    ``KeyboardInterrupt``, :class:`NonFiniteLossError` or other error that ended the run (an
    error raised by an observer's ``on_end`` comes first).
    """
    observers = list(observers)
    output = getattr(run, "output_image", lambda image: image)  # what the user gets
    status = RunStatus.FINISHED
    try:
        for observer in observers:
            observer.on_start(run)
        for _ in range(iters):
            record = run.step()
            stops = [bool(observer.on_step(record, run)) for observer in observers]
            if any(stops):
                status = RunStatus.STOPPED
                break
        outcome = Outcome(status, run.iteration, output(run.image))
    except KeyboardInterrupt as exc:
        outcome = Outcome(RunStatus.INTERRUPTED, run.iteration, output(run.image), exc)
    except NonFiniteLossError as exc:
        outcome = Outcome(RunStatus.NOT_FINITE, run.iteration, output(exc.image), exc)
    except Exception as exc:
        outcome = Outcome(RunStatus.FAILED, run.iteration, run.image, exc)
    failure = None
    for observer in observers:  # every observer ends, even if another one fails to
        try:
            observer.on_end(run, outcome)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
            failure = failure or exc
    if failure is not None:  # e.g. the output could not be written: say that first
        raise failure
    if outcome.error is not None:
        raise outcome.error
    return outcome
