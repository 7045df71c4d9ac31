"""A task subscribed to ``dicombus.route.sent``, run by the edge-and-worker test's router
worker: it appends each event it gets to a Redis list as JSON."""

from __future__ import annotations

import json

from dicombus.routing.route_events import ROUTE_SENT
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

SENT = "test:route-sent"


@on_event(ROUTE_SENT, queue="test.route", name="test.route.sent")
def route_sent(event: EventRecord) -> None:
    redis_client().rpush(SENT, json.dumps({"id": event.id, "type": event.type, **event.data}))
