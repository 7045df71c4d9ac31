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

Group commit, leader style (:class:`dicombus.group_commit.GroupCommit`): the
caller that finds no commit running commits itself, with every row waiting at
that moment, in one transaction; callers that arrive meanwhile wait, and the
first of them commits their rows together next. Under load many associations
share one fsync; alone, a caller pays one commit and no hand-off to another
thread (a committer thread cost about 150 us of CPU more per record here: two
thread switches). ``synchronous=FULL``: the WAL is
fsynced at each commit, so a power cut is covered as well as a killed process
(docs/bus.md gives the measured cost). Deletes are not waited for: they ride
along with the next commit of rows, or the publisher commits them alone once
they are :data:`DELETE_LINGER` old; a row deleted late is at worst published
again after a crash, which idempotent consumers absorb.

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
from dataclasses import dataclass
from pathlib import Path

from dicombus.bus.envelope import PendingEvent
from dicombus.group_commit import GroupCommit
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus.journal")

SCHEMA_VERSION = 1
# Seconds a connection waits for SQLite's file lock (WAL recovery after a crash).
BUSY_TIMEOUT = 5.0
# Deletes wait this long for a commit of rows to ride on before the publisher
# commits them alone: a steady stream spends no fsync of its own on forgetting.
DELETE_LINGER = 1.0
# After a failed commit (disk full, I/O error) lone deletes wait this much more.
RETRY_DELAY = 0.5
# The WAL is trimmed to this size after a checkpoint; the journal holds
# milliseconds' worth of events, so it stays small.
WAL_SIZE_LIMIT = 4 << 20

# Keyed by the event id (a ULID) alone: one B-tree, so a commit writes one leaf
# page where a rowid table with a unique index wrote two.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    event_id TEXT PRIMARY KEY,
    pending BLOB NOT NULL
) WITHOUT ROWID;
"""


class JournalError(DicombusError, RuntimeError):
    """The journal could not store an event (disk full, I/O error, unpicklable event)."""


@dataclass(frozen=True, slots=True)
class _Row:
    event_id: str
    blob: bytes


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
        # The connection is the committing leader's, or used under idle().
        self._group = GroupCommit(self._commit)
        self._lock = threading.Lock()  # guards the deletes and the retry time
        self._deletes: list[str] = []
        self._deletes_since = 0.0  # monotonic time the oldest pending delete came
        self._retry_at = 0.0
        self._closed = False

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
        self._group.submit(_Row(pending.id, blob))

    # -- the publisher ----------------------------------------------------------------------

    def forget(self, event_ids: Iterable[str]) -> None:
        """Delete these events' rows (they are in Redis or the outbox): with the next
        commit of rows, or alone once deletes have waited :data:`DELETE_LINGER`."""
        ids = list(event_ids)
        if ids:
            with self._lock:
                if not self._deletes:
                    self._deletes_since = time.monotonic()
                self._deletes.extend(ids)
        self.commit_due_deletes()

    def commit_due_deletes(self) -> float | None:
        """Commit the pending deletes if they are due; return the seconds until they
        are (None: none pending). The publisher thread calls it when idle."""
        with self._lock:
            if self._closed or not self._deletes:
                return None  # once closed: left for the next start, published again
            due = max(self._deletes_since + DELETE_LINGER, self._retry_at) - time.monotonic()
        if due > 0 or self._group.committing:
            return max(due, 0.0)
        try:
            self._group.flush()
        except JournalError:
            return RETRY_DELAY  # logged by the commit; the deletes wait for the next
        with self._lock:
            return None if not self._deletes else RETRY_DELAY

    def leftovers(self) -> list[PendingEvent]:
        """The events a previous run recorded and did not forget, in capture order.

        A row that does not unpickle (written by another version) is logged and
        kept, so that a version that reads it can still publish it.
        """
        try:
            with self._group.idle():
                rows = self._db.execute("SELECT event_id, pending FROM journal").fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the event journal {self.path}: {exc}") from exc
        found: list[PendingEvent] = []
        for event_id, blob in rows:
            try:
                found.append(pickle.loads(blob))
            except Exception as exc:
                LOGGER.error(
                    "journal %s: event %s cannot be read back: %s", self.path, event_id, exc
                )
        if found:
            LOGGER.warning(
                "journal %s: %d events of the previous run were not known to be "
                "published; they are published again (same event ids)",
                self.path,
                len(found),
            )
        # Each association's events in sequence order (its clock only moves on).
        found.sort(key=lambda pending: (pending.time, pending.subject, pending.sequence))
        return found

    @property
    def rows(self) -> int:
        """Rows on disk now (a query: for tests and metrics, not the hot path)."""
        with self._group.idle():
            (count,) = self._db.execute("SELECT COUNT(*) FROM journal").fetchone()
        return int(count)

    def close(self) -> None:
        """Commit the pending deletes and close; a later ``record`` raises."""
        with self._group.idle():
            with self._lock:
                self._closed = True
                deletes, self._deletes = self._deletes, []
            if deletes:
                self._write([], deletes)
            self._db.close()

    # -- the leader -------------------------------------------------------------------------

    def _commit(self, rows: list[_Row]) -> None:
        """Commit ``rows`` and the pending deletes in one transaction (the group's leader);
        raise JournalError, which every caller of the group gets, if it fails."""
        with self._lock:
            if self._closed:
                raise JournalError(f"the event journal {self.path} is closed")
            deletes, self._deletes = self._deletes, []
        error = self._write(rows, deletes)
        if error is not None:
            with self._lock:
                self._deletes[:0] = deletes  # tried again with the next commit
                self._retry_at = time.monotonic() + RETRY_DELAY
            raise JournalError(error)

    def _write(self, rows: list[_Row], deletes: list[str]) -> str | None:
        try:
            with self._transaction():
                if rows:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO journal (event_id, pending) VALUES (?, ?)",
                        [(row.event_id, row.blob) for row in rows],
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
