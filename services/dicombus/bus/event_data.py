"""The ``data`` of every published event: one table that the code, the schema and the docs share.

:data:`EVENT_SPECS` has one :class:`EventSpec` per event type -- the 17
notification events and the outcome of each of the 15 intervention events.
A spec names its fields (name, JSON Schema, description) and its ``capture``
function. docs/events.md and bus/schema/v1.json are generated from the fields
(scripts/gen_events_doc.py), and the tests validate real captured events
against that schema, so the three cannot drift apart.

Capture is split in two, as the bus needs it:

- ``spec.capture(source, options)`` runs on the association's thread, with
  the :class:`dicombus.evt.Event` (notifications) or the
  :class:`dicombus.outcomes.OutcomeReport` (outcomes). It copies what may
  change or vanish once the thread goes on (AE titles, command fields, a
  small unstored dataset, the P-DATA PDV lengths) and returns a callable;
- that callable runs later on the publisher's side and does the expensive
  part: reading the stored file's header, DICOM JSON, base64.

The callable (a :data:`Body`) may be handed to another process, so it is
always picklable: a :func:`functools.partial` of a module-level function
bound to plain data (dicts, lists, tuples, str, int, bytes, PDU dataclasses,
:class:`DataOptions`) -- never a lambda or a closure.

Every ``data`` has an ``association`` block (:data:`ASSOCIATION_FIELDS`);
EVT_ACCEPTED and EVT_ESTABLISHED add the negotiated presentation contexts to
it. Nothing secret is published: EVT_USER_ID carries the identity type and a
user name, never the passcode, and raw A-ASSOCIATE-RQ/AC bytes (published
only when a subscriber asks for raw bytes) have their user identity secrets
zeroed (see :func:`redact_pdu`).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from dicombus import evt
from dicombus.acse import describe_rejection
from dicombus.bus.association_view import AssociationView
from dicombus.bus.dicom_json import (
    DEFAULT_THRESHOLD,
    file_bulk_data_uri,
    read_header,
    stored_file_json,
    to_dicom_json,
)
from dicombus.dataset_codec import decode_dataset
from dicombus.outcomes import OutcomeReport
from dicombus.protocol.errors import LocalProtocolError
from dicombus.protocol.items import UserIdentityRQSubItem
from dicombus.protocol.limits import PDU_HEADER_LENGTH
from dicombus.protocol.pdus import (
    PDU_NAMES,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    PDataTF,
    decode_pdu,
)
from dicombus.protocol.status import status_category

LOGGER = logging.getLogger("dicombus.bus")

# A C-STORE dataset that nobody stored is copied on the association thread so
# its header can be published; past this size it is not (the publisher's
# queue holds up to 10 000 events, and 64 KiB each keeps that under 1 GiB
# even if every one of them is such a dataset). Headers of images are far
# smaller, but their pixel data follows them in the same bytes.
UNSTORED_DATASET_LIMIT = 64 * 1024

# PS3.7 D.3.3.7.1: user identity types whose primary field is a user name.
_USERNAME_TYPES = frozenset({1, 2})

# Built later, maybe in another process: picklable (see the module doc).
Body = Callable[[], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class DataOptions:
    """What a subscriber asked for, per event type."""

    # The URI of the edge's storage root, published with each C-STORE.
    bulk_data_uri_base: str = ""
    bulk_threshold: int = DEFAULT_THRESHOLD
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Field:
    """One key of ``data``: its JSON Schema and what it means."""

    name: str
    schema: Mapping[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How one event type is published."""

    event: evt.EventType
    # "when ..." / "after ...": completes "Published ...".
    when: str
    fields: tuple[Field, ...]
    # (Event or OutcomeReport, options) -> the body builder; see the module doc.
    capture: Callable[[Any, DataOptions], Body]
    # EVT_ACCEPTED / EVT_ESTABLISHED: the association block lists the contexts.
    with_contexts: bool = False
    # The names of ``fields``: one tuple that every event of the type shares (the
    # publisher child receives a batch's events in one pickle, which keeps it once).
    field_names: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_names", tuple(field.name for field in self.fields))

    @property
    def name(self) -> str:
        return self.event.name

    @property
    def is_outcome(self) -> bool:
        return self.event.is_intervention

    def snapshot(self, source: Any, options: DataOptions) -> Body:
        """On the association thread: everything ``data`` needs, as a callable for later."""
        assoc: AssociationView = source.assoc
        contexts = None
        if self.with_contexts:
            # Once per association, and a few small dicts pickle more cheaply
            # than the context objects: converted now.
            ordered = sorted(
                (*assoc.accepted_contexts, *assoc.rejected_contexts),
                key=lambda item: item.context_id or 0,
            )
            contexts = [_context_json(item) for item in ordered]
        return functools.partial(
            _event_data,
            association_context(assoc),
            contexts,
            self.capture(source, options),
            self.field_names,
        )


def _event_data(
    association: dict[str, Any],
    contexts: list[dict[str, Any]] | None,
    body: Body,
    field_names: tuple[str, ...],
) -> dict[str, Any]:
    """``data``: the association block, then the body's fields."""
    # Copies: every build hands out its own dicts.
    block = dict(association)
    if contexts is not None:
        block["contexts"] = [dict(item) for item in contexts]
    built = body()
    # The table is the contract: its fields, in its order (a missing one is a
    # bug here, and raises).
    return {"association": block, **{name: built[name] for name in field_names}}


# -- schema fragments ------------------------------------------------------------------------


def _nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"anyOf": [dict(schema), {"type": "null"}]}


_STR: Mapping[str, Any] = {"type": "string"}
_INT: Mapping[str, Any] = {"type": "integer"}
_BOOL: Mapping[str, Any] = {"type": "boolean"}
_UID: Mapping[str, Any] = {"type": "string", "pattern": r"^[0-9.]{1,64}$"}
_TAG: Mapping[str, Any] = {"type": "string", "pattern": r"^[0-9A-F]{8}$"}
_BASE64: Mapping[str, Any] = {"type": "string", "contentEncoding": "base64"}
_DICOM_JSON: Mapping[str, Any] = {"$ref": "#/$defs/dicom_json"}
_STATUS_CATEGORY: Mapping[str, Any] = {
    "enum": ["Success", "Pending", "Cancel", "Warning", "Failure", "Unknown"]
}
_JSON_OBJECT: Mapping[str, Any] = {"type": "object"}


