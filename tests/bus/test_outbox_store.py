"""The SQLite outbox: order, size accounting, reopening, the full flag and its policy."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from dicombus.bus.outbox import (
    RESUME_FRACTION,
    ROW_OVERHEAD,
    Outbox,
    OutboxError,
    OutboxMessage,
)
from dicombus.bus.redis_server import EmbeddedRedis
from loopback import wait_until
from publisher_support import Association, running_publisher, subscription, wait_published


def message(order: int, task: str = "tests.audit", body: str = "[[{}],{},{}]") -> OutboxMessage:
    return OutboxMessage(
        event_id=f"event-{order}",
        task=task,
        queue="audit",
        task_id=f"task-{order}-{task}",
        body=body,
        headers={"task": task, "id": f"task-{order}-{task}"},
        order=order,
        created=1_700_000_000.0 + order,
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    store = Outbox(tmp_path / "outbox.sqlite3")
    yield store
    store.close()


def test_replays_by_submit_order_then_insertion(outbox: Outbox) -> None:
    """An event spooled late (it sat in the memory queue) still comes out before the
    newer events spooled ahead of it; an event's messages keep their insertion order."""
    outbox.append([message(3), message(4)])
    outbox.append([message(1, "tests.audit"), message(1, "tests.count"), message(2)])
    found = outbox.oldest(10)
    assert [(row.message.order, row.message.task) for row in found] == [
        (1, "tests.audit"),
        (1, "tests.count"),
        (2, "tests.audit"),
        (3, "tests.audit"),
        (4, "tests.audit"),
    ]
    assert found[0].message == message(1, "tests.audit")
    assert [row.message.order for row in outbox.oldest(2)] == [1, 1]
    assert outbox.max_order() == 4
    assert outbox.oldest_created() == 1_700_000_001.0


def test_counts_rows_and_bytes_and_forgets_what_was_delivered(outbox: Outbox) -> None:
    outbox.append([message(1), message(2), message(3)])
    assert outbox.rows == 3
    first = outbox.oldest(2)
    assert outbox.bytes == sum(row.size for row in outbox.oldest(3))
    assert all(row.size > ROW_OVERHEAD + len(row.message.body) for row in first)
    outbox.delete(first)
    assert outbox.rows == 1
    assert [row.message.order for row in outbox.oldest(10)] == [3]
    outbox.delete(outbox.oldest(10))
    outbox.maybe_checkpoint()
    assert (outbox.rows, outbox.bytes, outbox.oldest(10), outbox.max_order()) == (0, 0, [], 0)
    assert outbox.oldest_created() is None


def test_what_was_stored_is_there_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path)
    first.append([message(1), message(2)])
    size = first.bytes
    first.close()
    again = Outbox(path)
    try:
        assert (again.rows, again.bytes, again.max_order()) == (2, size, 2)
        assert [row.message for row in again.oldest(5)] == [message(1), message(2)]
    finally:
        again.close()


def test_runs_in_wal_mode_with_the_chosen_synchronous_level(tmp_path: Path) -> None:
    levels: list[tuple[Literal["NORMAL", "FULL"], int]] = [("NORMAL", 1), ("FULL", 2)]
    for level, expected in levels:
        path = tmp_path / f"{level}.sqlite3"
        store = Outbox(path, synchronous=level)
        store.append([message(1)])
        try:
            assert store._writer.execute("PRAGMA synchronous").fetchone() == (expected,)
        finally:
            store.close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_outbox_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox(path)


def test_an_unusable_path_is_an_outbox_error(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite3").mkdir()
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(tmp_path / "outbox.sqlite3")


def test_full_at_the_limit_and_again_open_below_the_resume_mark(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = "x" * 1000  # rows of about 1,150 bytes counted: ten fit, the eleventh fills it
    store = Outbox(tmp_path / "outbox.sqlite3", max_bytes=12_000)
    try:
        with caplog.at_level(logging.WARNING, logger="dicombus.bus.outbox"):
            for order in range(1, 11):
                store.append([message(order, body=body)])
            assert not store.full
            store.append([message(11, body=body)])
            assert store.full
            assert "OUTBOX FULL" in caplog.text
            # Nothing is refused at the limit: accepted associations keep spooling.
            store.append([message(12, body=body)])
            assert store.rows == 12
            # Still full until under RESUME_FRACTION of the limit.
            while store.bytes >= store.max_bytes * RESUME_FRACTION:
                assert store.full
                store.delete(store.oldest(1))
            assert not store.full
            assert "below 90% of its limit" in caplog.text
    finally:
        store.close()


def test_the_publisher_reports_a_full_outbox_until_replay_drains_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The flag the edge checks before accepting an association (it answers a transient
    A-ASSOCIATE-RJ while it is set)."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        server.kill()
        association = Association()
        with running_publisher(
            server.url, tmp_path, [subscription("tests.audit", "audit")], max_bytes=20_000
        ) as publisher:
            with caplog.at_level(logging.ERROR, logger="dicombus.bus.outbox"):
                for _ in range(40):
                    publisher.submit(association.next())
                wait_until(lambda: publisher.outbox_full)
            assert "OUTBOX FULL" in caplog.text
            assert publisher.metrics()["outbox_full"] == 1
            server.start()
            wait_published(publisher, 40)
            assert not publisher.outbox_full
            assert publisher.metrics()["outbox_full"] == 0
