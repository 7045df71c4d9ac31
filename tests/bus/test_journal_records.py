"""The journal's record framing: what is encoded decodes the same, and any cut of it
decodes to the records before the cut (what a crash mid-append leaves)."""

from __future__ import annotations

import struct

import pytest
from dicombus.bus.journal_records import (
    FRAME_SIZE,
    HEADER_SIZE,
    JournalError,
    Record,
    decode_segment,
    encode_record,
    segment_header,
)
from hypothesis import given, settings
from hypothesis import strategies as st

_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
_records = st.builds(Record, _ids, st.binary(max_size=300))


@given(st.lists(_records, max_size=8))
@settings(max_examples=300, deadline=None)
def test_encoded_records_decode_to_the_same(records: list[Record]) -> None:
    data = segment_header() + b"".join(map(encode_record, records))
    read = decode_segment(data)
    assert read.records == records
    assert (read.end, read.dropped) == (len(data), None)


@given(st.lists(_records, min_size=1, max_size=5), st.data())
@settings(max_examples=300, deadline=None)
def test_a_cut_segment_decodes_to_the_whole_records_before_the_cut(
    records: list[Record], data: st.DataObject
) -> None:
    frames = [encode_record(record) for record in records]
    whole = segment_header() + b"".join(frames)
    cut = data.draw(st.integers(0, len(whole) - 1))
    read = decode_segment(whole[:cut])
    ends = [HEADER_SIZE + sum(map(len, frames[: n + 1])) for n in range(len(frames))]
    kept = sum(1 for end in ends if end <= cut)
    assert read.records == records[:kept]
    assert read.dropped is not None or cut in (0, HEADER_SIZE, *ends)


def test_a_frame_annotated_byte_by_byte() -> None:
    frame = encode_record(Record("01ID", b"\x80\x05"))
    #        length 7       CRC-32 (of length and body)  id len  "01ID"       payload
    assert frame[:4] == b"\x07\x00\x00\x00"
    assert frame[FRAME_SIZE:] == b"\x04" + b"01ID" + b"\x80\x05"
    assert len(frame) == FRAME_SIZE + 7


def test_a_flipped_length_byte_is_caught_by_the_crc() -> None:
    frame = bytearray(encode_record(Record("01ID", b"payload")))
    frame[0] = 5  # a shorter body that would still fit
    read = decode_segment(segment_header() + bytes(frame))
    assert read.records == []
    assert read.dropped == "a record of 5 bytes whose CRC-32 does not match at offset 8"


def test_an_event_id_that_is_not_ascii_is_refused_naming_it() -> None:
    with pytest.raises(JournalError, match="event id 'é' is not ASCII"):
        encode_record(Record("é", b""))


def test_a_file_that_is_not_a_segment_is_refused() -> None:
    with pytest.raises(JournalError, match="not an event journal segment"):
        decode_segment(b"SQLite format 3\x00")
    assert struct.unpack_from("<6sH", segment_header()) == (b"DBJRNL", 1)