def _field(name: str, schema: Mapping[str, Any], description: str) -> Field:
    return Field(name, schema, description)


ASSOCIATION_FIELDS: tuple[Field, ...] = (
    _field("role", {"enum": ["acceptor", "requestor"]}, "dicombus's side of the association."),
    _field(
        "calling_ae_title",
        _nullable(_STR),
        "The Calling AE Title of the A-ASSOCIATE-RQ, the requestor's (on the acceptor, null "
        "until the A-ASSOCIATE-RQ arrives: EVT_CONN_OPEN and the PDU/FSM events before it).",
    ),
    _field(
        "called_ae_title",
        _nullable(_STR),
        "The Called AE Title of the A-ASSOCIATE-RQ, the same in every event of the "
        "association: on the acceptor, the title the peer asked for (which is not dicombus's "
        "own when the peer calls another title and require_called_aet is off); on the "
        "requestor, the title dicombus called. "
        "On the acceptor, null until the A-ASSOCIATE-RQ arrives (EVT_CONN_OPEN and the PDU/FSM "
        "events before it).",
    ),
    _field("peer_address", _nullable(_STR), "The peer's IP address."),
    _field("peer_port", _nullable(_INT), "The peer's TCP port."),
    _field("local_port", _nullable(_INT), "dicombus's TCP port on this connection."),
    _field(
        "tls_peer_subject",
        _nullable(_STR),
        "The subject of the peer's TLS certificate (null without TLS or without a certificate).",
    ),
)
CONTEXTS_FIELD = _field(
    "contexts",
    {"type": "array", "items": {"$ref": "#/$defs/presentation_context"}},
    "Every presentation context the requestor proposed, with the negotiation's result "
    "(EVT_ACCEPTED and EVT_ESTABLISHED only).",
)
PRESENTATION_CONTEXT_FIELDS: tuple[Field, ...] = (
    _field("context_id", _INT, "Presentation Context ID (odd, 1-255)."),
    _field("abstract_syntax", _UID, "The SOP class UID proposed."),
    _field("transfer_syntax", _nullable(_UID), "The transfer syntax accepted (null if rejected)."),
    _field("result", _INT, "PS3.8 Table 9-18: 0 acceptance, 1-4 the reason for rejection."),
    _field("as_scu", _nullable(_BOOL), "Whether dicombus may act as SCU on the context."),
    _field("as_scp", _nullable(_BOOL), "Whether dicombus may act as SCP on the context."),
)


def association_context(assoc: AssociationView) -> dict[str, Any]:
    """The association block, read now (on the association thread: titles change)."""
    peer = assoc.remote
    return {
        "role": assoc.mode,
        "calling_ae_title": assoc.requestor.ae_title or None,
        # What the A-ASSOCIATE-RQ asked for, in every event of the association: the
        # acceptor's own title replaces it in assoc.acceptor once the RQ is answered.
        "called_ae_title": assoc.called_ae_title or None,
        "peer_address": peer.address or None,
        "peer_port": peer.port or None,
        "local_port": assoc.local.port or None,
        "tls_peer_subject": peer.tls_peer_subject,
    }


def _context_json(context: Any) -> dict[str, Any]:
    syntaxes = context.transfer_syntax
    accepted = context.result == 0 and syntaxes
    return {
        "context_id": context.context_id,
        "abstract_syntax": str(context.abstract_syntax),
        "transfer_syntax": str(syntaxes[0]) if accepted else None,
        "result": context.result,
        "as_scu": context.as_scu,
        "as_scp": context.as_scp,
    }


# -- notification events ---------------------------------------------------------------------


def _no_body(source: Any, options: DataOptions) -> Body:
    return dict


CONNECTION_FIELDS = (
    _field("address", _nullable(_STR), "The peer's IP address (pynetdicom's event.address[0])."),
    _field("port", _nullable(_INT), "The peer's TCP port (event.address[1])."),
)


def _capture_connection(event: Any, options: DataOptions) -> Body:
    address, port = event.address
    return functools.partial(dict, address=address or None, port=port or None)


CONN_CLOSE_FIELDS = (
    *CONNECTION_FIELDS,
    _field(
        "tls_error",
        _nullable(_STR),
        "Why the TLS handshake failed (e.g. `[SSL: WRONG_VERSION_NUMBER] wrong version number`: "
        "a plaintext peer on the TLS port; `[SSL: TLSV1_ALERT_UNKNOWN_CA] ...`: the peer does "
        "not trust the edge's certificate), else null. Such a connection never carried DICOM: "
        "no EVT_CONN_OPEN precedes its close. The audit trail makes it a Security Alert.",
    ),
)


def _capture_close(event: Any, options: DataOptions) -> Body:
    address, port = event.address
    return functools.partial(
        dict, address=address or None, port=port or None, tls_error=event.tls_error
    )


NEGOTIATION_FIELDS = (
    _field("maximum_length", _INT, "The largest P-DATA-TF PDU dicombus receives (0: no limit)."),
    _field("peer_maximum_length", _INT, "The largest P-DATA-TF PDU the peer receives."),
    _field(
        "peer_implementation_class_uid", _nullable(_UID), "The peer's Implementation Class UID."
    ),
    _field(
        "peer_implementation_version_name",
        _nullable(_STR),
        "The peer's Implementation Version Name.",
    ),
)


def _capture_negotiated(event: Any, options: DataOptions) -> Body:
    assoc: AssociationView = event.assoc
    local, peer = assoc.local, assoc.remote
    return functools.partial(
        dict,
        maximum_length=local.maximum_length,
        peer_maximum_length=peer.maximum_length,
        peer_implementation_class_uid=peer.implementation_class_uid or None,
        peer_implementation_version_name=peer.implementation_version_name or None,
    )


