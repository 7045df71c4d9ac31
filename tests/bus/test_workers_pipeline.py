"""The pipeline end to end: real associations -> edge -> Redis -> real Celery worker processes.

Every test here runs an embedded redis-server, an edge node in this process
and ``dicombus worker`` subprocesses with the tasks of worker_tasks.py.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dicombus.bus.envelope import PendingEvent
from worker_support import (
    client_for,
    echo,
    embedded_redis,
    running_edge,
    running_worker,
    store,
    wait_for,
)
from worker_tasks import DELIVERIES, RECORDED_TYPES

ASSOCIATIONS = 4
INSTANCES = 5


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


def _spy_on_events(node: object) -> list[PendingEvent]:
    """The PendingEvents the edge hands to its publisher, in order (wraps both sinks:
    C-STORE Success outcomes go through the journal, ``submit_durable``)."""
    built: list[PendingEvent] = []
    publisher = node.publisher  # type: ignore[attr-defined]
    lock = threading.Lock()

    def spy(submit: Callable[[PendingEvent], None]) -> Callable[[PendingEvent], None]:
        def spied(pending: PendingEvent) -> None:
            with lock:
                built.append(pending)
            submit(pending)

        return spied

    node.capture._sink = spy(publisher.submit)  # type: ignore[attr-defined]
    node.capture._durable_sink = spy(publisher.submit_durable)  # type: ignore[attr-defined]
    return built


def test_every_subscribed_event_reaches_its_task_once_in_association_order(
    redis_url: str, tmp_path: Path
) -> None:
    """4 associations x 5 C-STOREs: accepted + 5 stores + released each, ids exact, in order.

    One pool process, so the order the task sees is the order of the queue.
    """
    client = client_for(redis_url)
    with (
        running_worker(redis_url, tmp_path / "worker", concurrency=1),
        running_edge(redis_url, tmp_path / "edge") as node,
    ):
        wait_for(lambda: node.view.wants("EVT_C_STORE"), "the edge to see the subscription")
        built = _spy_on_events(node)
        port = node.address[1]
        sent: list[str] = []
        threads = [
            threading.Thread(target=lambda: sent.extend(store(port, INSTANCES)))
            for _ in range(ASSOCIATIONS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        expected = ASSOCIATIONS * (INSTANCES + 2)
        wait_for(lambda: client.llen(DELIVERIES) >= expected, f"{expected} deliveries")
        lines = client.lrange(DELIVERIES, 0, -1)

    assert len(lines) == expected
    deliveries = [line.split() for line in lines]
    wanted = {event.name for event in RECORDED_TYPES}
    assert sorted(d[3] for d in deliveries) == sorted(p.id for p in built if p.event_type in wanted)
    assert sorted(d[4] for d in deliveries if d[2] == "EVT_C_STORE") == sorted(sent)
    by_association: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for subject, sequence, kind, _id, _uid in deliveries:
        by_association[subject].append((int(sequence), kind))
    assert len(by_association) == ASSOCIATIONS
    for events in by_association.values():
        sequences = [sequence for sequence, _ in events]
        assert sequences == sorted(sequences), "a task saw an association's events out of order"
        kinds = [kind for _, kind in events]
        assert kinds == ["EVT_ACCEPTED", *["EVT_C_STORE"] * INSTANCES, "EVT_RELEASED"]


def test_unsubscribed_events_are_not_serialized(redis_url: str, tmp_path: Path) -> None:
    """Only the subscribed types become events on the edge: C-ECHO and the rest cost nothing."""
    with (
        running_worker(redis_url, tmp_path / "worker"),
        running_edge(redis_url, tmp_path / "edge") as node,
    ):
        wait_for(lambda: node.view.wants("EVT_C_STORE"), "the edge to see the subscription")
        client = client_for(redis_url)
        port = node.address[1]
        built_before = node.capture.events_built
        for _ in range(3):
            echo(port)  # subscribed: EVT_ACCEPTED and EVT_RELEASED only, never EVT_C_ECHO
        store(port, 2)
        # 3 echo associations: accepted + released; the store association: 1 + 2 + 1.
        expected = 3 * 2 + 4
        wait_for(lambda: client.llen(DELIVERIES) >= expected, f"{expected} deliveries")
        assert node.capture.events_built - built_before == expected
        metrics = node.metrics()
        assert metrics["published"] == expected
        kinds = {line.split()[2] for line in client.lrange(DELIVERIES, 0, -1)}
    assert kinds == {"EVT_ACCEPTED", "EVT_C_STORE", "EVT_RELEASED"}
