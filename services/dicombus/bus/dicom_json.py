"""Datasets in the DICOM JSON model (PS3.18 F.2), bulk data by reference, never inline.

:func:`to_dicom_json` turns a pydicom Dataset into the JSON model, with every
element that can carry a BulkDataURI (PS3.18 F.2.2: DS, FL, FD, IS, LT, OB,
OD, OF, OL, OV, OW, SL, SS, ST, SV, UC, UL, UN, US, UT, UV) and whose value is
longer than a threshold replaced by a ``BulkDataURI``. Pixel data is always
over any sensible threshold. Elements read with pydicom's ``defer_size`` are
never loaded: a deferred element is bulk data by definition, so serializing
the header of a 2 GB instance reads only its header.

BulkDataURIs for a stored instance (see :func:`file_bulk_data_uri`) are the
stored file's ``file:`` URI with the element in the query::

    file:///var/lib/dicombus/storage/1.2.840.10008.5.1.4.1.1.2/1.2.3.dcm?tag=7FE00010

They start with the URI of the edge's storage root, which events publish as
``bulk_data_uri_base``: a worker that mounts that storage elsewhere swaps the
prefix. The tag path is the element's tag in 8 hex digits; for an element inside a
sequence it is ``<sequence tag>/<item index from 0>/<tag>``, repeated for
deeper nesting. :func:`read_file_bulk_data` resolves such a URI.

:func:`from_dicom_json` goes back to a Dataset, leaving bulk data unresolved
(an empty value) unless the caller passes a resolver.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import operator
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_from_bytes, unquote, unquote_to_bytes, urlsplit

from pydicom import dcmread
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from dicombus.dataset_codec import DatasetCodecError, read_part10_header
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus")

# PS3.18 F.2.2: the VRs whose value may be given as a BulkDataURI.
BULK_DATA_VRS = frozenset(
    {
        "DS", "FL", "FD", "IS", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
        "SL", "SS", "ST", "SV", "UC", "UL", "UN", "US", "UT", "UV",
    }
)  # fmt: skip
DEFAULT_THRESHOLD = 1024
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# PS3.5 6.2: the binary numeric VRs, as struct formats.
_BINARY_NUMBERS = {
    "FL": "f", "FD": "d", "SL": "l", "SS": "h", "SV": "q", "UL": "L", "US": "H", "UV": "Q",
}  # fmt: skip
# Text VRs, each value as the JSON model wants it (PS3.5 6.2: which spaces are
# padding; PS3.18 F.2.3: IS and DS as numbers). LT, ST, UT and UR hold one
# value, backslashes and all; UC keeps its leading spaces.
_ONE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
# (methodcaller: no Python frame per value.)
_TEXT_VALUES: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(("AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM"), str.strip),
    **dict.fromkeys(("LT", "ST", "UT", "UR", "UC"), operator.methodcaller("rstrip", "\x00 ")),
    "UI": operator.methodcaller("strip", "\x00 "),
    "IS": int,
    "DS": float,
}
_NUMBER_STRUCTS = {vr: struct.Struct(f"<{code}") for vr, code in _BINARY_NUMBERS.items()}
_SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)
# PS3.3 C.12.1.1.2: the character sets that one Python codec decodes whole.
# Named as CPython spells them, which bytes.decode() finds without a codec lookup
# (pydicom's "iso8859" for the default repertoire is the same codec, found 6x slower).
_PLAIN_CHARACTER_SETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1",
                         "ISO_IR 192": "utf-8"}  # fmt: skip
# The codec pydicom decodes the default repertoire with, when a dataset names none.
_DEFAULT_ENCODING = "latin-1"
# pydicom reports "not known yet" as this length (undefined length, PS3.5 7.1.1).
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM_SEPARATOR = "/"

# A value's JSON from its Little Endian bytes: (VR, value, codec) -> model; None: not here.
_ValueJson = Callable[[str, bytes, "str | None"], "dict[str, Any] | None"]
# Given an element's tag path, its BulkDataURI; None leaves the element out.
BulkDataUri = Callable[[str], "str | None"]


def to_dicom_json(
    dataset: Dataset,
    *,
    bulk_data_uri: BulkDataUri | str,
    threshold: int = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """``dataset`` (without its file meta) in the DICOM JSON model.

    ``bulk_data_uri`` is either a base URI, to which ``?tag=<tag path>`` is
    added, or a callable that maps a tag path to the URI (or to None, to leave
    an element that has nowhere to point at out). Values longer than
    ``threshold`` bytes, as encoded, are bulk data.
    """
    uri_for = _query_uri(bulk_data_uri) if isinstance(bulk_data_uri, str) else bulk_data_uri
    return _dataset_json(dataset, uri_for, threshold, "", _DEFAULT_ENCODING)


def from_dicom_json(
    model: Mapping[str, Any] | str | bytes,
    *,
    resolve_bulk_data: Callable[[str], bytes] | None = None,
) -> Dataset:
    """A pydicom Dataset from the JSON model.

    Bulk data stays unresolved -- the element is present with an empty value
    -- unless ``resolve_bulk_data(uri)`` is given: it returns the value's
    bytes as encoded (Little Endian), e.g. :func:`read_file_bulk_data` on a
    host that can read the edge's storage, and they are turned into the
    element's value by its VR. :func:`bulk_data_uris` lists the URIs.
    """
    source: Mapping[str, Any] = json.loads(model) if isinstance(model, str | bytes) else model
    encodings = convert_encodings(_character_sets(source))

    def bulk_value(tag: str, vr: str, uri: str) -> Any:
        if resolve_bulk_data is None:
            return None
        return _value_of(vr, resolve_bulk_data(uri), encodings)

    return Dataset.from_json(dict(source), bulk_data_uri_handler=bulk_value)


def read_header(path: Path, *, defer_size: int) -> Dataset:
    """A stored instance without its bulk data: values over ``defer_size`` bytes are skipped.

    Skipped values stay unread (pydicom's deferred reads), so the JSON model
    of a 2 GB instance costs what its header does. The File Meta Information
    is parsed by dicombus's own reader and left out: the JSON model has none.
    """
    try:
        header = read_part10_header(path)
    except DatasetCodecError:
        header = None
    syntax = UID(header.transfer_syntax) if header is not None else None
    if header is None or syntax is None or syntax.is_deflated:
        # Not Part 10, or deflated: pydicom's reader knows what to do.
        return dcmread(path, defer_size=defer_size, force=True)
    with path.open("rb") as stream:
        stream.seek(header.dataset_offset)
        dataset = read_dataset(
            stream, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=defer_size
        )
    # A FileDataset knows its file, which deferred reads (a long sequence) reopen.
    return FileDataset(
        str(path),
        dataset,
        file_meta=FileMetaDataset(),
        is_implicit_VR=syntax.is_implicit_VR,
        is_little_endian=syntax.is_little_endian,
    )


def stored_file_json(
    path: str | os.PathLike[str], *, threshold: int = DEFAULT_THRESHOLD, root_uri: str = ""
) -> dict[str, Any] | None:
    """The JSON model of a stored instance, parsed straight from the file; None: not here.

    The common case -- a Part 10 file in Explicit VR Little Endian (native pixel
    data), sequences of defined or undefined length included, plain character
    sets, PN values of one alphabetic group -- costs one open, a read or two and
    one pass over the header bytes that builds the model as it goes: bulk values
    are skipped by seeking past them, never read. Anything else returns None, and
    the caller goes the general way (:func:`read_header` + :func:`to_dicom_json`),
    which gives the same model. BulkDataURIs are into this file, by
    :func:`stored_file_uri` with ``root_uri``.
    """
    # A bare descriptor and pread(): no buffered file object, no seeks.
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        window = _Window(descriptor)
        reader = _HeaderReader(window, threshold, stored_file_uri(path, root_uri) + "?tag=")
        model, _ = reader.dataset(_dataset_start(window), window.size, "", 0)
    except _NotPlain:
        return None
    finally:
        os.close(descriptor)
    return model


_SPECIFIC_CHARACTER_SET_KEY = "00080005"
_META_GROUP = 0x0002
_TRANSFER_SYNTAX = 0x0010  # (0002,0010), in the file meta group
# PS3.5 7.1.2: explicit VRs with a 4-byte length (after 2 reserved bytes).
_LONG_LENGTH_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC",
                              b"UN", b"UR", b"UT", b"UV"})  # fmt: skip
# PS3.5 7.1.2: tag, VR, 2-byte length (in a long-length VR: reserved, then a 4-byte length).
_SHORT_HEADER = struct.Struct("<HH2sH")
# The same 8 bytes with the tag as one number: group + (element << 16), Little Endian.
_SHORT_HEADER_RAW_TAG = struct.Struct("<I2sH")
_LONG_LENGTH = struct.Struct("<I")
# PS3.5 7.5: an item, item delimitation or sequence delimitation tag, then a 4-byte length.
_ITEM_HEADER = struct.Struct("<HHI")
_ITEM_GROUP = 0xFFFE
_ITEM, _ITEM_DELIMITATION, _SEQUENCE_DELIMITATION = 0xE000, 0xE00D, 0xE0DD
# A tag read as one Little Endian number (group + element << 16) below this is a group
# length, (gggg,0000).
_FIRST_NOT_GROUP_LENGTH = 0x10000
# The VRs whose values are decoded with the dataset's character set.
_DECODED_VRS = frozenset({*_TEXT_VALUES, "PN"})
_READ_SIZE = 16 * 1024
_PREAMBLE_LENGTH = 128  # PS3.10 7.1: then "DICM"
# Deeper nesting than this is left to pydicom (and keeps a crafted file from
# exhausting the interpreter's recursion limit here).
_MAX_DEPTH = 32
_PLAIN_SYNTAXES: dict[bytes, bool] = {}
# "GGGGEEEE" of each tag seen, by its 4 bytes read as one Little Endian number:
# formatting it costs more than the rest of an element.
_TAG_KEYS: dict[int, str] = {}
_TAG_KEYS_LIMIT = 4096  # private tags are unbounded; the standard's common ones fit


def _is_plain_explicit_little(syntax: bytes) -> bool:
    """Explicit VR Little Endian encoding and not deflated (cached per UID)."""
    plain = _PLAIN_SYNTAXES.get(syntax)
    if plain is None:
        uid = UID(syntax.rstrip(b"\x00 ").decode("ascii", "replace"))
        plain = bool(
            uid.is_transfer_syntax
            and not uid.is_implicit_VR
            and uid.is_little_endian
            and not uid.is_deflated
        )
        _PLAIN_SYNTAXES[syntax] = plain
    return plain


class _NotPlain(DicombusError):
    """The file holds something the fast reader leaves to pydicom."""


class _Window:
    """The bytes of a file around an offset: a typical header is one read; a bulk
    value is skipped by reading on after it."""

    __slots__ = ("base", "buffer", "descriptor", "size")

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.size = os.fstat(descriptor).st_size
        self.buffer = os.pread(descriptor, _READ_SIZE, 0)
        self.base = 0  # the file offset of buffer[0]

    def at(self, offset: int, length: int) -> int:
        """Make the file's bytes [offset, offset + length) available in ``buffer``: their
        index there. Raises _NotPlain past the end of the file."""
        index = offset - self.base
        if index >= 0 and index + length <= len(self.buffer):
            return index
        if offset + length > self.size:
            raise _NotPlain("truncated")
        self.buffer = os.pread(self.descriptor, max(length, _READ_SIZE), offset)
        self.base = offset
        if len(self.buffer) < length:
            raise _NotPlain("truncated")
        return 0


def _element_header(window: _Window, offset: int) -> tuple[int, int, bytes, int, int]:
    """(group, element, VR bytes, value length, value offset) of the element at
    ``offset``, read as Explicit VR Little Endian (PS3.5 7.1.2)."""
    buffer, index = window.buffer, offset - window.base
    if index < 0 or index + 12 > len(buffer):  # else both headers are at hand: no call
        index = window.at(offset, 8)
        buffer = window.buffer
    group, element, vr, length = _SHORT_HEADER.unpack_from(buffer, index)
    if vr not in _LONG_LENGTH_VRS:
        return group, element, vr, length, offset + 8
    if index + 12 > len(buffer):
        index = window.at(offset, 12)
        buffer = window.buffer
    (length,) = _LONG_LENGTH.unpack_from(buffer, index + 8)
    return group, element, vr, length, offset + 12


def _dataset_start(window: _Window) -> int:
    """The offset of the dataset after the File Meta Information (PS3.10 7.1), whose
    transfer syntax must be plain Explicit VR Little Endian."""
    index = window.at(0, _PREAMBLE_LENGTH + 4)
    if window.buffer[index + _PREAMBLE_LENGTH : index + _PREAMBLE_LENGTH + 4] != b"DICM":
        raise _NotPlain("not a Part 10 file")
    offset, syntax = _PREAMBLE_LENGTH + 4, b""
    while True:
        group, element, _, length, start = _element_header(window, offset)
        if group != _META_GROUP:
            break
        if element == _TRANSFER_SYNTAX:
            index = window.at(start, length)
            syntax = window.buffer[index : index + length]
        offset = start + length
    if not syntax or not _is_plain_explicit_little(syntax):
        raise _NotPlain("not Explicit VR Little Endian")
    return offset


def _tag_key(raw_tag: int) -> str:
    """The key "GGGGEEEE" of a tag read as one Little Endian number (group + element << 16)."""
    key = _TAG_KEYS.get(raw_tag)
    if key is None:
        key = f"{raw_tag & 0xFFFF:04X}{raw_tag >> 16:04X}"
        if len(_TAG_KEYS) < _TAG_KEYS_LIMIT:
            _TAG_KEYS[raw_tag] = key
    return key


class _HeaderReader:
    """One pass over a stored dataset's bytes that builds its JSON model.

    The character set of the top-level dataset applies to all of it (PS3.5
    6.1.2.5). Its element, (0008,0005), comes before every element whose text
    it decodes in a file in tag order; a file that decoded such text before it
    and then names another codec than the default is left to pydicom, as is an
    item with a character set of its own.
    """

    __slots__ = ("encoding", "set_seen", "text_decoded", "threshold", "uri", "window")

    def __init__(self, window: _Window, threshold: int, uri: str) -> None:
        self.window = window
        # Every length over it is bulk data or pydicom's, an undefined one included.
        self.threshold = min(threshold, _UNDEFINED_LENGTH - 1)
        self.uri = uri  # the file's URI + "?tag="
        self.encoding = _DEFAULT_ENCODING
        self.set_seen = False  # (0008,0005) of the top-level dataset read
        self.text_decoded = False  # text in the default codec before (0008,0005)

    def dataset(
        self, offset: int, end: int | None, prefix: str, depth: int
    ) -> tuple[dict[str, Any], int]:
        """The JSON model of the elements from ``offset`` to ``end`` (None: to an item
        delimitation item), and the offset after them; ``prefix``: the tag path of the
        item (empty at the top level).

        Raises _NotPlain at an encapsulated (undefined length) value, a VR that may
        not be bulk data yet is over the threshold, a value the fast conversion does
        not take, an element that runs past its item or the file, or nesting deeper
        than _MAX_DEPTH.
        """
        window, threshold = self.window, self.threshold
        buffer, base = window.buffer, window.base
        size = len(buffer)
        encoding, set_seen = self.encoding, self.set_seen
        model: dict[str, Any] = {}
        last, ordered = "", True
        while end is None or offset < end:
            index = offset - base
            if index >= 0 and index + 12 <= size:  # the usual case: no call
                raw_tag, vr_bytes, length = _SHORT_HEADER_RAW_TAG.unpack_from(buffer, index)
                start = offset + 8
                if vr_bytes in _LONG_LENGTH_VRS:
                    (length,) = _LONG_LENGTH.unpack_from(buffer, index + 8)
                    start += 4
            else:
                group, element, vr_bytes, length, start = _element_header(window, offset)
                raw_tag = group | element << 16
                buffer, base = window.buffer, window.base
                size = len(buffer)
            if raw_tag & 0xFFFF == _ITEM_GROUP:
                if end is None and raw_tag >> 16 == _ITEM_DELIMITATION:  # PS3.5 7.5.2
                    return self._ordered(model, ordered), start
                raise _NotPlain("an item tag among elements")
            vr, value_json, decoded = _READER_VRS.get(vr_bytes) or _unknown_vr(vr_bytes)
            key = _TAG_KEYS.get(raw_tag) or _tag_key(raw_tag)
            if key <= last:
                ordered = False
            last = key
            if vr == "SQ":
                if depth == _MAX_DEPTH:
                    raise _NotPlain("sequences nested too deep")
                items, offset = self._items(start, length, f"{prefix}{key}/", depth + 1)
                buffer, base = window.buffer, window.base
                size = len(buffer)
                # PS3.18 F.2.5: an empty sequence has no Value.
                model[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
                continue
            offset = start + length
            if length > threshold:  # bulk data, or what pydicom converts
                if length == _UNDEFINED_LENGTH:
                    raise _NotPlain("undefined length (encapsulated pixel data)")
                if vr not in BULK_DATA_VRS:
                    raise _NotPlain(f"({key}) {vr} over the threshold")
                if raw_tag >= _FIRST_NOT_GROUP_LENGTH:
                    model[key] = {"vr": vr, "BulkDataURI": self.uri + prefix + key}
                continue
            if raw_tag < _FIRST_NOT_GROUP_LENGTH:  # PS3.18 F.2.2: no group lengths
                continue
            index = start - base
            if index < 0 or index + length > size:
                index = window.at(start, length)
                buffer, base = window.buffer, window.base
                size = len(buffer)
            value = buffer[index : index + length]
            if key == _SPECIFIC_CHARACTER_SET_KEY:
                self._character_set(value, depth)
                encoding, set_seen = self.encoding, self.set_seen
            elif decoded and not set_seen:
                self.text_decoded = True
            element_json = value_json(vr, value, encoding)
            if element_json is None:
                raise _NotPlain(f"({key}) {vr} is pydicom's to convert")
            model[key] = element_json
        if offset != end:
            raise _NotPlain("an element runs past its item or the file")
        return self._ordered(model, ordered), offset

    def _items(
        self, offset: int, length: int, prefix: str, depth: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The items of a sequence whose value starts at ``offset`` (PS3.5 7.5), each of
        defined or undefined length, and the offset after the sequence."""
        window = self.window
        end = None if length == _UNDEFINED_LENGTH else offset + length
        items: list[dict[str, Any]] = []
        while end is None or offset < end:
            index = window.at(offset, 8)
            group, element, item_length = _ITEM_HEADER.unpack_from(window.buffer, index)
            offset += 8
            if group != _ITEM_GROUP:
                raise _NotPlain("not an item in a sequence")
            if element == _SEQUENCE_DELIMITATION and end is None:
                return items, offset
            if element != _ITEM:
                raise _NotPlain("not an item in a sequence")
            item_end = None if item_length == _UNDEFINED_LENGTH else offset + item_length
            item, offset = self.dataset(offset, item_end, f"{prefix}{len(items)}/", depth)
            items.append(item)
        if offset != end:
            raise _NotPlain("an item runs past its sequence")
        return items, offset

    def _character_set(self, value: bytes, depth: int) -> None:
        if depth:
            raise _NotPlain("an item's own character set")  # PS3.5 6.1.2.5: pydicom's
        encoding = _plain_encoding(value)
        if encoding is None:
            raise _NotPlain("not one plain character set")
        if self.text_decoded and encoding != _DEFAULT_ENCODING:
            raise _NotPlain("text before its character set")
        self.encoding, self.set_seen = encoding, True

    @staticmethod
    def _ordered(model: dict[str, Any], ordered: bool) -> dict[str, Any]:
        # PS3.18 F.2.2: ascending tag order; a file out of order is put in order.
        return model if ordered else dict(sorted(model.items()))


@functools.lru_cache(maxsize=1024)
def _directory_uri(directory: str) -> str:
    """The ``file:`` URI of ``os.path.realpath(directory)`` (absolute, normalized) and a
    slash, from its parent's (cached): a new study's or series' folder costs one lstat,
    not one per component, and the quoting of its name only."""
    parent, name = os.path.split(directory)
    if not name or os.path.islink(directory):
        real = os.path.realpath(directory)
        return "file://" + quote_from_bytes(os.fsencode(real)).rstrip("/") + "/"
    return _directory_uri(parent) + quote_from_bytes(os.fsencode(name)) + "/"


def stored_file_uri(path: str | os.PathLike[str], root_uri: str = "") -> str:
    """The ``file:`` URI of a stored file: ``root_uri`` (the storage root's, as C-STORE
    events publish it in ``bulk_data_uri_base``) and the file's path under that root
    when it lies there, else ``Path(path).resolve().as_uri()``.

    Under the root no component is resolved, so the URI starts with ``root_uri`` as
    the module doc promises even through a symbolic link inside the storage, and a
    file in a new study's folder costs no system call.
    """
    absolute = os.path.abspath(path)
    root = _root_folder(root_uri) if root_uri else None
    if root is not None and absolute.startswith(root) and len(absolute) > len(root):
        folder_uri = root_uri if root_uri.endswith("/") else root_uri + "/"
        return folder_uri + quote_from_bytes(os.fsencode(absolute[len(root) :]))
    directory, name = os.path.split(absolute)
    return _directory_uri(directory) + quote_from_bytes(os.fsencode(name))


@functools.lru_cache(maxsize=16)
def _root_folder(root_uri: str) -> str | None:
    """The local folder a ``file:`` URI names, ending in a slash; None: not a local
    ``file:`` URI."""
    parts = urlsplit(root_uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query:
        return None
    folder = os.fsdecode(unquote_to_bytes(parts.path))
    return folder if folder.endswith("/") else folder + "/"


def _plain_encoding(value: bytes) -> str | None:
    terms = value.decode("ascii", errors="replace").rstrip("\x00 ").split("\\")
    return _PLAIN_CHARACTER_SETS.get(terms[0].strip()) if len(terms) == 1 else None


def _person_name_json(vr: str, value: bytes, encoding: str | None) -> dict[str, Any] | None:
    """PN of one value and one (alphabetic) component group; None: pydicom decides."""
    if encoding is None or b"\\" in value or b"=" in value:
        return None
    try:
        text = value.decode(encoding).rstrip("\x00 ")
    except ValueError:
        return None
    return {"vr": "PN", "Value": [{"Alphabetic": text}]} if text else {"vr": "PN"}


def bulk_data_uris(model: Mapping[str, Any]) -> dict[str, str]:
    """Every BulkDataURI in a JSON model, by tag path (nested ones included)."""
    return dict(_walk_uris(model, ""))


def file_bulk_data_uri(path: str | Path, tag_path: str, root_uri: str = "") -> str:
    """The BulkDataURI of one element of the stored file ``path`` (see the module doc
    and :func:`stored_file_uri`)."""
    return f"{stored_file_uri(path, root_uri)}?tag={tag_path}"


def read_file_bulk_data(uri: str) -> bytes:
    """The value, as encoded in the file, of the element a ``file://`` BulkDataURI names."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise ValueError(f"{uri!r} is not a file:// BulkDataURI")
    tags = parse_qs(parts.query).get("tag")
    if not tags:
        raise ValueError(f"{uri!r} names no element (?tag=...)")
    dataset: Any = dcmread(unquote(parts.path), force=True)
    steps = tags[0].split(_ITEM_SEPARATOR)
    for sequence, index in zip(steps[:-1:2], steps[1::2], strict=True):
        dataset = dataset[Tag(int(sequence, 16))].value[int(index)]
    # Never accessed, the element is still raw: its value is the bytes as stored.
    element = dataset.get_item(Tag(int(steps[-1], 16)))
    if element is None:
        raise KeyError(f"{uri!r}: no such element in the file")
    value = element.value
    return value if isinstance(value, bytes) else bytes(str(value), "utf-8")


# -- the JSON model ----------------------------------------------------------------------


def _query_uri(base: str) -> BulkDataUri:
    joiner = "&" if "?" in base else "?"
    return lambda tag_path: f"{base}{joiner}tag={tag_path}"


def _dataset_json(
    dataset: Dataset, uri_for: BulkDataUri, threshold: int, prefix: str, encoding: str | None
) -> dict[str, Any]:
    model: dict[str, Any] = {}
    encoding = _text_encoding(dataset, encoding)
    # PS3.18 F.2.2: attributes in ascending tag order, and no group lengths.
    for tag in sorted(dataset.keys()):
        if tag.element == 0:
            continue
        key = f"{tag:08X}"
        try:
            element = _element_json(dataset, tag, uri_for, threshold, prefix + key, encoding)
        except Exception as exc:
            # One malformed value (a bad DS, an unknown private VR) must not cost
            # the consumer the whole header.
            LOGGER.warning("left (%s) out of the DICOM JSON: %s", key, exc)
            continue
        if element is not None:
            model[key] = element
    return model


def _element_json(
    dataset: Dataset,
    tag: BaseTag,
    uri_for: BulkDataUri,
    threshold: int,
    path: str,
    encoding: str | None,
) -> dict[str, Any] | None:
    raw = dataset.get_item(tag, keep_deferred=True)
    if isinstance(raw, RawDataElement):
        vr = _raw_vr(raw)
        # Deferred by pydicom (defer_size) means longer than the threshold, and
        # unread. A sequence, or text that cannot be bulk data, is read below.
        deferred = raw.value is None and raw.length
        if (deferred or _value_length(raw, None) > threshold) and _bulk_vr(vr) in BULK_DATA_VRS:
            return _bulk(_bulk_vr(vr), uri_for(path))
        fast = None if deferred else _fast_json(raw, vr, encoding)
        if fast is not None:
            return fast
    element = dataset[tag]
    if element.VR == "SQ":
        items = [
            _dataset_json(item, uri_for, threshold, f"{path}/{index}/", encoding)
            for index, item in enumerate(element.value)
        ]
        # PS3.18 F.2.5: an empty sequence has no Value.
        return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
    if element.VR in BULK_DATA_VRS and _value_length(raw, element) > threshold:
        return _bulk(element.VR, uri_for(path))
    # Whatever reaches here is at most `threshold` long: inline is what we want.
    encoded: dict[str, Any] = element.to_json_dict(
        bulk_data_element_handler=None, bulk_data_threshold=threshold
    )
    return encoded


def _fast_json(raw: RawDataElement, vr: str, encoding: str | None) -> dict[str, Any] | None:
    """The JSON of a raw element of a common VR, straight from its bytes; None: not here.

    pydicom's conversion (a DataElement, then its JSON) costs about 30 us an
    element; a C-STORE header has dozens, and the publisher builds one per
    instance. PN, AT, ambiguous VRs, UN, Big Endian, code extensions and
    anything that does not parse cleanly go the long way.
    """
    value = raw.value
    if not isinstance(value, bytes) or not raw.is_little_endian:
        return None
    return _value_json(vr, value, encoding)


def _value_json(vr: str, value: bytes, encoding: str | None) -> dict[str, Any] | None:
    """The JSON of a Little Endian value of a common VR (see :func:`_fast_json`)."""
    convert = _VALUE_JSON.get(vr)
    return None if convert is None else convert(vr, value, encoding)


def _text_json(parse: Callable[[str], Any], one_value: bool) -> _ValueJson:
    """The conversion of a text VR whose values ``parse`` makes JSON values
    (``one_value``: the VR holds one value, backslashes and all). One function per
    VR, its parse bound: a header's elements are mostly text."""

    def convert(vr: str, value: bytes, encoding: str | None) -> dict[str, Any] | None:
        if not value:
            return {"vr": vr}
        if encoding is None:
            return None
        try:
            text = value.decode(encoding)
            if one_value or "\\" not in text:
                single = parse(text)
                return {"vr": vr} if single == "" else {"vr": vr, "Value": [single]}
            values = [parse(item) for item in text.split("\\")]
        except ValueError:  # UnicodeDecodeError included
            return None
        # PS3.18 F.2.5: an empty value among several is null.
        return {"vr": vr, "Value": [None if item == "" else item for item in values]}

    return convert


def _numbers_json(numbers: struct.Struct) -> _ValueJson:
    """The conversion of a binary numeric VR, each value one ``numbers``."""

    def convert(vr: str, value: bytes, encoding: str | None) -> dict[str, Any] | None:
        size = len(value)
        if size == numbers.size:  # the usual case: one value
            return {"vr": vr, "Value": [numbers.unpack(value)[0]]}
        if not value:
            return {"vr": vr}
        if size % numbers.size:
            return None
        return {"vr": vr, "Value": [n for (n,) in numbers.iter_unpack(value)]}

    return convert


def _inline_binary_json(vr: str, value: bytes, encoding: str | None) -> dict[str, Any] | None:
    if not value:
        return {"vr": vr}
    return {"vr": vr, "InlineBinary": base64.b64encode(value).decode()}


# A value's JSON, by VR, for the VRs converted without pydicom (text first: most
# elements of a header are).
_VALUE_JSON: dict[str, _ValueJson] = {
    **{vr: _text_json(parse, vr in _ONE_TEXT_VRS) for vr, parse in _TEXT_VALUES.items()},
    **{vr: _numbers_json(numbers) for vr, numbers in _NUMBER_STRUCTS.items()},
    **dict.fromkeys(_BINARY_VRS - {"UN"}, _inline_binary_json),
}
# Each VR the reader knows, by its bytes: its name, its value's JSON (SQ's is never
# called: the reader reads it itself; UN may only be bulk data) and whether its text
# is decoded with the character set.
_ReaderVr = tuple[str, _ValueJson, bool]


def _left_to_pydicom(vr: str, value: bytes, encoding: str | None) -> None:
    return None


_READER_VRS: dict[bytes, _ReaderVr] = {
    name.encode(): (name, _VALUE_JSON.get(name, _left_to_pydicom), name in _DECODED_VRS)
    for name in (*_TEXT_VALUES, *_BINARY_NUMBERS, *_BINARY_VRS, "SQ")
}
_READER_VRS[b"PN"] = ("PN", _person_name_json, True)


def _unknown_vr(vr_bytes: bytes) -> _ReaderVr:
    """A VR the reader does not convert (AT, or not a VR at all)."""
    return vr_bytes.decode("ascii", "replace"), _left_to_pydicom, False


def _text_encoding(dataset: Dataset, inherited: str | None) -> str | None:
    """The codec of the dataset's text if one plain codec decodes it all, else None.

    PS3.5 6.1.2.5: (0008,0005) applies to its dataset and the items within.
    """
    raw = dataset.get_item(_SPECIFIC_CHARACTER_SET, keep_deferred=True)
    if raw is None:
        return inherited
    value = raw.value
    if isinstance(value, bytes):
        terms = value.decode("ascii", errors="replace").rstrip("\x00 ").split("\\")
    else:
        terms = [value] if isinstance(value, str) else list(value or ())
    terms = [term.strip() for term in terms]
    if len(terms) != 1:
        return None  # code extensions (ISO 2022): pydicom decodes those
    return _PLAIN_CHARACTER_SETS.get(terms[0])


def _bulk(vr: str, uri: str | None) -> dict[str, Any] | None:
    return None if uri is None else {"vr": vr, "BulkDataURI": uri}


def _raw_vr(raw: RawDataElement) -> str:
    """The VR of an unread element; Implicit VR files leave it to the dictionary,
    which may answer with several ("US or SS")."""
    if raw.VR:
        return str(raw.VR)
    try:
        return str(dictionary_VR(raw.tag))
    except KeyError:
        return "UN"


def _bulk_vr(vr: str) -> str:
    """One VR for a BulkDataURI: ambiguous entries ("OB or OW", "US or SS or OW") are
    OW in Implicit VR Little Endian (PS3.5 A.1), the only syntax without VRs."""
    choices = vr.split(" or ")
    return "OW" if "OW" in choices else choices[0]


def _value_length(raw: DataElement | RawDataElement | None, element: DataElement | None) -> int:
    """The value's encoded length in bytes (exact when read from bytes, close otherwise)."""
    if isinstance(raw, RawDataElement) and raw.length != _UNDEFINED_LENGTH:
        return int(raw.length)
    if element is None:
        return len(raw.value) if raw is not None and isinstance(raw.value, bytes) else 0
    value = element.value
    if isinstance(value, bytes | bytearray | str):
        return len(value)
    if isinstance(value, MultiValue | list | tuple):
        return sum(len(str(item)) + 1 for item in value)
    return len(str(value))


def _character_sets(model: Mapping[str, Any]) -> list[str] | None:
    """(0008,0005) Specific Character Set of a JSON model, for decoding bulk text."""
    values = model.get("00080005", {}).get("Value")
    return [str(value) for value in values] if values else None


def _value_of(vr: str, data: bytes, encodings: list[str]) -> Any:
    """An element value from its encoded bytes (PS3.5 6.2, Little Endian)."""
    if vr in _BINARY_VRS:
        return data
    number = _BINARY_NUMBERS.get(vr)
    if number is not None:
        values = [value for (value,) in struct.iter_unpack(f"<{number}", data)]
        return values[0] if len(values) == 1 else values
    # Text, and DS / IS (numbers as text): pydicom splits values at backslashes.
    return decode_bytes(data, encodings, set()).rstrip("\x00 ")


def _walk_uris(model: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for key, element in model.items():
        if "BulkDataURI" in element:
            yield prefix + key, element["BulkDataURI"]
        if element.get("vr") == "SQ":
            for index, item in enumerate(element.get("Value", ())):
                yield from _walk_uris(item, f"{prefix}{key}/{index}/")