REJECTION_FIELDS = (
    _field("result", _nullable(_INT), "PS3.8 9.3.4: 1 rejected-permanent, 2 rejected-transient."),
    _field("source", _nullable(_INT), "PS3.8 9.3.4: 1 service user, 2 and 3 service provider."),
    _field("reason", _nullable(_INT), "PS3.8 9.3.4: the reason, by source."),
    _field("description", _nullable(_STR), "The result, source and reason in words."),
)


def _capture_rejection(event: Any, options: DataOptions) -> Body:
    assoc: AssociationView = event.assoc
    rejection = assoc.rejection
    if rejection is None:
        return functools.partial(dict, result=None, source=None, reason=None, description=None)
    return functools.partial(_rejection_json, rejection.result, rejection.source, rejection.reason)


def _rejection_json(result: int, source: int, reason: int) -> dict[str, Any]:
    return {
        "result": result,
        "source": source,
        "reason": reason,
        "description": describe_rejection(result, source, reason),
    }


ACSE_FIELDS = (
    _field(
        "primitive",
        {"enum": sorted(PDU_NAMES.values())},
        "The ACSE PDU: A-ASSOCIATE-RQ/AC/RJ, A-RELEASE-RQ/RP or A-ABORT.",
    ),
    _field("called_ae_title", _nullable(_STR), "A-ASSOCIATE-RQ/AC: the called AE title."),
    _field("calling_ae_title", _nullable(_STR), "A-ASSOCIATE-RQ/AC: the calling AE title."),
    _field(
        "presentation_contexts",
        _nullable({"type": "array", "items": _JSON_OBJECT}),
        "A-ASSOCIATE-RQ: {context_id, abstract_syntax, transfer_syntaxes}; A-ASSOCIATE-AC: "
        "{context_id, result, transfer_syntax}.",
    ),
    _field(
        "maximum_length", _nullable(_INT), "A-ASSOCIATE-RQ/AC: the sender's maximum PDU length."
    ),
    _field(
        "implementation_class_uid",
        _nullable(_UID),
        "A-ASSOCIATE-RQ/AC: the sender's Implementation Class UID.",
    ),
    _field(
        "implementation_version_name",
        _nullable(_STR),
        "A-ASSOCIATE-RQ/AC: the sender's Implementation Version Name.",
    ),
    _field(
        "user_identity_type",
        _nullable(_INT),
        "A-ASSOCIATE-RQ: the user identity type offered (never its fields).",
    ),
    _field("result", _nullable(_INT), "A-ASSOCIATE-RJ: the result."),
    _field("source", _nullable(_INT), "A-ASSOCIATE-RJ and A-ABORT: the source."),
    _field("reason", _nullable(_INT), "A-ASSOCIATE-RJ and A-ABORT: the reason."),
)


def _capture_acse(event: Any, options: DataOptions) -> Body:
    # ACSE PDUs are immutable and hold no buffer of the association's: kept as they are.
    return functools.partial(_acse_json, event.primitive)


def _acse_json(pdu: Any) -> dict[str, Any]:
    body: dict[str, Any] = {field.name: None for field in ACSE_FIELDS}
    body["primitive"] = PDU_NAMES[pdu.pdu_type]
    if isinstance(pdu, AAssociateRQ | AAssociateAC):
        info = pdu.user_information
        identity = info.user_identity_rq
        body.update(
            called_ae_title=pdu.called_ae_title,
            calling_ae_title=pdu.calling_ae_title,
            maximum_length=info.maximum_length,
            implementation_class_uid=info.implementation_class_uid,
            implementation_version_name=info.implementation_version_name,
            user_identity_type=identity.user_identity_type if identity is not None else None,
            presentation_contexts=[
                _proposed_context(item) if isinstance(pdu, AAssociateRQ) else _answer(item)
                for item in pdu.presentation_contexts
            ],
        )
    elif isinstance(pdu, AAssociateRJ):
        body.update(result=pdu.result, source=pdu.source, reason=pdu.reason)
    elif isinstance(pdu, AAbort):
        body.update(source=pdu.source, reason=pdu.reason)
    return body


def _proposed_context(item: Any) -> dict[str, Any]:
    return {
        "context_id": item.context_id,
        "abstract_syntax": item.abstract_syntax,
        "transfer_syntaxes": list(item.transfer_syntaxes),
    }


def _answer(item: Any) -> dict[str, Any]:
    return {
        "context_id": item.context_id,
        "result": item.result,
        "transfer_syntax": item.transfer_syntax,
    }


DIMSE_FIELDS = (
    _field("command", _nullable(_STR), "The DIMSE command, e.g. C_STORE_RQ, N_ACTION_RSP."),
    _field("context_id", _INT, "The presentation context the message travels on."),
    _field(
        "command_set",
        _JSON_OBJECT,
        "Every element of the command set by keyword (tags as 8 hex digits).",
    ),
    _field(
        "dataset_size",
        _nullable(_INT),
        "Received messages: the size in bytes of the data set that followed (null if none).",
    ),
)


def _capture_dimse(event: Any, options: DataOptions) -> Body:
    message = event.message
    command = message.command
    try:
        name: str | None = command.command_field.name
    except LocalProtocolError:
        name = None
    size = message.dataset.size if message.dataset is not None else None
    return functools.partial(_dimse_json, name, message.context_id, command.items(), size)


def _dimse_json(
    name: str | None, context_id: int, elements: list[tuple[str, Any]], size: int | None
) -> dict[str, Any]:
    return {
        "command": name,
        "context_id": context_id,
        "command_set": {keyword: _command_value(value) for keyword, value in elements},
        "dataset_size": size,
    }


def _command_value(value: Any) -> Any:
    # AT values (AttributeIdentifierList, OffendingElement) are lists of 32-bit tags.
    return [f"{tag:08X}" for tag in value] if isinstance(value, list) else value


