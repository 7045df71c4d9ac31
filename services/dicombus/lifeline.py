"""Child processes that die with their parent, whatever kills the parent.

Signal handlers stop children only when the parent lives to run them; a
SIGKILL, the OOM killer or a crash leaves them running, re-parented to init,
and a node started again on the same data would then run a second Redis on
the same append-only file. On Linux the kernel can deliver a signal to a
process when its parent dies (``prctl(PR_SET_PDEATHSIG)``): set in the child
between fork and exec, it survives the exec and needs no cooperation from
the program (``redis-server`` included).

The signal is sent when the *thread* that forked the child ends, not only the
process: start supervised children from a thread that lives as long as the
parent does (the main thread, in ``dicombus up``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

# linux/prctl.h
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child receive
    ``sig`` when its parent dies; None where the platform has no such call."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        # Runs in the child between fork and exec.
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            # The parent died before the call above: nobody will send the signal.
            os.kill(os.getpid(), sig)

    return set_parent_death_signal
