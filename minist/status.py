"""How a run stands: one set of words, used by every part that says it.

The run loop (:mod:`minist.loop`) ends a run in one of five ways; a live view (:mod:`minist.live`)
also shows a run that has not started or is going on; a sweep (:mod:`minist.sweep`) and its
gallery (:mod:`minist.gallery`) also know a run that has not been done yet. The values are the
words users read -- in the PNG metadata (``minist:status``), a sweep's JSON records, the live
preview's page and the gallery -- so they never change: a sweep folder written before still
reads, and a view that waits for a run to end waits for these very words.

A :class:`RunStatus` is a ``str``: it compares equal to its value (``RunStatus.FAILED ==
"failed"``), ``str()`` and f-strings give the value, and JSON writes it as the value;
``RunStatus(text)`` reads one back.
"""

from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """Where a run stands; :attr:`final` once it has ended."""

    WAITING = "waiting for the run to start"  # a live view before the run starts
    RUNNING = "running"
    INTERMEDIATE = "intermediate"  # an image saved while the run goes on (``--save-every``)
    FINISHED = "finished"  # every iteration asked for was done
    STOPPED = "stopped by an observer"
    INTERRUPTED = "interrupted"  # Ctrl-C
    NOT_FINITE = "stopped: loss not finite"  # the image kept is the last one with a finite loss
    FAILED = "failed"  # any other error: observers close what they opened, nothing is saved
    NOT_RUN = "not run"  # a sweep's run not done (yet)

    def __str__(self) -> str:  # the words, not "RunStatus.FINISHED" (also in f-strings)
        return self.value

    def __hash__(self) -> int:  # as its words: a dict or set finds it by them, and them by it
        return str.__hash__(self)

    @property
    def final(self) -> bool:
        """True for the ways a run ends (:data:`ENDINGS`)."""
        return self in ENDINGS


# How the run loop ends a run: what a live view waits for to show the run as ended.
ENDINGS = frozenset({RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.INTERRUPTED,
                     RunStatus.NOT_FINITE, RunStatus.FAILED})
