"""The no-op event tasks bench/bus_run.py runs in real ``dicombus worker`` processes.

- ``bench.latency`` (EVT_C_ECHO): how long after the event happened on the
  edge the task started (seconds), appended to a Redis list;
- ``bench.consume`` (EVT_C_ECHO): nothing but its bookkeeping: the count of
  tasks run and the times of the first start and the last finish.

Each worker counts itself in ``bench:ready`` once it consumes.
"""

from __future__ import annotations

import time
from typing import Any

from celery.signals import worker_ready
from dicombus import evt
from dicombus_workers import EventRecord, on_event
from dicombus_workers.idempotency import redis_client

READY = "bench:ready"
LATENCIES = "bench:latency"
CONSUMED = "bench:consumed"
FIRST_START = "bench:first"
LAST_END = "bench:last"


@on_event(evt.EVT_C_ECHO, queue="bench.latency", name="bench.latency")
def latency(event: EventRecord) -> None:
    started = time.time()
    redis_client().rpush(LATENCIES, started - event.timestamp.timestamp())


@on_event(evt.EVT_C_ECHO, queue="bench.consume", name="bench.consume")
def consume(event: EventRecord) -> None:
    started = time.time()
    with redis_client().pipeline(transaction=False) as pipe:
        pipe.set(FIRST_START, started, nx=True)
        pipe.incr(CONSUMED)
        pipe.set(LAST_END, time.time())
        pipe.execute()


@worker_ready.connect
def _count_ready(**_kwargs: Any) -> None:
    redis_client().incr(READY)
