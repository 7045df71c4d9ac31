"""The document the publisher pushes onto a queue's Redis list is the one kombu's producer
writes, and a batch costs Redis one LPUSH per queue.

Real Redis (EmbeddedRedis); the reference is kombu's own Producer.publish with
the settings the publisher used before it built the document itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from dicombus.bus.redis_message import redis_payloads
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.sender import Broker, TaskMessageBuilder
from kombu import Connection
from publisher_support import (
    Association,
    assert_in_sequence,
    consume,
    queue_length,
    subscription,
)


def _messages(count: int, *queues: str) -> list[Any]:
    builder = TaskMessageBuilder("dicombus-edge@tests")
    subs = [subscription(f"tests.{queue}", queue) for queue in queues]
    association = Association()
    return [
        message
        for order in range(count)
        for message in builder.build_all(
            association.next().to_envelope(), subs, order=order, created=0.0
        )
    ]


def _kombu_document(url: str, message: Any) -> dict[str, Any]:
    """What kombu's producer pushes for ``message`` (published, then read back raw)."""
    with Connection(url) as connection:
        connection.Producer(auto_declare=False).publish(
            message.body,
            exchange="",
            routing_key="kombu",
            headers=message.headers,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            retry=False,
            correlation_id=message.task_id,
            reply_to="",
        )
    raw = redis.Redis.from_url(url).rpop("kombu")
    assert isinstance(raw, bytes)
    document: dict[str, Any] = json.loads(raw)
    return document


def test_the_document_is_kombus(redis_server: EmbeddedRedis) -> None:
    [message] = _messages(1, "audit")
    [payload] = redis_payloads([message])
    ours = json.loads(payload)
    theirs = _kombu_document(redis_server.url, message)
    theirs["properties"]["delivery_info"]["routing_key"] = "audit"
    # A fresh delivery tag each time, as kombu makes one per publish.
    assert ours["properties"].pop("delivery_tag") != theirs["properties"].pop("delivery_tag")
    assert ours == theirs


def test_every_publish_has_its_own_delivery_tag() -> None:
    """A worker's transport keys unacknowledged messages by delivery tag: a replayed copy
    must not share its tag with the first."""
    [message] = _messages(1, "audit")
    payloads = [*redis_payloads([message, message]), *redis_payloads([message])]
    tags = {json.loads(payload)["properties"]["delivery_tag"] for payload in payloads}
    assert len(tags) == 3


def test_a_batch_is_one_lpush_per_queue_in_order(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.config_resetstat()
    messages = _messages(50, "audit", "count")
    broker = Broker(redis_server.url, timeout=5)
    try:
        broker.publish(messages)
    finally:
        broker.close()
    stats = client.info("commandstats")
    assert stats["cmdstat_lpush"]["calls"] == 2
    for queue in ("audit", "count"):
        received = consume(redis_server.url, queue, 50)
        assert_in_sequence(received)
        assert len(received) == 50


def test_a_broken_connection_is_replaced(redis_server: EmbeddedRedis) -> None:
    """After Redis restarts, the kept connection is dead: that publish fails (the
    publisher spools the batch) and the next one connects again."""
    broker = Broker(redis_server.url, timeout=5)
    try:
        broker.publish(_messages(1, "audit"))
        redis_server.kill()
        redis_server.start()
        with pytest.raises(redis.ConnectionError):
            broker.publish(_messages(1, "audit"))
        broker.publish(_messages(1, "audit"))
    finally:
        broker.close()
    assert len(consume(redis_server.url, "audit", 2)) == 2
    assert queue_length(redis_server.url, "audit") == 0
