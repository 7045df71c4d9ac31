"""A task subscribed to STUDY_STABLE, run by the completeness tests' worker: it appends each
event it gets, duplicates included, to a Redis list as JSON."""

from __future__ import annotations

import json

from dicombus.routing.route_events import STUDY_STABLE
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

STUDIES = "test:studies"


@on_event(STUDY_STABLE, queue="test.study", name="test.study")
def study_stable(event: EventRecord) -> None:
    redis_client().rpush(STUDIES, json.dumps({"id": event.id, "type": event.type, **event.data}))
