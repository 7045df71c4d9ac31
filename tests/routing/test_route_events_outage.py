"""Routing events published while Redis is away are kept and published later, in order.

A real Redis (EmbeddedRedis, AOF on) is SIGKILLed and started again on the same port; the
routing events go through :class:`RouteEventPublisher`, the worker's durable chain (journal,
outbox, the edge's publisher). Every event reaches the subscribed task's queue once Redis is
back, in the order it was published, also when the worker stopped during the outage and a
new one (on the same routing folder) publishes what the first kept.
"""

from __future__ import annotations

from pathlib import Path

from dicombus.bus.redis_server import EmbeddedRedis, broker_client
from dicombus.bus.subscriptions import Subscription, register_subscriptions
from dicombus.routing.route_events import ROUTE_DEAD_LETTER, ROUTE_FAILED, ROUTE_SENT
from dicombus_workers.routing.events import RouteEventPublisher
from publisher_support import consume, envelope_of, queue_length
from worker_support import wait_for

QUEUE = "route-audit"
TYPES = (ROUTE_SENT, ROUTE_FAILED, ROUTE_DEAD_LETTER)


def publish(events: RouteEventPublisher, number: int) -> str:
    return events.publish(
        TYPES[number % len(TYPES)],
        {"number": number, "instances": [{"sop_instance_uid": f"1.2.3.{number}"}]},
        edge="edge-1",
        ae_title="ROUTER",
    )


def test_route_events_kept_through_a_redis_outage_and_a_worker_restart(tmp_path: Path) -> None:
    folder = tmp_path / "route-events"
    published: list[str] = []
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = broker_client(server.url)
        sub = Subscription(task="tests.route_audit", queue=QUEUE, event_types=frozenset(TYPES))
        register_subscriptions(client, [sub])
        client.close()

        events = RouteEventPublisher(server.url, folder)
        assert events.view.synced.wait(10)
        published += [publish(events, n) for n in range(3)]
        wait_for(lambda: queue_length(server.url, QUEUE) == 3, "the first events in Redis")

        # Redis away: publish() neither fails nor waits; the events are kept on disk.
        server.kill()
        published += [publish(events, n) for n in range(3, 8)]
        wait_for(lambda: events.metrics()["outbox_rows"] == 5, "5 events in the outbox")
        server.start()  # same port, same append-only file
        wait_for(lambda: events.metrics()["outbox_rows"] == 0, "the outbox replayed")

        # Away again, and the worker stops meanwhile: the next one publishes what it kept.
        server.kill()
        published += [publish(events, n) for n in range(8, 12)]
        events.close()
        server.start()
        restarted = RouteEventPublisher(server.url, folder)
        assert restarted.slot == folder / "0"  # the slot the first worker had
        try:
            wait_for(lambda: queue_length(server.url, QUEUE) >= 12, "all 12 events in Redis")
            messages = consume(server.url, QUEUE, queue_length(server.url, QUEUE))
        finally:
            restarted.close()

    received = [envelope_of(message) for message in messages]
    first_seen = list(dict.fromkeys(envelope["id"] for envelope in received))
    assert first_seen == published  # every one, in the order published
    by_id = {envelope["id"]: envelope for envelope in received}
    for number, event_id in enumerate(published):
        envelope = by_id[event_id]
        assert envelope["type"] == TYPES[number % len(TYPES)]
        assert envelope["data"]["number"] == number
        assert envelope["source"] == "dicombus://edge-1/ROUTER"
