"""Built-in subscriptions: an audit log in SQLite and counters in Redis.

``dicombus.audit`` writes every event it is subscribed to as one row of the
``events`` table in the SQLite file named by ``DICOMBUS_AUDIT_DB`` (default
``dicombus-audit.sqlite3``). The event id is the primary key and rows go in
with ``INSERT OR IGNORE``, so a redelivered event leaves one row.

``dicombus.count`` increments Redis hashes: ``dicombus:counts:type`` (event
type -> count), ``dicombus:counts:ae`` (calling AE title -> count) and
``dicombus:counts:ae:<title>`` (event type -> count). A Lua script claims the
event id and increments in one atomic step, so a redelivered event counts
once.

A store away for longer than the tasks' retries (``DICOMBUS_TASK_MAX_RETRIES``,
default 30: about 25 minutes) leaves the event in the task's dead-letter list
(``dicombus:dead:dicombus.audit``, ``dicombus:dead:dicombus.count``), which
``dicombus dead-letters`` lists and replays.

Both subscribe to the association lifecycle and every intervention outcome by
default; ``DICOMBUS_AUDIT_EVENTS`` (comma-separated names, or ``all`` for all
32 types) changes that when the worker starts. PDU, data, DIMSE, ACSE and
state-machine events are left out of the default because each association
produces dozens of them, and an edge serializes an event type only while
someone subscribes to it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from dicombus import evt
from redis.exceptions import RedisError

from dicombus_workers.app import task_max_retries
from dicombus_workers.atna import task as _atna_task  # noqa: F401  ([audit.syslog]: ATNA task)
from dicombus_workers.idempotency import DEFAULT_TTL, marker_key, redis_client
from dicombus_workers.on_event import EVENT_NAMES, event_name, on_event
from dicombus_workers.records import EventRecord

AUDIT_TASK = "dicombus.audit"
COUNT_TASK = "dicombus.count"
AUDIT_QUEUE = "dicombus.audit"
COUNT_QUEUE = "dicombus.count"
DEFAULT_AUDIT_DB = "dicombus-audit.sqlite3"

LIFECYCLE_EVENTS = (
    evt.EVT_CONN_OPEN,
    evt.EVT_REQUESTED,
    evt.EVT_ACCEPTED,
    evt.EVT_REJECTED,
    evt.EVT_ESTABLISHED,
    evt.EVT_RELEASED,
    evt.EVT_ABORTED,
    evt.EVT_CONN_CLOSE,
)
DEFAULT_EVENTS: tuple[str, ...] = tuple(
    [event.name for event in LIFECYCLE_EVENTS] + [event.name for event in evt.INTERVENTION_EVENTS]
)

# A store that is briefly away (Redis restarting, the SQLite file locked by a
# long writer) is retried with back-off rather than failing at once. A store
# away for longer than the retries (DICOMBUS_TASK_MAX_RETRIES) leaves the
# event in the task's dead-letter list, to replay with ``dicombus dead-letters``.
RETRY_OPTIONS: dict[str, Any] = {
    "autoretry_for": (RedisError, sqlite3.OperationalError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": task_max_retries(),
}

COUNTS_BY_TYPE = "dicombus:counts:type"
COUNTS_BY_AE = "dicombus:counts:ae"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    edge TEXT NOT NULL,
    subject TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    calling_ae_title TEXT,
    called_ae_title TEXT,
    status INTEGER,
    envelope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_association ON events (subject, sequence);
CREATE INDEX IF NOT EXISTS events_by_type_time ON events (type, time);
"""

# KEYS: the claim marker, the three hashes. ARGV: ttl, event type, calling AE.
# One script, so the claim and the increments happen together or not at all.
_COUNT_ONCE = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
return 1
"""


def configured_events() -> tuple[str, ...]:
    """The event types of the built-in subscriptions (``DICOMBUS_AUDIT_EVENTS``)."""
    text = os.environ.get("DICOMBUS_AUDIT_EVENTS", "").strip()
    if not text:
        return DEFAULT_EVENTS
    if text.lower() == "all":
        return tuple(sorted(EVENT_NAMES))
    return tuple(event_name(name.strip()) for name in text.split(",") if name.strip())


def audit_db_path() -> Path:
    return Path(os.environ.get("DICOMBUS_AUDIT_DB") or DEFAULT_AUDIT_DB)


class AuditStore:
    """The SQLite audit file: one connection per process (and thread), WAL mode."""

    # Pool processes write the same file; a writer waits this long for the lock.
    BUSY_TIMEOUT_MS = 30_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        # Opened lazily in the process that writes: a connection must not cross a fork.
        key = os.getpid()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "pid", None) != key:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT_MS / 1000)
            connection.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL: a commit is durable against a process
            # crash; a power cut may lose the last commits, which the edge's
            # at-least-once delivery does not cover anyway.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._local.connection, self._local.pid = connection, key
        return connection

    def write(self, record: EventRecord) -> bool:
        """Insert the event; False when its id was already there."""
        association = record.data.get("association") or {}
        connection = self._connection()
        with connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.type,
                    record.time,
                    record.edge,
                    record.subject,
                    record.sequence,
                    association.get("calling_ae_title"),
                    association.get("called_ae_title"),
                    record.status,
                    json.dumps(record.envelope, separators=(",", ":")),
                ),
            )
        return cursor.rowcount == 1


_store = AuditStore(audit_db_path())
_EVENTS = configured_events()


@on_event(*_EVENTS, queue=AUDIT_QUEUE, name=AUDIT_TASK, **RETRY_OPTIONS)
def audit(event: EventRecord) -> bool:
    """Write the event to the audit store; idempotent by event id (primary key)."""
    return _store.write(event)


@on_event(*_EVENTS, queue=COUNT_QUEUE, name=COUNT_TASK, **RETRY_OPTIONS)
def count(event: EventRecord) -> bool:
    """Count the event by type and by calling AE title, once per event id."""
    calling = event.assoc.requestor.ae_title or "-"
    counted = redis_client().eval(
        _COUNT_ONCE,
        4,
        marker_key(event.id, COUNT_TASK),
        COUNTS_BY_TYPE,
        COUNTS_BY_AE,
        f"{COUNTS_BY_AE}:{calling}",
        DEFAULT_TTL,
        event.type,
        calling,
    )
    return bool(counted)
