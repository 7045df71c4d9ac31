"""JSON text of event envelopes and task messages, by orjson.

The publisher serializes every envelope it sends; with the standard ``json``
module that was a third of a C-STORE event's message cost. orjson writes the
same JSON values about ten times faster. What a consumer parses is the same
(tests/bus/test_json_text.py), with these differences in the text only:

- non-ASCII characters are written as UTF-8, not as ``\\uXXXX`` escapes
  (RFC 8259 8.1: JSON text is UTF-8; the messages say ``content_encoding``
  utf-8);
- a float that is not a number (``NaN``, ``Infinity``) is ``null``: RFC 8259 6
  has no such numbers, and the standard module's ``NaN`` is not JSON that
  other parsers accept;
- integers beyond 64 bits are an error (DICOM has none: IS is at most 12
  characters, UV and SV are 64-bit).

Values that are not JSON stay an error, as with the standard module
(datetimes and dataclasses included, which orjson would write): the
publisher logs and counts such an event instead of sending a surprise to a
worker. Two of orjson's extras are let through, as their JSON: a UUID (its
string) and an enum member (its value).
"""

from __future__ import annotations

from typing import Any

import orjson

# Datetimes and dataclasses go to _default.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Dict keys that are not strings become strings, as the standard module does (an
# int key 7 is "7"). Only when a value needs it: the option makes orjson write
# every dict about three times slower (a C-STORE envelope: 6 us instead of 2 here),
# and with string keys only the text is the same either way.
_NON_STR_KEYS_OPTIONS = _OPTIONS | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    # A subclass of float (pydicom's DSfloat) is a number; json writes it as one.
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON text, UTF-8 encoded. Raises TypeError for what is not JSON."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError:
        pass  # a key that is not a string, or a value that is not JSON: the slow way says
    try:
        return orjson.dumps(value, default=_default, option=_NON_STR_KEYS_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc
