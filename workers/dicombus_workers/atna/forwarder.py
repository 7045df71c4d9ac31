"""The forwarder: sends the spool to the audit record repository, in order, until empty.

Each worker process that spools runs one forwarder thread. A file lock makes
one process send at a time, so messages leave in spool order. When the
repository is away the forwarder tries again after a back-off (1 s, doubling
up to ``max_backoff``), for as long as it takes: messages stay in the spool
until the repository took them, never dropped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from dicombus_workers.atna.spool import Spool
from dicombus_workers.atna.syslog import Sender

LOGGER = logging.getLogger("dicombus_workers.atna")
# Messages per connection: a batch is resent whole if the connection breaks mid-way.
BATCH = 100
FIRST_BACKOFF = 1.0


class Forwarder:
    def __init__(self, spool: Spool, sender: Sender, *, max_backoff: float) -> None:
        self.spool = spool
        self.sender = sender
        self.max_backoff = max_backoff
        self._lock_path = Path(f"{spool.path}.lock")
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def wake(self) -> None:
        """Something was spooled: send it now (starts this process's thread on first use)."""
        if self._thread is None or self._pid != os.getpid():
            # A forked pool process inherits no threads: start its own.
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="atna-forwarder", daemon=True)
            self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def flush(self) -> bool:
        """Send everything spooled; False if the repository could not take it (kept)."""
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                while batch := self.spool.pending(BATCH):
                    self.sender.send([body for _seq, body in batch])
                    self.spool.delivered(batch[-1][0])
            except OSError as exc:
                LOGGER.warning(
                    "audit record repository unreachable (%s); %d messages spooled",
                    exc,
                    self.spool.count(),
                )
                return False
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return True

    def _run(self) -> None:
        backoff = FIRST_BACKOFF
        delay: float | None = None
        while not self._stopping.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                return
            if self.flush():
                backoff, delay = FIRST_BACKOFF, None  # idle until the next message
            else:
                delay, backoff = backoff, min(backoff * 2, self.max_backoff)
