"""Child processes that a test interrupts with SIGINT (Ctrl-C).

A shell starts background jobs (``cmd &``, e.g. a CI script run with ``nohup ... &``) with
SIGINT ignored, and children inherit that: a Python started so never raises
KeyboardInterrupt, and a Ctrl-C test would see the run finish instead. ``preexec_fn=
sigint_by_default`` gives the child the default disposition, as a terminal's foreground job has.
"""

from __future__ import annotations

import signal


def sigint_by_default() -> None:
    """In the child, before exec: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
