"""The edge's journal: captured events that a response depends on, on disk before it leaves.

A C-STORE answered Success promises the modality that the node holds the
instance, and the node promises its subscribers an EVT_C_STORE event for it.
The publisher's queue is memory: an edge killed between the response and the
moment its publisher thread moved the event to Redis or the outbox would hold
an instance that no event ever announces. So, for such an outcome, capture
calls :meth:`Journal.record` before the response is sent: the pickled
:class:`~dicombus.bus.envelope.PendingEvent` is committed (and fsynced) here,
then it goes the normal way (queue, Redis or outbox). The publisher calls
:meth:`Journal.forget` once the event is in Redis or the outbox; at the next
start the edge submits what is left again, with the same event id (consumers
and task ids are idempotent by it), before it accepts associations.

Group commit. One committer thread writes every row waiting at that moment,
from every association, in one transaction, then wakes each caller: under
load many associations share one fsync. ``synchronous=FULL``: the WAL is
fsynced at each commit, so a power cut is covered as well as a killed
process (docs/bus.md gives the measured cost). Deletes are not waited for:
they ride along with the next commit of rows, or are committed on their own
after :data:`DELETE_LINGER`; a row deleted late is at worst published twice
after a crash, which idempotent consumers absorb.

Rows are pickles, read back only from the node's own data folder (0700), as
the publisher child already exchanges pickles with the edge.
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dicombus.bus.envelope import PendingEvent

LOGGER = logging.getLogger("dicombus.bus.journal")

SCHEMA_VERSION = 1
# Seconds a connection waits for SQLite's file lock (WAL recovery after a crash).
BUSY_TIMEOUT = 5.0
# Deletes wait this long for a commit of rows to ride on before they are committed
# alone: an idle edge spends one fsync per second at most on forgetting.
DELETE_LINGER = 1.0
# After a failed commit (disk full, I/O error) pending deletes are retried this
# much later; new rows are tried at once (their callers are waiting).
RETRY_DELAY = 0.5
# The WAL is trimmed to this size after a checkpoint; the journal holds
# milliseconds' worth of events, so it stays small.
WAL_SIZE_LIMIT = 4 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    pending BLOB NOT NULL
);
"""


class JournalError(RuntimeError):
    """The journal could not store an event (disk full, I/O error, unpicklable event)."""


@dataclass(slots=True)
class _Waiter:
    event_id: str
    blob: bytes
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class Journal:
    """SQLite (WAL, ``synchronous=FULL``) rows of pickled PendingEvents; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self._check_schema_version()
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the event journal {self.path}: {exc}") from exc
        self._cond = threading.Condition()
        self._db_lock = threading.Lock()  # the committer's writes, and reads for metrics
        self._waiting: list[_Waiter] = []
        self._deletes: list[str] = []
        self._deletes_since = 0.0  # monotonic time the oldest pending delete came
        self._retry_at = 0.0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="dicombus-journal", daemon=True)
        self._thread.start()

    def _check_schema_version(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version == 0:
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise JournalError(
                f"{self.path} is an event journal of schema version {version}; "
                f"this dicombus reads version {SCHEMA_VERSION}"
            )

    # -- association threads ----------------------------------------------------------------

    def record(self, pending: PendingEvent) -> None:
        """Return once ``pending`` is committed to disk; raise JournalError if it cannot be."""
        try:
            blob = pickle.dumps(pending, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise JournalError(f"cannot pickle event {pending.id}: {exc}") from exc
        waiter = _Waiter(pending.id, blob)
        with self._cond:
            if self._closing:
                raise JournalError(f"the event journal {self.path} is closed")
            self._waiting.append(waiter)
            self._cond.notify()
        # The committer answers every waiter it took, success or error.
        waiter.done.wait()
        if waiter.error is not None:
            raise JournalError(waiter.error)

    # -- the publisher ----------------------------------------------------------------------

    def forget(self, event_ids: Iterable[str]) -> None:
        """Delete these events' rows soon (they are in Redis or the outbox); no wait."""
        ids = list(event_ids)
        if not ids:
            return
        with self._cond:
            if not self._deletes:
                self._deletes_since = time.monotonic()
            self._deletes.extend(ids)
            self._cond.notify()

    def leftovers(self) -> list[PendingEvent]:
        """The events a previous run recorded and did not forget, oldest first.

        A row that does not unpickle (written by another version) is logged and
        kept, so that a version that reads it can still publish it.
        """
        try:
            with self._db_lock:
                rows = self._db.execute(
                    "SELECT event_id, pending FROM journal ORDER BY seq"
                ).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the event journal {self.path}: {exc}") from exc
        found: list[PendingEvent] = []
        for event_id, blob in rows:
            try:
                pending = pickle.loads(blob)
            except Exception as exc:
                LOGGER.error(
                    "journal %s: event %s cannot be read back: %s", self.path, event_id, exc
                )
                continue
            found.append(pending)
        if found:
            LOGGER.warning(
                "journal %s: %d events of the previous run were not known to be "
                "published; they are published again (same event ids)",
                self.path,
                len(found),
            )
        return found

    @property
    def rows(self) -> int:
        """Rows on disk now (a query: for tests and metrics, not the hot path)."""
        with self._db_lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM journal").fetchone()
        return int(count)

    def close(self) -> None:
        """Commit what is pending (deletes included) and stop the committer."""
        with self._cond:
            self._closing = True
            self._retry_at = 0.0
            self._cond.notify()
        self._thread.join()
        self._db.close()

    # -- the committer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    if self._closing:
                        return
                    self._cond.wait(self._wait_time())
                waiting, self._waiting = self._waiting, []
                deletes, self._deletes = self._deletes, []
                self._commit_group(waiting, deletes)

    def _due(self) -> bool:
        if self._waiting:
            return True
        if not self._deletes:
            return False
        now = time.monotonic()
        if self._closing:
            return now >= self._retry_at or self._retry_at == 0.0
        return now >= max(self._retry_at, self._deletes_since + DELETE_LINGER)

    def _wait_time(self) -> float | None:
        if not self._deletes:
            return None
        return max(0.0, max(self._retry_at, self._deletes_since + DELETE_LINGER) - time.monotonic())

    def _commit_group(self, waiting: list[_Waiter], deletes: list[str]) -> None:
        # Called with the condition held; released around the commit (its fsync
        # is the slow part) so that callers queue the next group meanwhile.
        self._cond.release()
        try:
            error = self._write(waiting, deletes)
        finally:
            self._cond.acquire()
        if error is not None:
            self._deletes[:0] = deletes
            self._retry_at = time.monotonic() + RETRY_DELAY
            if self._closing:
                self._deletes.clear()  # left for the next start: republished, idempotent
        for waiter in waiting:
            waiter.error = error
            waiter.done.set()

    def _write(self, waiting: list[_Waiter], deletes: list[str]) -> str | None:
        try:
            with self._db_lock, self._transaction():
                if waiting:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO journal (event_id, pending) VALUES (?, ?)",
                        [(waiter.event_id, waiter.blob) for waiter in waiting],
                    )
                if deletes:
                    self._db.executemany(
                        "DELETE FROM journal WHERE event_id = ?", [(i,) for i in deletes]
                    )
        except sqlite3.Error as exc:
            message = f"cannot write the event journal {self.path}: {exc}"
            LOGGER.error("%s", message)
            return message
        return None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does, in some cases).
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
