"""Which bus events make which audit messages (PS3.15 A.5.3), and their contents.

- EVT_C_STORE: a :class:`StoredInstance` kept until the association ends, then
  one DICOM Instances Transferred (A.5.3.7) per study, action C (the edge
  created the instances): :func:`instances_transferred`.
- EVT_C_FIND: Query (A.5.3.10), the identifier encoded Explicit VR Little
  Endian, base64 in ParticipantObjectQuery.
- EVT_USER_ID: User Authentication (A.5.3.12), Login, outcome 0 when the
  identity was verified (or not checked: the edge accepted it), 4 when refused;
  a refused identity is also a Security Alert.
- EVT_REJECTED: Security Alert (A.5.3.11), Node Authentication.
- EVT_CONN_CLOSE with ``tls_error`` (a failed TLS handshake on the edge):
  Security Alert, Node Authentication, the peer's address as Node ID.
- Routing sends (:data:`ROUTE_BEGIN`, :data:`ROUTE_SENT`): Begin Transferring
  DICOM Instances (A.5.3.3) and DICOM Instances Transferred, action R; their
  ``data`` is documented in docs/audit.md. A send the destination answered
  nothing of ends with the :data:`ROUTE_FAILED` or :data:`ROUTE_DEAD_LETTER`
  that has ``closes_send`` set: its Instances Transferred, with a failure outcome.
- The edge's start and stop (``dicombus.node.started`` / ``stopped``) and the
  worker's own: Application Activity (A.5.3.1), each naming its application.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dicombus.bus.node_events import NODE_STARTED, login_name
from dicombus.dataset_codec import encode_dataset

from dicombus_workers.atna import codes
from dicombus_workers.atna.messages import (
    ActiveParticipant,
    AuditMessage,
    ParticipantObject,
    SopClassCount,
)
from dicombus_workers.records import EventRecord

# The event types routing publishes for each send to a destination (docs/audit.md).
ROUTE_BEGIN = "dicombus.route.begin"
ROUTE_SENT = "dicombus.route.sent"
ROUTE_FAILED = "dicombus.route.failed"
ROUTE_DEAD_LETTER = "dicombus.route.dead_letter"
# PS3.15 A.5.1.1 EventOutcomeIndicator of a send that ended with no instance answered:
# 4 (minor failure, the action restarted) when the instances are tried again, 8 (serious
# failure, the action terminated) when they became dead letters.
_SEND_FAILURE = {ROUTE_FAILED: codes.MINOR_FAILURE, ROUTE_DEAD_LETTER: codes.SERIOUS_FAILURE}
# PS3.7 C: the status classes of a C-STORE that stored the instance.
_STORED = frozenset({"Success", "Warning"})


@dataclass(frozen=True, slots=True)
class Reporter:
    """Who reports: AuditSourceID (default: the event's edge id) and this host's name."""

    hostname: str
    source_id: str | None = None
    enterprise_site: str | None = None

    def source(self, record: EventRecord | None = None) -> str:
        if self.source_id:
            return self.source_id
        return record.edge if record is not None and record.edge else self.hostname


def stored_instance(record: EventRecord) -> dict[str, Any]:
    """What an EVT_C_STORE contributes to its study's Instances Transferred (JSON values)."""
    data = record.data
    dataset = record.dataset
    peer = _peer(record)
    return {
        "time": record.time,
        "source_id": record.edge,
        "local_ae": record.source_ae_title,
        "peer_ae": peer.user_id,
        "peer_address": peer.network_access_point,
        "peer_is_requestor": peer.is_requestor,
        "study": _text(dataset, "StudyInstanceUID"),
        "patient_id": _text(dataset, "PatientID"),
        "patient_name": _text(dataset, "PatientName"),
        "accession": _text(dataset, "AccessionNumber"),
        "sop_class": data.get("sop_class_uid") or "",
        "stored": data.get("status_category") in _STORED,
    }


def instances_transferred(
    instances: Iterable[Mapping[str, Any]], reporter: Reporter, time: datetime
) -> list[AuditMessage]:
    """One DICOM Instances Transferred per study of ``instances`` (one association's)."""
    by_study: dict[str, list[Mapping[str, Any]]] = {}
    for instance in instances:
        by_study.setdefault(instance["study"], []).append(instance)
    messages = []
    for study, members in by_study.items():
        first = members[0]
        source = ActiveParticipant(
            user_id=first["peer_ae"],
            alternative_user_id=f"AETITLES={first['peer_ae']}",
            is_requestor=first["peer_is_requestor"],
            role=codes.ROLE_SOURCE,
            network_access_point=first["peer_address"],
        )
        destination = _local(first["local_ae"], reporter, not first["peer_is_requestor"])
        failed = sum(1 for member in members if not member["stored"])
        messages.append(
            AuditMessage(
                event_id=codes.INSTANCES_TRANSFERRED,
                # A.5.3.7: "C" when the receiver created the instances.
                action=codes.ACTION_CREATE,
                time=time,
                outcome=codes.MINOR_FAILURE if failed else codes.SUCCESS,
                outcome_description=(
                    f"{failed} of {len(members)} instances not stored" if failed else None
                ),
                participants=(source, destination),
                source_id=reporter.source_id or first["source_id"],
                enterprise_site=reporter.enterprise_site,
                objects=(
                    _study(study, first["accession"], members),
                    _patient(first["patient_id"], first["patient_name"]),
                ),
            )
        )
    return messages


def query(record: EventRecord, reporter: Reporter) -> AuditMessage:
    """A.5.3.10 Query: the C-FIND identifier in ParticipantObjectQuery."""
    identifier = record.identifier
    encoded = encode_dataset(identifier, codes.EXPLICIT_VR_LITTLE_ENDIAN) if identifier else b""
    peer = _peer(record)
    return AuditMessage(
        event_id=codes.QUERY,
        action=codes.ACTION_EXECUTE,
        time=record.timestamp,
        outcome=_outcome(record),
        participants=(
            _with_role(peer, codes.ROLE_SOURCE),
            _local(record.source_ae_title, reporter, not peer.is_requestor, codes.ROLE_DESTINATION),
        ),
        source_id=reporter.source(record),
        enterprise_site=reporter.enterprise_site,
        objects=(
            ParticipantObject(
                object_id=record.data.get("sop_class_uid") or "",
                id_type=codes.SOP_CLASS_UID,
                type_code=codes.TYPE_SYSTEM_OBJECT,
                role=codes.ROLE_REPORT,
                query=encoded,
                # A.5.3.10: the transfer syntax the query is encoded in.
                details=(("TransferSyntax", codes.EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii")),),
            ),
        ),
    )


def user_authentication(record: EventRecord, reporter: Reporter) -> list[AuditMessage]:
    """A.5.3.12 User Authentication (Login); a refused identity adds a Security Alert."""
    refused = record.data.get("verified") is False
    kind = record.data.get("user_identity_type")
    username = record.data.get("username") or f"user identity type {kind}"
    peer = _peer(record)
    user = ActiveParticipant(
        user_id=username,
        is_requestor=True,
        alternative_user_id=f"AETITLES={peer.user_id}",
        network_access_point=peer.network_access_point,
    )
    messages = [
        AuditMessage(
            event_id=codes.USER_AUTHENTICATION,
            action=codes.ACTION_EXECUTE,
            time=record.timestamp,
            outcome=codes.MINOR_FAILURE if refused else codes.SUCCESS,
            outcome_description="user identity refused" if refused else None,
            event_types=(codes.LOGIN,),
            participants=(user, _local(record.source_ae_title, reporter, False)),
            source_id=reporter.source(record),
            enterprise_site=reporter.enterprise_site,
        )
    ]
    if refused:
        messages.append(security_alert(record, reporter, f"user identity {username!r} refused"))
    return messages


def security_alert(
    record: EventRecord,
    reporter: Reporter,
    description: str,
    subject: tuple[str, codes.Code] | None = None,
) -> AuditMessage:
    """A.5.3.11 Security Alert, Node Authentication: the peer node is the alert's subject
    (``subject``: its id and id type; default the URI ``dicom://AE@address``)."""
    peer = _peer(record)
    if subject is None:
        subject = (f"dicom://{peer.user_id}@{peer.network_access_point or '-'}", codes.URI)
    return AuditMessage(
        event_id=codes.SECURITY_ALERT,
        action=codes.ACTION_EXECUTE,
        time=record.timestamp,
        outcome=codes.MINOR_FAILURE,
        outcome_description=description,
        event_types=(codes.NODE_AUTHENTICATION,),
        participants=(
            _local(record.source_ae_title, reporter, False),
            ActiveParticipant(
                user_id=peer.user_id or peer.network_access_point or "-",
                is_requestor=True,
                network_access_point=peer.network_access_point,
            ),
        ),
        source_id=reporter.source(record),
        enterprise_site=reporter.enterprise_site,
        objects=(
            ParticipantObject(
                object_id=subject[0],
                id_type=subject[1],
                type_code=codes.TYPE_SYSTEM_OBJECT,
                role=codes.ROLE_SECURITY_RESOURCE,
                details=(("Alert Description", description.encode("utf-8")),),
            ),
        ),
    )


def association_rejected(record: EventRecord, reporter: Reporter) -> AuditMessage:
    description = record.data.get("description") or "association rejected"
    return security_alert(record, reporter, f"association rejected: {description}")


def tls_failure(record: EventRecord, reporter: Reporter) -> AuditMessage:
    """A failed TLS handshake on the edge (EVT_CONN_CLOSE with ``tls_error``): a Security
    Alert, Node Authentication (PS3.16 CID 403: "a secure node authentication failure",
    as IHE ATNA uses it for TLS). No AE title was ever sent: the node is its address."""
    address = record.data.get("address") or record.assoc.requestor.address or "-"
    return security_alert(
        record,
        reporter,
        f"TLS handshake failed: {record.data.get('tls_error')}",
        subject=(address, codes.NODE_ID),
    )


def closes_failed_send(record: EventRecord) -> bool:
    """A ``failed`` / ``dead_letter`` event that ends a send the destination answered
    nothing of: the only Instances Transferred that send gets (the others, and a send
    that was answered, end with ``sent``)."""
    return record.type in _SEND_FAILURE and bool(record.data.get("closes_send"))


def route_send(record: EventRecord, reporter: Reporter) -> AuditMessage:
    """A routing send: Begin Transferring (A.5.3.3) or Instances Transferred (A.5.3.7),
    from ``begin``, ``sent``, or the event that closes a failed send."""
    data = record.data
    destination_info: Mapping[str, Any] = data.get("destination") or {}
    begin = record.type == ROUTE_BEGIN
    instances: list[Mapping[str, Any]] = list(data.get("instances") or [])
    sent = [item for item in instances if begin or item.get("status_category") in _STORED]
    failed = len(instances) - len(sent)
    counts: dict[str, int] = {}
    for item in sent:
        counts[item["sop_class_uid"]] = counts.get(item["sop_class_uid"], 0) + 1
    source = _local(data.get("calling_ae_title") or record.source_ae_title, reporter, True)
    destination = ActiveParticipant(
        user_id=destination_info.get("ae_title") or destination_info.get("name") or "-",
        alternative_user_id=f"AETITLES={destination_info.get('ae_title', '')}",
        is_requestor=False,
        role=codes.ROLE_DESTINATION,
        network_access_point=destination_info.get("host"),
        network_access_point_type=codes.IP_ADDRESS,
    )
    error = data.get("error")
    outcome = codes.MINOR_FAILURE if failed or error else codes.SUCCESS
    return AuditMessage(
        event_id=codes.BEGIN_TRANSFERRING if begin else codes.INSTANCES_TRANSFERRED,
        # A.5.3.3: Execute; A.5.3.7: Read, the sender read what it had.
        action=codes.ACTION_EXECUTE if begin else codes.ACTION_READ,
        time=record.timestamp,
        outcome=_SEND_FAILURE.get(record.type, outcome),
        outcome_description=error
        or (f"{failed} of {len(instances)} instances not sent" if failed else None),
        participants=(_with_role(source, codes.ROLE_SOURCE), destination),
        source_id=reporter.source(record),
        enterprise_site=reporter.enterprise_site,
        objects=(
            ParticipantObject(
                object_id=data.get("study_instance_uid") or "",
                id_type=codes.STUDY_INSTANCE_UID,
                type_code=codes.TYPE_SYSTEM_OBJECT,
                role=codes.ROLE_REPORT,
                accessions=_present(data.get("accession_number")),
                sop_classes=tuple(SopClassCount(uid, n) for uid, n in counts.items()),
            ),
            _patient(data.get("patient_id") or "", data.get("patient_name") or ""),
        ),
    )


def node_activity(record: EventRecord, reporter: Reporter) -> AuditMessage:
    """A.5.3.1 Application Activity: the edge started or stopped (``dicombus.node.*``).

    The application is the edge (UserID its edge id, its AE title as
    AlternativeUserID per A.5.2.2, where it listens as NetworkAccessPointID); the
    account that runs it is the Application Launcher."""
    data = record.data
    host = str(data.get("host") or "")
    address = _listening_address(host)
    application = ActiveParticipant(
        user_id=str(data.get("edge") or record.edge),
        alternative_user_id=f"AETITLES={data.get('ae_title') or record.source_ae_title}",
        user_name=f"dicombus {data.get('version') or ''}".strip(),
        is_requestor=False,
        role=codes.ROLE_APPLICATION,
        network_access_point=address or data.get("hostname") or None,
        network_access_point_type=codes.IP_ADDRESS if address else codes.MACHINE_NAME,
    )
    return _application_activity(
        record.type == NODE_STARTED,
        application,
        data.get("user"),
        reporter,
        record.timestamp,
        reporter.source(record),
    )


def application_activity(start: bool, reporter: Reporter, time: datetime) -> AuditMessage:
    """A.5.3.1 Application Activity: this audit worker started or stopped."""
    worker = ActiveParticipant(
        user_id=f"dicombus-worker@{reporter.hostname}",
        alternative_user_id=str(os.getpid()),
        is_requestor=False,
        role=codes.ROLE_APPLICATION,
        network_access_point=reporter.hostname,
        network_access_point_type=codes.MACHINE_NAME,
    )
    return _application_activity(start, worker, login_name(), reporter, time, reporter.source())


def _application_activity(
    start: bool,
    application: ActiveParticipant,
    launcher: str | None,
    reporter: Reporter,
    time: datetime,
    source_id: str,
) -> AuditMessage:
    participants = [application]
    if launcher:
        # A.5.3.1: the person or process that started (or stopped) the application.
        participants.append(
            ActiveParticipant(
                user_id=launcher, is_requestor=True, role=codes.ROLE_APPLICATION_LAUNCHER
            )
        )
    return AuditMessage(
        event_id=codes.APPLICATION_ACTIVITY,
        action=codes.ACTION_EXECUTE,
        time=time,
        outcome=codes.SUCCESS,
        event_types=(codes.APPLICATION_START if start else codes.APPLICATION_STOP,),
        participants=tuple(participants),
        source_id=source_id,
        enterprise_site=reporter.enterprise_site,
    )


def _listening_address(host: str) -> str | None:
    """The edge's bound IP address; None for every address (0.0.0.0, ::) or a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return None if address.is_unspecified else host


def _peer(record: EventRecord) -> ActiveParticipant:
    """The remote node: the requestor when the edge accepted, else the acceptor."""
    assoc = record.assoc
    peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    return ActiveParticipant(
        user_id=peer.ae_title,
        alternative_user_id=f"AETITLES={peer.ae_title}",
        is_requestor=assoc.is_acceptor,
        network_access_point=peer.address,
    )


def _local(
    ae_title: str, reporter: Reporter, is_requestor: bool, role: codes.Code | None = None
) -> ActiveParticipant:
    return ActiveParticipant(
        user_id=ae_title,
        alternative_user_id=f"AETITLES={ae_title}",
        is_requestor=is_requestor,
        role=role or codes.ROLE_DESTINATION,
        network_access_point=reporter.hostname,
        network_access_point_type=codes.MACHINE_NAME,
    )


def _with_role(participant: ActiveParticipant, role: codes.Code) -> ActiveParticipant:
    return ActiveParticipant(
        user_id=participant.user_id,
        alternative_user_id=participant.alternative_user_id,
        is_requestor=participant.is_requestor,
        role=role,
        network_access_point=participant.network_access_point,
        network_access_point_type=participant.network_access_point_type,
    )


def _study(study: str, accession: str, members: Iterable[Mapping[str, Any]]) -> ParticipantObject:
    counts: dict[str, int] = {}
    for member in members:
        if member["stored"]:
            counts[member["sop_class"]] = counts.get(member["sop_class"], 0) + 1
    return ParticipantObject(
        object_id=study,
        id_type=codes.STUDY_INSTANCE_UID,
        type_code=codes.TYPE_SYSTEM_OBJECT,
        role=codes.ROLE_REPORT,
        accessions=_present(accession),
        sop_classes=tuple(SopClassCount(uid, n) for uid, n in counts.items()),
    )


def _patient(patient_id: str, name: str) -> ParticipantObject:
    return ParticipantObject(
        object_id=patient_id,
        id_type=codes.PATIENT_NUMBER,
        type_code=codes.TYPE_PERSON,
        role=codes.ROLE_PATIENT,
        name=name,
    )


def _outcome(record: EventRecord) -> str:
    category = record.data.get("status_category")
    return codes.SUCCESS if category in (None, "Success", "Pending") else codes.MINOR_FAILURE


def _present(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _text(dataset: Any, keyword: str) -> str:
    value = dataset.get(keyword) if dataset is not None else None
    return str(value) if value is not None else ""
