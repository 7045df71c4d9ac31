"""The publisher when Redis is away, hung or slow, and when its queue overflows.

A real Redis (EmbeddedRedis) is SIGKILLed, SIGSTOPped and restarted on the
same port; the messages are read back with kombu. The long outage under load
from many threads is tests/faults/test_bus_redis_outage.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import pytest
from dicombus.bus.outbox import Outbox
from dicombus.bus.redis_server import EmbeddedRedis
from loopback import wait_until
from publisher_support import (
    Association,
    assert_in_sequence,
    consume,
    envelope_of,
    queue_length,
    running_publisher,
    subscription,
    wait_published,
)

AUDIT = [subscription("tests.audit", "audit")]


@pytest.fixture(params=[True, False], ids=["child-process", "in-process"])
def publisher_process(request: pytest.FixtureRequest) -> bool:
    """Each test runs with the publisher's work in its child process and in its thread."""
    return bool(request.param)


def test_while_redis_is_killed_events_wait_in_the_outbox_then_replay_in_order(
    publisher_process: bool, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    association = Association()
    with running_publisher(
        redis_server.url, tmp_path, AUDIT, broker_timeout=1.0, publisher_process=publisher_process
    ) as publisher:
        for _ in range(200):
            publisher.submit(association.next())
        wait_published(publisher, 200)

        redis_server.kill()
        for _ in range(300):
            publisher.submit(association.next())
        wait_until(lambda: publisher.metrics()["spooled"] == 300)
        time.sleep(0.05)  # so the oldest waiting event has an age to report
        during = publisher.metrics()

        redis_server.start()  # same port, same append-only file
        wait_published(publisher, 500)
        wait_until(lambda: publisher.metrics()["replaying"] == 0)
        after = publisher.metrics()

    assert during["replaying"] == 1
    assert during["outbox_rows"] == 300
    assert during["outbox_bytes"] > 300 * 500
    assert during["lag_seconds"] >= 0.05
    assert after["replayed"] == 300
    assert after["outbox_rows"] == after["outbox_bytes"] == after["lag_seconds"] == 0
    # The first 200 were in Redis before the kill: the append-only file kept them.
    messages = consume(redis_server.url, "audit", 500)
    assert [envelope_of(m)["sequence"] for m in messages] == list(range(1, 501))


def test_a_publisher_started_while_redis_is_down_publishes_once_it_is_up(
    publisher_process: bool, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    redis_server.kill()
    association = Association()
    with running_publisher(
        redis_server.url, tmp_path, AUDIT, publisher_process=publisher_process
    ) as publisher:
        for _ in range(100):
            publisher.submit(association.next())
        wait_until(lambda: publisher.metrics()["spooled"] == 100)
        redis_server.start()
        wait_published(publisher, 100)
    messages = consume(redis_server.url, "audit", 100)
    assert [envelope_of(m)["sequence"] for m in messages] == list(range(1, 101))


def test_a_full_queue_makes_submit_spool_and_order_still_holds(
    publisher_process: bool, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """A one-slot queue overflows at once: association threads then write to the
    outbox themselves, and the events still reach the queue in sequence order."""
    association = Association()
    with running_publisher(
        redis_server.url, tmp_path, AUDIT, queue_size=1, publisher_process=publisher_process
    ) as publisher:
        for _ in range(1000):
            publisher.submit(association.next())
        wait_published(publisher, 1000)
        metrics = publisher.metrics()
    assert metrics["spooled_on_submit"] > 0
    messages = consume(redis_server.url, "audit", 1000)
    assert [envelope_of(m)["sequence"] for m in messages] == list(range(1, 1001))


def test_a_hung_redis_times_out_and_the_replay_repeats_the_same_task_ids(
    publisher_process: bool, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """SIGSTOP: the publish times out and the batch goes to the outbox; when Redis
    resumes it also executes the batch it had buffered, so some messages arrive twice,
    identical, under the same task id (at least once; idempotent tasks absorb it)."""
    association = Association()
    pid = redis_server.pid
    assert pid is not None
    with running_publisher(
        redis_server.url, tmp_path, AUDIT, broker_timeout=0.5, publisher_process=publisher_process
    ) as publisher:
        for _ in range(10):
            publisher.submit(association.next())
        wait_published(publisher, 10)
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(100):
                publisher.submit(association.next())
            wait_until(lambda: publisher.metrics()["spooled"] == 100)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_published(publisher, 110)
        wait_until(lambda: publisher.metrics()["replaying"] == 0)
        metrics = publisher.metrics()
    assert metrics["replayed"] == 100
    waiting = queue_length(redis_server.url, "audit")
    messages = consume(redis_server.url, "audit", waiting)
    by_id: dict[str, bytes] = {}
    for message in messages:
        assert by_id.setdefault(message.headers["id"], message.body) == message.body
    assert len(by_id) == 110
    assert_in_sequence(messages)


def test_stop_flushes_the_queue_into_redis(
    publisher_process: bool, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    association = Association()
    with running_publisher(
        redis_server.url, tmp_path, AUDIT, publisher_process=publisher_process
    ) as publisher:
        for _ in range(2000):
            publisher.submit(association.next())
    # running_publisher has stopped the publisher: nothing was left behind.
    assert publisher.metrics()["published"] == 2000
    assert len(consume(redis_server.url, "audit", 2000)) == 2000


def test_stop_with_redis_down_keeps_every_event_in_the_outbox(
    publisher_process: bool, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    association = Association()
    redis_server.kill()
    with running_publisher(
        redis_server.url, tmp_path, AUDIT, publisher_process=publisher_process
    ) as publisher:
        for _ in range(50):
            publisher.submit(association.next())
        publisher.stop()
        publisher.submit(association.next())  # after stop: straight to the outbox
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        stored = outbox.oldest(100)
    finally:
        outbox.close()
    sequences = [json.loads(row.message.body)[0][0]["sequence"] for row in stored]
    assert sequences == list(range(1, 52))


def test_an_outbox_that_cannot_store_is_loud(
    publisher_process: bool,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_server.kill()
    association = Association()
    with running_publisher(
        redis_server.url, tmp_path, AUDIT, publisher_process=publisher_process
    ) as publisher:
        publisher.submit(association.next())
        wait_until(lambda: publisher.metrics()["spooled"] == 1)
    # running_publisher closed the outbox: as far as the publisher can tell, the
    # disk is gone.
    lost = association.next()
    with caplog.at_level(logging.CRITICAL, logger="dicombus.bus.publisher"):
        publisher.submit(lost)
    assert publisher.metrics()["failed"] == 1
    assert "EVENTS LOST" in caplog.text
    assert lost.id in caplog.text
