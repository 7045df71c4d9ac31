"""The four UIDs that say what a received C-STORE data set is and where it belongs.

A Storage SCP needs the SOP Class and SOP Instance UIDs *of the data set* (to
check them against the command, PS3.4 B.2.3) and the Study and Series
Instance UIDs (to file the instance by study and series). All four sit near
the start of any composite instance, in groups 0008 and 0020, so
:func:`read_instance_uids` parses the encoded bytes only up to (0020,000E),
skipping long values unread (pixel data never comes before them), whether
the bytes are in memory or in a spool file. Nothing is decoded into Python
values: the UIDs come back as the text the peer sent, trailing padding
removed, for the caller to validate.

A caller that needs more of the header than the UIDs (the Q/R index's
attributes, also in groups 0008-0020) parses once, further on, with
:func:`read_instance_header`, and takes the UIDs from that with
:func:`instance_uids`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dicombus.protocol.errors import DicombusError

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SPECIFIC_CHARACTER_SET = 0x00080005

# Values longer than this are skipped (seeked past), never read: a UID is at
# most 64 bytes, and no value a header is read for is longer.
_SKIP_LONGER_THAN = 1024
# A deflated data set (PS3.5 A.5) is inflated only this far; the UIDs sit in
# its first kilobytes, and a stream that inflates without end is not read whole.
MAX_INFLATED_HEADER = 16 * 1024 * 1024
_READ_CHUNK = 1 << 16
# PS3.5 7.1.2: tag, VR, 2-byte length (or 2 reserved bytes then a 4-byte length);
# PS3.5 7.1.3: tag, 4-byte length.
_EXPLICIT_ELEMENT = struct.Struct("<HH2sH")
_IMPLICIT_ELEMENT = struct.Struct("<HHI")
_LONG_LENGTH = struct.Struct("<I")
_KNOWN_VRS = {str(vr).encode("ascii"): str(vr) for vr in VR}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM_GROUP = 0xFFFE  # PS3.5 7.5: items and delimiters


class UnreadableDatasetError(DicombusError, ValueError):
    """The data set bytes could not be parsed as far as the UIDs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceUIDs:
    """The UIDs as found in the data set; None where the element is absent or empty."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None


def read_instance_uids(source: bytes | memoryview | Path, transfer_syntax: str) -> InstanceUIDs:
    """Parse ``source`` (data set bytes, no file meta) in ``transfer_syntax`` up to (0020,000E).

    Raises UnreadableDatasetError when the bytes are not a data set in that syntax.
    """
    return instance_uids(read_instance_header(source, transfer_syntax))


def read_instance_header(
    source: bytes | memoryview | Path, transfer_syntax: str, until: int = SERIES_INSTANCE_UID
) -> Dataset:
    """The top-level elements of ``source`` (data set bytes, no file meta) in
    ``transfer_syntax`` up to tag ``until``, their values as encoded; a value longer
    than a kilobyte is left unread (its value None).

    Raises UnreadableDatasetError when the bytes are not a data set in that syntax.
    """
    try:
        return _read_header(source, transfer_syntax, until)
    except (OSError, zlib.error) as exc:
        raise UnreadableDatasetError(f"cannot read the data set: {exc}") from exc
    except Exception as exc:
        # pydicom's reader raises whatever its parsing runs into (struct.error,
        # ValueError, NotImplementedError ...) on bytes that are not a data set;
        # so does the conversion of a Specific Character Set on the plain path.
        name = UID(transfer_syntax).name
        raise UnreadableDatasetError(f"not a data set in {name}: {exc}") from exc


def _read_header(source: bytes | memoryview | Path, transfer_syntax: str, until: int) -> Dataset:
    implicit, plain_syntax = _plain_syntax(transfer_syntax)
    if plain_syntax and not isinstance(source, Path):
        data = source if isinstance(source, bytes) else source.tobytes()
        plain = _read_plain_header(data, implicit, until)
        if plain is not None:
            return plain
    syntax = UID(transfer_syntax)

    def past_until(tag: BaseTag, _vr: str | None, _length: int) -> bool:
        # Elements are in ascending tag order (PS3.5 7.1): nothing after this is needed.
        return int(tag) > until

    with _dataset_stream(source, syntax) as stream:
        return read_dataset(
            stream,
            syntax.is_implicit_VR,
            syntax.is_little_endian,
            stop_when=past_until,
            defer_size=_SKIP_LONGER_THAN,
        )


@functools.lru_cache(maxsize=64)
def _plain_syntax(transfer_syntax: str) -> tuple[bool, bool]:
    """(implicit VR, whether :func:`_read_plain_header` reads it: little endian, not
    deflated); kept, as a pydicom UID costs a few microseconds to make."""
    syntax = UID(transfer_syntax)
    return syntax.is_implicit_VR, syntax.is_little_endian and not syntax.is_deflated


def _read_plain_header(data: bytes, implicit: bool, until: int) -> Dataset | None:
    """What pydicom's ``read_dataset`` reads from ``data`` (little endian) up to tag
    ``until``, the same RawDataElements, for the common case: every element before
    ``until`` of defined length, within ``data``, with a VR pydicom knows. None for
    anything else (a sequence or item of undefined length, a cut or odd element, data
    in the other VR encoding than the syntax says), which pydicom's reader then reads.

    pydicom's general reader (callbacks, deferred reads, a stream) costs about
    40 us for the ten elements of a small instance's header, a tenth of the edge's
    CPU per C-STORE; this loop costs a fifth of that.
    """
    end = len(data)
    # pydicom's _is_implicit_vr: the first element's VR bytes say which encoding the
    # data set is in; where it disagrees with the syntax, pydicom decides (and warns).
    if end >= 6 and (0x40 < data[4] < 0x5B and 0x40 < data[5] < 0x5B) == implicit:
        return None
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    offset = 0
    vr: str | None = None
    while offset < end:
        if end - offset < 8:
            return None
        if implicit:
            group, element, length = _IMPLICIT_ELEMENT.unpack_from(data, offset)
        else:
            group, element, raw_vr, length = _EXPLICIT_ELEMENT.unpack_from(data, offset)
            vr = _KNOWN_VRS.get(raw_vr)
            if vr is None:
                return None
        start = offset + 8
        if vr in EXPLICIT_VR_LENGTH_32 and not implicit:
            if end - start < 4:
                return None
            (length,) = _LONG_LENGTH.unpack_from(data, start)
            start += 4
        tag = group << 16 | element
        if tag > until:
            break
        if length == _UNDEFINED_LENGTH or group == _ITEM_GROUP or length > end - start:
            return None
        if length > _SKIP_LONGER_THAN and tag != SPECIFIC_CHARACTER_SET:
            value = None  # deferred, as pydicom leaves it
        elif length:
            value = data[start : start + length]
        else:
            value = cast(bytes | None, empty_value_for_VR(vr, raw=True))
        key = BaseTag(tag)
        elements[key] = RawDataElement(key, vr, length, value, start, implicit, True)
        offset = start + length
    header = Dataset(elements)
    charset = elements.get(BaseTag(SPECIFIC_CHARACTER_SET))
    encoding: str | list[str] = (
        convert_encodings(convert_raw_data_element(cast(RawDataElement, charset)).value)
        if charset is not None
        else default_encoding
    )
    header.set_original_encoding(implicit, True, encoding)
    return header


def instance_uids(header: Dataset) -> InstanceUIDs:
    """The four UIDs in a header from :func:`read_instance_header` (read at least up to
    (0020,000E))."""
    return InstanceUIDs(
        sop_class_uid=_uid_text(header, SOP_CLASS_UID),
        sop_instance_uid=_uid_text(header, SOP_INSTANCE_UID),
        study_instance_uid=_uid_text(header, STUDY_INSTANCE_UID),
        series_instance_uid=_uid_text(header, SERIES_INSTANCE_UID),
    )


def _uid_text(dataset: Dataset, tag: int) -> str | None:
    # A value too long to be a UID was skipped, not read; it stays unread (None).
    # An absent element is None too.
    raw = dataset.get_item(tag, keep_deferred=True)
    value = getattr(raw, "value", None)
    if isinstance(value, bytes):
        # PS3.5 9.1: a UI value is padded to even length with one NUL; some
        # senders pad with a space. Anything not ASCII fails the UID check later.
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return value.rstrip("\x00 ") or None


@contextlib.contextmanager
def _dataset_stream(source: bytes | memoryview | Path, syntax: UID) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as file:
            yield io.BytesIO(_inflated_start(file)) if syntax.is_deflated else file
        return
    # BytesIO shares a bytes object's buffer until written to: no copy.
    data = source if isinstance(source, bytes) else source.tobytes()
    stream = io.BytesIO(data)
    yield io.BytesIO(_inflated_start(stream)) if syntax.is_deflated else stream


def _inflated_start(raw: BinaryIO) -> bytes:
    """The first MAX_INFLATED_HEADER bytes of a deflated data set (PS3.5 A.5: raw deflate)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = bytearray()
    while len(inflated) < MAX_INFLATED_HEADER:
        chunk = raw.read(_READ_CHUNK)
        if not chunk:
            break
        inflated += inflater.decompress(chunk, MAX_INFLATED_HEADER - len(inflated))
    return bytes(inflated)
