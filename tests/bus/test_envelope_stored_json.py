"""The stored-file reader of C-STORE events (stored_file_json): the model pydicom's way gives.

The publisher builds one model per stored instance, so the common case is
parsed straight from the file's bytes, sequences included; every other case
must return None (the caller then goes pydicom's way), never a different model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dicombus.bus.dicom_json import (
    file_bulk_data_uri,
    read_header,
    stored_file_json,
    to_dicom_json,
)
from helpers import ct_dataset, small_dataset, write_part10
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

PIXEL_DATA = "7FE00010"


def pydicom_model(path: Path, threshold: int) -> dict[str, object]:
    return to_dicom_json(
        read_header(path, defer_size=threshold),
        bulk_data_uri=lambda tag_path: file_bulk_data_uri(path, tag_path),
        threshold=threshold,
    )


def _many_vrs(ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "AXIAL"]
    ds.ImagePositionPatient = [-1.5, 2, 3.25]
    ds.add_new(0x00181310, "US", [0, 32, 48, 0])
    ds.add_new(0x00209057, "SL", [-3, 4])
    ds.add_new(0x00091010, "OB", b"\x01\x02")  # private, short: inline
    ds.add_new(0x00091012, "UT", "x" * 3000)  # private, long: bulk
    ds.InstanceNumber = " 7"
    ds.PatientWeight = 71.5
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = ""
    ds.AcquisitionDateTime = "20261122210000.123456"
    ds.ImageComments = "café " * 100  # LT, 500 bytes: inline


def _utf8_names(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.InstitutionName = "Hôpital"


def _latin1_long_text(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageComments = "é" * 2000  # LT over the threshold: bulk


def _group_length(ds: Dataset) -> None:
    ds.add_new(0x00280000, "UL", 4)  # never in the JSON model


def _nothing(ds: Dataset) -> None:
    pass


def _code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
    return code


def _sequence(ds: Dataset) -> None:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedImageSequence = [item]


def _text_report(ds: Dataset) -> None:
    """A Basic Text SR's content tree (PS3.3 A.35.1): nested sequences, text, PN and codes
    in items, an empty sequence and an empty item."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [_code("121070", "Findings")]
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    text.ConceptNameCodeSequence = [_code("121071", "Finding")]
    text.TextValue = "Keine Auffälligkeiten.\r\nNo findings."
    observer = Dataset()
    observer.RelationshipType, observer.ValueType = "HAS OBS CONTEXT", "PNAME"
    observer.ConceptNameCodeSequence = [_code("121008", "Person Observer Name")]
    observer.PersonName = "Müller^Jürgen"
    ds.ContentSequence = [text, observer]
    ds.ContentTemplateSequence = []
    ds.OtherPatientIDsSequence = [Dataset()]


def _undefined_lengths(ds: Dataset) -> None:
    """PS3.5 7.5.2: a sequence and items of undefined length, with their delimiters."""
    _text_report(ds)
    ds["ContentSequence"].is_undefined_length = True
    for item in ds.ContentSequence:
        item.is_undefined_length_sequence_item = True
        item["ConceptNameCodeSequence"].is_undefined_length = True


def _bulk_in_an_item(ds: Dataset) -> None:
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.add_new(0x00091010, "OB", b"\x01" * 3000)  # private, long: bulk, with its path
    ds.ReferencedImageSequence = [Dataset(), item]


@pytest.mark.parametrize(
    "change",
    [
        _nothing,
        _many_vrs,
        _utf8_names,
        _latin1_long_text,
        _group_length,
        _sequence,
        _text_report,
        _undefined_lengths,
        _bulk_in_an_item,
    ],
)
@pytest.mark.parametrize("threshold", [64, 1024])
def test_the_fast_reader_gives_pydicoms_model(
    tmp_path: Path, change: Callable[[Dataset], None], threshold: int
) -> None:
    ds = small_dataset()
    change(ds)
    path = write_part10(ds, tmp_path / "instance.dcm")
    fast = stored_file_json(path, threshold=threshold)
    assert fast is not None
    assert fast == pydicom_model(path, threshold)
    assert list(fast) == list(pydicom_model(path, threshold))  # ascending tags, same order
    assert fast[PIXEL_DATA] == {
        "vr": "OB",
        "BulkDataURI": f"{path.resolve().as_uri()}?tag={PIXEL_DATA}",
    }


def test_a_ct_image_is_read_without_its_pixel_data(tmp_path: Path) -> None:
    path = write_part10(ct_dataset(), tmp_path / "ct.dcm")
    fast = stored_file_json(path, threshold=1024)
    assert fast is not None and fast == pydicom_model(path, 1024)


def test_a_bulk_value_in_an_item_points_at_its_tag_path(tmp_path: Path) -> None:
    ds = small_dataset()
    _bulk_in_an_item(ds)
    path = write_part10(ds, tmp_path / "instance.dcm")
    fast = stored_file_json(path, threshold=1024)
    assert fast is not None
    [empty, item] = fast["00081140"]["Value"]
    assert empty == {}
    assert item["00091010"] == {
        "vr": "OB",
        "BulkDataURI": f"{path.resolve().as_uri()}?tag=00081140/1/00091010",
    }


def _charset_in_an_item(ds: Dataset) -> None:
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 100"  # PS3.5 6.1.2.5: an item's own
    item.PatientName = "Doe^John"
    ds.OtherPatientIDsSequence = [item]


def _nested_too_deep(ds: Dataset) -> None:
    item = Dataset()
    for _ in range(40):
        outer = Dataset()
        outer.ContentSequence = [item]
        item = outer
    ds.ContentSequence = [item]


def _two_names(ds: Dataset) -> None:
    ds.PatientName = ["A^B", "C^D"]


def _iso2022(ds: Dataset) -> None:
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]


def _long_name(ds: Dataset) -> None:
    ds.add_new(0x00091013, "LO", "y" * 2000)  # not a bulk data VR, yet over the threshold


@pytest.mark.filterwarnings("ignore:The value length")  # _long_name, on purpose
@pytest.mark.parametrize(
    "change", [_two_names, _iso2022, _long_name, _charset_in_an_item, _nested_too_deep]
)
def test_what_the_fast_reader_leaves_to_pydicom(
    tmp_path: Path, change: Callable[[Dataset], None]
) -> None:
    ds = small_dataset()
    change(ds)
    path = write_part10(ds, tmp_path / "instance.dcm")
    assert stored_file_json(path, threshold=1024) is None


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian],
)
def test_other_encodings_are_left_to_pydicom(tmp_path: Path, syntax: str) -> None:
    path = write_part10(small_dataset(transfer_syntax=syntax), tmp_path / "instance.dcm")
    assert stored_file_json(path, threshold=1024) is None


def test_encapsulated_pixel_data_is_left_to_pydicom(tmp_path: Path) -> None:
    ds = small_dataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x04\x00\x00\x00abcd"
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    path = write_part10(ds, tmp_path / "jpeg.dcm")
    assert stored_file_json(path, threshold=1024) is None


def test_not_a_part10_file_or_cut_short(tmp_path: Path) -> None:
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(b"\x08\x00\x16\x00UI\x04\x001.2\x00")
    assert stored_file_json(bare, threshold=1024) is None
    whole = write_part10(small_dataset(), tmp_path / "whole.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    for length in (150, 400):  # inside the file meta, inside the dataset's header
        cut.write_bytes(whole[:length])
        assert stored_file_json(cut, threshold=1024) is None
