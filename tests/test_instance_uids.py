"""read_instance_uids: the four UIDs of an encoded data set, in every uncompressed syntax,
from memory or a spool file, without reading what follows them."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicombus.dataset_codec import encode_dataset
from dicombus.instance_uids import InstanceUIDs, UnreadableDatasetError, read_instance_uids
from helpers import ct_dataset, pydicom_test_file, small_dataset
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)


def _expected(ds: Dataset) -> InstanceUIDs:
    return InstanceUIDs(
        sop_class_uid=ds.SOPClassUID,
        sop_instance_uid=ds.SOPInstanceUID,
        study_instance_uid=ds.StudyInstanceUID,
        series_instance_uid=ds.SeriesInstanceUID,
    )


@pytest.mark.parametrize(
    "syntax",
    [
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ],
)
@pytest.mark.parametrize("held", ["memory", "spool file"])
def test_the_uids_are_read_in_every_uncompressed_syntax(
    tmp_path: Path, syntax: str, held: str
) -> None:
    ds = small_dataset()
    encoded = encode_dataset(ds, syntax)
    source: bytes | Path = encoded
    if held == "spool file":
        source = tmp_path / "spooled"
        source.write_bytes(encoded)
    assert read_instance_uids(source, syntax) == _expected(ds)


def test_an_encapsulated_file_as_dcmtk_wrote_it() -> None:
    path = pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm")
    ds = dcmread(path)
    raw = path.read_bytes()
    dataset_bytes = raw[len(raw) - len(encode_dataset(ds, ds.file_meta.TransferSyntaxUID)) :]
    uids = read_instance_uids(dataset_bytes, ds.file_meta.TransferSyntaxUID)
    assert uids == _expected(ds)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_missing_elements_are_none_and_padding_is_removed() -> None:
    ds = ct_dataset()
    del ds.StudyInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4 "  # a space where a NUL belongs
    uids = read_instance_uids(encode_dataset(ds, ExplicitVRLittleEndian), ExplicitVRLittleEndian)
    assert uids.study_instance_uid is None
    assert uids.series_instance_uid == "1.2.3.4"


def test_bytes_that_are_not_a_data_set_are_unreadable() -> None:
    # (0008,0005) as a sequence of undefined length whose item tag is cut short.
    broken_sequence = b"\x08\x00\x05\x00SQ\x00\x00\xff\xff\xff\xff\x01\x02"
    with pytest.raises(UnreadableDatasetError):
        read_instance_uids(broken_sequence, ExplicitVRLittleEndian)
    with pytest.raises(UnreadableDatasetError):
        read_instance_uids(b"not deflate at all", DeflatedExplicitVRLittleEndian)
