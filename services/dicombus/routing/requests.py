"""From a routed C-STORE event to a delivery request: what the deliverer needs, and no more.

The request names the stored file and the instance's SOP class and transfer syntax (to
negotiate contexts), and keeps what the routing events report (docs/audit.md): the rule,
the unit routed, the study, the patient, the calling AE and the source edge, and where
the edge serves C-GET for it (the event's ``retrieveuri``) with its stored size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from dicombus.routing import rules
from dicombus.routing.delivery_store import DeliveryRequest
from dicombus.routing.rules import Route

PATIENT_ID = "00100020"
PATIENT_NAME = "00100010"
ACCESSION_NUMBER = "00080050"


def study_of(envelope: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (Study, Series Instance UID) of a C-STORE event's instance, if it has both."""
    study = _first(envelope, rules.STUDY_INSTANCE_UID)
    series = _first(envelope, rules.SERIES_INSTANCE_UID)
    return None if study is None or series is None else (study, series)


def study_context(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """What the routing events and STUDY_STABLE say about the instance's study and source."""
    data: Mapping[str, Any] = envelope.get("data") or {}
    association: Mapping[str, Any] = data.get("association") or {}
    return {
        "study_instance_uid": _first(envelope, rules.STUDY_INSTANCE_UID),
        "patient_id": _first(envelope, PATIENT_ID),
        "patient_name": _first(envelope, PATIENT_NAME),
        "accession_number": _first(envelope, ACCESSION_NUMBER),
        "calling_ae_title": association.get("calling_ae_title"),
        "edge": unquote(urlsplit(str(envelope.get("source") or "")).netloc),
    }


def delivery_request(envelope: Mapping[str, Any], route: Route) -> DeliveryRequest:
    data: Mapping[str, Any] = envelope.get("data") or {}
    return DeliveryRequest(
        sop_instance_uid=route.sop_instance_uid,
        destination=route.destination,
        sop_class_uid=str(data.get("sop_class_uid") or ""),
        transfer_syntax=str(data.get("transfer_syntax") or ""),
        stored_path=str(data.get("stored_path") or ""),
        event_id=str(envelope.get("id") or ""),
        context={
            "rule": route.rule,
            "per": route.per.value,
            "unit_uid": route.uid,
            # Where a worker that cannot read stored_path fetches the instance (C-GET).
            "retrieve_uri": envelope.get("retrieveuri"),
            "series_instance_uid": _first(envelope, rules.SERIES_INSTANCE_UID),
            "stored_size": data.get("stored_size"),
            **({} if route.quiet_seconds is None else {"quiet_seconds": route.quiet_seconds}),
            **study_context(envelope),
        },
    )


def _first(envelope: Mapping[str, Any], tag: str) -> str | None:
    values = rules.attribute((tag,))(envelope)
    return values[0] if values else None
