"""``dicombus_tasks_total{task, outcome}``: how each run of an event task ended, in Redis.

Counted in the broker's Redis (:func:`dicombus.metrics.store.increment`), so
every worker process on every host adds to one number per task and outcome:

- ``succeeded``: the run returned;
- ``retried``: it failed with an error it retries, and was sent again;
- ``dead_letter``: it gave up (retries exhausted, or an error it does not
  retry) and kept the event as a dead letter (:mod:`dicombus_workers.dead_letter`);
- ``failed``: it gave up on a task made with ``dead_letter=False``.

Single-message tasks are counted from Celery's task signals (``task_success``,
``task_retry``, ``task_failure``), which Celery sends in the process that ran
the task. Batch tasks never pass through Celery's tracer, so
:class:`~dicombus_workers.batch.BatchTask` reports its events' outcomes here
itself, one per event. Every dead letter is counted where it is kept.

These count runs: a message handed out again after its worker died between
the outcome and the acknowledgement counts its second run too. The built-in
counter tasks count their own ``succeeded`` once per event id, inside the
script that counts the event (:func:`success_counted_by_task`), so that a
redelivered event they skip is not a success twice.

A Redis that refuses the addition is logged; the task's outcome stands.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_failure, task_retry, task_success
from dicombus.metrics.families import TASKS
from dicombus.metrics.store import increment
from redis.exceptions import RedisError

from dicombus_workers.idempotency import redis_client

LOGGER = logging.getLogger("dicombus_workers.task_outcomes")

SUCCEEDED = "succeeded"
RETRIED = "retried"
DEAD_LETTER = "dead_letter"
FAILED = "failed"

# Tasks whose success the metrics recorder counts, claimed once per event.
_SUCCESS_COUNTED_BY_TASK: set[str] = set()


def success_counted_by_task(task: str) -> None:
    """``task`` counts its own ``succeeded`` (the built-in counter tasks): not counted here."""
    _SUCCESS_COUNTED_BY_TASK.add(task)


def record(task: str, outcome: str, runs: int = 1) -> None:
    """Add ``runs`` runs of ``task`` that ended with ``outcome``."""
    if runs <= 0 or (outcome == SUCCEEDED and task in _SUCCESS_COUNTED_BY_TASK):
        return
    try:
        increment(redis_client(), TASKS, [task, outcome], runs)
    except RedisError as exc:
        LOGGER.warning("could not count %d %s run(s) of %s: %s", runs, outcome, task, exc)


def _succeeded(sender: Any = None, **_: Any) -> None:
    record(sender.name, SUCCEEDED)


def _retried(sender: Any = None, **_: Any) -> None:
    record(sender.name, RETRIED)


def _failed(sender: Any = None, **_: Any) -> None:
    # A task that keeps dead letters counts ``dead_letter`` where it keeps one.
    if not hasattr(sender, "keep_dead_letter"):
        record(sender.name, FAILED)


task_success.connect(_succeeded, weak=False)
task_retry.connect(_retried, weak=False)
task_failure.connect(_failed, weak=False)
