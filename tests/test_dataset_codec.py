"""dataset_codec: datasets to bytes and back per transfer syntax, and Part 10 headers.

pydicom is the reference: what we encode it reads, and what it wrote we read.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import pytest
from dicombus import identity
from dicombus.dataset_codec import (
    DatasetCodecError,
    InstanceMeta,
    create_file_meta,
    decode_dataset,
    encode_dataset,
    encode_part10_header,
    read_part10_header,
)
from helpers import CT_IMAGE_STORAGE, peer_missing, small_dataset, unhex
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

UNCOMPRESSED = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        peer_missing(f"pydicom's test file {name} is not available")
    return Path(path)


def encode_meta_group(meta: FileMetaDataset) -> bytes:
    """Group 0002 as pydicom writes it without enforcing the standard's required elements."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=False)
    return buffer.getvalue()


def one_element() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^Jo"
    return ds


# (0010,0010) PatientName "Doe^Jo" in each uncompressed encoding.
ENCODED_PATIENT_NAME = {
    ImplicitVRLittleEndian: unhex(
        """
        10 00 10 00              # tag (0010,0010), little endian
        06 00 00 00              # 4-byte length 6 (PS3.5 7.1.3: no VR)
        44 6f 65 5e 4a 6f        # "Doe^Jo"
        """
    ),
    ExplicitVRLittleEndian: unhex(
        """
        10 00 10 00              # tag (0010,0010), little endian
        50 4e                    # VR "PN"
        06 00                    # 2-byte length 6
        44 6f 65 5e 4a 6f        # "Doe^Jo"
        """
    ),
    ExplicitVRBigEndian: unhex(
        """
        00 10 00 10              # tag (0010,0010), big endian
        50 4e                    # VR "PN"
        00 06                    # 2-byte length 6
        44 6f 65 5e 4a 6f        # "Doe^Jo"
        """
    ),
}


@pytest.mark.parametrize("syntax", list(ENCODED_PATIENT_NAME))
def test_encoding_follows_the_transfer_syntax(syntax: UID) -> None:
    encoded = encode_dataset(one_element(), syntax)
    assert encoded == ENCODED_PATIENT_NAME[syntax]
    assert decode_dataset(encoded, syntax) == one_element()


def test_deflated_is_raw_deflate_of_explicit_little_endian() -> None:
    """PS3.5 A.5: the deflate stream has no zlib header or checksum."""
    encoded = encode_dataset(one_element(), DeflatedExplicitVRLittleEndian)
    assert zlib.decompress(encoded, -zlib.MAX_WBITS) == ENCODED_PATIENT_NAME[ExplicitVRLittleEndian]
    with pytest.raises(zlib.error):
        zlib.decompress(encoded)  # a zlib header would make this succeed


def assert_same_dataset(decoded: Dataset, original: Dataset, syntax: UID) -> None:
    """Equal elements; under implicit VR the VRs are the dictionary's (PS3.5 A.1: pixel
    data read as OW), so there only tags and values must match."""
    if not syntax.is_implicit_VR:
        assert decoded == original
        return
    assert [(elem.tag, elem.value) for elem in decoded] == [
        (elem.tag, elem.value) for elem in original
    ]


@pytest.mark.parametrize("syntax", UNCOMPRESSED, ids=lambda uid: UID(uid).name)
@pytest.mark.parametrize("source", ["memory", "CT_small.dcm", "MR_small.dcm"])
def test_round_trip(syntax: UID, source: str) -> None:
    ds = small_dataset() if source == "memory" else dcmread(pydicom_file(source))
    decoded = decode_dataset(encode_dataset(ds, syntax), syntax)
    assert_same_dataset(decoded, ds, syntax)
    assert decoded.original_encoding == (syntax.is_implicit_VR, syntax.is_little_endian)


def test_decode_accepts_a_memoryview() -> None:
    encoded = encode_dataset(one_element(), ExplicitVRLittleEndian)
    assert decode_dataset(memoryview(encoded), ExplicitVRLittleEndian) == one_element()


def test_a_deflated_dataset_that_does_not_inflate_is_a_codec_error() -> None:
    with pytest.raises(DatasetCodecError, match="does not inflate"):
        decode_dataset(b"\xff" * 32, DeflatedExplicitVRLittleEndian)


# -- compressed transfer syntaxes: sent as they are, never transcoded --------------------------


def test_an_uncompressed_dataset_is_not_encoded_in_a_compressed_syntax() -> None:
    with pytest.raises(DatasetCodecError, match="does not transcode") as raised:
        encode_dataset(small_dataset(), JPEGBaseline8Bit)
    assert "JPEG Baseline" in str(raised.value)


def test_a_compressed_dataset_is_encoded_only_in_its_own_syntax() -> None:
    ds = dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    encoded = encode_dataset(ds, JPEGBaseline8Bit)
    assert decode_dataset(encoded, JPEGBaseline8Bit) == ds
    for syntax in UNCOMPRESSED:
        with pytest.raises(DatasetCodecError, match="is in JPEG Baseline"):
            encode_dataset(ds, syntax)


