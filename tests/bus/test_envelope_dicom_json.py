"""Datasets in the DICOM JSON model (PS3.18 F.2) with bulk data by reference, never inline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dicombus.bus.dicom_json import (
    bulk_data_uris,
    file_bulk_data_uri,
    from_dicom_json,
    read_file_bulk_data,
    read_header,
    to_dicom_json,
)
from helpers import ct_dataset, small_dataset, write_part10
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

PIXEL_DATA = "7FE00010"


def with_sequence() -> Dataset:
    """A small instance with a long text, a short binary value and a nested bulk value."""
    ds = small_dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageComments = "é" * 2000  # LT, over the threshold
    ds.RealWorldValueLUTData = [n / 4 for n in range(250)]  # FD, 2000 bytes: bulk numbers
    ds.add_new(0x00091010, "OB", b"\x01\x02")  # private, short: inline
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.add_new(0x00091011, "OB", bytes(4096))
    ds.ReferencedImageSequence = [Dataset(), item]
    ds.add_new(0x00280000, "UL", 4)  # a group length: never in the JSON model
    return ds


def test_bulk_values_become_uris_and_small_ones_stay_inline() -> None:
    model = to_dicom_json(with_sequence(), bulk_data_uri="https://edge/bulk", threshold=1024)
    assert model[PIXEL_DATA] == {"vr": "OB", "BulkDataURI": f"https://edge/bulk?tag={PIXEL_DATA}"}
    assert model["00204000"]["BulkDataURI"].endswith("tag=00204000")
    assert model["00091010"] == {"vr": "OB", "InlineBinary": "AQI="}
    items = model["00081140"]["Value"]
    assert items[0] == {}
    assert items[1]["00091011"]["BulkDataURI"].endswith("tag=00081140/1/00091011")
    assert "00280000" not in model
    assert list(model) == sorted(model)  # PS3.18 F.2.2: ascending tags
    assert json.dumps(model).count("InlineBinary") == 1


def test_a_callable_names_each_uri_and_none_leaves_the_element_out() -> None:
    omitted: list[str] = []

    def nowhere(tag_path: str) -> None:
        omitted.append(tag_path)

    model = to_dicom_json(with_sequence(), bulk_data_uri=nowhere, threshold=1024)
    assert omitted == ["00081140/1/00091011", "00204000", "00409212", PIXEL_DATA]
    assert PIXEL_DATA not in model and "00204000" not in model
    assert model["00100020"] == {"vr": "LO", "Value": ["DICOMBUS-1"]}


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
def test_a_stored_header_is_read_without_its_bulk_data(tmp_path: Path, syntax: str) -> None:
    source = ct_dataset(transfer_syntax=syntax)
    path = write_part10(source, tmp_path / "ct.dcm")
    header = read_header(path, defer_size=1024)
    model = to_dicom_json(
        header, bulk_data_uri=lambda tag_path: file_bulk_data_uri(path, tag_path), threshold=1024
    )
    if syntax != DeflatedExplicitVRLittleEndian:  # inflating reads it all, necessarily
        # Still deferred: the 512 KB were skipped, not read.
        assert header.get_item(Tag(PIXEL_DATA), keep_deferred=True).value is None
    assert model[PIXEL_DATA] == {
        "vr": "OW",
        "BulkDataURI": f"{path.resolve().as_uri()}?tag={PIXEL_DATA}",
    }
    assert model["00100020"] == {"vr": "LO", "Value": [source.PatientID]}
    assert len(json.dumps(model)) < 4096
    assert read_file_bulk_data(model[PIXEL_DATA]["BulkDataURI"]) == source.PixelData


def test_a_file_without_file_meta_is_read_too(tmp_path: Path) -> None:
    source = small_dataset()
    del source.file_meta
    path = tmp_path / "bare.dcm"
    source.save_as(path, implicit_vr=True, little_endian=True)  # no preamble, no group 0002
    assert path.read_bytes()[128:132] != b"DICM"
    model = to_dicom_json(read_header(path, defer_size=1024), bulk_data_uri="u")
    assert model["00100020"] == {"vr": "LO", "Value": ["DICOMBUS-1"]}
    assert model[PIXEL_DATA] == {"vr": "OW", "BulkDataURI": f"u?tag={PIXEL_DATA}"}


def test_the_quick_path_agrees_with_pydicom(tmp_path: Path) -> None:
    """Common VRs are converted straight from their bytes; pydicom's own conversion
    (forced here by reading the elements first) gives the same model."""
    source = with_sequence()
    source.ImageType = ["ORIGINAL", "PRIMARY", "", "AXIAL"]  # an empty value: null
    source.ImagePositionPatient = [-1.5, 2, 3.25]
    source.add_new(0x00181310, "US", [0, 32, 48, 0])
    source.AcquisitionDateTime = "20261122210000.123456"
    path = write_part10(source, tmp_path / "quick.dcm")
    quick = to_dicom_json(dcmread(path), bulk_data_uri="u")
    converted = dcmread(path)
    for element in converted.iterall():
        assert element.value is not None or element.VR == "SQ"
    assert quick == to_dicom_json(converted, bulk_data_uri="u") | {
        "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", None, "AXIAL"]}
    }
    assert quick["00200032"] == {"vr": "DS", "Value": [-1.5, 2.0, 3.25]}
    assert quick["00181310"] == {"vr": "US", "Value": [0, 32, 48, 0]}


def test_back_to_a_dataset_with_bulk_data_unresolved_unless_asked(tmp_path: Path) -> None:
    source = with_sequence()
    source.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    path = write_part10(source, tmp_path / "seq.dcm")
    model = to_dicom_json(
        dcmread(path, defer_size=1024),
        bulk_data_uri=lambda tag_path: file_bulk_data_uri(path, tag_path),
        threshold=1024,
    )
    uris = bulk_data_uris(model)
    assert set(uris) == {PIXEL_DATA, "00204000", "00409212", "00081140/1/00091011"}

    plain = from_dicom_json(model)
    assert plain.PatientName == "Interop^Test"
    assert plain.PixelData is None
    assert plain.ReferencedImageSequence[1].ReferencedSOPInstanceUID == "1.2.3"

    resolved = from_dicom_json(json.dumps(model), resolve_bulk_data=read_file_bulk_data)
    assert resolved.PixelData == source.PixelData
    assert resolved.ImageComments == source.ImageComments
    assert list(resolved.RealWorldValueLUTData) == [n / 4 for n in range(250)]
    assert resolved.ReferencedImageSequence[1][0x00091011].value == bytes(4096)


def test_only_file_uris_with_a_tag_resolve() -> None:
    with pytest.raises(ValueError, match="file://"):
        read_file_bulk_data("https://edge/bulk?tag=7FE00010")
    with pytest.raises(ValueError, match="names no element"):
        read_file_bulk_data("file:///tmp/x.dcm")
