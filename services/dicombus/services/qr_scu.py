"""Query/Retrieve as the SCU (PS3.4 Annex C): C-FIND, C-GET, C-MOVE and C-CANCEL.

``send_c_find`` / ``send_c_get`` / ``send_c_move`` send their request at once
and return a generator of ``(status, identifier)`` pairs, one per response, as
pynetdicom's do: the request is on the wire before the caller asks for the
first response, so a C-CANCEL sent from the loop always follows it.

The C-STORE sub-operations of a C-GET arrive as requests on the same
association; the reader thread serves them with the EVT_C_STORE handler bound
to the association (the requestor must have proposed the SCP role for their
storage SOP classes, with ``build_role``). Those of a C-MOVE go to the move
destination over an association of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset

from dicombus.dataset_codec import decode_dataset, encode_dataset
from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.commands import (
    CommandField,
    CommandSet,
    c_cancel_rq,
    c_find_rq,
    c_get_rq,
    c_move_rq,
)
from dicombus.protocol.fragments import DimseMessage
from dicombus.services.interface import ServiceAssociation
from dicombus.services.scu import require_context, require_established
from dicombus.services.standard_log import standard_logging

LOGGER = logging.getLogger("dicombus.services")

QueryResponses = Iterator[tuple[Dataset, Dataset | None]]

# The response elements pynetdicom puts in the status Dataset of each service.
_FIND_STATUS_KEYWORDS = ("Status", "OffendingElement", "ErrorComment")
_RETRIEVE_STATUS_KEYWORDS = (
    *_FIND_STATUS_KEYWORDS,
    "NumberOfRemainingSuboperations",
    "NumberOfCompletedSuboperations",
    "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations",
)

# PS3.4 C.6.4 (Repository Query): a Warning 0xB001 ends one batch of Pending
# responses, and more may follow it.
REPOSITORY_QUERY = "1.2.840.10008.5.1.4.1.1.201.6"
STATUS_RESPONSE_LIMIT_REACHED = 0xB001


def send_c_find(
    assoc: ServiceAssociation, dataset: Dataset, query_model: str, *, msg_id: int, priority: int
) -> QueryResponses:
    """Send a C-FIND-RQ; yields (status, identifier) per response, identifier only when Pending."""
    context = require_context(assoc, query_model, "C-FIND")
    payload = _encoded_identifier(dataset, context)
    if standard_logging():
        LOGGER.info("Sending Find Request: MsgID %d", msg_id)
    # None: the association's default, another response follows a Pending one.
    more_follow = _is_pending_or_batch_end if query_model == REPOSITORY_QUERY else None
    responses = assoc.start_request(
        context.context_id or 0,
        c_find_rq(msg_id, query_model, priority),
        payload,
        more_follow=more_follow,
    )
    return _find_results(assoc, responses, context.transfer_syntax[0])


def send_c_get(
    assoc: ServiceAssociation, dataset: Dataset, query_model: str, *, msg_id: int, priority: int
) -> QueryResponses:
    """Send a C-GET-RQ; the instances arrive as C-STORE requests on this association."""
    context = require_context(assoc, query_model, "C-GET")
    payload = _encoded_identifier(dataset, context)
    if standard_logging():
        LOGGER.info("Sending Get Request: MsgID %d", msg_id)
    responses = assoc.start_request(
        context.context_id or 0, c_get_rq(msg_id, query_model, priority), payload
    )
    return _retrieve_results(assoc, responses, context.transfer_syntax[0], CommandField.C_GET_RSP)


def send_c_move(
    assoc: ServiceAssociation,
    dataset: Dataset,
    move_aet: str,
    query_model: str,
    *,
    msg_id: int,
    priority: int,
) -> QueryResponses:
    """Send a C-MOVE-RQ asking the peer to store the matches at the AE ``move_aet``."""
    context = require_context(assoc, query_model, "C-MOVE")
    payload = _encoded_identifier(dataset, context)
    if standard_logging():
        LOGGER.info("Sending Move Request: MsgID %d", msg_id)
    command = c_move_rq(msg_id, query_model, move_aet, priority)
    responses = assoc.start_request(context.context_id or 0, command, payload)
    return _retrieve_results(assoc, responses, context.transfer_syntax[0], CommandField.C_MOVE_RSP)


def send_c_cancel(
    assoc: ServiceAssociation, msg_id: int, *, context_id: int | None, query_model: str | None
) -> None:
    """Send a C-CANCEL-RQ for the C-FIND/GET/MOVE request ``msg_id``.

    Its context is the one of ``query_model``, or ``context_id`` when no model is given.
    """
    require_established(assoc, "C-CANCEL")
    if isinstance(query_model, str):
        context_id = require_context(assoc, query_model, "C-CANCEL").context_id
    elif not isinstance(context_id, int):
        raise ValueError(
            "'send_c_cancel' requires either the 'query_model' used for the service request "
            "or the corresponding 'context_id'"
        )
    if standard_logging():
        LOGGER.info("Sending C-CANCEL request")
    assoc.send_message(context_id or 0, c_cancel_rq(msg_id), None)


# -- responses ------------------------------------------------------------------------


def _find_results(
    assoc: ServiceAssociation, responses: Iterator[DimseMessage | None], syntax: str
) -> QueryResponses:
    for number, response in enumerate(responses, start=1):
        # None: no response in time, or the association ended.
        if response is None or not _is_response(assoc, response, CommandField.C_FIND_RSP):
            yield Dataset(), None
            return
        result = response.command.to_dataset(_FIND_STATUS_KEYWORDS)
        code = result.Status
        category = status.status_category(code)
        if category != status.STATUS_PENDING:
            if standard_logging():
                LOGGER.info("Find SCP Result: 0x%04X (%s)", code, category)
            yield result, None
            continue  # a Repository Query batch end; otherwise the iterator is done
        if standard_logging():
            LOGGER.info("Find SCP Response: %d - 0x%04X (Pending)", number, code)
        yield result, _decoded_identifier(response, syntax)


def _retrieve_results(
    assoc: ServiceAssociation,
    responses: Iterator[DimseMessage | None],
    syntax: str,
    field: CommandField,
) -> QueryResponses:
    name = "Get" if field is CommandField.C_GET_RSP else "Move"
    for number, response in enumerate(responses, start=1):
        if response is None or not _is_response(assoc, response, field):
            yield Dataset(), None
            return
        result = response.command.to_dataset(_RETRIEVE_STATUS_KEYWORDS)
        code = result.Status
        category = status.status_category(code)
        if standard_logging():
            _log_retrieve_response(name, number, code, category, response.command)
        identifier = None
        # PS3.4 C.4.2.1.4 / C.4.3.1.4: a Cancel, Warning or Failure response
        # carries the Failed SOP Instance UID List; the peer may still omit it.
        if category in (status.STATUS_CANCEL, status.STATUS_WARNING, status.STATUS_FAILURE):
            identifier = _decoded_identifier(response, syntax)
        yield result, identifier


def _log_retrieve_response(
    name: str, number: int, code: int, category: str, command: CommandSet
) -> None:
    if category == status.STATUS_PENDING:
        LOGGER.info("%s SCP Response: %d - 0x%04X (Pending)", name, number, code)
    else:
        LOGGER.info("%s SCP Result: 0x%04X (%s)", name, code, category)
    LOGGER.info(
        "Sub-Operations Remaining: %s, Completed: %s, Failed: %s, Warning: %s",
        command.NumberOfRemainingSuboperations or 0,
        command.NumberOfCompletedSuboperations or 0,
        command.NumberOfFailedSuboperations or 0,
        command.NumberOfWarningSuboperations or 0,
    )


def _is_response(assoc: ServiceAssociation, response: DimseMessage, expected: CommandField) -> bool:
    """False for a response of another kind than ``expected`` (and the association aborts)."""
    field = response.command.command_field
    if field is expected:
        return True
    LOGGER.error(
        "Received an unexpected %s message from the peer in answer to a %s; aborting",
        field.message_name,
        expected.primitive_name,
    )
    assoc.abort()
    return False


def _decoded_identifier(response: DimseMessage, syntax: str) -> Dataset | None:
    sink = response.dataset
    read = getattr(sink, "getvalue", None)
    if read is None:
        if response.command.command_field is CommandField.C_FIND_RSP:
            LOGGER.error("the Pending C-FIND response carries no Identifier")
        return None
    try:
        return decode_dataset(read(), syntax)
    except Exception:
        LOGGER.exception("Failed to decode the received Identifier dataset")
        return None


def _encoded_identifier(dataset: Dataset, context: PresentationContext) -> bytes:
    try:
        return encode_dataset(dataset, context.transfer_syntax[0])
    except Exception as exc:
        LOGGER.error("Failed to encode the supplied Identifier dataset: %s", exc)
        raise ValueError("Failed to encode the supplied Identifier dataset") from exc


def _is_pending_or_batch_end(command: CommandSet) -> bool:
    return status.is_pending(command.Status) or command.Status == STATUS_RESPONSE_LIMIT_REACHED
