"""The event journal: what it keeps across a restart, what it forgets, and the publisher's use.

Real segment files, a real process SIGKILLed mid-stream, a real full disk (a
small tmpfs), real SQLite journals of earlier versions and a real embedded
Redis; a SIGKILLed edge under C-STORE streams is in
tests/faults/test_bus_edge_kill_store.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dicombus.bus import journal as journal_module
from dicombus.bus.envelope import PendingEvent
from dicombus.bus.journal import Journal, JournalError, event_from_payload, event_payload
from dicombus.bus.journal_records import FRAME_SIZE, HEADER_SIZE, Record, encode_record
from dicombus.bus.redis_server import EmbeddedRedis
from disk_support import fill, small_tmpfs
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
TESTS = Path(__file__).resolve().parents[1]


def test_recorded_events_come_back_after_a_restart_with_their_ids_and_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal"
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


def test_a_record_holds_the_event_s_fields_and_its_exact_time(tmp_path: Path) -> None:
    event = pending()
    back = event_from_payload(event_payload(event))
    for field in dataclasses.fields(PendingEvent):
        if field.name != "build_data":
            assert getattr(back, field.name) == getattr(event, field.name), field.name
    assert back.time.tzinfo is UTC
    assert back.to_envelope() == event.to_envelope()


def test_a_record_of_fewer_fields_or_a_whole_pickled_event_loads() -> None:
    """Fields are added at the end: a record written before one existed gets its
    default; an event pickled whole (the SQLite journal's rows, a time not in UTC)
    loads as it is."""
    event = dataclasses.replace(pending(), retrieve_uri="dicom://EDGE@127.0.0.1:104")
    state = pickle.loads(event_payload(event))
    older = event_from_payload(pickle.dumps(state[:-1]))
    assert older.retrieve_uri is None and older.id == event.id
    elsewhere = dataclasses.replace(event, time=event.time.astimezone(timezone(timedelta(hours=2))))
    assert event_from_payload(event_payload(elsewhere)).time.tzinfo == elsewhere.time.tzinfo
    with pytest.raises(ValueError, match="a record of a dict, not an event"):
        event_from_payload(pickle.dumps({"id": event.id}))


def test_concurrent_records_are_all_durable_and_forgotten_ones_go_with_their_segment(
    tmp_path: Path,
) -> None:
    """Eight association threads at once (their records share appends); then half
    forgotten, then all: a forgotten event comes back only beside a live one."""
    path = tmp_path / "journal"
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
    assert journal.rows == len(all_ids - forgotten)
    journal.close()

    again = Journal(path)
    back = {event.id for event in again.leftovers()}
    assert all_ids - forgotten <= back <= all_ids
    again.forget(back)
    again.close()
    assert _segments(path) == []
    assert Journal(path).leftovers() == []


def _segments(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


def test_a_segment_is_unlinked_once_all_its_events_are_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_RECORDS", 4)
    monkeypatch.setattr(journal_module, "RETIRE_LINGER", 0.0)
    journal = Journal(tmp_path / "journal")
    association = Association()
    events = [association.next() for _ in range(10)]
    for event in events:
        journal.record(event)
    assert len(_segments(journal.path)) == 3  # 4 + 4 + 2 records
    journal.forget(event.id for event in events[:4])
    assert len(_segments(journal.path)) == 2
    journal.forget(event.id for event in events[4:7])  # one of the second segment is live
    assert len(_segments(journal.path)) == 2
    journal.forget([events[7].id])
    assert len(_segments(journal.path)) == 1
    # The segment appended to stays while it may take more, then is retired when idle.
    journal.forget(event.id for event in events[8:])
    assert len(_segments(journal.path)) == 1
    assert journal.commit_due_deletes() is None
    assert _segments(journal.path) == []
    journal.record(association.next())  # a new segment
    assert journal.rows == 1 and len(_segments(journal.path)) == 1
    journal.close()


def _recorded(path: Path, count: int) -> list[PendingEvent]:
    association = Association()
    events = [association.next() for _ in range(count)]
    journal = Journal(path)
    for event in events:
        journal.record(event)
    journal.close()
    return events


def test_a_torn_tail_is_dropped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash mid-append leaves part of a record that was never acknowledged."""
    path = tmp_path / "journal"
    events = _recorded(path, 3)
    [segment] = path.iterdir()
    torn = encode_record(Record(pending().id, b"x" * 100))
    with segment.open("ab") as file:
        file.write(torn[:50])
    caplog.set_level(logging.WARNING, "dicombus.bus.journal")
    journal = Journal(path)
    assert [event.id for event in journal.leftovers()] == [event.id for event in events]
    journal.close()
    assert "3 intact records, then 50 bytes dropped: a record of" in caplog.text


def test_a_record_with_a_bad_crc_ends_its_segment_and_the_next_segments_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_RECORDS", 3)
    path = tmp_path / "journal"
    events = _recorded(path, 6)
    first, _second = sorted(path.iterdir())
    data = bytearray(first.read_bytes())
    (first_length,) = struct.unpack_from("<I", data, HEADER_SIZE)
    second_record = HEADER_SIZE + FRAME_SIZE + first_length
    data[second_record + FRAME_SIZE + 40] ^= 0xFF  # inside its pickle
    first.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, "dicombus.bus.journal")
    journal = Journal(path)
    back = [event.id for event in journal.leftovers()]
    journal.close()
    assert back == [event.id for event in events[:1] + events[3:]]
    assert "whose CRC-32 does not match" in caplog.text


