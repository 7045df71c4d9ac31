"""Tasks on one queue for the dispatch tests: two batch tasks and one of the old kind.

``test.group.a`` and ``test.group.b`` (``batch=True``, queue ``test.group``)
append each event's SOP Instance UID to their own list; ``test.group.b``
refuses (an error it does not retry) an event from the calling AE ``POISON``.
``test.group.single`` (not a batch task, same queue) appends to its list.
"""

from __future__ import annotations

from dicombus import evt
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

QUEUE = "test.group"
TASK_A, TASK_B, TASK_SINGLE = "test.group.a", "test.group.b", "test.group.single"
DONE = {name: f"test:group:done:{name}" for name in (TASK_A, TASK_B, TASK_SINGLE)}
POISON = "POISON"


def _uid(event: EventRecord) -> str:
    return str(event.data["sop_instance_uid"])


@on_event(evt.EVT_C_STORE, queue=QUEUE, name=TASK_A, batch=True, idempotent=True)
def group_a(events: list[EventRecord]) -> None:
    redis_client().rpush(DONE[TASK_A], *[_uid(event) for event in events])


@on_event(evt.EVT_C_STORE, queue=QUEUE, name=TASK_B, batch=True, idempotent=True)
def group_b(events: list[EventRecord]) -> None:
    if any(event.assoc.requestor.ae_title == POISON for event in events):
        raise ValueError(f"events from {POISON} are refused")
    redis_client().rpush(DONE[TASK_B], *[_uid(event) for event in events])


@on_event(evt.EVT_C_STORE, queue=QUEUE, name=TASK_SINGLE)
def single(event: EventRecord) -> None:
    redis_client().rpush(DONE[TASK_SINGLE], _uid(event))
