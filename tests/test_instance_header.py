"""read_instance_header's own reader of plain headers (defined lengths, little endian)
against pydicom's read_dataset, which it stands in for: the same RawDataElements and
encodings, or it hands the bytes to pydicom.

Invariant (the fuzz part): whatever the bytes, the header read is the one pydicom
reads, or UnreadableDatasetError.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import pytest
from dicombus.dataset_codec import encode_dataset, read_part10_header
from dicombus.instance_uids import (
    SERIES_INSTANCE_UID,
    UnreadableDatasetError,
    _read_plain_header,
    read_instance_header,
)
from dicombus.qr.index import LAST_INDEXED_TAG
from helpers import ct_dataset, small_dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data.data_manager import DATA_ROOT
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

UNTILS = [SERIES_INSTANCE_UID, LAST_INDEXED_TAG]


def _by_pydicom(data: bytes, syntax: str, until: int) -> Dataset:
    """What read_instance_header read before it had a reader of its own."""
    uid = UID(syntax)
    return read_dataset(
        io.BytesIO(data),
        uid.is_implicit_VR,
        uid.is_little_endian,
        stop_when=lambda tag, _vr, _length: int(tag) > until,
        defer_size=1024,
    )


def _form(header: Dataset) -> tuple[Any, ...]:
    return (
        list(header.items()),
        header.original_encoding,
        header.original_character_set,
    )


def _little_endian_files() -> list[tuple[str, bytes, str]]:
    """(name, data set bytes, transfer syntax) of the little endian test files that ship
    inside pydicom (no download)."""
    found = []
    for path in sorted((Path(DATA_ROOT) / "test_files").rglob("*.dcm")):
        try:
            meta = read_part10_header(path)
        except Exception:  # no Part 10 header: nothing to say what syntax it is in
            continue
        if not UID(meta.transfer_syntax).is_little_endian or UID(meta.transfer_syntax).is_deflated:
            continue
        with open(path, "rb") as stream:
            stream.seek(meta.dataset_offset)
            found.append((path.name, stream.read(64 * 1024), meta.transfer_syntax))
    return found


FILES = _little_endian_files()


def test_pydicoms_test_files_are_read_as_pydicom_reads_them() -> None:
    assert len(FILES) > 20  # the comparison below covers real files
    plain = 0
    for name, data, syntax in FILES:
        for until in UNTILS:
            read = _read_plain_header(data, UID(syntax).is_implicit_VR, until)
            if read is None:
                continue  # pydicom reads it (a sequence of undefined length, say)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert _form(read) == _form(_by_pydicom(data, syntax, until)), name
            plain += 1
    # Most take the plain path.
    assert plain > len(FILES)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("dataset", [small_dataset, ct_dataset])
def test_a_received_instance_is_read_without_pydicoms_reader(syntax: str, dataset: Any) -> None:
    data = encode_dataset(dataset(), syntax)
    for until in UNTILS:
        plain = _read_plain_header(data, UID(syntax).is_implicit_VR, until)
        assert plain is not None
        assert _form(plain) == _form(_by_pydicom(data, syntax, until))


_SEEDS = [data[:2048] for _, data, _ in FILES[:40]] + [
    encode_dataset(small_dataset(), ExplicitVRLittleEndian)[:2048],
    encode_dataset(small_dataset(), ImplicitVRLittleEndian)[:2048],
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


def test_a_specific_character_set_that_does_not_convert_is_unreadable() -> None:
    # Found by the fuzz test below: a NUL in (0008,0005) made the plain reader raise
    # ValueError past read_instance_header, where pydicom's reader is wrapped.
    data = b"\x08\x00\x05\x00CS\x0a\x00\x00SO_IR 192"
    with pytest.raises(UnreadableDatasetError, match="embedded null character"):
        read_instance_header(data, ExplicitVRLittleEndian, LAST_INDEXED_TAG)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # mutated UIDs, on purpose
@given(_mutated(), st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
@settings(max_examples=1500, deadline=None)
def test_mutated_and_cut_headers_read_as_pydicom_reads_them(data: bytes, syntax: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plain = _read_plain_header(data, UID(syntax).is_implicit_VR, LAST_INDEXED_TAG)
        except ValueError:
            # A Specific Character Set that does not convert: pydicom refuses it too.
            with pytest.raises(ValueError):
                _by_pydicom(data, syntax, LAST_INDEXED_TAG)
            plain = None
        if plain is not None:
            # Raw elements only (defined lengths): compared as read, nothing converted.
            assert _form(plain) == _form(_by_pydicom(data, syntax, LAST_INDEXED_TAG))
        # Whatever the bytes: a header, or UnreadableDatasetError, never anything else.
        with contextlib.suppress(UnreadableDatasetError):
            read_instance_header(data, syntax, LAST_INDEXED_TAG)