def test_a_record_that_does_not_unpickle_is_logged_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal"
    events = _recorded(path, 2)
    [segment] = path.iterdir()
    with segment.open("ab") as file:
        file.write(encode_record(Record("01UNREADABLE0000000000000", b"not a pickle")))
    caplog.set_level(logging.ERROR, "dicombus.bus.journal")
    journal = Journal(path)
    assert [event.id for event in journal.leftovers()] == [event.id for event in events]
    assert "event 01UNREADABLE0000000000000 cannot be read back" in caplog.text
    journal.forget(event.id for event in events)
    assert journal.rows == 1
    journal.close()
    assert [segment.name] == _segments(path)  # kept for a version that reads it


_RECORDING_CHILD = """
import sys
from pathlib import Path

from dicombus.bus.journal import Journal
from publisher_support import Association

journal = Journal(Path(sys.argv[1]))
association = Association()
while True:
    event = association.next()
    journal.record(event)
    print(event.id, flush=True)
"""
# More than a segment's records (256): the kill may come after a new segment began.
ACKNOWLEDGED_BEFORE_KILL = 300


def test_every_record_acknowledged_before_a_sigkill_is_left_over_in_order(
    tmp_path: Path,
) -> None:
    """A real process records back to back, printing each id once ``record`` returned;
    it is SIGKILLed by its PID mid-stream."""
    path = tmp_path / "journal"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _RECORDING_CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    acknowledged: list[str] = []
    try:
        assert child.stdout is not None
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            line = child.stdout.readline()
            assert line, f"the recording process ended (exit status {child.poll()})"
            acknowledged.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
    acknowledged += out.split()
    journal = Journal(path)
    back = journal.leftovers()
    journal.close()
    assert [event.id for event in back[: len(acknowledged)]] == acknowledged
    assert len(back) - len(acknowledged) <= 1  # the one recorded, killed before its print
    assert [event.sequence for event in back] == list(range(1, len(back) + 1))


