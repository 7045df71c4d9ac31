"""Fuzz the event journal's segment decoder: what a crash, a bad disk or another
program may leave in the journal folder.

Invariant: whatever the bytes, ``decode_segment`` either returns the intact records
before the first damaged one (each of them re-encodes to exactly the bytes it was
read from), or raises JournalError -- never anything else.
"""

from __future__ import annotations

from dicombus.bus.journal_records import (
    HEADER_SIZE,
    JournalError,
    Record,
    SegmentRead,
    decode_segment,
    encode_record,
    segment_header,
)
from hypothesis import given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=1500, deadline=None)

_SEEDS = [
    segment_header(),
    segment_header() + encode_record(Record("01JBZKQ8V5E8XW3M7Z2Y4H6N9P", b"\x80\x05N.")),
    segment_header() + encode_record(Record("", b"")) + encode_record(Record("x" * 255, b"y")),
]


def _decodes_or_journal_error(data: bytes) -> SegmentRead | None:
    try:
        read = decode_segment(data)
    except JournalError:
        return None
    offset = HEADER_SIZE if read.records else read.end
    for record in read.records:
        frame = encode_record(record)
        assert data[offset : offset + len(frame)] == frame
        offset += len(frame)
    assert offset == read.end <= len(data)
    return read


@given(st.binary(max_size=400))
@FUZZ
def test_decode_arbitrary_bytes(data: bytes) -> None:
    _decodes_or_journal_error(data)


@given(st.binary(max_size=400))
@FUZZ
def test_decode_arbitrary_records_after_a_valid_header(data: bytes) -> None:
    _decodes_or_journal_error(segment_header() + data)


@given(st.sampled_from(_SEEDS), st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255))))
@FUZZ
def test_decode_mutated_segments(seed: bytes, mutations: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for position, value in mutations:
        data[position % len(data)] = value
    _decodes_or_journal_error(bytes(data))
