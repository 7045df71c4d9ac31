"""ATNA audit messages from events, each validated against the PS3.15 A.5.1.1 schema.

The schema is the DICOM Standard's own (schema/audit-message.rnc, converted to
schema/audit-message.rng), checked by libxml2's RELAX NG validator through lxml.
"""

from __future__ import annotations

import base64
import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from atna_support import c_store, conn_close, envelope, study, validate
from dicombus.dataset_codec import decode_dataset
from dicombus_workers.atna import from_events
from dicombus_workers.atna.from_events import Reporter
from dicombus_workers.atna.messages import to_xml
from dicombus_workers.atna.spool import Spool
from lxml import etree
from pydicom.dataset import Dataset

REPORTER = Reporter(hostname="audit-host")


def _code(document: etree._Element, path: str) -> tuple[str, str]:
    element = document.find(path)
    assert element is not None, path
    return element.get("csd-code"), element.get("codeSystemName")


def _roles(document: etree._Element) -> dict[str, etree._Element]:
    return {p.find("RoleIDCode").get("csd-code"): p for p in document.findall("ActiveParticipant")}


def test_the_schema_rejects_a_message_missing_its_audit_source() -> None:
    # The validator is real: a message without AuditSourceIdentification fails.
    message = from_events.application_activity(True, REPORTER, datetime.now(UTC))
    document = etree.fromstring(to_xml(message))
    document.remove(document.find("AuditSourceIdentification"))
    try:
        validate(etree.tostring(document))
    except AssertionError as error:
        assert "AuditSourceIdentification" in str(error) or "Expecting" in str(error)
    else:
        raise AssertionError("the schema accepted a message without AuditSourceIdentification")


def test_application_activity_start_and_stop() -> None:
    for start, type_code in ((True, "110120"), (False, "110121")):
        document = validate(
            to_xml(from_events.application_activity(start, REPORTER, datetime.now(UTC)))
        )
        assert _code(document, "EventIdentification/EventID") == ("110100", "DCM")
        assert _code(document, "EventIdentification/EventTypeCode") == (type_code, "DCM")
        assert document.find("EventIdentification").get("EventActionCode") == "E"
        roles = _roles(document)
        assert roles["110150"].get("UserID") == "dicombus-worker@audit-host"
        # A.5.3.1: the account that runs the worker, its Application Launcher.
        assert roles["110151"].get("UserID") == getpass.getuser()
        assert roles["110151"].get("UserIsRequestor") == "true"


def test_node_started_and_stopped_are_the_edges_application_activity() -> None:
    for event_type, type_code in (
        ("dicombus.node.started", "110120"),
        ("dicombus.node.stopped", "110121"),
    ):
        data = {
            "edge": "edge-7",
            "ae_title": "EDGE",
            "host": "0.0.0.0",
            "port": 11112,
            "hostname": "edge-host",
            "pid": 4321,
            "user": "dicombus",
            "version": "9.9",
        }
        record = envelope(event_type, data)
        document = validate(to_xml(from_events.node_activity(record, REPORTER)))
        assert _code(document, "EventIdentification/EventID") == ("110100", "DCM")
        assert _code(document, "EventIdentification/EventTypeCode") == (type_code, "DCM")
        roles = _roles(document)
        edge = roles["110150"]
        assert edge.get("UserID") == "edge-7"
        assert edge.get("AlternativeUserID") == "AETITLES=EDGE"
        assert edge.get("UserName") == "dicombus 9.9"
        # Bound to every address: the machine's name (1), not 0.0.0.0.
        assert edge.get("NetworkAccessPointID") == "edge-host"
        assert edge.get("NetworkAccessPointTypeCode") == "1"
        assert roles["110151"].get("UserID") == "dicombus"
        assert document.find("AuditSourceIdentification").get("AuditSourceID") == "edge-1"
        # Who started it not known: no Application Launcher (it is 0..N).
        del record.data["user"]
        assert set(_roles(validate(to_xml(from_events.node_activity(record, REPORTER))))) == {
            "110150"
        }