PDU_FIELDS = (
    _field("pdu_type", _INT, "PS3.8 9.3: 0x01-0x07."),
    _field("pdu_name", {"enum": sorted(PDU_NAMES.values())}, "The PDU's name in PS3.8."),
    _field("length", _INT, "The PDU's length in bytes, its 6-byte header included."),
    _field(
        "pdvs",
        _nullable({"type": "array", "items": {"$ref": "#/$defs/pdv"}}),
        "P-DATA-TF: each presentation data value (its data length, not its data).",
    ),
    _field(
        "raw",
        _nullable(_BASE64),
        "The PDU's bytes (base64) when the subscriber asked for raw bytes, else null. "
        "User identity secrets are zeroed: the passcode, a ticket, assertion or token, the "
        "server response (an A-ASSOCIATE-RQ/AC that cannot be decoded is published empty).",
    ),
)
PDV_FIELDS = (
    _field("context_id", _INT, "The presentation context."),
    _field("is_command", _BOOL, "A command fragment (else a data set fragment)."),
    _field("is_last", _BOOL, "The last fragment of its command or data set."),
    _field("length", _INT, "The fragment's length in bytes."),
)


def _capture_pdu(event: Any, options: DataOptions) -> Body:
    pdu = event.pdu
    if not isinstance(pdu, PDataTF):
        # Immutable and small: encoding (for the length, and the raw bytes) waits.
        return functools.partial(_encoded_pdu_json, pdu, options.raw)
    # A P-DATA-TF's PDVs point into buffers the association reuses (or into the
    # memory-mapped file being sent): copy what is published now.
    pdvs = [(pdv.context_id, pdv.is_command, pdv.is_last, len(pdv.data)) for pdv in pdu.pdvs]
    length = PDU_HEADER_LENGTH + pdu.body_length
    raw = pdu.encode() if options.raw else None
    return functools.partial(_pdata_json, length, pdvs, raw)


def _encoded_pdu_json(pdu: Any, with_raw: bool) -> dict[str, Any]:
    return {**_pdu_json(pdu.encode(), with_raw), "pdvs": None}


def _pdata_json(
    length: int, pdvs: list[tuple[int, bool, bool, int]], raw: bytes | None
) -> dict[str, Any]:
    return {
        "pdu_type": PDataTF.pdu_type,
        "pdu_name": PDU_NAMES[PDataTF.pdu_type],
        "length": length,
        "raw": base64.b64encode(raw).decode() if raw is not None else None,
        "pdvs": [
            {"context_id": context, "is_command": command, "is_last": last, "length": size}
            for context, command, last, size in pdvs
        ],
    }


def _capture_data(event: Any, options: DataOptions) -> Body:
    data: bytes = event.data
    return functools.partial(_pdu_json, data, options.raw)


DATA_FIELDS = tuple(field for field in PDU_FIELDS if field.name != "pdvs")


def _pdu_json(raw: bytes, with_raw: bool) -> dict[str, Any]:
    """The fields of DATA_FIELDS for one PDU's bytes."""
    return {
        "pdu_type": raw[0],
        "pdu_name": PDU_NAMES.get(raw[0]),
        "length": len(raw),
        "raw": base64.b64encode(redact_pdu(raw)).decode() if with_raw else None,
    }


def redact_pdu(raw: bytes) -> bytes:
    """``raw`` with the secrets of user identity negotiation zeroed, lengths kept.

    PS3.7 D.3.3.7: in an A-ASSOCIATE-RQ the passcode (secondary field), and
    the primary field too unless it is a user name (a Kerberos ticket, a SAML
    assertion, a JWT); in an A-ASSOCIATE-AC the server response.
    """
    if not raw or raw[0] not in (AAssociateRQ.pdu_type, AAssociateAC.pdu_type):
        return raw
    try:
        pdu = decode_pdu(raw[0], memoryview(raw)[PDU_HEADER_LENGTH:])
    except Exception:
        pdu = None
    if not isinstance(pdu, AAssociateRQ | AAssociateAC):
        # Not decodable (the peer sent garbage, and was aborted for it): nothing
        # in it can be trusted to be free of secrets.
        return b""
    info = pdu.user_information
    secret: Any = info.user_identity_rq or info.user_identity_ac
    if secret is None:
        return raw
    if isinstance(secret, UserIdentityRQSubItem):
        keep_primary = secret.user_identity_type in _USERNAME_TYPES
        blank = dataclasses.replace(
            secret,
            primary_field=secret.primary_field if keep_primary else _zeros(secret.primary_field),
            secondary_field=_zeros(secret.secondary_field),
        )
    else:
        blank = dataclasses.replace(secret, server_response=_zeros(secret.server_response))
    encoded = secret.encode()
    return raw.replace(encoded, blank.encode()) if encoded in raw else b""


def _zeros(field: bytes) -> bytes:
    return bytes(len(field))


FSM_FIELDS = (
    _field("current_state", _STR, "PS3.8 9.2: the state before, e.g. Sta6."),
    _field("fsm_event", _STR, "PS3.8 9.2: the event, e.g. Evt10."),
    _field("action", _STR, "PS3.8 9.2: the action, e.g. DT-2."),
    _field("next_state", _STR, "PS3.8 9.2: the state after."),
)


def _capture_transition(event: Any, options: DataOptions) -> Body:
    return functools.partial(
        dict,
        current_state=event.current_state,
        fsm_event=event.fsm_event,
        action=event.action,
        next_state=event.next_state,
    )


# -- outcomes of DIMSE services ----------------------------------------------------------------

