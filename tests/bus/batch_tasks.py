"""A batch task for the worker tests: it records each call and refuses one calling AE.

``test.batch`` (EVT_C_STORE, ``batch=True``) appends, per call, the JSON list of
the SOP Instance UIDs it was given to ``test:batch:calls``; then, if any event
of the call came from the calling AE ``POISON``, it raises (an error it does
not retry), otherwise it appends each UID to ``test:batch:done``. Six events
fill a batch; the long linger keeps a partial batch waiting for the rest.
"""

from __future__ import annotations

import json

from dicombus import evt
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

CALLS = "test:batch:calls"
DONE = "test:batch:done"
BATCH_SIZE = 6
POISON = "POISON"


@on_event(
    evt.EVT_C_STORE,
    queue="test.batch",
    name="test.batch",
    batch=True,
    batch_size=BATCH_SIZE,
    batch_linger=30.0,
)
def record_batch(events: list[EventRecord]) -> None:
    if not isinstance(events, list) or not all(isinstance(e, EventRecord) for e in events):
        raise TypeError(f"a batch task is given a list of event records, not {events!r}")
    uids = [str(event.data["sop_instance_uid"]) for event in events]
    client = redis_client()
    client.rpush(CALLS, json.dumps(uids))
    if any(event.assoc.requestor.ae_title == POISON for event in events):
        raise ValueError(f"events from {POISON} are refused")
    client.rpush(DONE, *uids)
