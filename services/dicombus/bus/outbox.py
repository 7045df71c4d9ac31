"""The edge's durable outbox: Celery task messages waiting for Redis, in SQLite.

When Redis is unreachable or slow, or the publisher's in-memory queue is full,
the publisher writes each task message here, already built (headers and body as
Celery will read them), and replays the rows oldest first once Redis answers
again, deleting them only after Redis accepted them. A replayed message is the
same message: same task id, same body.

Durability. The database runs in WAL mode with ``synchronous=NORMAL``: a
committed append is in the WAL file (the OS page cache) before ``append``
returns, so it survives the edge process being killed (SIGKILL, OOM killer,
crash). It does not survive a power cut or kernel crash between commit and the
next checkpoint's fsync; ``synchronous="FULL"`` fsyncs the WAL on every commit,
at the cost of one fsync per spooled batch on the thread that spools it (see
docs/bus.md for the measured cost). The edge opens its outbox with ``FULL``:
the publisher forgets a C-STORE Success's journal row once its messages are
here, so from then on the outbox alone must survive a power cut.

Disk limit. The outbox counts the bytes it holds (the stored text of each row
plus a per-row overhead). At ``max_bytes`` it turns :attr:`Outbox.full` on and
logs an error; the edge then refuses new associations with a transient reject.
Appends are never refused: events of associations already accepted are stored
beyond the limit rather than dropped. ``full`` turns off again, with a warning,
once replay brings the outbox under :data:`RESUME_FRACTION` of the limit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dicombus.protocol.errors import DicombusError
from dicombus.sqlite_setup import switch_to_wal

LOGGER = logging.getLogger("dicombus.bus.outbox")

SCHEMA_VERSION = 1
# Below this fraction of max_bytes a full outbox accepts associations again; the
# gap keeps the edge from flapping between accepting and refusing at the limit.
RESUME_FRACTION = 0.9
# What a row costs beyond its text: the row header, integer columns, index entry.
ROW_OVERHEAD = 64
# After a checkpoint has copied the whole WAL, the next append restarts it and
# trims the file to this size: an outage's backlog does not stay on disk twice.
WAL_SIZE_LIMIT = 16 << 20
# Seconds a connection waits for SQLite's own file lock (WAL recovery after a
# crash, another process opening the same outbox by mistake) before failing.
BUSY_TIMEOUT = 5.0
# Checkpoint after this much was written (appended or deleted): a few fsyncs per
# megabytes of events rather than per batch.
CHECKPOINT_BYTES = 4 << 20
# PRAGMA synchronous answers a number (SQLite's documentation of the pragma).
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ord INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    task_id TEXT NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_order ON outbox (ord, seq);
"""