STATUS_FIELDS = (
    _field("status", _nullable(_INT), "The (final) Status sent in the response."),
    _field("status_category", _nullable(_STATUS_CATEGORY), "The status in words (PS3.7 C)."),
)
DETAILS_FIELD = _field(
    "details",
    _JSON_OBJECT,
    "What the handler recorded in event.request.outcome (JSON values only).",
)
MESSAGE_FIELDS = (
    _field("message_id", _nullable(_INT), "The request's Message ID."),
    _field("sop_class_uid", _nullable(_UID), "The Affected (or Requested) SOP Class UID."),
)
INSTANCE_FIELD = _field(
    "sop_instance_uid", _nullable(_UID), "The Affected (or Requested) SOP Instance UID."
)
PRIORITY_FIELD = _field("priority", _nullable(_INT), "0 medium, 1 high, 2 low.")
SERVICE_SECONDS_FIELD = _field(
    "service_seconds",
    {"type": "number", "minimum": 0},
    "Seconds from the edge taking the request (received whole) to this outcome, on the edge's "
    "monotonic clock: for C-STORE until just before the response (storing included), for "
    "C-FIND until the final response was sent. The C-STORE and C-FIND latency histograms "
    "observe it.",
)
TRANSFER_SYNTAX_FIELD = _field(
    "transfer_syntax", _nullable(_UID), "The transfer syntax of the presentation context."
)


def _request_facts(report: OutcomeReport) -> dict[str, Any]:
    """The fields every DIMSE outcome shares, read on the association thread.

    ``details`` is converted to JSON values now, on the association thread:
    the handler's dict may change later and may hold anything, and the body
    must pickle. It is small (a handler records a few facts).
    """
    command = report.request.command
    return {
        "message_id": command.MessageID,
        "sop_class_uid": command.AffectedSOPClassUID or command.RequestedSOPClassUID,
        "status": report.status,
        "details": _json_values(report.details),
    }


def _published(facts: dict[str, Any]) -> dict[str, Any]:
    """``facts`` from :func:`_request_facts` as published: status in words."""
    code = facts["status"]
    return {
        **facts,
        "status_category": status_category(code) if code is not None else None,
        # Already JSON values: converting again copies them (a build hands out
        # its own dicts) and changes nothing.
        "details": _json_values(facts["details"]),
    }