def _write_sqlite_journal(path: Path, events: list[PendingEvent], version: int = 1) -> None:
    """An SQLite journal as earlier versions wrote it (their schema, WAL)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA user_version={version}")
        db.execute(
            "CREATE TABLE journal (event_id TEXT PRIMARY KEY, pending BLOB NOT NULL) WITHOUT ROWID"
        )
        db.executemany(
            "INSERT INTO journal (event_id, pending) VALUES (?, ?)",
            [(event.id, pickle.dumps(event)) for event in events],
        )
        db.commit()


def test_an_sqlite_journal_of_an_earlier_edge_is_published_and_removed(
    tmp_path: Path,
) -> None:
    """An edge upgraded with events in its SQLite journal publishes them (same ids) at
    its first start, and the file goes once they are in the new journal."""
    data = tmp_path / "data"
    data.mkdir()
    association = Association()
    left = [association.next() for _ in range(3)]
    _write_sqlite_journal(data / "journal.sqlite3", left)
    with (
        EmbeddedRedis(tmp_path / "redis") as server,
        running_edge(
            server.url, data, subscriptions=(subscription("tests.audit", "audit"),)
        ) as node,
    ):
        received = consume(server.url, "audit", len(left))
        assert node.journal is not None
        wait_for(lambda: node.journal.rows == 0, "the upgraded events to be forgotten")  # type: ignore[union-attr]
    assert sorted(envelope_of(message)["id"] for message in received) == sorted(
        event.id for event in left
    )
    assert not (data / "journal.sqlite3").exists()
    assert not (data / "journal.sqlite3-wal").exists()
    assert (data / "journal").is_dir()


def test_an_upgrade_cut_short_does_not_record_an_event_twice(tmp_path: Path) -> None:
    """Killed after the SQLite rows were appended, before the file was removed: the
    next open finds both and keeps each event once."""
    events = [pending() for _ in range(3)]
    _write_sqlite_journal(tmp_path / "journal.sqlite3", events)
    journal = Journal(tmp_path / "journal")
    journal.close()
    _write_sqlite_journal(tmp_path / "journal.sqlite3", events)
    journal = Journal(tmp_path / "journal")  # the name callers gave it before
    assert journal.path == tmp_path / "journal"
    assert journal.rows == 3
    assert sorted(event.id for event in journal.leftovers()) == sorted(e.id for e in events)
    journal.close()


def test_an_sqlite_journal_of_another_schema_version_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.sqlite3")) as db:
        db.execute("PRAGMA user_version=7")
    with pytest.raises(JournalError, match="schema version 7; this dicombus reads version 1"):
        Journal(tmp_path / "journal")
    assert (tmp_path / "journal.sqlite3").exists()


def test_a_segment_of_another_format_version_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _recorded(path, 1)
    [segment] = path.iterdir()
    data = bytearray(segment.read_bytes())
    data[6] = 9  # the format version after the magic
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="format version 9; this dicombus reads version 1"):
        Journal(path)


# Records tried on the full disk before one must have failed: the last page of the
# segment may still hold a few (a page is 4 KiB, a record about 700 bytes).
MAX_RECORDS_WHILE_FULL = 64


def test_on_a_full_disk_record_raises_and_no_failed_record_is_read_back(
    tmp_path: Path,
) -> None:
    """A real full disk (a small tmpfs): ``record`` raises JournalError once an append
    needs room; what it refused never comes back, what it acknowledged does, and
    records succeed again once room returns."""
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        journal = Journal(disk / "journal")
        acknowledged = [pending() for _ in range(3)]
        for event in acknowledged:
            journal.record(event)
        filler = fill(disk)
        refused: list[PendingEvent] = []
        for _ in range(MAX_RECORDS_WHILE_FULL):
            event = pending()
            try:
                journal.record(event)
            except JournalError:
                refused.append(event)
                break
            acknowledged.append(event)
        assert refused, "every record succeeded on a full disk"
        for _ in range(3):  # the failed segment takes no more: each needs new room
            event = pending()
            with pytest.raises(JournalError, match="No space left on device"):
                journal.record(event)
            refused.append(event)
        filler.unlink()
        after = pending()
        journal.record(after)
        acknowledged.append(after)
        journal.close()

        again = Journal(disk / "journal")
        back = {event.id for event in again.leftovers()}
        again.close()
    assert back == {event.id for event in acknowledged}


@pytest.mark.parametrize("earlier", [0, 2], ids=["new-segment", "after-records"])
def test_a_group_refused_by_fdatasync_is_never_read_back_even_if_it_cannot_be_cut(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    earlier: int,
) -> None:
    """A group written whole, then refused (its fdatasync fails), in a segment that cannot
    be truncated back: its records stay out of a later start's leftovers, where they
    would otherwise be read as intact; the acknowledged ones before it come back."""
    # Fakes: an I/O error (EIO) from fdatasync and from ftruncate. No device here fails
    # those on demand; a full disk refuses the write itself, which leaves no whole record.
    path = tmp_path / "journal"
    journal = Journal(path)
    acknowledged = [pending() for _ in range(earlier)]
    for event in acknowledged:
        journal.record(event)
    real_fdatasync, real_ftruncate = os.fdatasync, os.ftruncate

    def failing(call: Any) -> Any:
        def fake(fd: int, *args: Any) -> Any:
            # The segment's own descriptor (it appends); not another one on the file.
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return call(fd, *args)

        return fake

    monkeypatch.setattr(os, "fdatasync", failing(real_fdatasync))
    monkeypatch.setattr(os, "ftruncate", failing(real_ftruncate))
    refused = pending()
    with pytest.raises(JournalError, match="Input/output error"):
        journal.record(refused)
    monkeypatch.undo()
    # The edge dies here, without closing the journal (a close would remove a segment
    # with nothing acknowledged in it).
    caplog.set_level(logging.WARNING, "dicombus.bus.journal")
    again = Journal(path)
    back = [event.id for event in again.leftovers()]
    again.close()
    assert back == [event.id for event in acknowledged]
    assert "a record of 0 bytes whose CRC-32 does not match" in caplog.text


def test_the_publisher_forgets_a_journaled_event_once_redis_has_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
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
    journal = Journal(tmp_path / "journal")
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
    journal = _CheckingJournal(tmp_path / "journal", tmp_path / "outbox.sqlite3")
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
