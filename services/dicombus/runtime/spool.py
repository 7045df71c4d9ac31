"""Where a received dataset goes while its fragments arrive.

Small datasets stay in memory. Once a dataset grows past a threshold (or when
the user asked for every dataset on disk) the bytes so far go to a temporary
file and every later fragment is written straight to it, so a 2 GB instance
never sits in memory. A dataset that outgrows its cap is refused: the write
raises RemoteProtocolError (the association is aborted) and the runtime
closes the sink, which removes its file.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from dicombus.protocol.errors import AbortReason, AbortSource, RemoteProtocolError

# Below this a dataset is kept in memory: writing a 2 KB instance to a temp
# file would cost more than the C-STORE itself.
DEFAULT_SPOOL_THRESHOLD = 32 * 1024 * 1024
# The largest C-STORE dataset accepted by default. A dataset's elements have
# 32-bit lengths, so an uncompressed instance fits under 4 GiB; a sender that
# goes on past that is more likely to fill the disk than to be a scanner.
DEFAULT_MAX_DATASET_SIZE = 4 * 1024 * 1024 * 1024


class SpoolingDatasetSink:
    """A DatasetSink (see dicombus.protocol.fragments) that spills to disk."""

    def __init__(
        self,
        *,
        threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | os.PathLike[str] | None = None,
        max_size: int = DEFAULT_MAX_DATASET_SIZE,
    ) -> None:
        self._threshold = threshold
        self._max_size = max_size
        self._spool_dir = spool_dir
        # Fragments as received, one bytes object each: appending never
        # reallocates and copies what came before (a bytearray would).
        self._memory: list[bytes] | None = []
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def in_memory(self) -> bool:
        return self._memory is not None

    def write(self, data: memoryview) -> None:
        if self._size + len(data) > self._max_size:
            raise RemoteProtocolError(
                f"C-STORE data set exceeds the {self._max_size}-byte limit",
                abort_source=AbortSource.SERVICE_PROVIDER,
                abort_reason=AbortReason.NOT_SPECIFIED,
            )
        self._size += len(data)
        if self._memory is not None:
            self._memory.append(bytes(data))
            if self._size > self._threshold:
                self._spill()
            return
        self._spooled()[0].write(data)

    def _spooled(self) -> tuple[BinaryIO, Path]:
        """The spool file and its path, when the bytes are not in memory.

        They are in memory or in the file; a closed sink has neither, and using it
        is the caller's mistake (a check, not an assert: it holds under ``python -O``).
        """
        if self._file is None or self._path is None:
            raise ValueError("the data set sink is closed")
        return self._file, self._path

    def _spill(self) -> None:
        handle, name = tempfile.mkstemp(prefix="dicombus-", suffix=".dcm", dir=self._spool_dir)
        self._file = os.fdopen(handle, "w+b")
        self._path = Path(name)
        if self._memory:
            self._file.writelines(self._memory)
        self._memory = None

    def getvalue(self) -> bytes:
        """All dataset bytes (read back from disk when spooled)."""
        if self._memory is not None:
            return _joined(self._memory)
        return self.prefixed(b"")

    def prefixed(self, prefix: bytes) -> bytes:
        """``prefix`` followed by the dataset bytes, copying the dataset once.

        A Part 10 file is its header plus these bytes; joining the fragments (or
        the memory-mapped spool file) behind the header in one pass saves a full
        copy of a large dataset over reading it back and then concatenating.
        """
        if self._memory is not None:
            if not prefix:
                # A data set that came in one fragment is handed over as it is.
                return _joined(self._memory)
            return b"".join((prefix, *self._memory))
        spool = self._spooled()[0]
        # Through the open handle, not the path: a handler may have moved the file away.
        spool.flush()
        if self._size == 0:
            return prefix
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return b"".join((prefix, mapped))

    def view(self) -> memoryview | None:
        """The in-memory bytes as one view, or None when spooled to disk."""
        return memoryview(_joined(self._memory)) if self._memory is not None else None

    def path(self) -> Path:
        """A file with the dataset bytes; an in-memory dataset is written out first."""
        if self._memory is not None:
            self._spill()
        spool, path = self._spooled()
        spool.flush()
        return path

    def close(self) -> None:
        """Free the memory and remove the spool file unless a handler moved it away."""
        self._memory = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


def _joined(memory: list[bytes]) -> bytes:
    """In-memory fragments as one bytes object, joined once and kept so (in place)."""
    if len(memory) != 1:
        memory[:] = [b"".join(memory)]
    return memory[0]
