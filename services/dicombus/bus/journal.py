"""The edge's journal: captured events that a response depends on, on disk before it leaves.

A C-STORE answered Success promises the modality that the node holds the
instance, and the node promises its subscribers an EVT_C_STORE event for it.
The publisher's queue is memory: an edge killed between the response and the
moment its publisher thread moved the event to Redis or the outbox would hold
an instance that no event ever announces. So, for such an outcome, capture
calls :meth:`Journal.record` before the response is sent: the pickled
:class:`~dicombus.bus.envelope.PendingEvent` is appended here (and
fdatasynced), then it goes the normal way (queue, Redis or outbox). The
publisher calls :meth:`Journal.forget` once the event is in Redis or the
outbox; at the next start the edge submits what is left again, with the same
event id (consumers and task ids are idempotent by it), before it accepts
associations.

On disk: a folder of append-only segment files (``0000000001.seg``, ...; the
record format is :mod:`dicombus.bus.journal_records`). A group of records is
one ``write`` and one ``fdatasync``; a new segment's folder entry is fsynced
once, when it is created. Forgetting writes nothing: the journal counts the
live (unforgotten) events of each segment in memory, and unlinks a segment
that is no longer the one appended to once none is left. A segment is closed
after :data:`SEGMENT_RECORDS` records or :data:`SEGMENT_BYTES`, and the one
appended to is removed once its events are all forgotten and no record came
for :data:`RETIRE_LINGER`; so an unlink lost to a crash, or the forgotten
events that share a segment with a live one, bring back at most a few hundred
published events, which idempotent consumers absorb by their id.

Group commit, leader style (:class:`dicombus.group_commit.GroupCommit`): the
caller that finds no commit running appends itself, with every record waiting
at that moment; callers that arrive meanwhile wait, and the first of them
appends theirs together next. Under load many associations share one
fdatasync; alone, a caller pays one and no hand-off to another thread (a
committer thread cost about 150 us of CPU more per record here: two thread
switches).

An edge of an earlier version kept its journal in SQLite
(``journal.sqlite3``): at open its rows are appended to the segments, same
ids, and the file is removed only then (:mod:`dicombus.bus.journal_upgrade`).

Records are pickles, read back only from the node's own data folder (0700), as
the publisher child already exchanges pickles with the edge.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dicombus.bus.envelope import PendingEvent
from dicombus.bus.journal_records import (
    FRAME_SIZE,
    HEADER_SIZE,
    JournalError,
    Record,
    SegmentRead,
    decode_segment,
    encode_record,
    segment_header,
)
from dicombus.bus.journal_upgrade import read_sqlite_journal, remove_sqlite_journal
from dicombus.group_commit import GroupCommit

__all__ = ["Journal", "JournalError", "event_from_payload", "event_payload", "journal_paths"]

LOGGER = logging.getLogger("dicombus.bus.journal")

# A segment is closed after this many records or bytes: what a crash can bring back of
# events already published (a lost unlink, or a segment kept by one live event).
SEGMENT_RECORDS = 256
SEGMENT_BYTES = 1 << 20
# The segment appended to is removed once all its events are forgotten and no record
# came for this long: a stream that stopped leaves nothing to publish again.
RETIRE_LINGER = 1.0
# Seconds the publisher waits before it tries again while a group is being appended.
RETRY_DELAY = 0.05
SEGMENT_SUFFIX = ".seg"
_SEGMENT_NAME = re.compile(r"(\d{10})\.seg")
# The name earlier versions gave the journal: an SQLite file beside the folder.
LEGACY_SUFFIX = ".sqlite3"
_FIELDS = tuple(field.name for field in fields(PendingEvent))
_TIME = _FIELDS.index("time")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def event_payload(pending: PendingEvent) -> bytes:
    """``pending`` pickled for a record: its fields as a tuple, its time (UTC, as capture
    makes it) as microseconds since the epoch.

    About 40% less CPU than pickling the object (a real C-STORE event, best of seven
    runs on a loaded core: 8.5-9.7 against 14.8-15.3 us): an aware datetime pickles as
    three globals and two reduces, and a slotted dataclass through its ``__getstate__``.
    Any other time: the object, pickled whole.
    """
    if pending.time.tzinfo is not UTC:
        return pickle.dumps(pending, protocol=pickle.HIGHEST_PROTOCOL)
    state: list[Any] = [getattr(pending, name) for name in _FIELDS]
    state[_TIME] = (pending.time - _EPOCH) // _MICROSECOND
    return pickle.dumps(tuple(state), protocol=pickle.HIGHEST_PROTOCOL)


def event_from_payload(payload: bytes) -> PendingEvent:
    """The event :func:`event_payload` pickled (or a PendingEvent pickled whole, as the
    SQLite journal of earlier versions kept it); ValueError if it is neither."""
    found = pickle.loads(payload)
    if isinstance(found, PendingEvent):
        return found
    if not isinstance(found, tuple) or len(found) <= _TIME or not isinstance(found[_TIME], int):
        raise ValueError(f"a record of a {type(found).__name__}, not an event")
    state = list(found)
    state[_TIME] = _EPOCH + state[_TIME] * _MICROSECOND
    pending = PendingEvent.__new__(PendingEvent)
    # Fields are only ever added at the end, with a default: an older record's
    # missing ones take theirs (PendingEvent.__setstate__).
    pending.__setstate__(state)
    return pending


def journal_paths(path: Path) -> tuple[Path, Path]:
    """The journal's folder and the SQLite journal of earlier versions it upgrades.

    Both ``<dir>/journal`` and ``<dir>/journal.sqlite3`` (the name callers gave the
    SQLite journal) mean the folder ``<dir>/journal`` and the file ``<dir>/journal.sqlite3``.
    """
    path = Path(path)
    if path.suffix == LEGACY_SUFFIX:
        return path.with_suffix(""), path
    return path, path.with_name(path.name + LEGACY_SUFFIX)


@dataclass(slots=True)
class _Segment:
    """The segment file appended to: its descriptor and what it holds so far."""

    number: int
    fd: int
    size: int = 0  # bytes known written and fdatasynced, header included
    records: int = 0
    sealed: bool = False  # a failed append: the next group goes to a new segment
    last_write: float = 0.0  # monotonic time of the last append


class Journal:
    """Append-only segment files of framed, pickled PendingEvents; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path, self.legacy_path = journal_paths(path)
        self._lock = threading.Lock()  # guards what follows, not the file writes
        self._live: dict[int, set[str]] = {}  # segment number -> ids not forgotten
        self._segment_of: dict[str, int] = {}
        self._current: _Segment | None = None
        self._next_number = 1
        self._closed = False
        try:
            created = not self.path.is_dir()
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._folder_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if created:
                _fsync_folder(self.path.parent)
        except OSError as exc:
            raise JournalError(f"cannot open the event journal {self.path}: {exc}") from exc
        # The segment appended to is the leader's alone, or used under idle().
        self._group = GroupCommit(self._commit)
        try:
            self._open_segments()
            self._upgrade()
        except BaseException:
            os.close(self._folder_fd)
            raise

    # -- association threads ----------------------------------------------------------------

    def record(self, pending: PendingEvent) -> None:
        """Return once ``pending`` is on disk (fdatasynced); raise JournalError if it cannot be."""
        try:
            payload = event_payload(pending)
        except Exception as exc:
            raise JournalError(f"cannot pickle event {pending.id}: {exc}") from exc
        record = Record(pending.id, payload)
        self._group.submit((record, encode_record(record)))

    # -- the publisher ----------------------------------------------------------------------

    def forget(self, event_ids: Iterable[str]) -> None:
        """These events are in Redis or the outbox: a segment left with none to keep is
        unlinked (not the one appended to: :meth:`commit_due_deletes` retires that one)."""
        empty: list[int] = []
        with self._lock:
            if self._closed:
                return  # left for the next start, published again
            current = self._current.number if self._current is not None else None
            for event_id in event_ids:
                number = self._segment_of.pop(event_id, None)
                if number is None:
                    continue
                live = self._live[number]
                live.discard(event_id)
                if not live and number != current:
                    del self._live[number]
                    empty.append(number)
        for number in empty:
            self._unlink(number)

    def commit_due_deletes(self) -> float | None:
        """Remove the segment appended to if all its events are forgotten and it has had
        no record for :data:`RETIRE_LINGER`; return the seconds until that is due (None:
        nothing to remove). The publisher thread calls it when idle."""
        due = self._retire_due()
        if due is None or due > 0:
            return due
        if self._group.committing:
            return RETRY_DELAY
        with self._group.idle():
            if self._retire_due() == 0.0:
                with self._lock:
                    segment, self._current = self._current, None
                    if segment is not None:
                        del self._live[segment.number]
                if segment is not None:
                    os.close(segment.fd)
                    self._unlink(segment.number)
        return None

    def leftovers(self) -> list[PendingEvent]:
        """The events recorded (by a previous run, or this one) and not forgotten, in
        capture order.

        A record that does not unpickle (written by another version) is logged and
        kept, so that a version that reads it can still publish it.
        """
        found: dict[str, PendingEvent] = {}
        with self._group.idle():
            with self._lock:
                numbers = sorted(self._live)
                live = set(self._segment_of)
            for number in numbers:
                for record in self._read_segment(number).records:
                    if record.event_id not in live or record.event_id in found:
                        continue
                    try:
                        found[record.event_id] = event_from_payload(record.payload)
                    except Exception as exc:
                        LOGGER.error(
                            "journal %s: event %s cannot be read back: %s",
                            self.path,
                            record.event_id,
                            exc,
                        )
        events = list(found.values())
        # Each association's events in sequence order (its clock only moves on).
        events.sort(key=lambda pending: (pending.time, pending.subject, pending.sequence))
        return events

    @property
    def rows(self) -> int:
        """Events recorded and not forgotten (for tests and metrics)."""
        with self._lock:
            return len(self._segment_of)

    def close(self) -> None:
        """Close the files (a fully forgotten last segment is removed); a later
        ``record`` raises."""
        with self._group.idle():
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                segment, self._current = self._current, None
            if segment is not None:
                os.close(segment.fd)
                if not self._live.get(segment.number):
                    self._unlink(segment.number)
            os.close(self._folder_fd)

    # -- the leader -------------------------------------------------------------------------

    def _commit(self, items: list[tuple[Record, bytes]]) -> None:
        """Append ``items`` in one write and one fdatasync (the group's leader); raise
        JournalError, which every caller of the group gets, if that fails."""
        with self._lock:
            if self._closed:
                raise JournalError(f"the event journal {self.path} is closed")
        if not items:
            return
        try:
            segment, retired = self._segment_for_append()
        except OSError as exc:
            raise self._failed(f"cannot create a segment: {exc}") from exc
        data = b"".join(frame for _, frame in items)
        if segment.size == 0:
            data = segment_header() + data
        try:
            _write_all(segment.fd, data)
            os.fdatasync(segment.fd)
        except OSError as exc:
            self._undo(segment)
            raise self._failed(f"cannot append to segment {segment.number}: {exc}") from exc
        finally:
            # After the append: the room it frees is not what the append was given.
            if retired is not None:
                self._unlink(retired)
        segment.size += len(data)
        segment.records += len(items)
        segment.last_write = time.monotonic()
        with self._lock:
            live = self._live[segment.number]
            for record, _ in items:
                live.add(record.event_id)
                self._segment_of[record.event_id] = segment.number

    def _segment_for_append(self) -> tuple[_Segment, int | None]:
        """The segment to append to: a new one if there is none, or the current one is
        full or sealed; and the old one's number if nothing in it is live (to unlink)."""
        segment = self._current
        if (
            segment is not None
            and not segment.sealed
            and segment.records < SEGMENT_RECORDS
            and segment.size < SEGMENT_BYTES
        ):
            return segment, None
        path = self._segment_path(self._next_number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.fsync(self._folder_fd)  # the new entry outlives a crash with its records
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        fresh = _Segment(self._next_number, fd)
        self._next_number += 1
        with self._lock:
            self._current = fresh
            self._live[fresh.number] = set()
            retired = segment is not None and not self._live[segment.number]
            if segment is not None and retired:
                del self._live[segment.number]
        if segment is None:
            return fresh, None
        os.close(segment.fd)
        return fresh, segment.number if retired else None

    def _undo(self, segment: _Segment) -> None:
        """A failed append: cut the segment back to its acknowledged records, so that no
        record of the failed group is ever read back; a segment that holds records takes
        no more (a later append might land after bytes that could not be cut)."""
        try:
            os.ftruncate(segment.fd, segment.size)
        except OSError as exc:
            LOGGER.error(
                "journal %s: cannot cut segment %d back: %s", self.path, segment.number, exc
            )
            segment.sealed = True
            self._void_failed_group(segment)
        if segment.records:
            segment.sealed = True

    def _void_failed_group(self, segment: _Segment) -> None:
        """The segment could not be cut back: overwrite the frame of the failed group's
        first record with zeros (a record whose CRC cannot match), so that reading stops
        before the group after a restart too. The group's records may be whole: written,
        then refused by an fdatasync that failed. Overwriting in place needs no new
        blocks where a full disk refused the append (a copy-on-write file system may
        still refuse it: the CRITICAL log below says so); the segment's descriptor
        appends only, so a second one writes at the offset."""
        start = segment.size or HEADER_SIZE  # a new segment's group came after its header
        try:
            written = os.fstat(segment.fd).st_size
            if written <= start:
                return  # nothing of the group reached the file
            fd = os.open(self._segment_path(segment.number), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.pwrite(fd, bytes(min(FRAME_SIZE, written - start)), start)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            LOGGER.critical(
                "journal %s: segment %d keeps a group of records refused to their callers "
                "(%s); after a restart their events may be published",
                self.path,
                segment.number,
                exc,
            )

    def _failed(self, reason: str) -> JournalError:
        message = f"cannot write the event journal {self.path}: {reason}"
        LOGGER.error("%s", message)
        return JournalError(message)

    # -- open -------------------------------------------------------------------------------

    def _open_segments(self) -> None:
        """Note the live events of the segments a previous run left; remove empty ones."""
        numbers = sorted(
            int(match.group(1))
            for match in map(_SEGMENT_NAME.fullmatch, os.listdir(self.path))
            if match is not None
        )
        for number in numbers:
            records = self._read_segment(number, log=True).records
            # An event is kept once, in its first segment.
            ids = {record.event_id for record in records} - self._segment_of.keys()
            if ids:
                self._live[number] = ids
                self._segment_of.update(dict.fromkeys(ids, number))
            else:
                self._unlink(number)  # never acknowledged anything
        self._next_number = numbers[-1] + 1 if numbers else 1

    def _read_segment(self, number: int, *, log: bool = False) -> SegmentRead:
        """The intact records of a segment; with ``log``, what was dropped after them
        (a record cut or damaged by a crash mid-append: never acknowledged)."""
        path = self._segment_path(number)
        try:
            found = decode_segment(path.read_bytes())
        except OSError as exc:
            raise JournalError(f"cannot read the event journal segment {path}: {exc}") from exc
        except JournalError as exc:
            raise JournalError(f"{path}: {exc}") from exc
        if log and found.dropped is not None:
            LOGGER.warning(
                "journal %s: segment %d: %d intact records, then %d bytes dropped: %s "
                "(an append a crash cut short, never acknowledged)",
                self.path,
                number,
                len(found.records),
                path.stat().st_size - found.end,
                found.dropped,
            )
        return found

    def _upgrade(self) -> None:
        """Append the events of an SQLite journal of an earlier version, then remove it."""
        if not self.legacy_path.exists():
            return
        records = [
            record
            for record in read_sqlite_journal(self.legacy_path)
            if record.event_id not in self._segment_of  # appended by an upgrade cut short
        ]
        # Alone at open: this thread is the leader; a segment's worth at a time.
        for start in range(0, len(records), SEGMENT_RECORDS):
            chunk = records[start : start + SEGMENT_RECORDS]
            self._commit([(record, encode_record(record)) for record in chunk])
        try:
            remove_sqlite_journal(self.legacy_path)
            _fsync_folder(self.legacy_path.parent)
        except OSError as exc:
            raise JournalError(
                f"cannot remove the upgraded journal {self.legacy_path}: {exc}"
            ) from exc
        LOGGER.warning(
            "journal %s: %d events of the SQLite journal %s of an earlier version moved here",
            self.path,
            len(records),
            self.legacy_path,
        )

    def _segment_path(self, number: int) -> Path:
        return self.path / f"{number:010d}{SEGMENT_SUFFIX}"

    def _unlink(self, number: int) -> None:
        """Remove a segment; an unlink lost to a crash only publishes its events again."""
        try:
            os.unlink(self._segment_path(number))
        except FileNotFoundError:
            pass
        except OSError as exc:
            LOGGER.error("journal %s: cannot remove segment %d: %s", self.path, number, exc)

    def _retire_due(self) -> float | None:
        with self._lock:
            segment = self._current
            if self._closed or segment is None or not segment.records:
                return None
            if self._live[segment.number]:
                return None
            return max(segment.last_write + RETIRE_LINGER - time.monotonic(), 0.0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
