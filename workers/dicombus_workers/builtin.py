"""Built-in subscriptions: an audit log in SQL and counters in Redis.

The audit writes every event it is subscribed to as one row of the ``events``
table of the audit store (:mod:`dicombus.audit`): PostgreSQL or SQLite, named
by ``DICOMBUS_AUDIT_URL`` or ``DICOMBUS_AUDIT_DB`` (default: the SQLite file
``dicombus-audit.sqlite3``). The event id is the primary key and rows go in
with ``INSERT ... ON CONFLICT DO NOTHING``, so a redelivered event leaves one
row. The worker brings the store's schema to the newest revision when it
starts (and each pool process before its first write).

The counters are Redis hashes: ``dicombus:counts:type`` (event type ->
count), ``dicombus:counts:ae`` (calling AE title -> count) and
``dicombus:counts:ae:<title>`` (event type -> count), and the metrics of
docs/analytics.md (:mod:`dicombus.metrics`). A Lua script claims each event id
and increments in one atomic step, so a redelivered event counts once.

``DICOMBUS_BUILTIN_TASKS`` picks how they run:

- ``combined`` (the default): one batch task, ``dicombus.audit_count`` on its
  queue of the same name, which audits a batch of events in one SQLite
  transaction and counts it in one script call. One message per event reaches
  the workers instead of two, and a worker spends a fraction of the CPU per
  event (docs/performance.md).
- ``separate``: ``dicombus.audit`` and ``dicombus.count``, one message per
  event and task, each on its own queue (a slow audit store then never delays
  the counters).

A store away for longer than the tasks' retries (``DICOMBUS_TASK_MAX_RETRIES``,
default 30: about 25 minutes) leaves the event in the task's dead-letter list
(``dicombus:dead:<task>``), which ``dicombus dead-letters`` lists and replays.

Both subscribe to the association lifecycle and every intervention outcome by
default; ``DICOMBUS_AUDIT_EVENTS`` (comma-separated names, or ``all`` for all
32 types) changes that when the worker starts. PDU, data, DIMSE, ACSE and
state-machine events are left out of the default because each association
produces dozens of them, and an edge serializes an event type only while
someone subscribes to it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.signals import worker_init
from dicombus import evt
from dicombus.audit import location, migrate, store
from dicombus.metrics.recorder import event_ops
from dicombus.metrics.store import apply
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError

from dicombus_workers.app import task_max_retries
from dicombus_workers.atna import task as _atna_task  # noqa: F401  ([audit.syslog]: ATNA task)
from dicombus_workers.idempotency import DEFAULT_TTL, marker_key, redis_client
from dicombus_workers.on_event import DICOM_EVENT_NAMES, event_name, on_event
from dicombus_workers.records import EventRecord
from dicombus_workers.routing import task as _routing_task  # noqa: F401  ([routing]: router)
from dicombus_workers.task_outcomes import success_counted_by_task

AUDIT_TASK = "dicombus.audit"
COUNT_TASK = "dicombus.count"
AUDIT_COUNT_TASK = "dicombus.audit_count"
AUDIT_QUEUE = "dicombus.audit"
COUNT_QUEUE = "dicombus.count"
AUDIT_COUNT_QUEUE = "dicombus.audit_count"
BUILTIN_MODES = ("combined", "separate")

LOGGER = logging.getLogger("dicombus_workers.builtin")

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
# long writer, the PostgreSQL server restarting or unreachable: SQLAlchemy's
# OperationalError, or InterfaceError for a connection that broke) is retried
# with back-off rather than failing at once. A store away for longer than the
# retries (DICOMBUS_TASK_MAX_RETRIES) leaves the event in the task's
# dead-letter list, to replay with ``dicombus dead-letters``.
RETRY_OPTIONS: dict[str, Any] = {
    "autoretry_for": (RedisError, OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": task_max_retries(),
}


def configured_events() -> tuple[str, ...]:
    """The event types of the built-in subscriptions (``DICOMBUS_AUDIT_EVENTS``)."""
    text = os.environ.get("DICOMBUS_AUDIT_EVENTS", "").strip()
    if not text:
        return DEFAULT_EVENTS
    if text.lower() == "all":
        return tuple(sorted(DICOM_EVENT_NAMES))
    return tuple(event_name(name.strip()) for name in text.split(",") if name.strip())


def builtin_mode() -> str:
    """``DICOMBUS_BUILTIN_TASKS``: ``combined`` (default) or ``separate``."""
    text = os.environ.get("DICOMBUS_BUILTIN_TASKS", "").strip().lower() or BUILTIN_MODES[0]
    if text not in BUILTIN_MODES:
        raise ValueError(
            f"DICOMBUS_BUILTIN_TASKS={text!r}: expected one of {', '.join(BUILTIN_MODES)}"
        )
    return text


class AuditStore:
    """The audit store at ``location`` (a URL, or a SQLite file), written with event records."""

    def __init__(self, where: str | Path) -> None:
        self.url = location.store_url(where)
        self._store = store.AuditStore(self.url)

    def write(self, records: Sequence[EventRecord]) -> int:
        """Insert the events in one transaction; how many were not there before."""
        return self._store.write([record.envelope for record in records])


def count_events(records: Sequence[EventRecord], task: str = COUNT_TASK) -> int:
    """Count the events (the hashes above and the metrics of docs/analytics.md), each once
    per event id, in one script call; how many counted."""
    now = datetime.now(UTC)
    # The claim is scoped by the count task's name in both modes, so a node
    # switched between them counts an event once.
    batch = [
        event_ops(record.envelope, marker=marker_key(record.id, COUNT_TASK), task=task, now=now)
        for record in records
    ]
    return apply(redis_client(), batch, marker_ttl=DEFAULT_TTL)


_store = AuditStore(location.worker_url())


def _upgrade_audit_store(**_: Any) -> None:
    """Migrate the store before the pool starts; a store that is away is left to the tasks,
    which migrate before their first write and retry until it is back."""
    try:
        revision = migrate.upgrade(_store.url)
    except (OperationalError, InterfaceError) as exc:
        LOGGER.warning(
            "the audit store %s is unreachable (%s); it is upgraded before the first write",
            location.redact(_store.url),
            exc,
        )
        return
    LOGGER.info("audit store %s at schema revision %s", location.redact(_store.url), revision)


worker_init.connect(_upgrade_audit_store)


_EVENTS = configured_events()
# The metrics recorder counts their success, once per event id (event_ops).
success_counted_by_task(AUDIT_COUNT_TASK)
success_counted_by_task(COUNT_TASK)

if builtin_mode() == "combined":

    @on_event(*_EVENTS, queue=AUDIT_COUNT_QUEUE, name=AUDIT_COUNT_TASK, batch=True, **RETRY_OPTIONS)
    def audit_count(events: list[EventRecord]) -> int:
        """Audit a batch in one transaction, then count it in one script call."""
        _store.write(events)
        return count_events(events, AUDIT_COUNT_TASK)

else:

    @on_event(*_EVENTS, queue=AUDIT_QUEUE, name=AUDIT_TASK, **RETRY_OPTIONS)
    def audit(event: EventRecord) -> bool:
        """Write the event to the audit store; idempotent by event id (primary key)."""
        return _store.write([event]) == 1

    @on_event(*_EVENTS, queue=COUNT_QUEUE, name=COUNT_TASK, **RETRY_OPTIONS)
    def count(event: EventRecord) -> bool:
        """Count the event by type and by calling AE title, once per event id."""
        return count_events([event]) == 1
