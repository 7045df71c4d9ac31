"""Events bound for several batch tasks on one queue travel once, in real processes.

A real edge publishes to a real Redis; the subscriptions are registered before
any worker runs, so the test counts what the edge put on the queue (LLEN)
before a real ``dicombus worker`` consumes it: per event one message for the
two batch tasks together (``dicombus.dispatch``), and one for the task of the
old kind, whose registry entry is written as an edge that predates batches
knew it (no ``batch`` key). Then the worker runs each task once per event,
and a failing event is a dead letter of the failing task alone.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicombus.bus import dead_letters
from dicombus.bus.sender import task_id_for
from dicombus.bus.subscriptions import (
    DISPATCH_TASK,
    REGISTRY_KEY,
    Delivery,
    Subscription,
    deliveries_of,
    register_subscriptions,
)
from group_tasks import DONE, POISON, QUEUE, TASK_A, TASK_B, TASK_SINGLE
from worker_support import client_for, embedded_redis, running_edge, running_worker, store, wait_for

STORE = "EVT_C_STORE"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


def test_batch_subscribers_of_one_queue_share_a_delivery() -> None:
    a = Subscription(TASK_A, QUEUE, frozenset({STORE}), batch=True)
    b = Subscription(TASK_B, QUEUE, frozenset({STORE}), batch=True)
    elsewhere = Subscription("other.batch", "other", frozenset({STORE}), batch=True)
    single = Subscription(TASK_SINGLE, QUEUE, frozenset({STORE}))
    assert deliveries_of([a, elsewhere, b, single]) == (
        Delivery(QUEUE, (TASK_A, TASK_B)),
        Delivery("other", ("other.batch",)),
        Delivery(QUEUE, (TASK_SINGLE,)),
    )
    # The registry entry of an edge or worker that predates batches: not a batch task.
    old = json.dumps({"task": TASK_SINGLE, "queue": QUEUE, "event_types": [STORE], "raw": False})
    assert Subscription.from_json(old) == single


def _messages(client: object, queue: str) -> list[tuple[str, str, list[object], dict[str, object]]]:
    """(task, id, args, kwargs) of each message in ``queue``, oldest first."""
    found = []
    for payload in reversed(client.lrange(queue, 0, -1)):  # type: ignore[attr-defined]
        message = json.loads(payload)
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], message["headers"]["id"], args, kwargs))
    return found


def test_two_batch_tasks_on_one_queue_get_each_event_once_from_one_message(
    redis_url: str, tmp_path: Path
) -> None:
    client = client_for(redis_url)
    register_subscriptions(
        client,
        [
            Subscription(TASK_A, QUEUE, frozenset({STORE}), batch=True),
            Subscription(TASK_B, QUEUE, frozenset({STORE}), batch=True),
        ],
    )
    old_entry = {"task": TASK_SINGLE, "queue": QUEUE, "event_types": [STORE], "raw": False}
    client.hset(REGISTRY_KEY, TASK_SINGLE, json.dumps(old_entry))
    with running_edge(redis_url, tmp_path / "edge") as node:
        node.view.refresh()
        assert [d.tasks for d in node.view.deliveries(STORE)] == [(TASK_A, TASK_B), (TASK_SINGLE,)]
        good = store(node.address[1], 5)
        (bad,) = store(node.address[1], 1, calling=POISON)
        events = 6
        wait_for(lambda: client.llen(QUEUE) == 2 * events, "the edge's messages")
        messages = _messages(client, QUEUE)
        dispatched = [m for m in messages if m[0] == DISPATCH_TASK]
        assert len(dispatched) == events
        for _task, task_id, args, kwargs in dispatched:
            (envelope,) = args
            assert kwargs == {"tasks": [TASK_A, TASK_B]}
            assert task_id == task_id_for(envelope["id"], f"{DISPATCH_TASK}/{TASK_A},{TASK_B}")
        assert sorted(m[0] for m in messages if m[0] != DISPATCH_TASK) == [TASK_SINGLE] * events

        with running_worker(redis_url, tmp_path / "worker", include=("group_tasks",)):
            wait_for(lambda: client.llen(DONE[TASK_A]) == events, "task a's events")
            wait_for(lambda: client.llen(DONE[TASK_SINGLE]) == events, "the single task's")
            wait_for(lambda: dead_letters.count(client, TASK_B) == 1, "task b's dead letter")
            wait_for(lambda: client.llen(DONE[TASK_B]) == len(good), "task b's other events")
            wait_for(lambda: client.llen(QUEUE) == 0, "the queue to drain")

    assert sorted(client.lrange(DONE[TASK_A], 0, -1)) == sorted([*good, bad])
    assert sorted(client.lrange(DONE[TASK_B], 0, -1)) == sorted(good)
    assert sorted(client.lrange(DONE[TASK_SINGLE], 0, -1)) == sorted([*good, bad])
    # The dead letter is task b's own: its name, its queue, its own task's event.
    assert dead_letters.count(client, TASK_A) == 0
    assert dead_letters.count(client, DISPATCH_TASK) == 0
    stored, unreadable = dead_letters.read(client, TASK_B)
    assert unreadable == []
    (letter,) = [entry.letter for entry in stored]
    assert (letter.task, letter.queue) == (TASK_B, QUEUE)
    assert letter.envelope["data"]["sop_instance_uid"] == bad
    assert letter.error == f"ValueError: events from {POISON} are refused"
