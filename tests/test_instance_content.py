"""same_data_set: one instance in two transfer syntaxes is the same content; a changed
value anywhere (pixel data, a sequence item, a Big Endian word) is not; compressed
syntaxes are compared only with themselves."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from dicombus.dataset_codec import encode_dataset
from dicombus.instance_content import (
    NATIVE_SYNTAXES,
    EncodedDataSet,
    comparable,
    same_data_set,
)
from helpers import (
    pydicom_test_file,
    small_dataset,
    with_sequence_and_private_element,
    write_part10,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

# (0028,1201) Red Palette Color Lookup Table Data: an OW value, 16-bit words that
# Explicit VR Big Endian stores byte-swapped (PS3.5 7.3).
RED_PALETTE = 0x00281201
WORDS = bytes.fromhex("0102 0304 0506 0708")
SWAPPED_WORDS = bytes.fromhex("0201 0403 0605 0807")


def _instance() -> Dataset:
    """A small image with a nested sequence, a private element and an OW value."""
    ds = with_sequence_and_private_element(small_dataset())
    ds.add_new(RED_PALETTE, "OW", WORDS)
    return ds


def _encoded(ds: Dataset, syntax: UID) -> EncodedDataSet:
    if syntax == ExplicitVRBigEndian:
        # pydicom writes OW bytes as they are; a Big Endian sender swaps each word.
        ds = Dataset(ds)
        ds.add_new(RED_PALETTE, "OW", SWAPPED_WORDS)
    return EncodedDataSet(encode_dataset(ds, syntax), syntax)


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.combinations(sorted(NATIVE_SYNTAXES), 2)),
    ids=lambda syntax: UID(syntax).name,
)
def test_one_instance_in_two_native_syntaxes_is_the_same_data_set(first: UID, second: UID) -> None:
    ds = _instance()
    assert same_data_set(_encoded(ds, first), _encoded(ds, second))


def test_a_big_endian_word_not_swapped_is_a_different_value() -> None:
    ds = _instance()
    unswapped = EncodedDataSet(encode_dataset(ds, ExplicitVRBigEndian), ExplicitVRBigEndian)
    assert not same_data_set(_encoded(ds, ExplicitVRLittleEndian), unswapped)


def _changed_pixel(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData[:-1] + b"\xff"


def _changed_item(ds: Dataset) -> None:
    ds.ProcedureCodeSequence[0].CodeValue = "CT.HEAD"


def _extra_item(ds: Dataset) -> None:
    ds.ProcedureCodeSequence.append(Dataset(ds.ProcedureCodeSequence[0]))


def _missing_element(ds: Dataset) -> None:
    del ds.PatientName


def _changed_private(ds: Dataset) -> None:
    ds.private_block(0x0009, "DICOMBUS TEST")[0x01].value = "other value"


@pytest.mark.parametrize(
    "change", [_changed_pixel, _changed_item, _extra_item, _missing_element, _changed_private]
)
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_a_change_anywhere_is_a_different_data_set(change: object, syntax: UID) -> None:
    ds = _instance()
    other = _instance()
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(other, keyword, getattr(ds, keyword))
    assert callable(change)
    assert same_data_set(_encoded(ds, ExplicitVRLittleEndian), _encoded(other, syntax))
    change(other)
    assert not same_data_set(_encoded(ds, ExplicitVRLittleEndian), _encoded(other, syntax))


def test_group_lengths_and_trailing_padding_are_not_content() -> None:
    ds = _instance()
    padded = Dataset(ds)
    padded.add_new(0x00080000, "UL", 0)  # PS3.5 7.2: retired in data sets
    padded.add_new(0xFFFCFFFC, "OB", b"\x00" * 16)  # PS3.5 7.5.3
    assert same_data_set(
        _encoded(ds, ExplicitVRLittleEndian), _encoded(padded, ImplicitVRLittleEndian)
    )


def test_compressed_syntaxes_are_compared_only_with_themselves(tmp_path: Path) -> None:
    jpeg = pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm")
    assert not comparable(JPEGBaseline8Bit, ExplicitVRLittleEndian)
    stored = EncodedDataSet.in_part10_file(jpeg)
    assert stored.transfer_syntax == JPEGBaseline8Bit
    # The same data set behind other File Meta Information.
    copy = dcmread(jpeg)
    copy.file_meta.SourceApplicationEntityTitle = "ELSEWHERE"
    assert same_data_set(stored, EncodedDataSet.in_part10_file(write_part10(copy, tmp_path / "c")))
    decompressed = EncodedDataSet(
        encode_dataset(small_dataset(), ExplicitVRLittleEndian), ExplicitVRLittleEndian
    )
    assert not same_data_set(stored, decompressed)


def test_bytes_that_are_not_a_data_set_are_not_the_same(caplog: pytest.LogCaptureFixture) -> None:
    good = EncodedDataSet(
        encode_dataset(_instance(), ExplicitVRLittleEndian), ExplicitVRLittleEndian
    )
    broken = EncodedDataSet(b"not a deflate stream", DeflatedExplicitVRLittleEndian)
    assert not same_data_set(good, broken)
    assert "cannot compare two data sets by content" in caplog.text


def test_a_deflated_data_set_in_a_spool_file_after_an_offset(tmp_path: Path) -> None:
    ds = _instance()
    spooled = tmp_path / "spooled"
    spooled.write_bytes(b"header" + encode_dataset(ds, DeflatedExplicitVRLittleEndian))
    in_file = EncodedDataSet(spooled, DeflatedExplicitVRLittleEndian, offset=len(b"header"))
    assert same_data_set(in_file, _encoded(ds, ImplicitVRLittleEndian))
