"""Whether two encoded data sets hold the same instance, whatever syntax encodes them.

A Storage SCP that finds a SOP Instance UID stored with other bytes must tell
a retry of the same instance from a different instance under a reused UID.
A retry's bytes differ too when the peer negotiated another transfer syntax
the second time (Implicit instead of Explicit VR Little Endian, deflated or
not): the same data set, encoded otherwise (PS3.5 10). :func:`same_data_set`
decodes both and compares them element by element, the File Meta
Information left out:

- every value, pixel data included, by its bytes in Little Endian order: an
  element's value field is the same in every native Little Endian syntax
  (PS3.5 7.1), and Explicit VR Big Endian values are swapped back by their
  VR's word size (PS3.5 7.3);
- sequences item by item, since their encoded form (explicit or implicit VR
  items, defined or undefined lengths) depends on the encoder;
- group lengths (gggg,0000), retired in data sets (PS3.5 7.2), and the data
  set trailing padding (FFFC,FFFC) not at all: they follow from the encoding.

Two syntaxes are comparable when both are native (PS3.5 A.1-A.5) or they are
the same syntax: pixel data compressed one way and another are different
bytes even when lossless, so that is not decided here (False).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicombus.dataset_codec import decode_dataset, read_part10_header
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.storage")

# PS3.5 A.1-A.5 (A.3 retired, still received): the data set and its pixel data
# native, so the same instance in any two of them holds the same values.
NATIVE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    }
)
# A data set's compared elements: a sequence's items, or a value's bytes.
Content: TypeAlias = "dict[BaseTag, bytes | list[Content]]"
# PS3.5 7.5.3: Data Set Trailing Padding, which no instance's content includes.
_TRAILING_PADDING = 0xFFFCFFFC
# PS3.5 7.3: the byte-swapped unit of each VR whose value is binary and wider
# than a byte; every other VR (text, OB, UN) has the same bytes in either order.
_WORD_SIZE = {
    "AT": 2,
    "OW": 2,
    "SS": 2,
    "US": 2,
    "FL": 4,
    "OF": 4,
    "OL": 4,
    "SL": 4,
    "UL": 4,
    "FD": 8,
    "OD": 8,
    "OV": 8,
    "SV": 8,
    "UV": 8,
}


@dataclass(frozen=True, slots=True)
class EncodedDataSet:
    """A data set as encoded: in memory, or in a file from ``offset`` on."""

    source: bytes | memoryview | Path
    transfer_syntax: str
    offset: int = 0

    @classmethod
    def in_part10_file(cls, path: Path) -> EncodedDataSet:
        """The data set of a Part 10 file, in the syntax its File Meta Information names."""
        header = read_part10_header(path)
        return cls(path, header.transfer_syntax, header.dataset_offset)

    def decoded(self) -> Dataset:
        if isinstance(self.source, Path):
            with self.source.open("rb") as stream:
                stream.seek(self.offset)
                encoded: bytes | memoryview = stream.read()
        else:
            encoded = memoryview(self.source)[self.offset :]
        return decode_dataset(encoded, self.transfer_syntax)


def comparable(first_syntax: str, second_syntax: str) -> bool:
    """Whether data sets in these two syntaxes can be compared by content."""
    return first_syntax == second_syntax or {first_syntax, second_syntax} <= NATIVE_SYNTAXES


def same_data_set(first: EncodedDataSet, second: EncodedDataSet) -> bool:
    """Whether ``first`` and ``second`` hold the same elements with the same values.

    False when their syntaxes are not :func:`comparable`, or either cannot be
    decoded: what cannot be shown the same is treated as different.
    """
    if not comparable(first.transfer_syntax, second.transfer_syntax):
        return False
    try:
        return _content(first.decoded()) == _content(second.decoded())
    except Exception as exc:
        # pydicom raises whatever its parsing runs into on bytes that are not
        # a data set (struct.error, ValueError, ...); the caller keeps both apart.
        LOGGER.warning("cannot compare two data sets by content: %s", exc)
        return False


class _Undecided(DicombusError):
    """An element whose bytes pydicom did not keep: the contents cannot be compared."""


def _content(dataset: Dataset) -> Content:
    """Each compared element's value: the items' contents of a sequence, else its bytes."""
    # Taken as read before anything is converted: converting one element makes
    # pydicom convert others (Pixel Representation, to settle "US or SS"), and
    # iterating a Dataset itself converts every element.
    elements = {
        tag: dataset.get_item(tag)
        for tag in dataset.keys()  # noqa: SIM118
        if tag.element != 0 and tag != _TRAILING_PADDING
    }
    return {tag: _value(dataset, tag, element) for tag, element in elements.items()}


def _value(
    dataset: Dataset, tag: BaseTag, element: RawDataElement | DataElement
) -> bytes | list[Content]:
    """The items' contents of a sequence, else the value's bytes in Little Endian order."""
    if not isinstance(element, RawDataElement):
        # pydicom reads sequences of undefined length at once.
        if element.VR != "SQ":
            raise _Undecided(f"({tag.group:04X},{tag.element:04X}) was decoded while read")
        return [_content(item) for item in element.value]
    # Implicit VR leaves the VR to the dictionary, and a private sequence can
    # come as UN (PS3.5 6.2.2): pydicom's conversion tells what it is.
    if element.VR in (None, "UN", "SQ") and dataset[tag].VR == "SQ":
        return [_content(item) for item in dataset[tag].value]
    value = element.value or b""
    if element.is_little_endian or element.VR not in _WORD_SIZE:
        return value
    return _swapped(value, _WORD_SIZE[element.VR])


def _swapped(value: bytes, width: int) -> bytes:
    """``value`` with the bytes of each ``width``-byte word reversed."""
    if len(value) % width:
        return value  # malformed: compared as it is, so found different
    swapped = bytearray(len(value))
    for position in range(width):
        swapped[position::width] = value[width - 1 - position :: width]
    return bytes(swapped)
