"""SIGTERM ends a pytest run the way Ctrl-C does, so the run's servers are torn down.

The servers of a cluster (and of a lab) run in sessions of their own, because a lab
started by ``roleswap lab up`` must outlive the command; only a teardown stops them,
by PID.  pytest runs its teardowns on Ctrl-C (``KeyboardInterrupt``) but not on
SIGTERM, whose default action ends the process at once: a CI job cancelled or timed
out (SIGTERM to pytest) used to leave every mysqld, Redis and HAProxy of the run behind.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def teardown_on_sigterm() -> bool:
    """Make SIGTERM raise ``KeyboardInterrupt`` in this process (once: a second SIGTERM
    ends it at once, as before).  Only where SIGTERM still has its default action -- a
    handler someone else installed is left alone -- and only from the main thread (the
    only one Python lets set a handler).  Returns whether it is installed; idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _interrupt:
        return True
    if current is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _interrupt)
    return True


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM: no more waiting
    raise KeyboardInterrupt("SIGTERM: tearing down the servers this run started")
