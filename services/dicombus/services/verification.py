"""Verification service class (PS3.4 Annex A): C-ECHO, both roles."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset

from dicombus import evt
from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.commands import c_echo_rq, c_echo_rsp
from dicombus.service_request import ServiceRequest
from dicombus.services.handler_status import interpret_status
from dicombus.services.interface import ServiceAssociation
from dicombus.services.scu import require_context, status_dataset
from dicombus.services.standard_log import standard_logging

LOGGER = logging.getLogger("dicombus.services")

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


def serve_c_echo(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    try:
        result = evt.trigger(
            assoc, evt.EVT_C_ECHO, {"request": request, "context": context.as_tuple}
        )
        reply = interpret_status(result, evt.EVT_C_ECHO.name)
    except evt.NoHandlerBound:
        reply = interpret_status(status.SUCCESS, evt.EVT_C_ECHO.name)  # PS3.4 A.4: always answer
    except Exception:
        LOGGER.exception(
            "the EVT_C_ECHO handler raised; answering 0x%04X", status.PROCESSING_FAILURE
        )
        reply = interpret_status(status.PROCESSING_FAILURE, evt.EVT_C_ECHO.name)
    response = c_echo_rsp(
        request.message_id,
        reply.status,
        request.command.AffectedSOPClassUID or VERIFICATION_SOP_CLASS,
        error_comment=reply.error_comment,
    )
    assoc.send_message(context.context_id or 0, response, None)
    assoc.report_outcome(
        evt.EVT_C_ECHO,
        reply.status,
        request=request,
        context=context.as_tuple,
        details=request.outcome,
    )


def send_c_echo(assoc: ServiceAssociation, message_id: int) -> Dataset:
    """Send a C-ECHO-RQ; return the response's status Dataset (empty if none came)."""
    context = require_context(assoc, VERIFICATION_SOP_CLASS, "C-ECHO")
    if standard_logging():
        LOGGER.info("Sending Echo Request: MsgID %d", message_id)
    for response in assoc.send_request(context.context_id or 0, c_echo_rq(message_id), None):
        return status_dataset(response)
    return Dataset()
