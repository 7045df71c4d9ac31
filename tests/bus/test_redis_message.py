"""The document the publisher pushes onto a queue's Redis list is the one kombu's producer
writes, and a batch costs Redis one LPUSH per queue.

Real Redis (EmbeddedRedis); the reference is kombu's own Producer.publish with
the settings the publisher used before it built the document itself.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import redis
from dicombus.bus.redis_message import lpush_commands, redis_payloads
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.sender import Broker, TaskMessageBuilder
from hypothesis import given
from hypothesis import strategies as st
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


@given(
    batch=st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.lists(
            st.one_of(st.binary(max_size=64), st.binary(min_size=6_000, max_size=7_000)),
            min_size=1,
            max_size=5,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_the_commands_are_the_bytes_redis_py_packs(batch: dict[str, list[bytes]]) -> None:
    """One buffer holding what redis-py's own packing sends, piece by piece, for the same
    LPUSHes (payloads under and over its 6 KB pieces, non-ASCII queue names)."""
    packer = redis.Connection()
    commands = [("LPUSH", queue, *payloads) for queue, payloads in batch.items()]
    assert lpush_commands(batch) == b"".join(packer.pack_commands(commands))


def test_a_batch_is_sent_in_one_write(
    redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 100 documents of about 3 KB (0.3 MB) goes to the connection as one
    buffer: one write, where redis-py's packing made some fifty 6 KB pieces, each
    written on its own. A spy on the real connection counts the pieces."""
    pieces: list[int] = []
    send = redis.Connection.send_packed_command

    def counting(self: redis.Connection, command: Any, *args: Any, **kwargs: Any) -> None:
        pieces.append(len(command))
        send(self, command, *args, **kwargs)

    monkeypatch.setattr(redis.Connection, "send_packed_command", counting)
    padding = "[[" + " " * 3000
    messages = [
        replace(message, body=message.body.replace("[[", padding, 1))
        for message in _messages(100, "audit")
    ]
    broker = Broker(redis_server.url, timeout=5)
    try:
        broker.publish(messages)
    finally:
        broker.close()
    assert pieces[-1] == 1
    assert len(consume(redis_server.url, "audit", 100)) == 100


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
