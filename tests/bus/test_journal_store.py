"""The event journal: what it keeps across a restart, what it forgets, and the publisher's use.

Real SQLite files and a real embedded Redis; the crash itself (a SIGKILLed
edge) is in tests/faults/test_bus_edge_kill_store.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest
from dicombus.bus.journal import Journal, JournalError
from dicombus.bus.redis_server import EmbeddedRedis
from helpers import free_port
from publisher_support import (
    Association,
    consume,
    envelope_of,
    pending,
    running_publisher,
    subscription,
    wait_published,
)
from worker_support import running_edge, wait_for

THREADS = 8
PER_THREAD = 25


def test_recorded_events_come_back_after_a_restart_with_their_ids_and_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    association = Association()
    events = [association.next() for _ in range(3)]
    journal = Journal(path)
    for event in events:
        journal.record(event)
    journal.close()

    again = Journal(path)
    try:
        back = again.leftovers()
    finally:
        again.close()
    assert [event.id for event in back] == [event.id for event in events]
    assert [event.to_envelope() for event in back] == [event.to_envelope() for event in events]


def test_concurrent_records_are_all_committed_and_forgotten_ones_are_gone(
    tmp_path: Path,
) -> None:
    """Eight association threads at once (their rows share commits); then half forgotten."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    recorded: list[list[str]] = [[] for _ in range(THREADS)]

    def associate(slot: int) -> None:
        for _ in range(PER_THREAD):
            event = pending()
            journal.record(event)
            recorded[slot].append(event.id)

    threads = [threading.Thread(target=associate, args=(slot,)) for slot in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    all_ids = {event_id for ids in recorded for event_id in ids}
    assert journal.rows == THREADS * PER_THREAD == len(all_ids)
    forgotten = {event_id for ids in recorded[: THREADS // 2] for event_id in ids}
    journal.forget(forgotten)
    journal.close()  # commits the pending deletes

    again = Journal(path)
    try:
        assert {event.id for event in again.leftovers()} == all_ids - forgotten
    finally:
        again.close()


def test_a_journal_of_another_schema_version_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=7")
    with pytest.raises(JournalError, match="schema version 7; this dicombus reads version 1"):
        Journal(path)


def test_the_publisher_forgets_a_journaled_event_once_redis_has_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    with (
        EmbeddedRedis(tmp_path / "redis") as server,
        running_publisher(
            server.url, tmp_path, [subscription("tests.audit", "audit")], journal=journal
        ) as publisher,
    ):
        publisher.submit_durable(pending())
        wait_published(publisher, 1)
        wait_for(lambda: journal.rows == 0, "the journal row to be deleted")
        assert publisher.metrics()["journaled"] == 1
    journal.close()


def test_events_left_in_the_journal_are_published_again_with_the_same_ids(
    tmp_path: Path,
) -> None:
    """What a killed edge left (recorded, never forgotten) goes out at the next start."""
    association = Association()
    left = [association.next() for _ in range(3)]
    journal = Journal(tmp_path / "journal.sqlite3")
    for event in left:
        journal.record(event)
    with (
        EmbeddedRedis(tmp_path / "redis") as server,
        running_publisher(
            server.url, tmp_path, [subscription("tests.audit", "audit")], journal=journal
        ) as publisher,
    ):
        assert publisher.resubmit_journaled() == len(left)
        received = consume(server.url, "audit", len(left))
        wait_for(lambda: journal.rows == 0, "the journal rows to be deleted")
    journal.close()
    assert [envelope_of(message)["id"] for message in received] == [e.id for e in left]


def test_the_edge_opens_its_outbox_fsynced_at_every_commit(tmp_path: Path) -> None:
    """A Success's journal row goes once its messages are in the outbox: from then on
    the outbox alone must survive a power cut, so each of its commits is fsynced."""
    with (
        EmbeddedRedis(tmp_path / "redis") as server,
        running_edge(server.url, tmp_path / "data", reserve_bytes=0) as node,
    ):
        assert node.outbox is not None
        assert node.outbox.synchronous == "FULL"


class _CheckingJournal(Journal):
    """A real journal that notes, at each forget, whether the outbox holds those events.
    (A power cut cannot be made in a test; the order of the two writes can be seen.)"""

    def __init__(self, path: Path, outbox_path: Path) -> None:
        super().__init__(path)
        self._outbox_path = outbox_path
        self.forgotten: list[tuple[set[str], set[str]]] = []  # (forgotten, in the outbox)

    def forget(self, event_ids: Iterable[str]) -> None:
        ids = set(event_ids)
        with contextlib.closing(sqlite3.connect(self._outbox_path)) as outbox:
            stored = {row[0] for row in outbox.execute("SELECT event_id FROM outbox")}
        self.forgotten.append((ids, stored))
        super().forget(ids)


def test_journal_rows_are_forgotten_only_once_the_outbox_append_has_returned(
    tmp_path: Path,
) -> None:
    journal = _CheckingJournal(tmp_path / "journal.sqlite3", tmp_path / "outbox.sqlite3")
    association = Association()
    # No Redis: every batch goes to the outbox.
    with running_publisher(
        f"redis://127.0.0.1:{free_port()}/0",
        tmp_path,
        [subscription("tests.audit", "audit")],
        journal=journal,
        publisher_process=False,
        broker_timeout=0.5,
    ) as publisher:
        for _ in range(5):
            publisher.submit_durable(association.next())
        wait_for(lambda: publisher.metrics()["spooled"] == 5, "the events in the outbox")
        wait_for(
            lambda: len(set().union(*(ids for ids, _ in journal.forgotten))) == 5,
            "the journal rows to be forgotten",
        )
    journal.close()
    assert all(ids <= stored for ids, stored in journal.forgotten)
