"""An event's envelope as a row of the ``events`` table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from dicombus.bus.envelope import format_time, parse_time
from dicombus.bus.json_text import dumps

# PS3.18 F.2: DICOM JSON keys are the tag as eight upper-case hex digits.
PATIENT_ID = "00100020"
STUDY_INSTANCE_UID = "0020000D"
ACCESSION_NUMBER = "00080050"
DICOM_KEYS = {
    "patient_id": PATIENT_ID,
    "study_instance_uid": STUDY_INSTANCE_UID,
    "accession_number": ACCESSION_NUMBER,
}
# Where an event carries a data set: the request's (C-STORE, N-*) or the query's
# identifier (C-FIND, C-GET, C-MOVE: the keys a peer asked for, wildcards included).
DATASET_FIELDS = ("dataset", "identifier")
# format_time's output: RFC 3339, UTC, microseconds.
_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def audit_row(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The row of one event (the envelope as published, see docs/events.md)."""
    data: Mapping[str, Any] = envelope.get("data") or {}
    association: Mapping[str, Any] = data.get("association") or {}
    status = data.get("status")
    return {
        "id": envelope["id"],
        "type": envelope["type"],
        "time": canonical_time(envelope["time"]),
        "edge": _edge(str(envelope.get("source", ""))),
        "subject": envelope.get("subject", ""),
        "sequence": int(envelope.get("sequence", 0)),
        "calling_ae_title": association.get("calling_ae_title"),
        "called_ae_title": association.get("called_ae_title"),
        "status": int(status) if status is not None else None,
        # orjson (dicombus.bus.json_text), as the publisher wrote it: the standard
        # module's dumps was two thirds of a row's cost in the worker.
        "envelope": dumps(envelope).decode(),
        **dicom_attributes(data),
    }


def canonical_time(text: str) -> str:
    """The time as :func:`format_time` writes it (what edges send): text order is time order
    whatever offset another sender used."""
    return text if _CANONICAL_TIME.fullmatch(text) else format_time(parse_time(text))


def dicom_attributes(data: Mapping[str, Any]) -> dict[str, str | None]:
    """Patient ID, Study Instance UID and Accession Number from the event's DICOM JSON."""
    found: dict[str, str | None] = dict.fromkeys(DICOM_KEYS)
    for field in DATASET_FIELDS:
        model = data.get(field)
        if not isinstance(model, Mapping):
            continue
        for column, tag in DICOM_KEYS.items():
            if found[column] is None:
                found[column] = _first_value(model.get(tag))
    return found


def _first_value(element: Any) -> str | None:
    # PS3.18 F.2.2: "Value" is absent for an empty element; a value too long to
    # travel inline is a BulkDataURI (never these short attributes).
    if not isinstance(element, Mapping):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values or not isinstance(values[0], str):
        return None
    return values[0].strip() or None


def _edge(source: str) -> str:
    """The edge id of ``dicombus://<edge id>/<AE title>`` (the records' ``event.edge``)."""
    return unquote(urlsplit(source).netloc)
