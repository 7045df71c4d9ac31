"""The envelope is CloudEvents 1.0 (JSON event format), built from a PendingEvent.

CloudEvents 1.0: the required attributes id, source, specversion and type;
extension attribute names of lower-case ASCII letters and digits; an RFC 3339
time. Ours adds subject (the association), time, datacontenttype and the
extensions sequence and schemaversion, on every event, and retrieveuri on the
events of an edge that serves C-GET.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from dicombus.bus.envelope import (
    EXTENSION_ATTRIBUTES,
    REQUIRED_ATTRIBUTES,
    SCHEMA_VERSION,
    PendingEvent,
    RetrieveAddress,
    format_time,
    is_extension_name,
    parse_retrieve_uri,
    parse_time,
    retrieve_uri,
    source_uri,
    to_envelope,
)
from dicombus.ulid import new_ulid

# CloudEvents 1.0 "Context Attributes": the ones the specification defines.
CLOUDEVENTS_ATTRIBUTES = {
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
}


def pending(**changes: Any) -> PendingEvent:
    values: dict[str, Any] = {
        "event_type": "EVT_C_ECHO",
        "id": new_ulid(),
        "subject": new_ulid(),
        "sequence": 3,
        "time": datetime(2026, 11, 22, 21, 0, 0, 123456, tzinfo=UTC),
        "source": source_uri("edge-1", "EDGE"),
        "build_data": lambda: {"association": {}, "status": 0},
    }
    values.update(changes)
    return PendingEvent(**values)


def test_required_attributes_and_our_extensions() -> None:
    envelope = pending().to_envelope()
    assert envelope["specversion"] == "1.0"
    assert all(envelope[name] for name in REQUIRED_ATTRIBUTES)
    assert envelope["type"] == "EVT_C_ECHO"
    assert envelope["source"] == "dicombus://edge-1/EDGE"
    assert envelope["time"] == "2026-11-22T21:00:00.123456Z"
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["sequence"] == 3
    assert envelope["schemaversion"] == SCHEMA_VERSION == "1"
    assert envelope["data"] == {"association": {}, "status": 0}
    assert json.loads(json.dumps(envelope)) == envelope


def test_extension_names_are_lowercase_alphanumeric_and_not_cloudevents_own() -> None:
    envelope = pending(retrieve_uri=retrieve_uri("EDGE", "10.0.0.2", 11112)).to_envelope()
    extensions = set(envelope) - CLOUDEVENTS_ATTRIBUTES
    assert extensions == set(EXTENSION_ATTRIBUTES) == {"sequence", "schemaversion", "retrieveuri"}
    assert all(is_extension_name(name) for name in envelope)
    assert not is_extension_name("schemaVersion")
    assert not is_extension_name("schema_version")
    assert not is_extension_name("a" * 21)


def test_retrieve_uri_only_from_an_edge_that_serves_c_get() -> None:
    assert "retrieveuri" not in pending().to_envelope()
    envelope = pending(retrieve_uri=retrieve_uri("EDGE 1", "::1", 104)).to_envelope()
    assert envelope["retrieveuri"] == "dicom://EDGE%201@[::1]:104"
    assert parse_retrieve_uri(envelope["retrieveuri"]) == RetrieveAddress("EDGE 1", "::1", 104)


def test_an_edge_that_speaks_tls_says_dicom_tls() -> None:
    # The scheme DIMSE destinations over TLS are shown with (PS3.15 B.1).
    uri = retrieve_uri("EDGE", "edge-1.example", 2762, tls=True)
    assert uri == "dicom-tls://EDGE@edge-1.example:2762"
    assert parse_retrieve_uri(uri) == RetrieveAddress("EDGE", "edge-1.example", 2762, tls=True)
    assert parse_retrieve_uri(retrieve_uri("EDGE", "edge-1.example", 104)).tls is False


@pytest.mark.parametrize(
    "text",
    ["dicom://host:104", "http://EDGE@host:104", "dicom://EDGE@host", "dicoms://EDGE@host:104"],
)
def test_a_bad_retrieve_uri_is_named(text: str) -> None:
    with pytest.raises(
        ValueError, match="is not a dicom:// or dicom-tls://<AE title>@<host>:<port> address"
    ):
        parse_retrieve_uri(text)


def test_data_is_built_when_the_envelope_is_made_not_before() -> None:
    calls: list[int] = []

    def build() -> dict[str, Any]:
        calls.append(1)
        return {"n": len(calls)}

    event = pending(build_data=build)
    assert calls == []
    assert to_envelope(event)["data"] == {"n": 1}
    assert event.to_envelope()["data"] == {"n": 2}


def test_time_is_utc_with_a_z_and_round_trips() -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 22, 22, 0, 0, 5, tzinfo=paris)
    text = format_time(moment)
    assert text == "2026-11-22T21:00:00.000005Z"
    assert parse_time(text) == moment
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 11, 22))


def test_source_quotes_what_a_uri_cannot_hold() -> None:
    assert source_uri("edge 1", "MY AE ") == "dicombus://edge%201/MY%20AE"
    assert source_uri("edge-1", "A/B") == "dicombus://edge-1/A%2FB"
