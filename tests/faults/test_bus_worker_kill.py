"""A Celery worker SIGKILLed in the middle of an event task: the task runs again, its effect once.

Real pieces: an embedded redis-server, an edge node, ``dicombus worker``
subprocesses (prefork pool) running worker_kill_tasks.slow_once, and a
C-ECHO association that produces the event.

Two ways to die:

- the pool process running the task is killed: the worker sees it lost and,
  with ``task_reject_on_worker_lost``, puts the message back at once;
- the whole worker is killed: the message stays unacknowledged in Redis and a
  new worker's restore sweep hands it out again after the visibility timeout
  (shortened for the test to a few seconds; an hour by default).

Either way the second attempt does the effect, and a duplicate of the same
message afterwards (what an outbox replay can produce) is skipped.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from worker_kill_tasks import ATTEMPTS, EFFECTS, STARTED
from worker_support import (
    TESTS,
    Worker,
    client_for,
    echo,
    embedded_redis,
    running_edge,
    wait_for,
)

DUPLICATE_TASK_ID = "duplicate-of-the-first-event"
KILL_TASKS = {"include": ("worker_kill_tasks",), "tasks_folder": TESTS / "faults"}


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


# The pool notices a killed process at its next maintenance pass, up to ~5 s
# later; the hard time limit (90% of the visibility timeout) must not fire first.
POOL_PROCESS_VISIBILITY = {"DICOMBUS_VISIBILITY_TIMEOUT": "10"}


# About 6 s and 5 s: the pool's maintenance pass; two worker starts.
@pytest.mark.parametrize("victim", ["pool process", "whole worker"])
def test_killed_task_runs_again_and_its_effect_happens_once(
    redis_url: str, tmp_path: Path, victim: str
) -> None:
    client = client_for(redis_url)
    workers: list[Worker] = []
    env = POOL_PROCESS_VISIBILITY if victim == "pool process" else {}
    try:
        workers.append(Worker(redis_url, tmp_path / "w1", env=env, **KILL_TASKS))
        with running_edge(redis_url, tmp_path / "edge") as node:
            wait_for(lambda: node.view.wants("EVT_C_ECHO"), "the edge to see the subscription")
            echo(node.address[1])
            pid = int(wait_for(lambda: client.lindex(STARTED, 0), "the first attempt to start"))
            if victim == "pool process":
                os.kill(pid, signal.SIGKILL)
            else:
                workers[0].kill()
                workers.append(Worker(redis_url, tmp_path / "w2", **KILL_TASKS))
            wait_for(lambda: client.llen(EFFECTS) >= 1, "the second attempt's effect")
            assert int(client.get(ATTEMPTS) or 0) == 2

            # The same event again, as a replay from the edge's outbox would send it.
            _send_duplicate(redis_url, client.lindex(EFFECTS, 0))
            wait_for(
                lambda: f"[{DUPLICATE_TASK_ID}] succeeded" in workers[-1].log(),
                "the duplicate to be handled",
            )
        assert client.llen(EFFECTS) == 1
        assert int(client.get(ATTEMPTS) or 0) == 2
    finally:
        for worker in workers:
            worker.kill()


def _send_duplicate(url: str, event_id: str) -> None:
    """Send the event to the task once more, with Celery's own client."""
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": "dicombus://edge-test/EDGE",
        "type": "EVT_C_ECHO",
        "time": "2026-01-01T00:00:00.000000Z",
        "subject": "01TESTASSOCIATION000000000",
        "sequence": 1,
        "schemaversion": "1",
        "data": {"association": {}},
    }
    sender = Celery("test-sender", broker=url, set_as_current=False)
    sender.conf.task_serializer = "json"
    sender.send_task(
        "test.slow_once", args=[envelope], queue="test.slow", task_id=DUPLICATE_TASK_ID
    )