class OutboxError(DicombusError, RuntimeError):
    """The outbox could not store or read messages (disk full, I/O error, bad file)."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One Celery task message for one subscribed task, ready to publish."""

    event_id: str
    task: str  # Celery task name
    queue: str  # Celery queue (the Redis list it goes to)
    task_id: str
    body: str  # JSON text of the protocol-2 body: [args, kwargs, embed]
    headers: dict[str, Any]  # protocol-2 headers (task, id, ...)
    # Publisher-wide submit order of the event: replay sorts by it, so an event
    # spooled late (it sat in the memory queue) still goes out before newer ones.
    order: int
    created: float  # Unix time the event was submitted: lag is measured from it


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message read back from the outbox, with the row number that deletes it."""

    seq: int
    size: int  # as counted against max_bytes
    message: OutboxMessage


class Outbox:
    """SQLite (WAL) store of task messages; safe to use from several threads.

    Two connections: appends and deletes share the writer (behind a lock, so the
    row and byte counts stay exact), while reads and checkpoints use their own.
    Automatic checkpoints are off: a checkpoint copies pages and fsyncs, and it
    would otherwise run inside whichever commit crossed the threshold -- often an
    association thread spooling one event. The publisher thread calls
    :meth:`checkpoint` instead (PASSIVE: it never blocks a writer).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1 << 30,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        with self._errors("open"):
            self._writer = self._connect(synchronous)
            self._check_schema_version()
            self._writer.executescript(_SCHEMA)
            self._reader = self._connect(synchronous)
            rows, size = self._reader.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
            ).fetchone()
        self._rows: int = rows
        self._bytes: int = size
        self._written = 0  # bytes appended or deleted since the last checkpoint
        self._full = False
        self._update_full()
        if rows:
            LOGGER.info("outbox %s holds %d messages (%d bytes) to replay", self.path, rows, size)

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
        )
        switch_to_wal(db, BUSY_TIMEOUT)
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        return db

    def _check_schema_version(self) -> None:
        (version,) = self._writer.execute("PRAGMA user_version").fetchone()
        if version == 0:
            self._writer.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise OutboxError(
                f"{self.path} is an outbox of schema version {version}; "
                f"this dicombus reads version {SCHEMA_VERSION}"
            )

    @property
    def synchronous(self) -> str:
        """The ``PRAGMA synchronous`` the connections run with: NORMAL or FULL."""
        with self._write_lock:
            (level,) = self._writer.execute("PRAGMA synchronous").fetchone()
        return _SYNCHRONOUS_NAMES.get(int(level), str(level))

    @property
    def rows(self) -> int:
        """Messages held (a plain read: cheap enough for every submit)."""
        return self._rows

    @property
    def bytes(self) -> int:
        """Bytes held, as counted against ``max_bytes``."""
        return self._bytes

    @property
    def full(self) -> bool:
        """True from ``max_bytes`` until replay brings it under the resume mark."""
        return self._full

    def append(self, messages: Sequence[OutboxMessage]) -> None:
        """Store ``messages`` in one transaction (all or none)."""
        if not messages:
            return
        rows = []
        added = 0
        for message in messages:
            headers = json.dumps(message.headers, separators=(",", ":"))
            size = (
                len(message.body)
                + len(headers)
                + len(message.task)
                + len(message.queue)
                + len(message.task_id)
                + len(message.event_id)
                + ROW_OVERHEAD
            )
            added += size
            rows.append(
                (
                    message.order,
                    message.event_id,
                    message.task,
                    message.queue,
                    message.task_id,
                    message.body,
                    headers,
                    message.created,
                    size,
                )
            )
        with self._write_lock:
            with self._errors(f"store {len(rows)} messages in"), self._transaction():
                self._writer.executemany(
                    "INSERT INTO outbox (ord, event_id, task, queue, task_id, body, headers,"
                    " created, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            self._rows += len(rows)
            self._bytes += added
            self._written += added
            self._update_full()

    def oldest(self, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` messages in replay order (submit order, then insertion)."""
        with self._read_lock, self._errors("read from"):
            found = self._reader.execute(
                "SELECT seq, size, ord, event_id, task, queue, task_id, body, headers, created"
                " FROM outbox ORDER BY ord, seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            StoredMessage(
                seq=seq,
                size=size,
                message=OutboxMessage(
                    event_id=event_id,
                    task=task,
                    queue=queue,
                    task_id=task_id,
                    body=body,
                    headers=json.loads(headers),
                    order=order,
                    created=created,
                ),
            )
            for seq, size, order, event_id, task, queue, task_id, body, headers, created in found
        ]

    def delete(self, stored: Sequence[StoredMessage]) -> None:
        """Forget these rows (Redis has accepted their messages)."""
        if not stored:
            return
        with self._write_lock:
            with self._errors("delete from"), self._transaction():
                self._writer.executemany(
                    "DELETE FROM outbox WHERE seq = ?", [(row.seq,) for row in stored]
                )
            # Only the replaying publisher deletes, each row once, so the
            # counts follow the rows it read.
            removed = sum(row.size for row in stored)
            self._rows -= len(stored)
            self._bytes -= removed
            self._written += removed
            self._update_full()

    def maybe_checkpoint(self) -> None:
        """Copy committed WAL pages into the database file (PASSIVE: writers go on),
        once :data:`CHECKPOINT_BYTES` were written since the last time, or the
        outbox has just become empty.

        Keeps the WAL short; once all of it is copied, the next append starts it
        over and trims it to :data:`WAL_SIZE_LIMIT`.
        """
        written = self._written
        if written < CHECKPOINT_BYTES and not (written and self._rows == 0):
            return
        with self._read_lock, self._errors("checkpoint"):
            self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
        with self._write_lock:
            self._written -= written

    def max_order(self) -> int:
        """The highest submit order stored (0 when empty): a restarted publisher
        numbers its events after it, so they replay after what is already here."""
        with self._read_lock, self._errors("read from"):
            (found,) = self._reader.execute("SELECT COALESCE(MAX(ord), 0) FROM outbox").fetchone()
        return int(found)

    def oldest_created(self) -> float | None:
        """Submit time of the next message to replay, None when empty."""
        with self._read_lock, self._errors("read from"):
            found = self._reader.execute(
                "SELECT created FROM outbox ORDER BY ord, seq LIMIT 1"
            ).fetchone()
        return None if found is None else float(found[0])

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # The connection runs in autocommit mode; IMMEDIATE takes the write lock
        # up front instead of upgrading (and possibly failing) mid-transaction.
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        self._writer.execute("COMMIT")

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot {doing} the outbox {self.path}: {exc}") from exc

    def _update_full(self) -> None:
        # Called with the write lock held, after every change of the byte count.
        if not self._full and self._bytes >= self.max_bytes:
            self._full = True
            LOGGER.error(
                "OUTBOX FULL: %s holds %d bytes (limit %d) in %d messages; Redis is not "
                "taking events. New associations are refused (transient reject) until it "
                "drains; events of accepted associations are still stored.",
                self.path,
                self._bytes,
                self.max_bytes,
                self._rows,
            )
        elif self._full and self._bytes < self.max_bytes * RESUME_FRACTION:
            self._full = False
            LOGGER.warning(
                "outbox %s is below %d%% of its limit again (%d bytes): accepting associations",
                self.path,
                int(RESUME_FRACTION * 100),
                self._bytes,
            )
