"""Lists of buffers handed to one scatter-gather system call (``sendmsg``, ``writev``).

Both may take less than the whole list (a signal, a full socket buffer, a huge
write): the caller calls again with what :func:`advance` leaves.
"""

from __future__ import annotations

import os

# POSIX caps the buffers of one call at IOV_MAX (1024 on Linux and macOS); a
# longer list fails with EMSGSIZE instead of taking part of it. 16 is the least
# POSIX allows.
IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in getattr(os, "sysconf_names", {}) else 16


def advance(buffers: list[memoryview], count: int) -> list[memoryview]:
    """Drop ``count`` bytes (what the call took) from the front of ``buffers``."""
    while buffers and count >= len(buffers[0]):
        count -= len(buffers[0])
        buffers.pop(0)
    if buffers and count:
        buffers[0] = buffers[0][count:]
    return buffers
