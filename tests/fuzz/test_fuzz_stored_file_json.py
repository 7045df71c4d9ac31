"""Fuzz the stored-file reader of C-STORE events (``stored_file_json``): what a damaged
disk, another program or a peer's odd but stored bytes may leave in a stored file.

Invariant: whatever the file holds, the reader returns a model or None (the caller
then goes pydicom's way); it never raises, since an exception would cost the event
its dataset where pydicom might still read one. And a model it returns is one pydicom
gives for the same file too: the fast reader never gives a different model.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from dicombus.bus.dicom_json import read_header, stored_file_json, to_dicom_json
from helpers import small_dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

# A damaged file's values are not valid DICOM; pydicom warns about each one.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
FUZZ = settings(max_examples=600, deadline=None)
THRESHOLD = 64


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _with_items(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.add_new(0x00091010, "OB", b"\x01" * 100)  # over the threshold: bulk, in an item
    ds.ReferencedImageSequence = [Dataset(), item]
    ds["ReferencedImageSequence"].is_undefined_length = True
    return ds


def _with_text(ds: Dataset) -> Dataset:
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "AXIAL"]
    ds.ImagePositionPatient = [-1.5, 2, 3.25]
    ds.InstanceNumber = " 7"
    ds.add_new(0x00181310, "US", [0, 32, 48, 0])
    return ds


_SEEDS = [_part10(small_dataset()), _part10(_with_items(small_dataset()))]
_SEEDS.append(_part10(_with_text(small_dataset())))


def _pydicom_model(path: Path) -> dict[str, Any] | None:
    try:
        header = read_header(path, defer_size=THRESHOLD)
        return to_dicom_json(
            header,
            bulk_data_uri=lambda tag_path: f"{path.resolve().as_uri()}?tag={tag_path}",
            threshold=THRESHOLD,
        )
    except Exception:
        return None  # pydicom cannot read it either


def _read_back(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="dicombus-fuzz-") as scratch:
        path = Path(scratch) / "instance.dcm"
        path.write_bytes(data)
        model = stored_file_json(path, threshold=THRESHOLD)
        if model is not None:
            assert model == _pydicom_model(path)


@given(st.binary(max_size=600))
@FUZZ
def test_arbitrary_bytes(data: bytes) -> None:
    _read_back(data)


@given(st.binary(max_size=400))
@FUZZ
def test_arbitrary_bytes_after_a_part10_preamble(data: bytes) -> None:
    _read_back(bytes(128) + b"DICM" + data)


@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 2000),
)
@FUZZ
def test_mutated_and_cut_files(seed: bytes, mutations: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for position, value in mutations:
        if data:
            data[position % len(data)] = value
    _read_back(bytes(data[: len(data) - cut % max(len(data), 1)]))


def test_the_seeds_are_read_by_the_fast_reader() -> None:
    # The mutations start from files the fast reader takes whole.
    for seed in _SEEDS:
        with tempfile.TemporaryDirectory(prefix="dicombus-fuzz-") as scratch:
            path = Path(scratch) / "instance.dcm"
            path.write_bytes(seed)
            assert stored_file_json(path, threshold=THRESHOLD) == _pydicom_model(path)
            assert stored_file_json(os.fspath(path), threshold=THRESHOLD) is not None
