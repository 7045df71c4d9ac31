"""Batch tasks in real ``dicombus worker`` processes on a real Redis, fed by a real edge.

- ``on_event(..., batch=True)`` hands the function a list; one event that
  fails in a batch becomes a dead letter alone, and the rest of its batch is
  done (tests/bus/batch_tasks.py).
- The built-in ``dicombus.audit_count`` batch task, its worker SIGKILLed in
  the middle of a batch (audit rows committed, counters not yet applied, no
  message acknowledged): the batch is handed out again and leaves each audit
  row once and each event counted once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_tasks import BATCH_SIZE, CALLS, DONE, POISON
from dicombus.bus import dead_letters
from worker_support import (
    client_for,
    embedded_redis,
    running_edge,
    running_worker,
    store,
    wait_for,
)

QUEUE = "dicombus.audit_count"  # the combined built-in batch task's queue


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


def test_a_batch_task_gets_a_list_and_a_failing_event_is_a_dead_letter_alone(
    redis_url: str, tmp_path: Path
) -> None:
    client = client_for(redis_url)
    with (
        running_worker(redis_url, tmp_path / "worker", include=("batch_tasks",)),
        running_edge(redis_url, tmp_path / "edge") as node,
    ):
        wait_for(lambda: node.view.wants("EVT_C_STORE"), "the edge to see the subscription")
        good = store(node.address[1], BATCH_SIZE - 1)
        (bad,) = store(node.address[1], 1, calling=POISON)
        wait_for(lambda: dead_letters.count(client, "test.batch") == 1, "the dead letter")
        wait_for(lambda: client.llen(DONE) == len(good), "the other events to be done")

        calls = [json.loads(call) for call in client.lrange(CALLS, 0, -1)]
        # One call with the whole batch, in the order stored; it raised, so each
        # event ran again alone, in the same order.
        assert calls[0] == [*good, bad]
        assert calls[1:] == [[uid] for uid in [*good, bad]]
        assert client.lrange(DONE, 0, -1) == good
        stored, unreadable = dead_letters.read(client, "test.batch")
        assert unreadable == []
        (letter,) = [entry.letter for entry in stored]
        assert letter.envelope["data"]["sop_instance_uid"] == bad
        assert (letter.attempts, letter.error) == (
            1,
            f"ValueError: events from {POISON} are refused",
        )


def _audit_rows(db: Path) -> list[str]:
    try:
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT json_extract(envelope, '$.data.sop_instance_uid') FROM events"
            ).fetchall()
    except sqlite3.OperationalError:  # the worker is creating the table right now
        return []
    return [row[0] for row in rows]


def test_a_batch_redelivered_after_its_worker_died_is_audited_and_counted_once(
    redis_url: str, tmp_path: Path
) -> None:
    client = client_for(redis_url)
    folder = tmp_path / "worker"
    audit_db = folder / "audit.sqlite3"
    count = 5  # stored in the batch that the kill interrupts
    worker_options: dict[str, Any] = {
        "builtin": True,
        "include": (),
        "pool": "solo",
        "env": {"DICOMBUS_AUDIT_EVENTS": "EVT_C_STORE"},
    }
    with running_edge(redis_url, tmp_path / "edge") as node:
        with running_worker(redis_url, folder, **worker_options) as worker:
            wait_for(lambda: node.view.wants("EVT_C_STORE"), "the edge to see the subscription")
            # A first event makes the worker create the audit store (in WAL mode).
            first = store(node.address[1], 1)
            wait_for(
                lambda: _audit_rows(audit_db) == first and client.hlen("unacked") == 0,
                "the first event to be audited and acknowledged",
            )
            worker.stop()
        # Queued while no worker runs, so the next worker takes them all at once.
        uids = first + store(node.address[1], count)
        wait_for(lambda: client.llen(QUEUE) == count, "the events in Redis")

    # The test holds the store's write lock, so the worker's batch waits for it
    # (its busy timeout is 30 s) with every message in hand.
    blocker = sqlite3.connect(audit_db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with running_worker(redis_url, folder, **worker_options) as worker:
        wait_for(
            lambda: client.llen(QUEUE) == 0 and client.hlen("unacked") == count,
            "the worker to take the batch",
        )
        # Writes paused: the counters' script will wait, after the audit commit.
        client.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
        try:
            blocker.execute("ROLLBACK")
            blocker.close()
            wait_for(lambda: sorted(_audit_rows(audit_db)) == sorted(uids), "the audit commit")
            worker.kill()  # mid-batch: audited, not counted, not acknowledged
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
    assert client.hlen("unacked") == count
    assert client.hgetall("dicombus:counts:type") == {"EVT_C_STORE": "1"}

    # Another worker hands the batch out again once its visibility timeout passed.
    total = str(count + 1)

    def settled() -> bool:
        counted = int(client.hget("dicombus:counts:type", "EVT_C_STORE") or 0)
        idle = client.llen(QUEUE) == 0 and client.hlen("unacked") == 0
        return idle and counted >= count + 1

    with running_worker(redis_url, folder, **worker_options):
        wait_for(settled, "every event counted and every message acknowledged")
    assert sorted(_audit_rows(audit_db)) == sorted(uids)  # each row once
    assert client.hgetall("dicombus:counts:type") == {"EVT_C_STORE": total}
    assert client.hgetall("dicombus:counts:ae") == {"SCU": total}
    assert client.hgetall("dicombus:counts:ae:SCU") == {"EVT_C_STORE": total}
    assert dead_letters.tasks(client) == []
