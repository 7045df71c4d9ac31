"""Disk space kept in reserve for the edge's events: a ballast file, released when the disk fills.

A full disk must not cost events. The outbox cannot store when the data
folder's disk is full, and whatever the publisher then holds in memory is at
the mercy of the process. So at start the edge allocates a ballast file in the
data folder (``[bus] reserve_bytes``, 64 MiB by default; 0: none). When the
outbox meets a full disk the publisher deletes it, which gives the outbox that
much room for what it holds, and the edge refuses new associations until the
reserve is in place again. The publisher takes it again once nothing is held
and the disk has room for it: the operator freed space.

The blocks are allocated (``posix_fallocate``), not a sparse file: a sparse
file reserves nothing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

LOGGER = logging.getLogger("dicombus.bus.disk_reserve")

RESERVE_FILE = "space-reserve"  # in the data folder
DEFAULT_RESERVE_BYTES = 64 << 20
# Written in pieces of this size where posix_fallocate is not supported.
_CHUNK = 1 << 20
FILE_MODE = 0o600


class DiskReserve:
    """A ballast file of ``size`` bytes at ``path``; ``size`` 0 disables it (always in place)."""

    def __init__(self, path: Path, size: int) -> None:
        if size < 0:
            raise ValueError(f"the disk reserve must be 0 or more bytes, not {size}")
        self.path = Path(path)
        self.size = size
        self._in_place = size == 0 or self._complete()

    @property
    def in_place(self) -> bool:
        """True while the reserve is allocated (or disabled): the disk had room for it."""
        return self._in_place

    def take(self) -> bool:
        """Allocate the reserve if it is not; True once it is in place. A disk without room
        for it leaves no partial file behind."""
        if self._in_place:
            return True
        try:
            self._allocate()
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.unlink()
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                LOGGER.error("cannot allocate the disk reserve %s: %s", self.path, exc)
            return False
        self._in_place = True
        return True

    def release(self) -> bool:
        """Delete the reserve; True if that freed space (it was in place, not disabled)."""
        if self.size == 0 or not self._in_place:
            return False
        self._in_place = False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            LOGGER.error("cannot release the disk reserve %s: %s", self.path, exc)
            return False
        LOGGER.warning(
            "the disk is full: released the disk reserve %s (%d bytes) for the event outbox",
            self.path,
            self.size,
        )
        return True

    def _complete(self) -> bool:
        try:
            return os.stat(self.path).st_blocks * 512 >= self.size
        except FileNotFoundError:
            return False

    def _allocate(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        try:
            try:
                os.posix_fallocate(descriptor, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._write_zeros(descriptor)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _write_zeros(self, descriptor: int) -> None:
        os.lseek(descriptor, 0, os.SEEK_SET)
        zeros = bytes(_CHUNK)
        remaining = self.size
        while remaining > 0:
            remaining -= os.write(descriptor, zeros[: min(remaining, _CHUNK)])