def _json_values(details: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-representable part of ``details`` (paths as text; the rest left out)."""
    kept: dict[str, Any] = {}
    for key, value in details.items():
        converted = _json_value(value)
        if converted is not _OMIT:
            kept[str(key)] = converted
    return kept


_OMIT = object()


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        items = [_json_value(item) for item in value]
        return [item for item in items if item is not _OMIT]
    if isinstance(value, Mapping):
        return _json_values(value)
    return _OMIT


def _service_seconds(report: OutcomeReport) -> float:
    """The request's service time so far (see SERVICE_SECONDS_FIELD), read at the report."""
    received: float = report.request.received
    return max(0.0, time.monotonic() - received)


def _capture_echo(report: OutcomeReport, options: DataOptions) -> Body:
    return functools.partial(_published, _request_facts(report))


STORE_FIELDS = (
    *MESSAGE_FIELDS,
    INSTANCE_FIELD,
    TRANSFER_SYNTAX_FIELD,
    PRIORITY_FIELD,
    _field(
        "move_originator",
        _nullable(
            {
                "type": "object",
                "properties": {"ae_title": _nullable(_STR), "message_id": _nullable(_INT)},
                "required": ["ae_title", "message_id"],
                "additionalProperties": False,
            }
        ),
        "A C-MOVE sub-operation: the AE title and Message ID of the C-MOVE's requestor.",
    ),
    *STATUS_FIELDS,
    SERVICE_SECONDS_FIELD,
    _field("stored_path", _nullable(_STR), "Where the handler stored the instance (null: not)."),
    _field("stored_size", _nullable(_INT), "The stored file's size in bytes."),
    _field("dataset_size", _INT, "The size in bytes of the data set received."),
    _field(
        "bulk_data_uri_base",
        _STR,
        "The URI of the edge's storage root: the BulkDataURIs of files stored under it start "
        "with it (file URI of the stored file + ?tag=<tag path>).",
    ),
    _field(
        "dataset",
        _nullable(_DICOM_JSON),
        "The instance in the DICOM JSON model (PS3.18 F.2): pixel data and every value over the "
        "threshold as a BulkDataURI into the stored file, never inline. Null when it could not "
        f"be read, or was not stored and is over {UNSTORED_DATASET_LIMIT} bytes.",
    ),
    _field(
        "dataset_source",
        _nullable({"enum": ["stored_file", "request"]}),
        "Where the dataset was read from: the stored file, or the request (not stored).",
    ),
    _field(
        "bulk_data_omitted",
        {"type": "array", "items": _STR},
        "Tag paths of bulk data left out of a dataset that was not stored (nowhere to point at).",
    ),
    _field(
        "details",
        _JSON_OBJECT,
        "What the handler recorded in event.request.outcome (JSON values only). The storage "
        "handler of the edge and of `dicombus storescp` records `duplicate` when the SOP "
        "Instance UID was stored before: `identical` (the same instance again, the same bytes "
        "or the same data set in another transfer syntax: Success, nothing rewritten, "
        "stored_path is the earlier file) or `different` (other content: with the default "
        "duplicates policy keep-first, status 0x0111 and no stored_path; with replace or "
        "keep-both, Success and stored_path is where these bytes now are).",
    ),
)


def _capture_store(report: OutcomeReport, options: DataOptions) -> Body:
    request = report.request
    command = request.command
    facts = _request_facts(report)
    # As the handler recorded them (a Path, say), before the conversion to JSON values.
    details = report.details
    stored_path = details.get("stored_path")
    syntax = str(report.context.transfer_syntax) if report.context is not None else None
    size = request.dataset_size
    # Without a stored file, the request's bytes are released once the service
    # answered: the small ones are kept for the publisher to decode.
    unstored = (
        request.parameter_bytes()
        if stored_path is None and 0 < size <= UNSTORED_DATASET_LIMIT
        else None
    )
    originator = command.MoveOriginatorApplicationEntityTitle
    facts.update(
        service_seconds=_service_seconds(report),
        sop_instance_uid=command.AffectedSOPInstanceUID,
        transfer_syntax=syntax,
        priority=command.Priority,
        move_originator=(
            {"ae_title": originator, "message_id": command.MoveOriginatorMessageID}
            if originator or command.MoveOriginatorMessageID is not None
            else None
        ),
        stored_path=stored_path,
        stored_size=details.get("stored_size"),
        dataset_size=size,
        bulk_data_uri_base=options.bulk_data_uri_base,
    )
    return functools.partial(_store_json, facts, stored_path, unstored, syntax, options)


def _store_json(
    facts: dict[str, Any],
    stored_path: Any,
    unstored: bytes | None,
    syntax: str | None,
    options: DataOptions,
) -> dict[str, Any]:
    dataset, source, omitted = _stored_dataset(stored_path, unstored, syntax, options)
    published = _published(facts)
    published.update(
        stored_path=str(stored_path) if stored_path is not None else None,
        dataset=dataset,
        dataset_source=source,
        bulk_data_omitted=omitted,
    )
    return published


def _stored_dataset(
    stored_path: Any, unstored: bytes | None, syntax: str | None, options: DataOptions
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """(DICOM JSON, where it came from, bulk data left out), where the publisher builds."""
    threshold = options.bulk_threshold
    if stored_path is not None:
        path = os.fspath(stored_path)  # a str is all the common case needs
        try:
            # Values over the threshold are skipped, never read: they become
            # BulkDataURIs into this very file. The common case first (no
            # pydicom objects: a few times cheaper), then pydicom's reader.
            fast = stored_file_json(path, threshold=threshold, root_uri=options.bulk_data_uri_base)
            if fast is not None:
                return fast, "stored_file", []
            header = read_header(Path(path), defer_size=threshold)
        except Exception as exc:
            LOGGER.warning("cannot read the stored instance %s for its event: %s", path, exc)
            return None, None, []
        model = to_dicom_json(
            header,
            bulk_data_uri=lambda tag_path: file_bulk_data_uri(
                path, tag_path, options.bulk_data_uri_base
            ),
            threshold=threshold,
        )
        return model, "stored_file", []
    if unstored is None or syntax is None:
        return None, None, []
    omitted: list[str] = []

    def nowhere(tag_path: str) -> None:
        omitted.append(tag_path)

    decoded = _decode(unstored, syntax)
    if decoded is None:
        return None, None, []
    return to_dicom_json(decoded, bulk_data_uri=nowhere, threshold=threshold), "request", omitted


def _decode(data: bytes, syntax: str) -> Dataset | None:
    try:
        return decode_dataset(data, syntax)
    except Exception as exc:
        LOGGER.warning("cannot decode a dataset for its event: %s", exc)
        return None


def _parameter_json(data: bytes | None, syntax: str | None, threshold: int) -> Any:
    """A request's identifier or attribute list in the DICOM JSON model; bulk data left out."""
    if not data or syntax is None:
        return None
    decoded = _decode(data, syntax)
    if decoded is None:
        return None
    return to_dicom_json(decoded, bulk_data_uri=lambda tag_path: None, threshold=threshold)


def _parameter_capture(
    parameter: str | None, extra: Callable[[OutcomeReport], dict[str, Any]]
) -> Callable[[OutcomeReport, DataOptions], Body]:
    """Capture for a service whose request carries ``parameter`` (a dataset) and ``extra``."""

    def capture(report: OutcomeReport, options: DataOptions) -> Body:
        request = report.request
        facts = _request_facts(report)
        facts.update(extra(report))
        # Identifiers and N-service attribute lists arrive in memory and are small.
        data = request.parameter_bytes() if parameter is not None else None
        syntax = str(report.context.transfer_syntax) if report.context is not None else None
        if parameter is None:
            return functools.partial(_published, facts)
        return functools.partial(
            _with_parameter_json, facts, parameter, data, syntax, options.bulk_threshold
        )

    return capture


def _with_parameter_json(
    facts: dict[str, Any], parameter: str, data: bytes | None, syntax: str | None, threshold: int
) -> dict[str, Any]:
    published = _published(facts)
    published[parameter] = _parameter_json(data, syntax, threshold)
    return published


def _query_facts(report: OutcomeReport) -> dict[str, Any]:
    return {"priority": report.request.command.Priority}


def _find_facts(report: OutcomeReport) -> dict[str, Any]:
    return {
        **_query_facts(report),
        "matches": _count(report.details, "matches"),
        "service_seconds": _service_seconds(report),
    }


def _retrieve_facts(report: OutcomeReport) -> dict[str, Any]:
    details = report.details
    return {
        **_query_facts(report),
        **{key: _count(details, key) for key in _SUBOPERATIONS},
    }


def _move_facts(report: OutcomeReport) -> dict[str, Any]:
    return {**_retrieve_facts(report), "move_destination": report.request.command.MoveDestination}


def _count(details: Mapping[str, Any], key: str) -> int | None:
    value = details.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# The keys the Q/R services record in the outcome details, from the final response.
_SUBOPERATIONS = tuple(
    f"{name}_suboperations" for name in ("completed", "failed", "warning", "remaining")
)
IDENTIFIER_FIELD = _field(
    "identifier",
    _nullable(_DICOM_JSON),
    "The request's Identifier in the DICOM JSON model (bulk data left out).",
)
QUERY_FIELDS = (*MESSAGE_FIELDS, PRIORITY_FIELD, IDENTIFIER_FIELD, *STATUS_FIELDS)
FIND_FIELDS = (
    *QUERY_FIELDS,
    _field(
        "matches",
        _nullable(_INT),
        "Matches sent, when the service records details['matches'] (else null).",
    ),
    SERVICE_SECONDS_FIELD,
    DETAILS_FIELD,
)
RETRIEVE_FIELDS = (
    *QUERY_FIELDS,
    *(
        _field(key, _nullable(_INT), f"From the final response's {key.replace('_', ' ')}.")
        for key in _SUBOPERATIONS
    ),
)
MOVE_FIELDS = (
    *RETRIEVE_FIELDS,
    _field("move_destination", _nullable(_STR), "The AE title the instances were moved to."),
    DETAILS_FIELD,
)


def _n_facts(*keywords: str) -> Callable[[OutcomeReport], dict[str, Any]]:
    """The instance UID and the request elements ``keywords`` (as snake_case fields)."""

    def facts(report: OutcomeReport) -> dict[str, Any]:
        command = report.request.command
        found: dict[str, Any] = {
            "sop_instance_uid": command.AffectedSOPInstanceUID or command.RequestedSOPInstanceUID
        }
        for keyword in keywords:
            found[_N_FIELD_NAMES[keyword]] = _command_value(getattr(command, keyword))
        return found

    return facts


_N_FIELD_NAMES = {
    "EventTypeID": "event_type_id",
    "ActionTypeID": "action_type_id",
    "AttributeIdentifierList": "attribute_identifier_list",
}
N_COMMON_FIELDS = (*MESSAGE_FIELDS, INSTANCE_FIELD, *STATUS_FIELDS)


def _n_dataset_field(name: str, what: str) -> Field:
    return _field(name, _nullable(_DICOM_JSON), f"The request's {what} in the DICOM JSON model.")


# -- outcomes of negotiation ---------------------------------------------------------------------

USER_ID_FIELDS = (
    _field(
        "user_identity_type",
        _INT,
        "PS3.7 D.3.3.7: 1 username, 2 username and passcode, 3 Kerberos, 4 SAML, 5 JWT.",
    ),
    _field(
        "username",
        _nullable(_STR),
        "The user name (types 1 and 2); null for tickets, assertions and tokens. The passcode "
        "(secondary field) is never published.",
    ),
    _field("positive_response_requested", _BOOL, "Whether the requestor asked for a response."),
    _field(
        "verified",
        _nullable(_BOOL),
        "The EVT_USER_ID handler's verdict; null when no handler is bound (not checked).",
    ),
)


def _capture_user_identity(report: OutcomeReport, options: DataOptions) -> Body:
    details = report.details
    return functools.partial(
        dict,
        user_identity_type=details.get("user_identity_type"),
        username=details.get("username"),
        positive_response_requested=bool(details.get("positive_response_requested")),
        verified=details.get("verified"),
    )


ASYNC_OPS_FIELDS = (
    _field("invoked", _INT, "Maximum number of operations invoked, as requested (0: unlimited)."),
    _field("performed", _INT, "Maximum number of operations performed, as requested."),
    _field(
        "granted",
        _nullable({"type": "array", "items": _INT, "minItems": 2, "maxItems": 2}),
        "The window answered (invoked, performed); null when none was returned.",
    ),
)


def _capture_async_ops(report: OutcomeReport, options: DataOptions) -> Body:
    details = report.details
    granted = details.get("granted")
    return functools.partial(
        dict,
        invoked=details.get("invoked"),
        performed=details.get("performed"),
        granted=list(granted) if granted is not None else None,
    )


_APPLICATION_INFO = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "sop_class_uid": _UID,
            "service_class_application_information": _BASE64,
        },
        "required": ["sop_class_uid", "service_class_application_information"],
        "additionalProperties": False,
    },
}
SOP_EXTENDED_FIELDS = (
    _field("requested", _APPLICATION_INFO, "Each SOP class and the requestor's information."),
    _field("answered", _APPLICATION_INFO, "The acceptor's answer per SOP class."),
)


