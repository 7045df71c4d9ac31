"""The DIMSE-N services, SCP side (PS3.7 10.1): N-EVENT-REPORT, N-GET, N-SET, N-ACTION,
N-CREATE and N-DELETE.

Each request becomes its intervention event (``evt.EVT_N_*``), as pynetdicom
does it. The handler returns ``(status, dataset)`` -- N-DELETE's handler only a
status; any of them may return a status alone, meaning no dataset -- where the
status is an int or a Dataset holding (0000,0900) Status and optionally
ErrorComment / ErrorID / AttributeIdentifierList. The dataset
(Event Reply, Attribute List or Action Reply) is sent only with a Success or
Warning status, encoded in the context's transfer syntax.

Failures use pynetdicom's codes, so peers see the same statuses: a handler
that raises, or no handler bound, 0x0110 (Processing failure); a status
Dataset without Status 0xC001; a return of the wrong shape 0xC002.

N-EVENT-REPORT also arrives on associations we requested (a Storage
Commitment result, say); the runtime serves it in the association's reader
thread like any request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from dicombus import evt
from dicombus.dataset_codec import encode_dataset
from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.commands import (
    DATASET_PRESENT,
    NO_DATASET,
    CommandField,
    CommandSet,
    CommandValue,
    encode_command_set,
)
from dicombus.protocol.errors import LocalProtocolError
from dicombus.service_request import ServiceRequest
from dicombus.services.handler_status import STATUS_INVALID_RETURN, interpret_status
from dicombus.services.interface import ServiceAssociation

LOGGER = logging.getLogger("dicombus.services")


@dataclass(frozen=True, slots=True)
class NService:
    """How one DIMSE-N request is answered (PS3.7 10.3)."""

    event: evt.InterventionEvent
    response: CommandField
    # The response's dataset parameter, for log messages; None: N-DELETE has none.
    reply_name: str | None
    # PS3.7 10.3.1 / 10.3.4: the request element the response repeats ("C=").
    echoed: str | None
    # The elements a handler's status Dataset may set on the response
    # (pynetdicom's STATUS_OPTIONAL_KEYWORDS of the same primitive).
    status_keywords: tuple[str, ...]


N_EVENT_REPORT = NService(
    evt.EVT_N_EVENT_REPORT,
    CommandField.N_EVENT_REPORT_RSP,
    "Event Reply",
    "EventTypeID",
    ("AffectedSOPClassUID", "AffectedSOPInstanceUID", "EventTypeID", "ErrorComment", "ErrorID"),
)
N_GET = NService(
    evt.EVT_N_GET,
    CommandField.N_GET_RSP,
    "Attribute List",
    None,
    ("AttributeIdentifierList", "ErrorComment", "ErrorID"),
)
N_SET = NService(
    evt.EVT_N_SET,
    CommandField.N_SET_RSP,
    "Attribute List",
    None,
    ("AttributeIdentifierList", "ErrorComment", "ErrorID"),
)
N_ACTION = NService(
    evt.EVT_N_ACTION,
    CommandField.N_ACTION_RSP,
    "Action Reply",
    "ActionTypeID",
    ("AttributeIdentifierList", "ErrorComment", "ErrorID"),
)
N_CREATE = NService(
    evt.EVT_N_CREATE,
    CommandField.N_CREATE_RSP,
    "Attribute List",
    None,
    ("ErrorComment", "ErrorID"),
)
N_DELETE = NService(
    evt.EVT_N_DELETE,
    CommandField.N_DELETE_RSP,
    None,
    None,
    ("ErrorComment", "ErrorID"),
)


def serve_n_event_report(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    serve_n_request(assoc, request, context, N_EVENT_REPORT)


def serve_n_get(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    serve_n_request(assoc, request, context, N_GET)


def serve_n_set(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    serve_n_request(assoc, request, context, N_SET)


def serve_n_action(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    serve_n_request(assoc, request, context, N_ACTION)


def serve_n_create(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    serve_n_request(assoc, request, context, N_CREATE)


def serve_n_delete(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    serve_n_request(assoc, request, context, N_DELETE)


def serve_n_request(
    assoc: ServiceAssociation,
    request: ServiceRequest,
    context: PresentationContext,
    service: NService,
) -> None:
    """Ask the handler, then send the one response."""
    outcome = _ask_handler(assoc, request, context, service)
    if outcome is None:
        return  # the handler released or aborted the association
    handler_status, dataset = outcome
    response = _response_for(request, service)
    _apply_status(response, handler_status, service)
    payload = _reply_payload(response, dataset, request, context, service)
    response.CommandDataSetType = NO_DATASET if payload is None else DATASET_PRESENT
    assoc.send_message(context.context_id or 0, response, payload)
    assoc.report_outcome(
        service.event,
        response.Status,
        request=request,
        context=context.as_tuple,
        details=request.outcome,
    )


def _response_for(request: ServiceRequest, service: NService) -> CommandSet:
    """PS3.7 10.3: the response names the instance the request named (pynetdicom's choice
    for the optional Affected SOP Class / Instance UID of N-GET, N-SET, N-ACTION, N-DELETE)."""
    command = request.command
    response = CommandSet(
        CommandField=service.response,
        MessageIDBeingRespondedTo=request.message_id,
        AffectedSOPClassUID=command.AffectedSOPClassUID or command.RequestedSOPClassUID,
        AffectedSOPInstanceUID=command.AffectedSOPInstanceUID or command.RequestedSOPInstanceUID,
        CommandDataSetType=NO_DATASET,
    )
    if service.echoed is not None:
        setattr(response, service.echoed, getattr(command, service.echoed))
    return response


def _ask_handler(
    assoc: ServiceAssociation,
    request: ServiceRequest,
    context: PresentationContext,
    service: NService,
) -> tuple[Any, Any] | None:
    """The handler's (status, dataset); None when the association ended in the handler."""
    name = service.event.name
    try:
        result = evt.trigger(
            assoc, service.event, {"request": request, "context": context.as_tuple}
        )
    except evt.NoHandlerBound:
        # pynetdicom's default handler raises NotImplementedError: the same status.
        LOGGER.error(
            "no handler is bound to evt.%s; answering 0x%04X", name, status.PROCESSING_FAILURE
        )
        return status.PROCESSING_FAILURE, None
    except Exception:
        LOGGER.exception(
            "the handler bound to evt.%s raised; answering 0x%04X",
            name,
            status.PROCESSING_FAILURE,
        )
        return status.PROCESSING_FAILURE, None
    if not assoc.is_established:
        return None
    if service.reply_name is None or isinstance(result, int | Dataset):
        # A status alone means no reply dataset. pynetdicom's Print SCU example
        # binds an N-EVENT-REPORT handler that returns just 0x0000, which
        # pynetdicom cannot unpack (it aborts the association); we answer it.
        return result, None
    if not isinstance(result, Sequence) or isinstance(result, str | bytes) or len(result) != 2:
        LOGGER.error(
            "the handler bound to evt.%s returned %s; return (status, dataset or None)",
            name,
            type(result).__name__,
        )
        return STATUS_INVALID_RETURN, None
    return result[0], result[1]


