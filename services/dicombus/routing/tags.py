"""Attribute names in rules and transforms: a keyword, ``(gggg,eeee)``, or a path through
sequences, turned into the 8-hex-digit tags the DICOM JSON model is keyed by (PS3.18 F.2.1.1).

``Modality``, ``(0008,0060)`` and ``00080060`` name the same attribute; a path joins names
with ``.`` (``ReferencedStudySequence.ReferencedSOPInstanceUID``) and means "in any item".
"""

from __future__ import annotations

import difflib
import re

from pydicom.datadict import dictionary_keyword, dictionary_VR, keyword_dict, tag_for_keyword

_PARENTHESIZED = re.compile(r"\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)")
_PLAIN = re.compile(r"[0-9A-Fa-f]{8}")


def parse_tag(name: str) -> str:
    """The tag of one attribute name as 8 upper-case hex digits; ValueError if unknown."""
    text = name.strip()
    found = _PARENTHESIZED.fullmatch(text)
    if found:
        return (found.group(1) + found.group(2)).upper()
    if _PLAIN.fullmatch(text):
        return text.upper()
    tag = tag_for_keyword(text)
    if tag is None:
        close = difflib.get_close_matches(text, keyword_dict, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name!r} is neither a DICOM keyword nor a tag (gggg,eeee){hint}")
    return f"{tag:08X}"


def parse_path(name: str) -> tuple[str, ...]:
    """The tags of a path of attribute names through sequences (``Seq.Seq.Attribute``)."""
    parts = tuple(parse_tag(part) for part in name.split("."))
    for outer, part in zip(parts[:-1], name.split(".")[:-1], strict=True):
        if vr_of(outer) != "SQ":
            raise ValueError(f"{part!r} in {name!r} is not a sequence")
    return parts


def vr_of(tag: str) -> str | None:
    """The VR the data dictionary gives ``tag``, or None for private and unknown tags."""
    try:
        vr: str = dictionary_VR(int(tag, 16))
    except KeyError:
        return None
    return vr


def display_name(tag: str) -> str:
    """``Keyword`` when the dictionary knows the tag, else ``(gggg,eeee)``."""
    try:
        keyword: str = dictionary_keyword(int(tag, 16))
    except KeyError:
        keyword = ""
    return keyword or f"({tag[:4]},{tag[4:]})"
