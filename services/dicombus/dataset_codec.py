"""Datasets to bytes and back, in the transfer syntax a presentation context agreed.

pydicom does the element-level work; this module chooses the encoding from
the transfer syntax UID, handles Deflated Explicit VR Little Endian (PS3.5
A.5: raw deflate, no zlib header) and reads the header of Part 10 files so a
file's dataset bytes can be sent as they are on disk.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID

from dicombus import identity

_PREAMBLE_LENGTH = 128
_PART10_MAGIC = b"DICM"
_ELEMENT_HEADER = struct.Struct("<HH2s")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<I")
# PS3.5 7.1.2: these explicit VRs have a reserved 2 bytes and a 4-byte length.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


class DatasetCodecError(ValueError):
    """A dataset or file could not be encoded or decoded."""


def encode_dataset(dataset: Dataset, transfer_syntax: str) -> bytes:
    """Encode ``dataset`` (without file meta) in ``transfer_syntax``."""
    syntax = UID(transfer_syntax)
    _refuse_transcoding(dataset, syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax.is_little_endian
    buffer.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(buffer, dataset)
    encoded = buffer.getvalue()
    if syntax.is_deflated:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        encoded = compressor.compress(encoded) + compressor.flush()
        # Data set fragments must have even lengths: DCMTK aborts on an odd one
        # ("Odd Fragment Length"). Inflate stops at the end of the stream, so a
        # trailing zero byte pads it harmlessly (pynetdicom pads the same way).
        if len(encoded) % 2:
            encoded += b"\x00"
    return encoded


def decode_dataset(data: bytes | memoryview, transfer_syntax: str) -> Dataset:
    """Decode dataset bytes received under ``transfer_syntax``."""
    syntax = UID(transfer_syntax)
    raw = bytes(data)
    if syntax.is_deflated:
        try:
            raw = zlib.decompress(raw, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise DatasetCodecError(f"deflated dataset does not inflate: {exc}") from exc
    dataset = read_dataset(BytesIO(raw), syntax.is_implicit_VR, syntax.is_little_endian)
    dataset.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian)
    return dataset


def _refuse_transcoding(dataset: Dataset, syntax: UID) -> None:
    """Compressed pixel data goes out only in the syntax it is in: pydicom would
    otherwise write encapsulated fragments into a native encoding, or native
    pixels under a compressed syntax, and the peer would get garbage."""
    meta = getattr(dataset, "file_meta", None)
    current = meta.get("TransferSyntaxUID") if meta is not None else None
    source_compressed = current is not None and UID(current).is_compressed
    if current == syntax or not (syntax.is_compressed or source_compressed):
        return
    source = UID(current).name if current is not None else "no known transfer syntax"
    raise DatasetCodecError(
        f"the dataset is in {source}, not {syntax.name}, and dicombus does not transcode "
        "compressed pixel data"
    )


def create_file_meta(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str
) -> FileMetaDataset:
    """PS3.10 7.1: the File Meta Information for an instance we received."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(identity.IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = identity.IMPLEMENTATION_VERSION_NAME
    return meta


def encode_part10_header(file_meta: FileMetaDataset) -> bytes:
    """Preamble, ``DICM`` and the encoded group 0002: what precedes the dataset in a file."""
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_file_meta_info(buffer, file_meta, enforce_standard=True)
    return b"\x00" * _PREAMBLE_LENGTH + _PART10_MAGIC + buffer.getvalue()


@dataclass(frozen=True, slots=True, kw_only=True)
class Part10Header:
    """What a sender needs from a Part 10 file without decoding its dataset."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset_offset: int


def read_part10_header(path: Path) -> Part10Header:
    """Parse the preamble and group 0002 of ``path`` (PS3.10 7.1).

    Raises DatasetCodecError when the file is not a Part 10 file, or its meta
    information is truncated or lacks one of the three UIDs a C-STORE needs.
    """
    with path.open("rb") as stream:
        head = stream.read(_PREAMBLE_LENGTH + len(_PART10_MAGIC))
        if len(head) < _PREAMBLE_LENGTH + 4 or head[_PREAMBLE_LENGTH:] != _PART10_MAGIC:
            raise DatasetCodecError(f"{path} is not a DICOM Part 10 file (no 'DICM' prefix)")
        uids: dict[int, str] = {}
        offset = _PREAMBLE_LENGTH + 4
        group_end: int | None = None
        while True:
            header = stream.read(_ELEMENT_HEADER.size)
            if len(header) < _ELEMENT_HEADER.size:
                # (0002,0000) says where the group ends: a file that stops short
                # of it, or inside an element header, was cut.
                if header or (group_end is not None and offset < group_end):
                    raise DatasetCodecError(f"{path}: the file meta information is truncated")
                break
            group, element, vr = _ELEMENT_HEADER.unpack(header)
            if group != 0x0002:
                break
            if vr in _LONG_VRS:
                length_bytes = stream.read(6)[2:]
                length = _LONG_LENGTH.unpack(length_bytes)[0] if len(length_bytes) == 4 else -1
                header_size = _ELEMENT_HEADER.size + 6
            else:
                length_bytes = stream.read(2)
                length = _SHORT_LENGTH.unpack(length_bytes)[0] if len(length_bytes) == 2 else -1
                header_size = _ELEMENT_HEADER.size + 2
            value = stream.read(length) if length >= 0 else b""
            if length < 0 or len(value) != length:
                raise DatasetCodecError(
                    f"{path}: file meta element (0002,{element:04X}) is truncated"
                )
            if element in (0x0002, 0x0003, 0x0010):
                uids[element] = value.rstrip(b"\x00 ").decode("ascii", "replace")
            offset += header_size + length
            if element == 0x0000 and length == _LONG_LENGTH.size:
                group_end = offset + _LONG_LENGTH.unpack(value)[0]
    missing = [
        name
        for tag, name in (
            (0x0002, "MediaStorageSOPClassUID"),
            (0x0003, "MediaStorageSOPInstanceUID"),
            (0x0010, "TransferSyntaxUID"),
        )
        if not uids.get(tag)
    ]
    if missing:
        raise DatasetCodecError(f"{path}: file meta information lacks {', '.join(missing)}")
    return Part10Header(
        sop_class_uid=uids[0x0002],
        sop_instance_uid=uids[0x0003],
        transfer_syntax=uids[0x0010],
        dataset_offset=offset,
    )
