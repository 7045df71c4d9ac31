"""DIMSE service classes: requests from the peer in, handler results out as responses."""

from __future__ import annotations

import logging
from collections.abc import Callable

from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.commands import NO_DATASET, CommandField, CommandSet, check_request
from dicombus.service_request import ServiceRequest
from dicombus.services.interface import ServiceAssociation
from dicombus.services.n_services import (
    serve_n_action,
    serve_n_create,
    serve_n_delete,
    serve_n_event_report,
    serve_n_get,
    serve_n_set,
)
from dicombus.services.query_retrieve import serve_c_find, serve_c_get, serve_c_move
from dicombus.services.storage import serve_c_store
from dicombus.services.verification import serve_c_echo

LOGGER = logging.getLogger("dicombus.services")

Service = Callable[[ServiceAssociation, ServiceRequest, PresentationContext], None]

SERVICES: dict[CommandField, Service] = {
    CommandField.C_ECHO_RQ: serve_c_echo,
    CommandField.C_STORE_RQ: serve_c_store,
    CommandField.C_FIND_RQ: serve_c_find,
    CommandField.C_GET_RQ: serve_c_get,
    CommandField.C_MOVE_RQ: serve_c_move,
    CommandField.N_EVENT_REPORT_RQ: serve_n_event_report,
    CommandField.N_GET_RQ: serve_n_get,
    CommandField.N_SET_RQ: serve_n_set,
    CommandField.N_ACTION_RQ: serve_n_action,
    CommandField.N_CREATE_RQ: serve_n_create,
    CommandField.N_DELETE_RQ: serve_n_delete,
}


def dispatch(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    """Serve one request; a malformed one raises RemoteProtocolError (the caller aborts)."""
    check_request(request.command)
    serve = SERVICES.get(request.command.command_field)
    if serve is None:
        _refuse_unsupported(assoc, request, context)
        return
    serve(assoc, request, context)


def _refuse_unsupported(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    """PS3.7 C.5.5: answer a request this AE does not serve with 'unrecognized operation'."""
    command = request.command
    field = command.command_field
    LOGGER.warning(
        "no service for %s on %s; answering 0x%04X",
        field.name,
        context.abstract_syntax,
        status.UNRECOGNIZED_OPERATION,
    )
    response = CommandSet(
        CommandField=field.value | 0x8000,
        MessageIDBeingRespondedTo=command.MessageID,
        AffectedSOPClassUID=command.AffectedSOPClassUID or command.RequestedSOPClassUID,
        CommandDataSetType=NO_DATASET,
        Status=status.UNRECOGNIZED_OPERATION,
    )
    assoc.send_message(context.context_id or 0, response, None)