def _apply_status(response: CommandSet, handler_status: Any, service: NService) -> None:
    """Set Status, and what else a status Dataset says that this response carries."""
    response.Status = interpret_status(handler_status, service.event.name).status
    if not isinstance(handler_status, Dataset) or "Status" not in handler_status:
        return
    for element in handler_status:
        keyword = element.keyword
        if keyword == "Status":
            continue
        if keyword not in service.status_keywords:
            LOGGER.warning(
                "the evt.%s handler's status Dataset holds %s, which a %s does not carry; "
                "it is left out",
                service.event.name,
                keyword or element.tag,
                service.response.message_name,
            )
            continue
        try:
            setattr(response, keyword, _command_value(keyword, element.value))
            encode_command_set(response)
        except (LocalProtocolError, TypeError, ValueError) as exc:
            LOGGER.warning(
                "the evt.%s handler's status Dataset holds an unusable %s (%s); it is left out",
                service.event.name,
                keyword,
                exc,
            )
            setattr(response, keyword, None)


def _command_value(keyword: str, value: Any) -> CommandValue:
    """A pydicom element value as the command set codec holds it."""
    if keyword == "AttributeIdentifierList":
        # AT: pydicom gives one tag as an int, several as a MultiValue.
        tags = value if isinstance(value, Sequence) else [value]
        return [int(tag) for tag in tags]
    if keyword == "ErrorComment":
        # PS3.5 6.2: LO holds 64 characters; a longer comment is cut, not refused.
        return str(value)[:64]
    if value is None or isinstance(value, str | int):
        return value
    return str(value)


def _reply_payload(
    response: CommandSet,
    dataset: Any,
    request: ServiceRequest,
    context: PresentationContext,
    service: NService,
) -> bytes | None:
    """The encoded reply dataset, or None; may turn the status into a failure."""
    code = response.Status if response.Status is not None else status.PROCESSING_FAILURE
    category = status.status_category(code)
    if category not in (status.STATUS_SUCCESS, status.STATUS_WARNING):
        return None
    if service is N_CREATE:
        dataset = _assign_created_instance(response, dataset, request, category)
    if dataset is None or (isinstance(dataset, Dataset) and not dataset):
        return None
    try:
        if not isinstance(dataset, Dataset):
            raise TypeError(f"a {type(dataset).__name__} is not a pydicom Dataset")
        return encode_dataset(dataset, context.transfer_syntax[0])
    except Exception as exc:
        LOGGER.error(
            "the evt.%s handler's %s could not be encoded (%s); answering 0x%04X",
            service.event.name,
            service.reply_name,
            exc,
            status.PROCESSING_FAILURE,
        )
        response.Status = status.PROCESSING_FAILURE
        return None


def _assign_created_instance(
    response: CommandSet, dataset: Any, request: ServiceRequest, category: str
) -> Any:
    """PS3.7 10.1.5.1.4: a successful N-CREATE-RSP names the instance the SCP created when
    the request did not. As in pynetdicom, the handler puts that UID in its Attribute List
    as (0000,1000) AffectedSOPInstanceUID, which is moved into the response."""
    if category != status.STATUS_SUCCESS or request.command.AffectedSOPInstanceUID is not None:
        return dataset
    if isinstance(dataset, Dataset) and "AffectedSOPInstanceUID" in dataset:
        response.AffectedSOPInstanceUID = str(dataset.AffectedSOPInstanceUID)
        # A new Dataset: deleting from a copy would delete from the handler's own.
        attributes = Dataset()
        for element in dataset:
            if element.keyword != "AffectedSOPInstanceUID":
                attributes.add(element)
        return attributes
    LOGGER.error(
        "the N-CREATE-RQ has no Affected SOP Instance UID and the evt.EVT_N_CREATE handler's "
        "Attribute List names none (AffectedSOPInstanceUID); answering 0x%04X",
        status.PROCESSING_FAILURE,
    )
    response.Status = status.PROCESSING_FAILURE
    return None
