"""The publisher's child process: the work runs there, and its failures lose nothing.

Real parts throughout: the child is a real interpreter process, Redis is a real
EmbeddedRedis, and the faults are real signals sent to the child by its PID
(SIGKILL, SIGSTOP, SIGINT).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from pathlib import Path

import pytest
from dicombus.bus.publisher import Publisher
from dicombus.bus.redis_server import EmbeddedRedis
from helpers import pid_alive
from loopback import wait_until
from publisher_support import (
    Association,
    assert_in_sequence,
    consume,
    data_that_fails,
    data_that_logs,
    envelope_of,
    pending,
    running_publisher,
    subscription,
    wait_published,
)

AUDIT = [subscription("tests.audit", "audit")]


def _submit(publisher: Publisher, association: Association, count: int) -> None:
    """``count`` more events of ``association``, then wait until all it has are in Redis."""
    for _ in range(count):
        publisher.submit(association.next())
    wait_published(publisher, association.sequence)


def test_events_are_built_and_sent_by_a_child_process(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    association = Association()
    with running_publisher(redis_server.url, tmp_path, AUDIT) as publisher:
        _submit(publisher, association, 50)
        child = publisher.sender_pid
        metrics = publisher.metrics()
    assert child is not None and child != os.getpid()
    assert metrics["sender_restarts"] == 0
    assert metrics["spooled"] == 0
    messages = consume(redis_server.url, "audit", 50)
    assert_in_sequence(messages)
    # Stopping the publisher ends the child.
    wait_until(lambda: not pid_alive(child))


def test_in_process_publishing_has_no_child(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    with running_publisher(redis_server.url, tmp_path, AUDIT, publisher_process=False) as publisher:
        publisher.submit(pending())
        wait_published(publisher, 1)
        assert publisher.sender_pid is None
    assert len(consume(redis_server.url, "audit", 1)) == 1


def _replaced(publisher: Publisher, association: Association, old: int) -> int:
    """Keep submitting events until a child other than ``old`` runs them; its pid."""

    def new_child() -> bool:
        _submit(publisher, association, 1)
        return publisher.sender_pid not in (None, old)

    wait_until(new_child, timeout=30)
    pid = publisher.sender_pid
    assert pid is not None
    return pid


def test_a_killed_child_is_replaced_and_no_event_is_lost(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    association = Association()
    with running_publisher(redis_server.url, tmp_path, AUDIT) as publisher:
        _submit(publisher, association, 100)
        first = publisher.sender_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        # Until a new child starts (a second later at the earliest), the
        # publisher thread publishes these itself.
        _submit(publisher, association, 300)
        _replaced(publisher, association, first)
        metrics = publisher.metrics()
    assert metrics["sender_restarts"] == 1
    assert metrics["spooled"] == 0
    total = association.sequence
    messages = consume(redis_server.url, "audit", total)
    assert {envelope_of(m)["sequence"] for m in messages} == set(range(1, total + 1))
    assert_in_sequence(messages)


@pytest.mark.timeout(60)  # waits out the answer deadline: 3 x 0.5 s + 5 s
def test_a_hung_child_is_killed_and_the_edge_publishes_its_batch(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    association = Association()
    with running_publisher(redis_server.url, tmp_path, AUDIT, broker_timeout=0.5) as publisher:
        _submit(publisher, association, 1)
        hung = publisher.sender_pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        for _ in range(20):
            publisher.submit(association.next())
        wait_published(publisher, 21, timeout=30)
        assert not pid_alive(hung)
        _replaced(publisher, association, hung)
        metrics = publisher.metrics()
    assert metrics["sender_restarts"] == 1
    assert metrics["spooled"] == 0
    total = association.sequence
    messages = consume(redis_server.url, "audit", total)
    assert {envelope_of(m)["sequence"] for m in messages} == set(range(1, total + 1))


def test_the_child_ignores_ctrl_c(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the edge stops the
    # child itself, after flushing through it.
    with running_publisher(redis_server.url, tmp_path, AUDIT) as publisher:
        publisher.submit(pending())
        wait_published(publisher, 1)
        child = publisher.sender_pid
        assert child is not None
        os.kill(child, signal.SIGINT)
        publisher.submit(pending())
        wait_published(publisher, 2)
        assert publisher.sender_pid == child
        assert publisher.metrics()["sender_restarts"] == 0


def test_log_records_of_the_child_reach_the_edge_s_loggers(
    redis_server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    event = pending(build_data=functools.partial(data_that_logs, "the stored file is gone"))
    with (
        caplog.at_level(logging.WARNING, logger="dicombus"),
        running_publisher(redis_server.url, tmp_path, AUDIT) as publisher,
    ):
        publisher.submit(event)
        wait_published(publisher, 1)
    [record] = [r for r in caplog.records if r.name == "dicombus.bus.event_data"]
    assert record.getMessage() == "the stored file is gone"
    assert record.process != os.getpid()  # made in the child, handled here


def test_an_event_that_fails_in_the_child_is_logged_and_counted(
    redis_server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = pending(build_data=functools.partial(data_that_fails, "the stored file is gone"))
    good = pending()
    with (
        caplog.at_level(logging.ERROR, logger="dicombus.bus.publisher"),
        running_publisher(redis_server.url, tmp_path, AUDIT) as publisher,
    ):
        publisher.submit(bad)
        publisher.submit(good)
        wait_published(publisher, 1)
        wait_until(lambda: publisher.metrics()["failed"] == 1)
    assert bad.id in caplog.text
    assert "FileNotFoundError: the stored file is gone" in caplog.text
    [message] = consume(redis_server.url, "audit", 1)
    assert envelope_of(message)["id"] == good.id


def test_an_event_pickle_cannot_carry_is_built_in_the_edge(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    data = {"association": {}, "status": 0}
    event = pending(build_data=lambda: data)  # a lambda: not picklable
    with running_publisher(redis_server.url, tmp_path, AUDIT) as publisher:
        publisher.submit(event)
        wait_published(publisher, 1)
        assert publisher.metrics()["failed"] == 0
    [message] = consume(redis_server.url, "audit", 1)
    assert envelope_of(message)["data"] == data
