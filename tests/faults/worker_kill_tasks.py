"""The event task the worker-kill test runs in real Celery worker processes.

``slow_once`` (EVT_C_ECHO) counts its attempts in Redis. The first attempt
records its process id and then sleeps until it is killed; a later attempt
records the effect, one list entry per event. ``idempotent=True`` skips a
message whose event already had a finished run, so a duplicate adds nothing.
"""

from __future__ import annotations

import os
import time

from dicombus import evt
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

ATTEMPTS = "test:attempts"
STARTED = "test:started"
EFFECTS = "test:effects"
# Longer than the test waits: the first attempt ends only by being killed.
FIRST_ATTEMPT_SLEEP = 60.0


@on_event(evt.EVT_C_ECHO, queue="test.slow", name="test.slow_once", idempotent=True)
def slow_once(event: EventRecord) -> None:
    client = redis_client()
    if client.incr(ATTEMPTS) == 1:
        client.rpush(STARTED, os.getpid())
        time.sleep(FIRST_ATTEMPT_SLEEP)
    client.rpush(EFFECTS, event.id)
