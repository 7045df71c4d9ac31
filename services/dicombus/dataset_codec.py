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
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID

from dicombus import identity
from dicombus.protocol.errors import DicombusError

_PREAMBLE_LENGTH = 128
_PART10_MAGIC = b"DICM"
_ELEMENT_HEADER = struct.Struct("<HH2s")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<I")
_SHORT_META_ELEMENT = struct.Struct("<HH2sH")
_LONG_META_ELEMENT = struct.Struct("<HH2s2xI")
# PS3.5 7.1.2: these explicit VRs have a reserved 2 bytes and a 4-byte length.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


class DatasetCodecError(DicombusError, ValueError):
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


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceMeta:
    """The File Meta Information of an instance we received, as its three UIDs.

    What a Storage SCP writes and checks per instance, without the pydicom
    FileMetaDataset (building one costs about 100 us, a tenth of a small
    C-STORE's CPU on the edge): :meth:`part10_header` encodes the same bytes.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str

    def part10_header(self) -> bytes:
        return part10_header(
            sop_class_uid=self.sop_class_uid,
            sop_instance_uid=self.sop_instance_uid,
            transfer_syntax=self.transfer_syntax,
        )

    def file_meta(self) -> FileMetaDataset:
        return create_file_meta(
            sop_class_uid=self.sop_class_uid,
            sop_instance_uid=self.sop_instance_uid,
            transfer_syntax=self.transfer_syntax,
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
    """Preamble, ``DICM`` and the encoded group 0002: what precedes the dataset in a file.

    Encoded by hand (pydicom's writer costs about 120 us, a tenth of a whole
    small C-STORE); meta information with an element of another VR, or
    without one PS3.10 requires, goes through pydicom, which completes it.
    """
    elements: list[tuple[int, bytes, bytes]] = []
    for element in file_meta:
        raw = _meta_value(element.VR, element.value)
        if element.tag.group != 0x0002 or raw is None:
            return _pydicom_part10_header(file_meta)
        if element.tag.element != 0x0000:
            elements.append((element.tag.element, element.VR.encode("ascii"), raw))
    if not _REQUIRED_META.issubset(number for number, _, _ in elements):
        return _pydicom_part10_header(file_meta)
    return _encode_meta_group(elements)


def part10_header(*, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """The Part 10 header for an instance we received, without building a FileMetaDataset."""
    return _encode_meta_group(
        [
            (0x0001, b"OB", _META_VERSION),
            (0x0002, b"UI", _padded(sop_class_uid.encode("ascii"), b"\x00")),
            (0x0003, b"UI", _padded(sop_instance_uid.encode("ascii"), b"\x00")),
            (0x0010, b"UI", _padded(transfer_syntax.encode("ascii"), b"\x00")),
            (0x0012, b"UI", _padded(identity.IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\x00")),
            (0x0013, b"SH", _padded(identity.IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" ")),
        ]
    )


# PS3.10 7.1: version, SOP class, SOP instance, transfer syntax, implementation class.
_REQUIRED_META = frozenset({0x0001, 0x0002, 0x0003, 0x0010, 0x0012})
_META_VERSION = b"\x00\x01"
_TEXT_VRS = frozenset({"AE", "CS", "LO", "SH", "ST", "UT", "UR", "UC", "LT"})


def _padded(raw: bytes, pad: bytes) -> bytes:
    return raw + pad if len(raw) % 2 else raw


def _meta_value(vr: str, value: Any) -> bytes | None:
    """The bytes of one group-0002 value, or None for a VR this encoder leaves to pydicom."""
    if value is None:
        return b""
    if vr == "UI" and isinstance(value, str):
        return _padded(value.encode("ascii"), b"\x00")
    if vr in _TEXT_VRS and isinstance(value, str):
        return _padded(value.encode("ascii"), b" ")
    if vr == "OB" and isinstance(value, bytes):
        return _padded(value, b"\x00")
    if vr == "UL" and isinstance(value, int):
        return _LONG_LENGTH.pack(value)
    return None


def _encode_meta_group(elements: list[tuple[int, bytes, bytes]]) -> bytes:
    """Explicit VR Little Endian group 0002 with its group length (PS3.10 7.1)."""
    parts = []
    for number, vr, raw in sorted(elements):
        if vr in _LONG_VRS:
            parts.append(_LONG_META_ELEMENT.pack(0x0002, number, vr, len(raw)) + raw)
        else:
            parts.append(_SHORT_META_ELEMENT.pack(0x0002, number, vr, len(raw)) + raw)
    body = b"".join(parts)
    group_length = _SHORT_META_ELEMENT.pack(0x0002, 0x0000, b"UL", 4) + _LONG_LENGTH.pack(len(body))
    return b"\x00" * _PREAMBLE_LENGTH + _PART10_MAGIC + group_length + body


def _pydicom_part10_header(file_meta: FileMetaDataset) -> bytes:
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
