"""The workers' broker transport on a real Redis: bulk fetch, recorded as kombu records.

kombu's Redis transport takes one message per ``BRPOP``; ours takes as many
more as the prefetch allows in one script. What must hold: the bulk respects
the prefetch, keeps the list's order, records each message in the unacked
hash and index exactly as kombu's own QoS would (so kombu's restore and
acknowledgement work on them), and unacknowledged messages come back whole
when the consumer goes away.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dicombus_workers import batch, transport
from dicombus_workers.transport import Transport
from kombu import Connection, Queue
from kombu.asynchronous import Hub
from kombu.message import Message
from kombu.utils import json as kombu_json
from worker_support import client_for, embedded_redis

QUEUE = Queue("test.bulk", routing_key="test.bulk")
TRANSPORT = f"{Transport.__module__}:{Transport.__name__}"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


def _publish(url: str, count: int) -> None:
    with Connection(url) as connection:
        producer = connection.Producer()
        for number in range(count):
            producer.publish({"n": number}, exchange="", routing_key=QUEUE.name, declare=[QUEUE])


def _consume(url: str, prefetch: int, *, ack: bool) -> list[Message]:
    """One BRPOP's worth of messages through our transport (one drain_events)."""
    received: list[Message] = []

    def on_message(_body: Any, message: Message) -> None:
        received.append(message)

    with (
        Connection(url, transport=TRANSPORT) as connection,
        connection.Consumer(QUEUE, callbacks=[on_message], prefetch_count=prefetch),
    ):
        connection.drain_events(timeout=10)
        client = client_for(url)
        # Recorded as kombu's QoS.append records: [payload, exchange, routing key] by tag.
        for message in received:
            entry = json.loads(client.hget("unacked", message.delivery_tag))
            assert entry == [message._raw, "", QUEUE.name]
            assert client.zscore("unacked_index", message.delivery_tag) is not None
        if ack:
            for message in received:
                message.ack()
    return received


def test_one_brpop_takes_what_the_prefetch_allows_in_order(redis_url: str) -> None:
    _publish(redis_url, 12)
    first = _consume(redis_url, prefetch=5, ack=True)
    assert [message.payload["n"] for message in first] == [0, 1, 2, 3, 4]
    rest = _consume(redis_url, prefetch=50, ack=True)
    assert [message.payload["n"] for message in rest] == list(range(5, 12))
    client = client_for(redis_url)
    assert (client.hlen("unacked"), client.zcard("unacked_index")) == (0, 0)


def test_messages_taken_in_bulk_and_not_acknowledged_come_back_whole(redis_url: str) -> None:
    _publish(redis_url, 8)
    taken = _consume(redis_url, prefetch=8, ack=False)
    assert len(taken) == 8
    # The consumer closed its channel without acknowledging: kombu restores them.
    client = client_for(redis_url)
    assert client.hlen("unacked") == 0
    assert client.llen(QUEUE.name) == 8
    again = _consume(redis_url, prefetch=8, ack=True)
    assert sorted(message.payload["n"] for message in again) == list(range(8))


@pytest.mark.parametrize(
    "headers",
    [
        # Keys the script reads where they stand in the text, occurring again in a header:
        # the message is decoded whole, and the properties' own values are recorded.
        {"delivery_tag": "not-the-tag", "delivery_info": {"exchange": "x", "routing_key": "y"}},
        {"note": {"delivery_info": "}{"}},
        # Inside a string value the keys are escaped text, not keys.
        {"argsrepr": '{"delivery_tag": "x", "delivery_info": {}}'},
    ],
)
def test_each_message_is_recorded_by_its_own_properties(
    redis_url: str, headers: dict[str, Any]
) -> None:
    """The bulk script reads the delivery tag, exchange and routing key from the text
    when each key occurs once in it, and decodes the whole message when not: either way
    the entry is kombu's (checked by _consume), for a header that looks like them too."""
    with Connection(redis_url) as connection:
        producer = connection.Producer()
        for number in range(3):
            producer.publish(
                {"n": number},
                exchange="",
                routing_key=QUEUE.name,
                declare=[QUEUE],
                headers=headers,
            )
    taken = _consume(redis_url, prefetch=3, ack=True)
    assert [message.payload["n"] for message in taken] == [0, 1, 2]
    assert all(message.headers == headers for message in taken)


@pytest.mark.parametrize("published", [1, 6])
def test_a_brpop_s_messages_are_recorded_in_one_script_call(redis_url: str, published: int) -> None:
    """The BRPOP's own message is recorded by the bulk script, not by kombu's per-message
    MULTI/EXEC: one BRPOP and one script call (EVALSHA: the script's text is sent only
    when Redis does not have it yet) however many messages it takes, the lone message of
    a slow stream included."""
    _publish(redis_url, published)
    client = client_for(redis_url)
    received: list[Message] = []
    with (
        Connection(redis_url, transport=TRANSPORT) as connection,
        connection.Consumer(QUEUE, callbacks=[lambda _b, m: received.append(m)], prefetch_count=10),
    ):
        client.config_resetstat()
        connection.drain_events(timeout=10)
        # Runs that did something: a first EVALSHA that Redis answered NOSCRIPT is failed.
        calls = {
            name: stats["calls"] - stats.get("failed_calls", 0)
            for name, stats in client.info("commandstats").items()
        }
        for message in received:
            assert json.loads(client.hget("unacked", message.delivery_tag))[0] == message._raw
            message.ack()
    assert len(received) == published
    assert (calls.get("cmdstat_brpop"), calls.get("cmdstat_evalsha")) == (1, 1)
    assert "cmdstat_eval" not in calls
    assert "cmdstat_multi" not in calls


