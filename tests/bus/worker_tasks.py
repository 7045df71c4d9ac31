"""The event task the worker tests run in real Celery worker processes.

``record`` (EVT_ACCEPTED, EVT_C_STORE, EVT_RELEASED) appends every delivery,
duplicates included, to a Redis list as
``<subject> <sequence> <type> <id> <sop instance uid>``.
"""

from __future__ import annotations

from dicombus import evt
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

DELIVERIES = "test:deliveries"
RECORDED_TYPES = (evt.EVT_ACCEPTED, evt.EVT_C_STORE, evt.EVT_RELEASED)


@on_event(*RECORDED_TYPES, queue="test.record", name="test.record")
def record(event: EventRecord) -> None:
    uid = event.data.get("sop_instance_uid") or "-"
    line = f"{event.subject} {event.sequence} {event.type} {event.id} {uid}"
    redis_client().rpush(DELIVERIES, line)
