"""A real small disk that fills up: a tmpfs mounted for the test, and a filler file.

Needs ``mount -t tmpfs`` (root); without it the test goes through
``peer_missing`` (skips, or fails when CI is set).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import peer_missing


@contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (as mount's ``size=`` option: "8m") at ``mount_point``."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        peer_missing(f"cannot mount a tmpfs to fill up: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path, name: str = "filler") -> Path:
    """Write a file until the disk says ENOSPC, in smaller and smaller pieces; delete the
    returned file to free the space again."""
    filler = folder / name
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 14, 1 << 10, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(descriptor, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(descriptor)
    return filler
