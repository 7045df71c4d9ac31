"""STOW-RS (PS3.18 10.5) without I/O: the request's body, and what the response says per instance.

The request is one ``multipart/related; type="application/dicom"`` body (PS3.18 8.6.1.2),
a Part 10 file per part. The response (PS3.18 10.5.3) is read into one status per instance,
in the C-STORE status codes the routing policy classifies
(:mod:`dicombus.routing.delivery_policy`): PS3.18 Table 10.5.3-1 takes its FailureReason
(0008,1197) and WarningReason (0008,1196) values from PS3.4 B.2.3's C-STORE statuses.

- HTTP 200: every instance stored (a WarningReason on an item of ReferencedSOPSequence is
  that instance's status);
- HTTP 202 (stored with warnings, or some failed) and 409 (some or all failed): each
  instance's status from ReferencedSOPSequence (0008,1199) / FailedSOPSequence (0008,1198);
  an instance the response leaves out is reported as unanswered (tried again);
- any other answer concerns the request as a whole: :class:`RequestOutcome`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import Any

from dicombus.protocol.errors import DicombusError

CONTENT_TYPE = "application/dicom"
RESPONSE_TYPE = "application/dicom+json"  # PS3.18 10.5.3: the DICOM JSON model (F.2)
SUCCESS = 0x0000
# PS3.4 Table B.2-1 "Processing failure": a failed item that gives no FailureReason (Type 1).
PROCESSING_FAILURE = 0x0110
# PS3.18 Table 10.5.3-1 (Store Instances Response Module).
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
# Answers that say "not now" about a well-formed request (RFC 9110 15.5.9, RFC 6585 4).
_TRANSIENT_CLIENT_ERRORS = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
_PER_INSTANCE = frozenset({HTTPStatus.OK, HTTPStatus.ACCEPTED, HTTPStatus.CONFLICT})


class StowResponseError(DicombusError, ValueError):
    """A STOW-RS response body that is not the DICOM JSON the standard gives."""


def multipart_boundary() -> str:
    # RFC 2046 5.1.1: a boundary must not occur in the parts; 128 random bits make that so
    # for Part 10 data in practice, and the body builder checks it anyway.
    return "dicombus-" + secrets.token_hex(16)


def content_type(boundary: str) -> str:
    return f'multipart/related; type="{CONTENT_TYPE}"; boundary={boundary}'


def multipart_body(parts: Sequence[bytes], boundary: str) -> Iterator[bytes]:
    """The body's pieces, in order (RFC 2387, PS3.18 8.6.1.2): one part per Part 10 file."""
    delimiter = b"--" + boundary.encode("ascii")
    for part in parts:
        if delimiter in part:
            raise ValueError(f"the multipart boundary {boundary!r} occurs in a part")
        yield delimiter + b"\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\n\r\n"
        yield part
        yield b"\r\n"
    yield delimiter + b"--\r\n"


class RequestOutcome(StrEnum):
    PER_INSTANCE = "per-instance"  # the body says what became of each instance
    TRANSIENT = "transient"  # 5xx, 408, 429: the same request may succeed later
    PERMANENT = "permanent"  # other 4xx (and anything else): only a change can fix it


def request_outcome(http_status: int) -> RequestOutcome:
    if http_status in _PER_INSTANCE:
        return RequestOutcome.PER_INSTANCE
    if http_status >= 500 or http_status in _TRANSIENT_CLIENT_ERRORS:
        return RequestOutcome.TRANSIENT
    return RequestOutcome.PERMANENT


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """What the response says of one instance: a C-STORE status code, or nothing."""

    status: int | None


def instance_statuses(
    http_status: int, body: bytes, sop_instance_uids: Sequence[str]
) -> dict[str, InstanceStatus]:
    """Each sent instance's status, from a 200 / 202 / 409 response (PS3.18 10.5.3)."""
    reported: dict[str, int] = {}
    if body.strip():
        dataset = _json_object(body)
        for item in _items(dataset, REFERENCED_SOP_SEQUENCE):
            reported[_uid(item)] = _code(item, WARNING_REASON, SUCCESS)
        for item in _items(dataset, FAILED_SOP_SEQUENCE):
            reported[_uid(item)] = _code(item, FAILURE_REASON, PROCESSING_FAILURE)
    # PS3.18 10.5.3.1: 200 means the origin server stored every instance.
    unlisted = SUCCESS if http_status == HTTPStatus.OK else None
    return {uid: InstanceStatus(reported.get(uid, unlisted)) for uid in sop_instance_uids}


def _json_object(body: bytes) -> Mapping[str, Any]:
    try:
        found = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StowResponseError(f"the STOW-RS response is not JSON: {exc}") from None
    if isinstance(found, list) and len(found) == 1:
        found = found[0]  # some servers answer a DICOM JSON array of the one data set
    if not isinstance(found, dict):
        raise StowResponseError("the STOW-RS response is not a DICOM JSON data set")
    return found


def _items(dataset: Mapping[str, Any], tag: str) -> list[Mapping[str, Any]]:
    element = dataset.get(tag) or {}
    items = (element.get("Value") or []) if isinstance(element, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise StowResponseError(f"the STOW-RS response's ({tag[:4]},{tag[4:]}) is not a sequence")
    return items


def _uid(item: Mapping[str, Any]) -> str:
    values = (item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or []
    if not values or not isinstance(values[0], str):
        raise StowResponseError("a STOW-RS response item without a Referenced SOP Instance UID")
    return values[0]


def _code(item: Mapping[str, Any], tag: str, default: int) -> int:
    values = (item.get(tag) or {}).get("Value") or []
    if not values:
        return default
    value = values[0]
    if isinstance(value, str):  # a US value is a JSON number; be lenient with "A900"
        try:
            value = int(value, 16)
        except ValueError:
            raise StowResponseError(
                f"a STOW-RS response's ({tag[:4]},{tag[4:]}) is {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise StowResponseError(f"a STOW-RS response's ({tag[:4]},{tag[4:]}) is {value!r}")
    return value
