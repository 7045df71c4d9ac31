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
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    data_that_logs_a_lock,
    envelope_of,
    pending,
    running_publisher,
    store_data,
    subscription,
    wait_published,
)

AUDIT = [subscription("tests.audit", "audit")]


def _submit(publisher: Publisher, association: Association, count: int) -> None:
    """``count`` more events of ``association``, then wait until all it has are in Redis."""
    for _ in range(count):
        publisher.submit(association.next())
    wait_published(publisher, association.sequence)


def _child(publisher: Publisher, association: Association, old: int | None = None) -> int:
    """Keep submitting events until a child (other than ``old``) does the work; its pid.
    (The publisher thread publishes itself until a child has started.)"""

    def ready() -> bool:
        _submit(publisher, association, 1)
        return publisher.sender_pid not in (None, old)

    wait_until(ready, timeout=30)
    pid = publisher.sender_pid
    assert pid is not None
    return pid


@contextmanager
def child_publisher(
    url: str, folder: Path, **options: Any
) -> Iterator[tuple[Publisher, Association, int]]:
    """A started publisher whose child is ready, an association, the child's pid."""
    association = Association()
    with running_publisher(url, folder, AUDIT, **options) as publisher:
        yield publisher, association, _child(publisher, association)


@contextmanager
def hung_child_publisher(url: str, folder: Path) -> Iterator[tuple[Publisher, Association, int]]:
    """As :func:`child_publisher` (broker timeout 0.5 s: the exchange deadline is
    3 x 0.5 + 5 s), with the child stopped (SIGSTOP) before the first yield."""
    with child_publisher(url, folder, broker_timeout=0.5) as (publisher, association, hung):
        os.kill(hung, signal.SIGSTOP)
        yield publisher, association, hung


def _all_delivered(url: str, association: Association) -> list[Any]:
    total = association.sequence
    messages = consume(url, "audit", total)
    assert {envelope_of(m)["sequence"] for m in messages} == set(range(1, total + 1))
    return messages


def test_events_are_built_and_sent_by_a_child_process(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    with child_publisher(redis_server.url, tmp_path) as (publisher, association, child):
        _submit(publisher, association, 50)
        assert publisher.sender_pid == child
        metrics = publisher.metrics()
    assert child != os.getpid()
    assert metrics["sender_restarts"] == 0
    assert metrics["spooled"] == 0
    assert_in_sequence(_all_delivered(redis_server.url, association))
    # Stopping the publisher ends the child.
    wait_until(lambda: not pid_alive(child))


def test_in_process_publishing_has_no_child(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    with running_publisher(redis_server.url, tmp_path, AUDIT, publisher_process=False) as publisher:
        publisher.submit(pending())
        wait_published(publisher, 1)
        assert publisher.sender_pid is None
    assert len(consume(redis_server.url, "audit", 1)) == 1


def test_a_killed_child_is_replaced_and_no_event_is_lost(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    with child_publisher(redis_server.url, tmp_path) as (publisher, association, first):
        os.kill(first, signal.SIGKILL)
        # Until a new child starts (a second later at the earliest), the
        # publisher thread publishes these itself.
        _submit(publisher, association, 300)
        _child(publisher, association, first)
        metrics = publisher.metrics()
    assert metrics["sender_restarts"] == 1
    assert metrics["spooled"] == 0
    assert_in_sequence(_all_delivered(redis_server.url, association))


# Waits out the exchange deadline (3 x 0.5 s + 5 s) and a child's start-up.
@pytest.mark.timeout(60)
def test_a_hung_child_is_killed_even_mid_write_and_the_edge_publishes_its_batch(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # 300 events of 8 KB: a request far larger than the socket pair's buffer,
    # so the edge is blocked writing to the stopped child, not only reading.
    big = {**store_data(), "padding": "x" * 8192}
    with hung_child_publisher(redis_server.url, tmp_path) as (publisher, association, hung):
        for _ in range(300):
            association.sequence += 1
            publisher.submit(
                pending(
                    subject=association.subject,
                    sequence=association.sequence,
                    build_data=functools.partial(dict, big),
                )
            )
        wait_published(publisher, association.sequence, timeout=30)
        assert not pid_alive(hung)
        _child(publisher, association, hung)
        metrics = publisher.metrics()
    assert metrics["sender_restarts"] == 1
    assert metrics["spooled"] == 0
    _all_delivered(redis_server.url, association)


@pytest.mark.timeout(60)
def test_stop_with_a_hung_child_kills_it_and_flushes_in_the_edge(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    with hung_child_publisher(redis_server.url, tmp_path) as (publisher, association, hung):
        for _ in range(50):
            publisher.submit(association.next())
        started = time.monotonic()
        publisher.stop(timeout=1.0)
        took = time.monotonic() - started
        metrics = publisher.metrics()
    # A hung child left alone would hold stop() until the test's own timeout: ending
    # well before that shows it was killed (its 1 s timeout, then the edge's flush).
    assert took < 30
    assert not pid_alive(hung)
    assert metrics["spooled"] == 0
    _all_delivered(redis_server.url, association)


def test_the_child_ignores_ctrl_c(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the edge stops the
    # child itself, after flushing through it.
    with child_publisher(redis_server.url, tmp_path) as (publisher, association, child):
        os.kill(child, signal.SIGINT)
        _submit(publisher, association, 1)
        assert publisher.sender_pid == child
        assert publisher.metrics()["sender_restarts"] == 0


def test_log_records_of_the_child_reach_the_edge_s_loggers(
    redis_server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="dicombus"),
        child_publisher(redis_server.url, tmp_path) as (publisher, association, child),
    ):
        publisher.submit(
            pending(build_data=functools.partial(data_that_logs, "the stored file is gone"))
        )
        # A record whose `extra` pickle cannot carry still comes, as plain fields.
        publisher.submit(pending(build_data=functools.partial(data_that_logs_a_lock, "a lock")))
        wait_published(publisher, association.sequence + 2)
        assert publisher.sender_pid == child
    records = [r for r in caplog.records if r.name == "dicombus.bus.event_data"]
    assert [r.getMessage() for r in records] == ["the stored file is gone", "a lock"]
    assert {r.process for r in records} == {child}  # made in the child, handled here
    assert (
        len(consume(redis_server.url, "audit", association.sequence + 2))
        == association.sequence + 2
    )


def test_an_event_that_fails_in_the_child_is_logged_and_counted(
    redis_server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = pending(build_data=functools.partial(data_that_fails, "the stored file is gone"))
    good = pending()
    with (
        caplog.at_level(logging.ERROR, logger="dicombus.bus.publisher"),
        child_publisher(redis_server.url, tmp_path) as (publisher, association, child),
    ):
        publisher.submit(bad)
        publisher.submit(good)
        wait_published(publisher, association.sequence + 1)
        wait_until(lambda: publisher.metrics()["failed"] == 1)
        assert publisher.sender_pid == child
    assert bad.id in caplog.text
    assert "FileNotFoundError: the stored file is gone" in caplog.text
    messages = consume(redis_server.url, "audit", association.sequence + 1)
    assert envelope_of(messages[-1])["id"] == good.id


def test_events_only_the_edge_can_build_are_built_there_without_a_restart(
    redis_server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module the child cannot import (as functions of a user's main script
    # are, there), and a lambda, which pickle cannot carry at all.
    edge_only = types.ModuleType("edge_only_builders")
    exec("def data():\n    return {'association': {}, 'status': 0}\n", edge_only.__dict__)
    monkeypatch.setitem(sys.modules, "edge_only_builders", edge_only)
    data = {"association": {}, "status": 1}
    with child_publisher(redis_server.url, tmp_path) as (publisher, association, child):
        publisher.submit(pending(build_data=edge_only.data))
        publisher.submit(pending(build_data=lambda: data))
        wait_published(publisher, association.sequence + 2)
        assert publisher.sender_pid == child
        metrics = publisher.metrics()
    assert metrics["failed"] == 0
    assert metrics["sender_restarts"] == 0
    messages = consume(redis_server.url, "audit", association.sequence + 2)
    assert [envelope_of(m)["data"]["status"] for m in messages[-2:]] == [0, 1]
