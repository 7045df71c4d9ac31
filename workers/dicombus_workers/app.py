"""The Celery app every dicombus worker runs, with defaults that keep events safe.

Events reach workers as ordinary Celery task messages through Redis. What can
lose or repeat one, and the setting that answers it (docs/workers.md has the
long version):

- A worker dies in the middle of a task. ``task_acks_late`` acknowledges a
  message only after its task returned, and ``task_reject_on_worker_lost``
  puts it back at once when a prefork child is killed. When the whole worker
  dies, the Redis transport hands the message out again once it has been
  unacknowledged for ``visibility_timeout`` seconds, found by the restore sweep
  that every worker runs every ``unacked_restore_interval`` seconds.
- A task runs longer than the visibility timeout: its message would be handed
  to a second worker while the first still runs it. The hard time limit
  (prefork pool) stops every task before that, at 90% of the timeout.
- A message is delivered twice (a replay from the edge's outbox, a restore
  after the task had finished): every task is idempotent by event id
  (:mod:`dicombus_workers.idempotency`).
- Untrusted content: JSON only, never pickle, so a message cannot run code.

Settings come from the environment so one variable reconfigures every process:

``DICOMBUS_BROKER_URL``           the Redis URL (default redis://127.0.0.1:6379/0)
``DICOMBUS_VISIBILITY_TIMEOUT``   seconds (default 3600)
``DICOMBUS_RESTORE_INTERVAL``     seconds between restore sweeps (default 5)
``DICOMBUS_PREFETCH``             messages reserved per pool process (default 1)
``DICOMBUS_TASK_MAX_RETRIES``     retries of the built-in tasks before an event
                                  becomes a dead letter (default 30)
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from dicombus_workers import heap  # noqa: F401  (start-up objects left out of the collector's scans)

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "events"

# An hour: far longer than any event task should take (they write a row,
# bump a counter, forward an instance), and short enough that the messages of
# a worker that vanished come back the same hour.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
# kombu sweeps every 10 s but scans Redis on every 10th sweep only, so a lost
# message waits up to visibility timeout + 100 s. One scan every 5 s is a
# single ZRANGEBYSCORE on a small sorted set.
DEFAULT_RESTORE_INTERVAL = 5.0
# Restored per sweep: bounds the time one sweep holds the worker's event loop.
RESTORE_LIMIT = 1000
# With acks_late a reserved message is held, unacknowledged, by one process;
# reserving one at a time leaves the rest free for idle processes and keeps
# what a killed worker strands to one message per process.
DEFAULT_PREFETCH = 1
# The hard time limit as a share of the visibility timeout (see above).
TIME_LIMIT_SHARE = 0.9
# With back-off doubling up to 60 s between tries, 30 retries ride out about
# 25 minutes of a store being away before the event becomes a dead letter.
DEFAULT_TASK_MAX_RETRIES = 30


def broker_url() -> str:
    return os.environ.get("DICOMBUS_BROKER_URL") or DEFAULT_BROKER_URL


def _number(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{name}={text!r} must be positive")
    return value


def task_max_retries() -> int:
    """``DICOMBUS_TASK_MAX_RETRIES``: a whole number, 0 or more (0: no retry)."""
    text = os.environ.get("DICOMBUS_TASK_MAX_RETRIES")
    if not text:
        return DEFAULT_TASK_MAX_RETRIES
    if not text.strip().isdigit():
        raise ValueError(f"DICOMBUS_TASK_MAX_RETRIES={text!r} is not a whole number (0 or more)")
    return int(text)


def safe_settings(
    *,
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
    restore_interval: float = DEFAULT_RESTORE_INTERVAL,
    prefetch: int = DEFAULT_PREFETCH,
) -> dict[str, Any]:
    """The Celery settings of a dicombus worker (see the module docstring)."""
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": DEFAULT_QUEUE,
        # kombu's Redis transport, fetching as many messages per round trip as
        # the prefetch allows (dicombus_workers.transport).
        "broker_transport": "dicombus_workers.transport:Transport",
        # on_event adds one route per task: task name -> its queue.
        "task_routes": {},
        "task_time_limit": visibility_timeout * TIME_LIMIT_SHARE,
        "worker_prefetch_multiplier": prefetch,
        # Tasks cut off by a lost broker connection cannot be acknowledged
        # anyway; cancelling them lets the restore sweep hand them out again.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        # A worker outlives a Redis outage of any length (it retries with back-off).
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": restore_interval,
            # Scan on every sweep, not every 10th (kombu's default throttle).
            "unacked_restore_throttle": 1,
            "unacked_restore_limit": RESTORE_LIMIT,
        },
    }


def _settings_from_environment() -> dict[str, Any]:
    return safe_settings(
        visibility_timeout=_number("DICOMBUS_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT),
        restore_interval=_number("DICOMBUS_RESTORE_INTERVAL", DEFAULT_RESTORE_INTERVAL),
        prefetch=int(_number("DICOMBUS_PREFETCH", DEFAULT_PREFETCH)),
    )


app = Celery("dicombus_workers", broker=broker_url())
app.conf.update(_settings_from_environment())