def test_instances_transferred_per_association_and_study(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    first, second = study("P-1"), study("P-2")
    other_series = study("P-1")
    other_series.StudyInstanceUID = first.StudyInstanceUID
    stores = [c_store(ds, association="A1") for ds in (first, other_series, second)]
    stores.append(c_store(study("P-1"), association="A1", status="Failure"))
    stores[-1].data["dataset"] = stores[0].data["dataset"]  # the failed one: first's study

    def render(instances: list) -> list[bytes]:
        messages = from_events.instances_transferred(instances, REPORTER, stores[0].timestamp)
        return [to_xml(message) for message in messages]

    for record in stores:
        spool.add_transfer(record.id, "A1", from_events.stored_instance(record), render)
    assert spool.count() == 0, "held until the association ends"
    close = conn_close("A1")
    spool.close_association(close.id, "A1", close.time, render)
    spool.close_association(close.id, "A1", close.time, render)  # redelivered: nothing new
    documents = [validate(body) for _seq, body in spool.pending(10)]
    assert len(documents) == 2, "one message per study"
    by_study = {
        d.find("ParticipantObjectIdentification[@ParticipantObjectTypeCodeRole='3']").get(
            "ParticipantObjectID"
        ): d
        for d in documents
    }
    document = by_study[str(first.StudyInstanceUID)]
    assert _code(document, "EventIdentification/EventID") == ("110104", "DCM")
    event = document.find("EventIdentification")
    assert event.get("EventActionCode") == "C"
    assert event.get("EventOutcomeIndicator") == "4"  # one of three not stored
    roles = _roles(document)
    assert roles["110153"].get("UserID") == "MODALITY"  # the source: the calling AE
    assert roles["110153"].get("UserIsRequestor") == "true"
    assert roles["110153"].get("NetworkAccessPointID") == "127.0.0.1"
    assert roles["110152"].get("UserID") == "EDGE"  # the destination: us
    study_object = document.find(
        "ParticipantObjectIdentification[@ParticipantObjectTypeCodeRole='3']"
    )
    assert _code(study_object, "ParticipantObjectIDTypeCode") == ("110180", "DCM")
    sop_class = study_object.find("ParticipantObjectDescription/SOPClass")
    assert sop_class.get("UID") == str(first.SOPClassUID)
    assert sop_class.get("NumberOfInstances") == "2"
    assert study_object.find("ParticipantObjectDescription/Accession").get("Number") == "ACC-1"
    patient = document.find("ParticipantObjectIdentification[@ParticipantObjectTypeCodeRole='1']")
    assert patient.get("ParticipantObjectID") == "P-1"
    assert _code(patient, "ParticipantObjectIDTypeCode") == ("2", "RFC-3881")
    assert patient.find("ParticipantObjectName").text == "Doe^Jane"
    other = by_study[str(second.StudyInstanceUID)]
    assert other.find("EventIdentification").get("EventOutcomeIndicator") == "0"


def test_a_store_after_its_association_closed_gets_its_own_message(tmp_path: Path) -> None:
    # Pool processes may run a C-STORE after its association's close: counted, not held.
    spool = Spool(tmp_path / "spool.sqlite3")

    def render(instances: list) -> list[bytes]:
        now = datetime.now(UTC)
        return [to_xml(m) for m in from_events.instances_transferred(instances, REPORTER, now)]

    close = conn_close("A2")
    spool.close_association(close.id, "A2", close.time, render)
    late = c_store(study(), association="A2")
    spool.add_transfer(late.id, "A2", from_events.stored_instance(late), render)
    assert [validate(body) is not None for _seq, body in spool.pending(10)] == [True]


def test_query_carries_the_identifier() -> None:
    record = envelope(
        "EVT_C_FIND",
        {
            "sop_class_uid": "1.2.840.10008.5.1.4.1.2.2.1",
            "identifier": {
                "00080052": {"vr": "CS", "Value": ["STUDY"]},
                "00100020": {"vr": "LO", "Value": ["P-0001"]},
            },
            "status": 0,
            "status_category": "Success",
        },
    )
    document = validate(to_xml(from_events.query(record, REPORTER)))
    assert _code(document, "EventIdentification/EventID") == ("110112", "DCM")
    query_object = document.find("ParticipantObjectIdentification")
    assert query_object.get("ParticipantObjectID") == "1.2.840.10008.5.1.4.1.2.2.1"
    assert _code(query_object, "ParticipantObjectIDTypeCode") == ("110181", "DCM")
    encoded = base64.b64decode(query_object.find("ParticipantObjectQuery").text)
    identifier = decode_dataset(encoded, "1.2.840.10008.1.2.1")
    assert identifier.QueryRetrieveLevel == "STUDY" and identifier.PatientID == "P-0001"
    detail = query_object.find("ParticipantObjectDetail")
    assert detail.get("type") == "TransferSyntax"
    assert base64.b64decode(detail.get("value")) == b"1.2.840.10008.1.2.1"
    assert set(_roles(document)) == {"110153", "110152"}


def test_user_authentication_verified_and_refused() -> None:
    verified = envelope(
        "EVT_USER_ID", {"user_identity_type": 2, "username": "tech1", "verified": True}
    )
    [document] = [validate(to_xml(m)) for m in from_events.user_authentication(verified, REPORTER)]
    assert _code(document, "EventIdentification/EventID") == ("110114", "DCM")
    assert _code(document, "EventIdentification/EventTypeCode") == ("110122", "DCM")
    assert document.find("EventIdentification").get("EventOutcomeIndicator") == "0"
    assert document.find("ActiveParticipant").get("UserID") == "tech1"

    refused = envelope(
        "EVT_USER_ID", {"user_identity_type": 1, "username": "intruder", "verified": False}
    )
    login, alert = [validate(to_xml(m)) for m in from_events.user_authentication(refused, REPORTER)]
    assert login.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    assert _code(alert, "EventIdentification/EventID") == ("110113", "DCM")
    assert _code(alert, "EventIdentification/EventTypeCode") == ("110126", "DCM")


def test_rejected_association_is_a_security_alert() -> None:
    record = envelope(
        "EVT_REJECTED",
        {"result": 1, "source": 1, "reason": 3, "description": "calling AE title not recognized"},
    )
    document = validate(to_xml(from_events.association_rejected(record, REPORTER)))
    assert _code(document, "EventIdentification/EventID") == ("110113", "DCM")
    subject = document.find("ParticipantObjectIdentification")
    assert subject.get("ParticipantObjectID") == "dicom://MODALITY@127.0.0.1"
    detail = subject.find("ParticipantObjectDetail")
    assert b"calling AE title not recognized" in base64.b64decode(detail.get("value"))


def test_a_failed_tls_handshake_is_a_security_alert() -> None:
    # EVT_CONN_CLOSE with tls_error: no A-ASSOCIATE-RQ came, so no AE titles.
    record = envelope(
        "EVT_CONN_CLOSE",
        {
            "address": "127.0.0.1",
            "port": 50000,
            "tls_error": "[SSL: WRONG_VERSION_NUMBER] wrong version number",
        },
    )
    record.data["association"].update(calling_ae_title=None, called_ae_title=None)
    document = validate(to_xml(from_events.tls_failure(record, REPORTER)))
    assert _code(document, "EventIdentification/EventID") == ("110113", "DCM")
    assert _code(document, "EventIdentification/EventTypeCode") == ("110126", "DCM")
    assert document.find("EventIdentification").get("EventOutcomeIndicator") == "4"
    peer = document.find("ActiveParticipant[@UserIsRequestor='true']")
    assert peer.get("UserID") == "127.0.0.1"
    subject = document.find("ParticipantObjectIdentification")
    assert subject.get("ParticipantObjectID") == "127.0.0.1"
    assert subject.find("ParticipantObjectIDTypeCode").get("csd-code") == "110182"
    detail = base64.b64decode(subject.find("ParticipantObjectDetail").get("value"))
    assert b"WRONG_VERSION_NUMBER" in detail


def _route_send(ds: Dataset, instance: dict[str, Any], error: str | None) -> dict[str, Any]:
    """A routing send's event data (docs/audit.md, "Routing events"): one instance of ``ds``
    to PACS at 10.0.0.5, with ``instance``'s outcome fields."""
    return {
        "destination": {"name": "pacs", "ae_title": "PACS", "host": "10.0.0.5", "port": 104},
        "calling_ae_title": "EDGE",
        "study_instance_uid": str(ds.StudyInstanceUID),
        "patient_id": "P-0001",
        "patient_name": "Doe^Jane",
        "accession_number": "ACC-1",
        "instances": [
            {
                "sop_class_uid": str(ds.SOPClassUID),
                "sop_instance_uid": str(ds.SOPInstanceUID),
                **instance,
            }
        ],
        "error": error,
    }


def test_routing_send_begin_and_transferred() -> None:
    # The shape routing will publish (docs/audit.md, "Routing events").
    data = _route_send(study(), {"status_category": "Success"}, None)
    begin = validate(
        to_xml(from_events.route_send(envelope(from_events.ROUTE_BEGIN, data), REPORTER))
    )
    assert _code(begin, "EventIdentification/EventID") == ("110102", "DCM")
    assert begin.find("EventIdentification").get("EventActionCode") == "E"
    sent = validate(
        to_xml(from_events.route_send(envelope(from_events.ROUTE_SENT, data), REPORTER))
    )
    assert _code(sent, "EventIdentification/EventID") == ("110104", "DCM")
    assert sent.find("EventIdentification").get("EventActionCode") == "R"
    roles = _roles(sent)
    assert (
        roles["110153"].get("UserID") == "EDGE" and roles["110153"].get("UserIsRequestor") == "true"
    )
    assert roles["110152"].get("UserID") == "PACS"
    assert roles["110152"].get("NetworkAccessPointID") == "10.0.0.5"


def test_a_send_that_failed_as_a_whole_is_one_failed_instances_transferred() -> None:
    # No association (docs/audit.md): the instances have no status, and one event of the
    # send, ``closes_send``, stands for the Instances Transferred that ``begin`` opened.
    ds = study()
    failed = {
        "status": None,
        "status_category": "Failure",
        "outcome": "retry",
        "reason": "cannot connect",
    }
    data = _route_send(ds, failed, "cannot connect to 10.0.0.5:104: connection refused")
    for event_type, outcome in (
        (from_events.ROUTE_FAILED, "4"),  # A.5.1.1: minor failure, tried again
        (from_events.ROUTE_DEAD_LETTER, "8"),  # serious failure, given up
    ):
        other = envelope(event_type, {**data, "closes_send": False})
        assert not from_events.closes_failed_send(other), "only the closing event counts"
        record = envelope(event_type, {**data, "closes_send": True})
        assert from_events.closes_failed_send(record)
        document = validate(to_xml(from_events.route_send(record, REPORTER)))
        assert _code(document, "EventIdentification/EventID") == ("110104", "DCM")
        event = document.find("EventIdentification")
        assert event.get("EventActionCode") == "R"
        assert event.get("EventOutcomeIndicator") == outcome
        assert event.find("EventOutcomeDescription").text == data["error"]
        assert _roles(document)["110152"].get("UserID") == "PACS"
        study_object = document.find("ParticipantObjectIdentification")
        assert study_object.get("ParticipantObjectID") == str(ds.StudyInstanceUID)
        assert study_object.find("ParticipantObjectDescription/SOPClass") is None, "none sent"
