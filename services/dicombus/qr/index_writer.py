"""The thread that writes an index's queued files in batches, off the C-STORE path.

A Storage SCP that indexes what it stores queues each stored file with
:meth:`IndexWriter.submit` (an append) and answers at once. This thread
writes the queue: it wakes for the first entry, lets a batch gather for at
most :data:`LINGER` seconds (or until :data:`BATCH` entries wait), and writes
them in one transaction (:meth:`dicombus.qr.index.Index.write_queued`).

Nobody waits for it. A read of the index writes whatever is still queued
before it reads (the index's own rule), so an instance answered Success is
found by every later C-FIND, C-GET, C-MOVE and Storage Commitment request
whether or not this thread has come to it yet. What a crash takes with the
queue is a few rows, never a file: the next start's scan indexes the files
it finds unindexed.
"""

from __future__ import annotations

import logging
import threading

from dicombus.qr.index import Index, IndexEntry

LOGGER = logging.getLogger("dicombus.qr")

# How long the first queued entry waits for others to share its transaction. A
# transaction of many rows costs about what one of a single row costs (its commit
# was 13 us per row in batches of 30, 5 in batches of 200), and no reader waits
# for the thread; a crash loses at most this long's rows, which the next start
# re-indexes from the files.
LINGER = 0.2
# Entries that make the thread write at once, without lingering further.
BATCH = 200


class IndexWriter:
    """Writes ``index``'s queue on a thread of its own; :meth:`close` writes the rest."""

    thread_name = "dicombus-index"

    def __init__(self, index: Index) -> None:
        self.index = index
        self._wakeup = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, entry: IndexEntry) -> None:
        """Queue ``entry``; it is in every read of the index from now on."""
        queued = self.index.submit(entry)
        if queued == 1 or queued >= BATCH:
            with self._wakeup:
                self._wakeup.notify()

    @property
    def backlog(self) -> int:
        """How many submitted entries are not written yet."""
        return self.index.backlog

    def close(self) -> None:
        """Stop the thread, then write what is still queued."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        if self._thread.is_alive():
            self._thread.join()
        self.index.write_queued()

    def _run(self) -> None:
        index = self.index
        while True:
            with self._wakeup:
                # The queue's length is checked under the condition a submit
                # notifies under, so no wake-up is lost between check and wait.
                self._wakeup.wait_for(lambda: self._closing or index.backlog > 0)
                if self._closing:
                    return
                self._wakeup.wait_for(
                    lambda: self._closing or index.backlog >= BATCH, timeout=LINGER
                )
            try:
                index.write_queued()
            except Exception:
                # A batch the index refuses is logged by the index and dropped; this
                # is for the unforeseen, which must not end the thread.
                LOGGER.exception("the index writer failed; queued files wait for a read")