def _capture_sop_extended(report: OutcomeReport, options: DataOptions) -> Body:
    requested = dict(report.details.get("requested", {}))
    answered = dict(report.details.get("answered", {}))
    return functools.partial(_sop_extended_json, requested, answered)


def _sop_extended_json(
    requested: dict[str, bytes], answered: dict[str, bytes]
) -> dict[str, list[dict[str, str]]]:
    return {"requested": _application_info(requested), "answered": _application_info(answered)}


def _application_info(items: dict[str, bytes]) -> list[dict[str, str]]:
    return [
        {
            "sop_class_uid": uid,
            "service_class_application_information": base64.b64encode(info).decode(),
        }
        for uid, info in items.items()
    ]


SOP_COMMON_FIELDS = (
    _field(
        "requested",
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "sop_class_uid": _UID,
                    "service_class_uid": _UID,
                    "related_general_sop_class_uids": {"type": "array", "items": _UID},
                },
                "required": [
                    "sop_class_uid",
                    "service_class_uid",
                    "related_general_sop_class_uids",
                ],
                "additionalProperties": False,
            },
        },
        "Each SOP class the requestor described (PS3.7 D.3.3.6).",
    ),
    _field("accepted", {"type": "array", "items": _UID}, "The SOP classes the handler accepted."),
)


def _capture_sop_common(report: OutcomeReport, options: DataOptions) -> Body:
    requested = list(report.details.get("requested", {}).values())
    accepted = list(report.details.get("accepted", ()))
    return functools.partial(_sop_common_json, requested, accepted)


def _sop_common_json(requested: list[Any], accepted: list[str]) -> dict[str, Any]:
    return {
        "requested": [
            {
                "sop_class_uid": item.sop_class_uid,
                "service_class_uid": item.service_class_uid,
                "related_general_sop_class_uids": list(item.related_general_sop_class_uids),
            }
            for item in requested
        ],
        "accepted": accepted,
    }


# -- the table -------------------------------------------------------------------------------


def _spec(
    event: evt.EventType,
    when: str,
    fields: Iterable[Field],
    capture: Callable[[Any, DataOptions], Body] = _no_body,
    *,
    with_contexts: bool = False,
) -> EventSpec:
    return EventSpec(event, when, tuple(fields), capture, with_contexts)


