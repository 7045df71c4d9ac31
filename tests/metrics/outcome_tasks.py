"""Event tasks whose runs end each way ``dicombus_tasks_total`` counts, on EVT_C_ECHO.

``test.flaky`` and ``test.flaky_batch`` fail their first run of an event with an
error they retry, then succeed; ``test.doomed`` and ``test.doomed_batch`` fail
with an error they do not retry (a dead letter); ``test.quiet`` fails too, made
with ``dead_letter=False``. Single-message and batch tasks: Celery's signals count
the first, ``BatchTask`` the second.
"""

from __future__ import annotations

from dicombus import evt
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

QUEUE = "test.outcomes"
RETRY = {"autoretry_for": (RuntimeError,), "max_retries": 2, "retry_backoff": False}


def first_run(task: str, event: EventRecord) -> bool:
    """True the first time ``task`` runs on ``event`` (a count in the broker's Redis)."""
    return int(redis_client().incr(f"test:runs:{task}:{event.id}")) == 1


@on_event(evt.EVT_C_ECHO, queue=QUEUE, name="test.flaky", default_retry_delay=0, **RETRY)
def flaky(event: EventRecord) -> None:
    if first_run("test.flaky", event):
        raise RuntimeError("the first run fails")


@on_event(
    evt.EVT_C_ECHO, queue=QUEUE, name="test.flaky_batch", batch=True, default_retry_delay=0, **RETRY
)
def flaky_batch(events: list[EventRecord]) -> None:
    if any(first_run("test.flaky_batch", event) for event in events):
        raise RuntimeError("the first run fails")


@on_event(evt.EVT_C_ECHO, queue=QUEUE, name="test.doomed")
def doomed(event: EventRecord) -> None:
    raise ValueError(f"{event.type} is not wanted here")


@on_event(evt.EVT_C_ECHO, queue=QUEUE, name="test.doomed_batch", batch=True)
def doomed_batch(events: list[EventRecord]) -> None:
    raise ValueError("not wanted here either")


@on_event(evt.EVT_C_ECHO, queue=QUEUE, name="test.quiet", dead_letter=False)
def quiet(event: EventRecord) -> None:
    raise ValueError(f"{event.type} is let go")
