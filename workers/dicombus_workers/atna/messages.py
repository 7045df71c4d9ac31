"""The DICOM audit message (PS3.15 A.5.1) as data, and its XML.

An :class:`AuditMessage` holds what every message of A.5.3 is made of: the
event identification, the active participants, the audit source and the
participant objects. :func:`to_xml` writes it in the element order the
A.5.1.1 schema requires (a RELAX NG group: order matters for elements, not
for attributes), with ``xml.etree`` so every value is escaped.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from dicombus_workers.atna import codes
from dicombus_workers.atna.codes import Code


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveParticipant:
    """A user, process or node that took part (A.5.2.2)."""

    user_id: str
    is_requestor: bool
    role: Code | None = None
    alternative_user_id: str | None = None
    user_name: str | None = None
    network_access_point: str | None = None
    network_access_point_type: str = codes.IP_ADDRESS


@dataclass(frozen=True, slots=True)
class SopClassCount:
    """A.5.1.1 ``SOPClass``: a SOP class of a study and how many of its instances."""

    uid: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantObject:
    """A.5.2.4: the patient, study, query or node the event was about."""

    object_id: str
    id_type: Code
    type_code: str
    role: str
    name: str = ""
    # A.5.1.1: an object carries either a name or a query (base64Binary).
    query: bytes | None = None
    details: tuple[tuple[str, bytes], ...] = ()
    accessions: tuple[str, ...] = ()
    sop_classes: tuple[SopClassCount, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditMessage:
    event_id: Code
    action: str
    time: datetime
    outcome: str
    participants: tuple[ActiveParticipant, ...]
    source_id: str
    event_types: tuple[Code, ...] = ()
    outcome_description: str | None = None
    objects: tuple[ParticipantObject, ...] = ()
    enterprise_site: str | None = None


def to_xml(message: AuditMessage) -> bytes:
    """The message as UTF-8 XML, with its declaration."""
    root = ET.Element("AuditMessage")
    _event(root, message)
    for participant in message.participants:
        _participant(root, participant)
    source = ET.SubElement(root, "AuditSourceIdentification", AuditSourceID=message.source_id)
    if message.enterprise_site:
        source.set("AuditEnterpriseSiteID", message.enterprise_site)
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": codes.APPLICATION_SERVER})
    for participant_object in message.objects:
        _object(root, participant_object)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(
        parent,
        tag,
        {"csd-code": code.value, "codeSystemName": code.scheme, "originalText": code.meaning},
    )


def _event(root: ET.Element, message: AuditMessage) -> None:
    event = ET.SubElement(
        root,
        "EventIdentification",
        EventActionCode=message.action,
        EventDateTime=message.time.isoformat(),
        EventOutcomeIndicator=message.outcome,
    )
    _coded(event, "EventID", message.event_id)
    for event_type in message.event_types:
        _coded(event, "EventTypeCode", event_type)
    if message.outcome_description:
        ET.SubElement(event, "EventOutcomeDescription").text = message.outcome_description


def _participant(root: ET.Element, participant: ActiveParticipant) -> None:
    element = ET.SubElement(
        root,
        "ActiveParticipant",
        UserID=participant.user_id,
        UserIsRequestor="true" if participant.is_requestor else "false",
    )
    if participant.alternative_user_id:
        element.set("AlternativeUserID", participant.alternative_user_id)
    if participant.user_name:
        element.set("UserName", participant.user_name)
    if participant.network_access_point:
        element.set("NetworkAccessPointID", participant.network_access_point)
        element.set("NetworkAccessPointTypeCode", participant.network_access_point_type)
    if participant.role is not None:
        _coded(element, "RoleIDCode", participant.role)


def _object(root: ET.Element, participant_object: ParticipantObject) -> None:
    element = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=participant_object.object_id,
        ParticipantObjectTypeCode=participant_object.type_code,
        ParticipantObjectTypeCodeRole=participant_object.role,
    )
    _coded(element, "ParticipantObjectIDTypeCode", participant_object.id_type)
    if participant_object.query is not None:
        ET.SubElement(element, "ParticipantObjectQuery").text = _base64(participant_object.query)
    else:
        ET.SubElement(element, "ParticipantObjectName").text = participant_object.name
    for kind, value in participant_object.details:
        ET.SubElement(element, "ParticipantObjectDetail", type=kind, value=_base64(value))
    if participant_object.accessions or participant_object.sop_classes:
        description = ET.SubElement(element, "ParticipantObjectDescription")
        for number in participant_object.accessions:
            ET.SubElement(description, "Accession", Number=number)
        for sop_class in participant_object.sop_classes:
            ET.SubElement(
                description,
                "SOPClass",
                UID=sop_class.uid,
                NumberOfInstances=str(sop_class.count),
            )


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