# -- Part 10 ------------------------------------------------------------------------------------


def test_create_file_meta() -> None:
    instance = generate_uid()
    meta = create_file_meta(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=instance,
        transfer_syntax=ExplicitVRLittleEndian,
    )
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == CT_IMAGE_STORAGE
    assert meta.MediaStorageSOPInstanceUID == instance
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.ImplementationClassUID == identity.IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == identity.IMPLEMENTATION_VERSION_NAME


@pytest.mark.parametrize("syntax", UNCOMPRESSED, ids=lambda uid: UID(uid).name)
@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.3.45"], ids=["even", "odd"])
def test_instance_meta_is_the_file_meta_it_stands_for(syntax: UID, instance: str) -> None:
    # The storage handler writes InstanceMeta's header instead of building the
    # FileMetaDataset: the same bytes, padding of odd-length UIDs included.
    meta = InstanceMeta(
        sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid=instance, transfer_syntax=syntax
    )
    built = create_file_meta(
        sop_class_uid=CT_IMAGE_STORAGE, sop_instance_uid=instance, transfer_syntax=syntax
    )
    assert meta.file_meta() == built
    buffer = DicomBytesIO()
    # Adds the group length to ``built``, as pydicom's file writer does.
    write_file_meta_info(buffer, built, enforce_standard=True)
    as_pydicom_writes_it = b"\x00" * 128 + b"DICM" + buffer.getvalue()
    assert meta.part10_header() == encode_part10_header(built) == as_pydicom_writes_it


@pytest.mark.parametrize("syntax", UNCOMPRESSED, ids=lambda uid: UID(uid).name)
def test_header_plus_dataset_bytes_is_a_file_pydicom_reads(tmp_path: Path, syntax: UID) -> None:
    ds = small_dataset()
    meta = create_file_meta(
        sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID, transfer_syntax=syntax
    )
    head = encode_part10_header(meta)
    path = tmp_path / "instance.dcm"
    path.write_bytes(head + encode_dataset(ds, syntax))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a non-conformant header would make pydicom warn
        read = dcmread(path)
    assert_same_dataset(read, ds, syntax)
    for element in meta:
        assert read.file_meta[element.tag].value == element.value
    header = read_part10_header(path)
    assert header.dataset_offset == len(head)
    assert (header.sop_class_uid, header.sop_instance_uid, header.transfer_syntax) == (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
        syntax,
    )


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG-lossy.dcm",
    ],
)
def test_read_part10_header_of_pydicom_test_files(name: str) -> None:
    path = pydicom_file(name)
    reference = dcmread(path)
    header = read_part10_header(path)
    meta = reference.file_meta
    assert header.sop_class_uid == meta.MediaStorageSOPClassUID
    assert header.sop_instance_uid == meta.MediaStorageSOPInstanceUID
    assert header.transfer_syntax == meta.TransferSyntaxUID
    # The dataset starts exactly at the offset: what follows decodes to pydicom's dataset.
    dataset_bytes = path.read_bytes()[header.dataset_offset :]
    assert decode_dataset(dataset_bytes, header.transfer_syntax) == reference


def test_a_file_without_the_dicm_prefix_is_refused_clearly() -> None:
    with pytest.raises(DatasetCodecError, match=r"not a DICOM Part 10 file \(no 'DICM' prefix\)"):
        read_part10_header(pydicom_file("no_meta.dcm"))


def test_a_file_shorter_than_the_preamble_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.dcm"
    path.write_bytes(b"DICM")
    with pytest.raises(DatasetCodecError, match="not a DICOM Part 10 file"):
        read_part10_header(path)


def test_meta_without_a_transfer_syntax_is_refused() -> None:
    with pytest.raises(DatasetCodecError, match=r"lacks .*TransferSyntaxUID"):
        read_part10_header(pydicom_file("meta_missing_tsyntax.dcm"))


def test_meta_cut_anywhere_is_truncated(tmp_path: Path) -> None:
    """Inside a value, inside an element header, or between elements before the end
    that (0002,0000) announces."""
    whole = pydicom_file("CT_small.dcm").read_bytes()
    offset = read_part10_header(pydicom_file("CT_small.dcm")).dataset_offset
    path = tmp_path / "cut.dcm"
    for cut in range(128 + 4 + 1, offset):
        path.write_bytes(whole[:cut])
        with pytest.raises(DatasetCodecError, match="truncated"):
            read_part10_header(path)
    path.write_bytes(whole[:offset])  # the meta whole and no dataset: still a header
    assert read_part10_header(path).dataset_offset == offset


def test_meta_without_the_sop_uids_lacks_them(tmp_path: Path) -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "anonymous.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + encode_meta_group(meta))
    with pytest.raises(
        DatasetCodecError, match=r"lacks MediaStorageSOPClassUID, MediaStorageSOPInstanceUID$"
    ):
        read_part10_header(path)