@pytest.mark.parametrize(("prefetch", "waits"), [(2, False), (100, True)])
def test_only_a_consumer_with_room_for_many_waits_for_a_stream_to_gather(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, prefetch: int, waits: bool
) -> None:
    """In a stream (each fetch finds its message already there and empties the list) a
    consumer that can take a batch's worth waits a moment before its next BRPOP; one with
    room for a few (a single-message task's prefetch) never does: at most a few messages
    per wait, it would fall behind a fast stream."""
    slept: list[float] = []
    consumer_thread, real_sleep = threading.get_ident(), time.sleep

    def spy(seconds: float) -> None:
        """The waits the consumer asked for; time.sleep is the process's, so another
        thread's (a test's leftover) still sleeps and is not counted."""
        if threading.get_ident() == consumer_thread:
            slept.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(transport.time, "sleep", spy)
    received: list[Message] = []
    with (
        Connection(redis_url, transport=TRANSPORT) as connection,
        connection.Consumer(
            QUEUE, callbacks=[lambda _b, m: received.append(m)], prefetch_count=prefetch
        ),
    ):
        for _ in range(3):
            _publish(redis_url, 1)
            connection.drain_events(timeout=10)
            for message in received:
                message.ack()
            received.clear()
    assert bool(slept) is waits
    assert all(0 < seconds <= transport.FETCH_LINGER for seconds in slept)


def test_a_batch_is_acknowledged_with_one_zrem_and_one_hdel(redis_url: str) -> None:
    """A batch's acknowledgement removes every message's entries from the unacked hash and
    index with one variadic ZREM and one HDEL in one transaction, not a pair per message
    (each pair cost the worker more CPU than the event's audit row)."""
    _publish(redis_url, 7)
    client = client_for(redis_url)
    received: list[Message] = []
    with (
        Connection(redis_url, transport=TRANSPORT) as connection,
        connection.Consumer(QUEUE, callbacks=[lambda _b, m: received.append(m)], prefetch_count=10),
    ):
        connection.drain_events(timeout=10)
        assert (client.hlen("unacked"), client.zcard("unacked_index")) == (7, 7)
        client.config_resetstat()
        batch._acknowledge(received)
        calls = {name: stats["calls"] for name, stats in client.info("commandstats").items()}
        assert (client.hlen("unacked"), client.zcard("unacked_index")) == (0, 0)
        assert all(message.acknowledged for message in received)
    assert (calls.get("cmdstat_zrem"), calls.get("cmdstat_hdel")) == (1, 1)
    assert (calls.get("cmdstat_multi"), calls.get("cmdstat_exec")) == (1, 1)
    # Nothing is left to restore: the channel closed with every message acknowledged.
    assert client.llen(QUEUE.name) == 0


def test_in_an_event_loop_a_stream_s_next_fetch_is_held_without_stopping_the_loop(
    redis_url: str,
) -> None:
    """In a worker's event loop, the wait before the next BRPOP of a stream does not sleep
    (the loop goes on with its batches and acknowledgements): the QoS takes nothing until
    the hold is over, so a message published meanwhile stays in Redis's list and is taken
    together with what follows, and a timer at the end of the hold wakes the loop."""
    hub = Hub()
    wakes: list[float] = []
    call_later = hub.call_later

    def spied_call_later(delay: float, callback: Any, *args: Any) -> Any:
        wakes.append(delay)
        return call_later(delay, callback, *args)

    hub.call_later = spied_call_later  # type: ignore[method-assign]  # a spy on the real timer
    received: list[Message] = []
    client = client_for(redis_url)
    with (
        Connection(redis_url) as producing,
        Connection(redis_url, transport=TRANSPORT) as connection,
        connection.Consumer(
            QUEUE, callbacks=[lambda _b, m: received.append(m)], prefetch_count=100
        ),
    ):
        producer = producing.Producer()

        def publish() -> None:
            producer.publish({}, exchange="", routing_key=QUEUE.name, declare=[QUEUE])

        connection.register_with_event_loop(hub)
        loop = hub.create_loop()
        qos = connection.default_channel.qos

        def turn_until(count: int) -> None:
            for _ in range(10_000):
                if len(received) >= count:
                    return
                next(loop)
            raise AssertionError(f"{count} messages not received")

        # The first fetch after a quiet spell; the next ones in a stream (one message a
        # loop turn or two), until one of them holds the next.
        for fetched in range(1, 20):
            publish()
            turn_until(fetched)
            if wakes:
                break
        assert wakes, "no hold in a stream"
        held_until = qos.held_until
        assert qos.can_consume() is (time.monotonic() >= held_until)
        publish()
        next(loop)
        # Not fetched while held (unless the hold is already over on a slow machine).
        assert client.llen(QUEUE.name) == 1 or time.monotonic() >= held_until
        turn_until(fetched + 1)
        for message in received:
            message.ack()
    hub.close()
    assert len(received) == fetched + 1


@pytest.mark.parametrize(
    "document",
    [
        # Celery's message document, as the edge writes it.
        '{"body": "W1t7fV0=", "content-encoding": "utf-8", "content-type": "application/json",'
        ' "headers": {"id": "01A/dicombus.audit_count", "retries": 0}, "properties":'
        ' {"delivery_tag": "7c1d", "delivery_info": {"exchange": "", "routing_key": "q"}}}',
        # kombu's own markers for what JSON lacks: only kombu's reader turns them back.
        kombu_json.dumps({"eta": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "n": 1}),
        # What orjson refuses and Python's json reads.
        '{"x": Infinity, "big": 123456789012345678901234567890}',
    ],
)
def test_message_documents_are_read_as_kombu_reads_them(document: str) -> None:
    expected = kombu_json.loads(document)
    assert transport.loads(document) == expected
    assert transport.loads(document.encode()) == expected
