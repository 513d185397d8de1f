"""Say when Numba compiles minist's CPU kernels -- the first run on a machine -- and for how long.

minist's loss, pooling and Winograd kernels are compiled by Numba the first time they run and
cached beside their source (``minist/**/__pycache__``), so the first lesson or exercise check
on a new machine waits for the compiler -- seconds to minutes, depending on the machine -- and
later runs start in seconds. Without a word that first wait looks like a hang. The lessons
(``lesson_utils``) and ``tutorials/check.py`` call :func:`announce_compilation`, which listens to
Numba's compile events: at the first compilation it says what is happening, and
:func:`report_compilation` says how long compiling took in all -- ``check.py`` calls it before
its verdict, so the verdict stays the last line; otherwise it is said when the process ends.
Compiling that takes under a second in all (a kernel whose cache was stale) says nothing.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time

# What a first run costs: all eight lessons in fast mode, from an empty cache, compile 16
# kernels in 21 s of compiler CPU time on the project's 2-core x86-64 machine (132 s of wall
# time while that machine was shared by other jobs); see tutorials/README.md, "The first run".
EXPECTED = ("about 20 s for all the lessons' kernels on an idle 2-core machine, a few minutes "
            "on a small or busy one")

# Compiling shorter than this in all says nothing: the notice is for a wait that looks like a
# hang. MINIST_COMPILE_NOTICE_S sets another threshold (0: always say it).
QUIET_BELOW_S = float(os.environ.get("MINIST_COMPILE_NOTICE_S", "1.0"))

_listener = None


class CompileNotice:
    """Counts Numba's compilations and says what is happening once they take a while.

    :meth:`start` and :meth:`end` bracket each compilation (they nest: a kernel compiles the
    functions it calls). The notice "[first run] Numba is compiling ..." comes when compiling
    has gone on for :data:`QUIET_BELOW_S` (a timer, so that it comes *during* a long wait), and
    :meth:`report` says how long it took -- both only when compiling took that long in all: a
    kernel or two compiled in a fraction of a second is not worth a word.
    """

    def __init__(self, out=None, quiet_below_s: float | None = None):
        self.out = out
        self.quiet_below_s = QUIET_BELOW_S if quiet_below_s is None else quiet_below_s
        self.depth = 0
        self.started = 0.0
        self.seconds = 0.0
        self.kernels = 0
        self.reported = 0  # kernels already told about (report says each count once)
        self.announced = False
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()

    def say(self, text):
        print(text, file=self.out or sys.stdout, flush=True)

    def announce(self):
        with self.lock:
            if not self.announced:
                self.announced = True
                self.say("\n[first run] Numba is compiling minist's CPU kernels for this "
                         f"machine. This happens once ({EXPECTED}); they are cached, and "
                         "later runs start in seconds.")

    def start(self):
        if self.depth == 0:
            self.started = time.perf_counter()
            if not self.announced and self.timer is None:
                wait = max(self.quiet_below_s - self.seconds, 0.0)
                self.timer = threading.Timer(wait, self.announce)
                self.timer.daemon = True
                self.timer.start()
        self.depth += 1

    def end(self):
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.perf_counter() - self.started
            self.kernels += 1
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.seconds >= self.quiet_below_s:
                self.announce()

    def report(self):
        """Say how long compiling took, once: the kernels compiled since the last report (only
        after the notice: nothing for a compilation under :data:`QUIET_BELOW_S`)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.kernels > self.reported and self.announced:
            kernels = "1 Numba kernel" if self.kernels == 1 else f"{self.kernels} Numba kernels"
            self.say(f"[first run] compiling {kernels} took {self.seconds:.0f} s; they are "
                     "cached now.")
        self.reported = self.kernels


def announce_compilation(stream=None) -> bool:
    """Report Numba compilations from now on in this process; False if Numba lacks the events."""
    global _listener
    if _listener is not None:
        return True
    try:
        from numba.core import event
    except ImportError:  # pragma: no cover - numba without the event API
        return False

    notice = CompileNotice(stream)

    class Listener(event.Listener):
        def on_start(self, ev):
            notice.start()

        def on_end(self, ev):
            notice.end()

    event.register("numba:compile", Listener())
    _listener = notice
    atexit.register(notice.report)
    return True


def report_compilation() -> None:
    """Say now how long compiling took (if anything compiled), not again when the process ends.

    ``check.py`` calls it after the checks and before its verdict, so that "all N checks pass"
    is the last line a student reads.
    """
    if _listener is not None:
        _listener.report()


def compiled_so_far() -> tuple[int, float]:
    """``(kernels, seconds)`` compiled since :func:`announce_compilation` (for the lessons)."""
    if _listener is None:
        return 0, 0.0
    return _listener.kernels, _listener.seconds
