"""The event journal's bytes on disk: a segment's header and its framed records; no I/O.

A segment file is a header, then records appended one group at a time::

    segment := magic "DBJRNL" (6 bytes)  version (u16 LE)  record*
    record  := length (u32 LE)  crc (u32 LE)  body[length]
    body    := id length (u8)  event id (ASCII)  payload
    crc     := CRC-32 of the length's 4 bytes and the body

The payload is the pickled :class:`~dicombus.bus.envelope.PendingEvent`; the
event id travels beside it, so a payload that does not unpickle (written by
another version) can still be kept and counted by its id.

A crash mid-append leaves a record that was never acknowledged (its group's
``fdatasync`` had not returned): cut short, zero-filled, or with bytes of a
later page persisted before an earlier one's. :func:`decode_segment` stops at
the first record that is not whole and intact and says why; the CRC covers the
length too, so a damaged length cannot frame a wrong body that passes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from dicombus.protocol.errors import DicombusError

MAGIC = b"DBJRNL"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<6sH")
HEADER_SIZE = _HEADER.size
_FRAME = struct.Struct("<II")
FRAME_SIZE = _FRAME.size
# The frame's length is a u32; the id's length a u8 (a ULID has 26 characters).
MAX_BODY = 0xFFFFFFFF
MAX_ID = 0xFF


class JournalError(DicombusError, RuntimeError):
    """The journal could not store an event (disk full, I/O error, unpicklable event),
    or found a file it cannot read (another format, another version)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One journaled event: its id and its payload (the pickled PendingEvent)."""

    event_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SegmentRead:
    """What a segment holds: its intact records, in order, and where reading stopped."""

    records: list[Record]
    end: int  # offset after the last intact record (0: not even a whole header)
    dropped: str | None = None  # why bytes after ``end`` were not read; None: none were


def segment_header() -> bytes:
    """The bytes a segment file starts with."""
    return _HEADER.pack(MAGIC, FORMAT_VERSION)


def encode_record(record: Record) -> bytes:
    """``record`` framed for appending; JournalError if it cannot be framed."""
    try:
        event_id = record.event_id.encode("ascii")
    except UnicodeEncodeError as exc:
        raise JournalError(f"event id {record.event_id!r} is not ASCII") from exc
    if len(event_id) > MAX_ID:
        raise JournalError(f"event id of {len(event_id)} bytes (at most {MAX_ID})")
    length = 1 + len(event_id) + len(record.payload)
    if length > MAX_BODY:
        raise JournalError(f"event {record.event_id} of {length} bytes (at most {MAX_BODY})")
    body = bytes((len(event_id),)) + event_id + record.payload
    length_bytes = length.to_bytes(4, "little")
    return _FRAME.pack(length, zlib.crc32(body, zlib.crc32(length_bytes))) + body


def decode_segment(data: bytes) -> SegmentRead:
    """The records of a segment file's bytes, up to the first that is not whole and intact.

    Raises JournalError only for a file that is not a journal segment of this
    format version (its header says otherwise); damage after the header is
    reported in ``dropped``, never raised.
    """
    if len(data) < HEADER_SIZE:
        if segment_header().startswith(data):
            torn = f"a segment header cut at {len(data)} of {HEADER_SIZE} bytes"
            return SegmentRead([], 0, torn if data else None)
        raise JournalError(f"not an event journal segment (starts {data[:HEADER_SIZE]!r})")
    magic, version = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise JournalError(f"not an event journal segment (starts {data[:HEADER_SIZE]!r})")
    if version != FORMAT_VERSION:
        raise JournalError(
            f"an event journal segment of format version {version}; "
            f"this dicombus reads version {FORMAT_VERSION}"
        )
    records: list[Record] = []
    offset = HEADER_SIZE
    while offset < len(data):
        found = _decode_record(data, offset)
        if isinstance(found, str):
            return SegmentRead(records, offset, f"{found} at offset {offset}")
        record, offset = found
        records.append(record)
    return SegmentRead(records, offset)


def _decode_record(data: bytes, offset: int) -> tuple[Record, int] | str:
    """The record at ``offset`` and the offset after it, or what is wrong with it."""
    left = len(data) - offset
    if left < FRAME_SIZE:
        return f"a record frame cut at {left} of {FRAME_SIZE} bytes"
    length, crc = _FRAME.unpack_from(data, offset)
    end = offset + FRAME_SIZE + length
    if end > len(data):
        return f"a record of {length} bytes cut at {left - FRAME_SIZE}"
    body = data[offset + FRAME_SIZE : end]
    if zlib.crc32(body, zlib.crc32(data[offset : offset + 4])) != crc:
        return f"a record of {length} bytes whose CRC-32 does not match"
    if length < 1 or body[0] > length - 1:
        return f"a record of {length} bytes with an event id that does not fit"
    try:
        event_id = body[1 : 1 + body[0]].decode("ascii")
    except UnicodeDecodeError:
        return "a record whose event id is not ASCII"
    return Record(event_id, body[1 + body[0] :]), end
