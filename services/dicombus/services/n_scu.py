"""The DIMSE-N services, SCU side: pynetdicom's ``send_n_*`` with its arguments and returns.

Each call sends one request and waits (at most the DIMSE timeout) for its
response. It returns the response's status Dataset -- empty when no valid
response came, in which case the association is aborted -- and, except for
N-DELETE, the response's dataset decoded: an empty Dataset when a Success or
Warning response carried none, None after a failure.

The presentation context is found by abstract syntax: ``meta_uid`` when the
SOP class is used through a Meta SOP Class (Print Management), else the SOP
class itself. As in pynetdicom, N-EVENT-REPORT may go out on any accepted
context (the SCP of a service sends it to the SCU), the others need one on
which we may act as SCU, and UPS Push operations may use a context of another
UPS SOP class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID

from dicombus import sop_class
from dicombus.dataset_codec import decode_dataset, encode_dataset
from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.commands import (
    CommandField,
    CommandSet,
    n_action_rq,
    n_create_rq,
    n_delete_rq,
    n_event_report_rq,
    n_get_rq,
    n_set_rq,
)
from dicombus.protocol.fragments import DimseMessage, MemoryDatasetSink
from dicombus.services.interface import ServiceAssociation
from dicombus.services.scu import require_established
from dicombus.services.standard_log import standard_logging

LOGGER = logging.getLogger("dicombus.services")

# As pynetdicom: a UPS Push request may travel on a context negotiated for
# one of the other UPS SOP classes.
UPS_PUSH = sop_class.UnifiedProcedureStepPush
_UPS_OTHERS = (
    sop_class.UnifiedProcedureStepWatch,
    sop_class.UnifiedProcedureStepPull,
    sop_class.UnifiedProcedureStepEvent,
    sop_class.UnifiedProcedureStepQuery,
)

# The response elements returned in the status Dataset: pynetdicom's
# STATUS_OPTIONAL_KEYWORDS for each primitive, and for N-CREATE also the
# Affected SOP Instance UID, the only place an SCP-assigned UID is named.
_STATUS_KEYWORDS = {
    CommandField.N_EVENT_REPORT_RSP: (
        "AffectedSOPClassUID",
        "AffectedSOPInstanceUID",
        "EventTypeID",
        "ErrorComment",
        "ErrorID",
    ),
    CommandField.N_GET_RSP: ("AttributeIdentifierList", "ErrorComment", "ErrorID"),
    CommandField.N_SET_RSP: ("ErrorComment", "ErrorID", "AttributeIdentifierList"),
    CommandField.N_ACTION_RSP: ("ErrorComment", "ErrorID", "AttributeIdentifierList"),
    CommandField.N_CREATE_RSP: ("ErrorComment", "ErrorID", "AffectedSOPInstanceUID"),
    CommandField.N_DELETE_RSP: ("ErrorComment", "ErrorID"),
}


def send_n_event_report(
    assoc: ServiceAssociation,
    dataset: Dataset | None,
    event_type: int,
    class_uid: str,
    instance_uid: str,
    msg_id: int = 1,
    meta_uid: str | None = None,
) -> tuple[Dataset, Dataset | None]:
    """PS3.7 10.1.1: report an event; returns (status, Event Reply)."""
    context = _context(assoc, meta_uid or class_uid, "N-EVENT-REPORT", as_scu=False)
    payload = _encoded(dataset, context, "Event Information")
    command = n_event_report_rq(
        msg_id, class_uid, instance_uid, event_type, has_dataset=payload is not None
    )
    return _exchange(assoc, context, command, payload, "Event Report")


def send_n_get(
    assoc: ServiceAssociation,
    identifier_list: Sequence[int | str] | None,
    class_uid: str,
    instance_uid: str,
    msg_id: int = 1,
    meta_uid: str | None = None,
) -> tuple[Dataset, Dataset | None]:
    """PS3.7 10.1.2: read attributes (all of them without a list); returns (status,
    Attribute List)."""
    context = _context(assoc, meta_uid or class_uid, "N-GET")
    tags = None if identifier_list is None else [int(Tag(tag)) for tag in identifier_list]
    command = n_get_rq(msg_id, class_uid, instance_uid, tags or None)
    return _exchange(assoc, context, command, None, "Get")


def send_n_set(
    assoc: ServiceAssociation,
    dataset: Dataset,
    class_uid: str,
    instance_uid: str,
    msg_id: int = 1,
    meta_uid: str | None = None,
) -> tuple[Dataset, Dataset | None]:
    """PS3.7 10.1.3: change attributes (``dataset`` is the Modification List, named as in
    pynetdicom); returns (status, Attribute List)."""
    context = _context(assoc, meta_uid or class_uid, "N-SET")
    payload = _encoded(dataset, context, "Modification List")
    command = n_set_rq(msg_id, class_uid, instance_uid)
    return _exchange(assoc, context, command, payload, "Set")


def send_n_action(
    assoc: ServiceAssociation,
    dataset: Dataset | None,
    action_type: int,
    class_uid: str,
    instance_uid: str,
    msg_id: int = 1,
    meta_uid: str | None = None,
) -> tuple[Dataset, Dataset | None]:
    """PS3.7 10.1.4: ask for an action; returns (status, Action Reply)."""
    context = _context(assoc, meta_uid or class_uid, "N-ACTION")
    payload = _encoded(dataset, context, "Action Information")
    command = n_action_rq(
        msg_id, class_uid, instance_uid, action_type, has_dataset=payload is not None
    )
    return _exchange(assoc, context, command, payload, "Action")


def send_n_create(
    assoc: ServiceAssociation,
    dataset: Dataset | None,
    class_uid: str,
    instance_uid: str | None = None,
    msg_id: int = 1,
    meta_uid: str | None = None,
) -> tuple[Dataset, Dataset | None]:
    """PS3.7 10.1.5: create an instance (the SCP names it without ``instance_uid``: see the
    status's AffectedSOPInstanceUID); returns (status, Attribute List)."""
    context = _context(assoc, meta_uid or class_uid, "N-CREATE")
    payload = _encoded(dataset, context, "Attribute List")
    command = n_create_rq(msg_id, class_uid, instance_uid or None, has_dataset=payload is not None)
    return _exchange(assoc, context, command, payload, "Create")


def send_n_delete(
    assoc: ServiceAssociation,
    class_uid: str,
    instance_uid: str,
    msg_id: int = 1,
    meta_uid: str | None = None,
) -> Dataset:
    """PS3.7 10.1.6: delete an instance; returns the status."""
    context = _context(assoc, meta_uid or class_uid, "N-DELETE")
    command = n_delete_rq(msg_id, class_uid, instance_uid)
    return _exchange(assoc, context, command, None, "Delete")[0]


def _context(
    assoc: ServiceAssociation, abstract_syntax: str, operation: str, *, as_scu: bool = True
) -> PresentationContext:
    """The accepted context to send on; raises as pynetdicom does when there is none."""
    require_established(assoc, operation)
    candidates = [c for c in assoc.accepted_contexts if c.abstract_syntax == abstract_syntax]
    if not candidates and abstract_syntax == UPS_PUSH:
        candidates = [c for c in assoc.accepted_contexts if c.abstract_syntax in _UPS_OTHERS]
    if as_scu:
        candidates = [c for c in candidates if c.as_scu]
    if candidates:
        return candidates[0]
    role = " for the SCU role" if as_scu else ""
    raise ValueError(
        f"no presentation context for '{UID(abstract_syntax).name}' has been accepted by the "
        f"peer{role}"
    )


def _encoded(dataset: Dataset | None, context: PresentationContext, what: str) -> bytes | None:
    if dataset is None:
        return None
    try:
        return encode_dataset(dataset, context.transfer_syntax[0])
    except Exception as exc:
        raise ValueError(f"failed to encode the supplied '{what}' dataset: {exc}") from exc


def _exchange(
    assoc: ServiceAssociation,
    context: PresentationContext,
    command: CommandSet,
    payload: bytes | None,
    verb: str,
) -> tuple[Dataset, Dataset | None]:
    if standard_logging():
        LOGGER.info("Sending %s Request: MsgID %d", verb, command.MessageID)
    expected = CommandField(command.command_field | 0x8000)
    # One response: the generator is dropped after it, which ends its wait.
    response = next(assoc.send_request(context.context_id or 0, command, payload), None)
    if response is None:
        return Dataset(), None
    if response.command.command_field is not expected or response.command.Status is None:
        LOGGER.error(
            "received an invalid %s response from the peer (%s); aborting",
            expected.primitive_name,
            response.command.command_field.message_name,
        )
        assoc.abort()
        return Dataset(), None
    status_ds = response.command.to_dataset(("Status", *_STATUS_KEYWORDS[expected]))
    return status_ds, _reply_dataset(response, status_ds, context, expected)


def _reply_dataset(
    response: DimseMessage,
    status_ds: Dataset,
    context: PresentationContext,
    field: CommandField,
) -> Dataset | None:
    """The response's dataset after Success or Warning; None after anything else."""
    category = status.status_category(int(status_ds.Status))
    if category not in (status.STATUS_SUCCESS, status.STATUS_WARNING):
        return None
    sink = response.dataset
    # Responses are never spooled: the association keeps them in memory.
    encoded = sink.getvalue() if isinstance(sink, MemoryDatasetSink) else b""
    if not encoded:
        return Dataset()
    try:
        decoded = decode_dataset(encoded, context.transfer_syntax[0])
        # pydicom reads lazily: touch every element so a broken dataset fails here.
        for _element in decoded:
            pass
    except Exception as exc:
        LOGGER.error(
            "the %s response's dataset could not be decoded (%s); reporting 0x%04X",
            field.primitive_name,
            exc,
            status.PROCESSING_FAILURE,
        )
        status_ds.Status = status.PROCESSING_FAILURE  # as pynetdicom
        return None
    return decoded