# Per N-service: the field holding its dataset parameter and that parameter's
# name in PS3.7 10.1, the command element it adds, and what that element is.
_N_SERVICES = (
    (evt.EVT_N_EVENT_REPORT, "event_information", "Event Information",
     ("EventTypeID",), "event_type_id", "The Event Type ID reported."),
    (evt.EVT_N_GET, None, "", ("AttributeIdentifierList",), "attribute_identifier_list",
     "The attributes asked for (tags as 8 hex digits; null: all)."),
    (evt.EVT_N_SET, "modification_list", "Modification List", (), None, ""),
    (evt.EVT_N_ACTION, "action_information", "Action Information",
     ("ActionTypeID",), "action_type_id", "The Action Type ID requested."),
    (evt.EVT_N_CREATE, "attribute_list", "Attribute List", (), None, ""),
    (evt.EVT_N_DELETE, None, "", (), None, ""),
)  # fmt: skip


def _n_specs() -> list[EventSpec]:
    specs = []
    for event, field_name, what, keywords, extra_name, extra_text in _N_SERVICES:
        fields = list(N_COMMON_FIELDS)
        if extra_name is not None:
            schema = (
                _nullable({"type": "array", "items": _TAG})
                if extra_name == "attribute_identifier_list"
                else _nullable(_INT)
            )
            fields.append(_field(extra_name, schema, extra_text))
        if field_name is not None:
            fields.append(_n_dataset_field(field_name, what))
        fields.append(DETAILS_FIELD)
        specs.append(
            _spec(
                event,
                f"after the {event.name[4:].replace('_', '-')} response is sent",
                fields,
                _parameter_capture(field_name, _n_facts(*keywords)),
            )
        )
    return specs


_NOTIFICATIONS = (
    _spec(evt.EVT_CONN_OPEN, "when a connection is opened", CONNECTION_FIELDS, _capture_connection),
    _spec(
        evt.EVT_CONN_CLOSE,
        "when the connection is closed (or its TLS handshake failed)",
        CONN_CLOSE_FIELDS,
        _capture_close,
    ),
    _spec(evt.EVT_REQUESTED, "when an A-ASSOCIATE-RQ has been received", ()),
    _spec(
        evt.EVT_ACCEPTED,
        "when the association is accepted",
        NEGOTIATION_FIELDS,
        _capture_negotiated,
        with_contexts=True,
    ),
    _spec(
        evt.EVT_ESTABLISHED,
        "when the association is established",
        NEGOTIATION_FIELDS,
        _capture_negotiated,
        with_contexts=True,
    ),
    _spec(
        evt.EVT_REJECTED, "when the association is rejected", REJECTION_FIELDS, _capture_rejection
    ),
    _spec(evt.EVT_RELEASED, "when the association is released", ()),
    _spec(evt.EVT_ABORTED, "when the association is aborted (by either side or the provider)", ()),
    _spec(evt.EVT_ACSE_RECV, "when an ACSE PDU is received", ACSE_FIELDS, _capture_acse),
    _spec(evt.EVT_ACSE_SENT, "when an ACSE PDU is about to be sent", ACSE_FIELDS, _capture_acse),
    _spec(evt.EVT_DIMSE_RECV, "when a DIMSE message is received", DIMSE_FIELDS, _capture_dimse),
    _spec(evt.EVT_DIMSE_SENT, "when a DIMSE message is sent", DIMSE_FIELDS, _capture_dimse),
    _spec(evt.EVT_PDU_RECV, "when a PDU is received", PDU_FIELDS, _capture_pdu),
    _spec(evt.EVT_PDU_SENT, "when a PDU is sent", PDU_FIELDS, _capture_pdu),
    _spec(evt.EVT_DATA_RECV, "when a PDU's bytes are received", DATA_FIELDS, _capture_data),
    _spec(evt.EVT_DATA_SENT, "when a PDU's bytes are sent", DATA_FIELDS, _capture_data),
    _spec(
        evt.EVT_FSM_TRANSITION,
        "when the state machine changes state",
        FSM_FIELDS,
        _capture_transition,
    ),
)

_OUTCOMES = (
    _spec(
        evt.EVT_C_ECHO,
        "after the C-ECHO response is sent",
        (*MESSAGE_FIELDS, *STATUS_FIELDS, DETAILS_FIELD),
        _capture_echo,
    ),
    _spec(
        evt.EVT_C_STORE,
        "before the C-STORE response is sent (a Success is journaled first)",
        STORE_FIELDS,
        _capture_store,
    ),
    _spec(
        evt.EVT_C_FIND,
        "after the final C-FIND response is sent",
        FIND_FIELDS,
        _parameter_capture("identifier", _find_facts),
    ),
    _spec(
        evt.EVT_C_GET,
        "after the final C-GET response is sent",
        (*RETRIEVE_FIELDS, DETAILS_FIELD),
        _parameter_capture("identifier", _retrieve_facts),
    ),
    _spec(
        evt.EVT_C_MOVE,
        "after the final C-MOVE response is sent",
        MOVE_FIELDS,
        _parameter_capture("identifier", _move_facts),
    ),
    *_n_specs(),
    _spec(
        evt.EVT_USER_ID,
        "when a requestor's user identity has been checked (or found with no handler to check it)",
        USER_ID_FIELDS,
        _capture_user_identity,
    ),
    _spec(
        evt.EVT_ASYNC_OPS,
        "when a requestor proposed an asynchronous operations window",
        ASYNC_OPS_FIELDS,
        _capture_async_ops,
    ),
    _spec(
        evt.EVT_SOP_EXTENDED,
        "when a requestor sent SOP class extended negotiation items",
        SOP_EXTENDED_FIELDS,
        _capture_sop_extended,
    ),
    _spec(
        evt.EVT_SOP_COMMON,
        "when a requestor sent SOP class common extended negotiation items",
        SOP_COMMON_FIELDS,
        _capture_sop_common,
    ),
)

EVENT_SPECS: dict[str, EventSpec] = {spec.name: spec for spec in (*_NOTIFICATIONS, *_OUTCOMES)}
NOTIFICATION_TYPES = tuple(spec.name for spec in _NOTIFICATIONS)
OUTCOME_TYPES = tuple(spec.name for spec in _OUTCOMES)
