"""Query/Retrieve service class (PS3.4 Annex C) as the SCP: C-FIND, C-GET and C-MOVE.

The handlers are generators, as in pynetdicom:

- ``EVT_C_FIND`` yields ``(status, identifier)``: a Pending status (0xFF00 or
  0xFF01) with each match, then optionally a final status with ``None``. A
  handler that just ends means Success.
- ``EVT_C_GET`` yields the number of sub-operations (0 to 65535), then
  ``(status, dataset)``: each Pending dataset goes to the requestor as a
  C-STORE sub-operation on this association (in the SCP role for the
  requestor that it negotiated), and a Pending response reports the counts.
- ``EVT_C_MOVE`` yields the destination first: ``(address, port)``, or
  ``(address, port, kwargs for AE.associate)``, or ``(None, None)`` for an AE
  it does not know (0xA801); then the count and the ``(status, dataset)``
  pairs, whose sub-operations go to the destination over a new association
  from this AE.

The handler runs in the association's reader thread, so between two of its
yields the service takes in what the peer has sent meanwhile
(:meth:`~dicombus.association.Association.is_cancelled`): a C-CANCEL ends
the operation with a Cancel response, an A-ABORT or a release ends it without
one. A handler's mistakes become the failure statuses pynetdicom answers with,
and a log line telling the handler's author what was wrong.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from dicombus import evt
from dicombus.dataset_codec import encode_dataset
from dicombus.presentation import (
    DEFAULT_TRANSFER_SYNTAXES,
    PresentationContext,
    StoragePresentationContexts,
    build_context,
)
from dicombus.protocol import status
from dicombus.protocol.commands import CommandField, c_find_rsp, c_get_rsp, c_move_rsp
from dicombus.protocol.errors import DicombusError
from dicombus.protocol.limits import MAX_PRESENTATION_CONTEXTS
from dicombus.service_request import ServiceRequest
from dicombus.services.handler_status import HandlerStatus, interpret_status
from dicombus.services.interface import RequestorAssociation, ServiceAssociation
from dicombus.services.standard_log import standard_logging
from dicombus.services.storage import send_c_store

LOGGER = logging.getLogger("dicombus.services")

# pynetdicom's statuses for a handler's failures (PS3.4 C.4: "Unable to
# process", 0xCxxx), copied so that a peer sees the same codes from both.
FIND_HANDLER_FAILED = 0xC311
FIND_IDENTIFIER_NOT_ENCODABLE = 0xC312
GET_HANDLER_FAILED = 0xC411
GET_INVALID_COUNT = 0xC413
GET_TOO_MANY_SUB_OPERATIONS = 0xC416
MOVE_HANDLER_FAILED = 0xC511
MOVE_INVALID_COUNT = 0xC513
MOVE_NO_DESTINATION = 0xC514
MOVE_INVALID_DESTINATION = 0xC515
MOVE_TOO_MANY_SUB_OPERATIONS = 0xC516

# PS3.7 C.4.2.1.x / C.4.3.1.x: the sub-operation counters are US.
MAX_SUB_OPERATIONS = 0xFFFF

# PS3.4 Z.1.3: Composite Instance Retrieve Without Bulk Data (C-GET only).
RETRIEVE_WITHOUT_BULK_DATA = "1.2.840.10008.5.1.4.1.2.5.3"
# Its bulk data elements (PS3.4 Z.1.2.1), besides the Waveform Data in the
# Waveform Sequence and the repeating groups of _is_bulk_data.
_BULK_DATA_TAGS = frozenset(
    {
        0x7FE00010,  # Pixel Data
        0x7FE00008,  # Float Pixel Data
        0x7FE00009,  # Double Float Pixel Data
        0x00287FE0,  # Pixel Data Provider URL
        0x56000020,  # Spectroscopy Data
        0x00420011,  # Encapsulated Document
    }
)
_WAVEFORM_SEQUENCE = 0x54000100
_WAVEFORM_DATA = 0x54001010


@dataclass(frozen=True, slots=True)
class _RetrieveCodes:
    handler_failed: int
    invalid_count: int
    too_many: int


_GET_CODES = _RetrieveCodes(GET_HANDLER_FAILED, GET_INVALID_COUNT, GET_TOO_MANY_SUB_OPERATIONS)
_MOVE_CODES = _RetrieveCodes(MOVE_HANDLER_FAILED, MOVE_INVALID_COUNT, MOVE_TOO_MANY_SUB_OPERATIONS)


class _Step(Enum):
    """What the handler's generator did instead of yielding a value."""

    ENDED = "ended"
    RAISED = "raised"


# (remaining, completed, failed, warning); None leaves the element out.
Counts = tuple[int | None, int | None, int | None, int | None]


@dataclass(frozen=True, slots=True)
class _Response:
    status: HandlerStatus
    identifier: bytes | None = None  # encoded in the context's transfer syntax
    counts: Counts | None = None


class _EndRetrieval(DicombusError):
    """A sub-operation cannot even be attempted; the retrieval ends with ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"0x{status:04X}")
        self.status = status


# -- responses ------------------------------------------------------------------------


class _Responder:
    """Sends the responses to one C-FIND, C-GET or C-MOVE request."""

    def __init__(
        self,
        assoc: ServiceAssociation,
        request: ServiceRequest,
        context: PresentationContext,
        field: CommandField,
    ) -> None:
        self.assoc = assoc
        self.context_id = context.context_id or 0
        self.transfer_syntax = str(context.transfer_syntax[0])
        self.message_id = request.message_id
        self.sop_class = request.command.AffectedSOPClassUID
        self.field = field
        self.name = {
            CommandField.C_FIND_RSP: "Find",
            CommandField.C_GET_RSP: "Get",
            CommandField.C_MOVE_RSP: "Move",
        }[field]
        self.sent = 0
        # The last response's status and sub-operation counts, for the outcome
        # report (None: the association went before a final response).
        self.final_status: int | None = None
        self.final_counts: dict[str, int] = {}

    def send(self, response: _Response) -> None:
        reply = response.status
        encoded_identifier = response.identifier
        if status.status_category(reply.status) != status.STATUS_PENDING:
            self.final_status = reply.status
            names = ("remaining", "completed", "failed", "warning")
            counts = zip(names, response.counts or (), strict=False)
            self.final_counts = {
                f"{name}_suboperations": count for name, count in counts if count is not None
            }
        comment = reply.error_comment[:64] if reply.error_comment else None
        if self.field is CommandField.C_FIND_RSP:
            command = c_find_rsp(
                self.message_id,
                reply.status,
                self.sop_class,
                has_dataset=encoded_identifier is not None,
                offending_element=reply.offending_element,
                error_comment=comment,
            )
        else:
            build = c_get_rsp if self.field is CommandField.C_GET_RSP else c_move_rsp
            remaining, completed, failed, warning = response.counts or (None,) * 4
            command = build(
                self.message_id,
                reply.status,
                self.sop_class,
                remaining_suboperations=remaining,
                completed_suboperations=completed,
                failed_suboperations=failed,
                warning_suboperations=warning,
                has_dataset=encoded_identifier is not None,
                offending_element=reply.offending_element,
                error_comment=comment,
            )
        self.sent += 1
        if standard_logging():
            LOGGER.info(
                "%s SCP Response %d: 0x%04X (%s)",
                self.name,
                self.sent,
                reply.status,
                status.status_category(reply.status),
            )
        self.assoc.send_message(self.context_id, command, encoded_identifier)

    def send_status(self, code: int) -> None:
        self.send(_Response(HandlerStatus(code)))


# -- the handler's generator ----------------------------------------------------------


def _start_handler(
    assoc: ServiceAssociation,
    event: evt.InterventionEvent,
    request: ServiceRequest,
    context: PresentationContext,
) -> Iterator[Any] | None:
    """Call the handler; its results as an iterator, or None when it failed outright."""
    attrs = {
        "request": request,
        "context": context.as_tuple,
        "_is_cancelled": assoc.is_cancelled,
    }
    try:
        result = evt.trigger(assoc, event, attrs)
    except evt.NoHandlerBound:
        LOGGER.error("no handler is bound to evt.%s", event.name)
        return None
    except Exception:
        LOGGER.exception("Exception in the handler bound to 'evt.%s'", event.name)
        return None
    if result is None:
        return iter(())
    try:
        results: Iterator[Any] = iter(result)
    except TypeError:
        LOGGER.error(
            "the handler bound to 'evt.%s' returned %s; it must be a generator (use 'yield')",
            event.name,
            type(result).__name__,
        )
        return None
    return results


def _pull(results: Iterator[Any], event: evt.InterventionEvent) -> Any:
    """The handler's next yield, or a _Step saying it ended or raised."""
    try:
        return next(results)
    except StopIteration:
        return _Step.ENDED
    except Exception:
        LOGGER.exception("Exception in the handler bound to 'evt.%s'", event.name)
        return _Step.RAISED


def _close(results: Iterator[Any]) -> None:
    """Run the handler's ``finally`` blocks when the operation ends before it does."""
    close = getattr(results, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        LOGGER.exception("the handler's generator raised while being closed")


def _status_pair(item: Any, event: evt.InterventionEvent) -> tuple[HandlerStatus, Any] | None:
    if isinstance(item, tuple | list) and len(item) == 2:
        return interpret_status(item[0], event.name), item[1]
    LOGGER.error(
        "the handler bound to 'evt.%s' yielded %s; yield (status, dataset) pairs",
        event.name,
        type(item).__name__,
    )
    return None


# -- serving one request -------------------------------------------------------------

Run = Callable[
    [ServiceAssociation, ServiceRequest, PresentationContext, _Responder, Iterator[Any]], None
]


@dataclass(frozen=True, slots=True)
class _Service:
    event: evt.InterventionEvent
    response: CommandField
    handler_failed: int
    run: Run


def _serve(
    assoc: ServiceAssociation,
    request: ServiceRequest,
    context: PresentationContext,
    service: _Service,
) -> None:
    """Call the handler, let ``service.run`` answer from its yields, report the outcome."""
    responder = _Responder(assoc, request, context, service.response)
    try:
        results = _start_handler(assoc, service.event, request, context)
        if results is None:
            responder.send_status(service.handler_failed)
            return
        try:
            service.run(assoc, request, context, responder, results)
        finally:
            _close(results)
    finally:
        assoc.report_outcome(
            service.event,
            responder.final_status,
            request=request,
            context=context.as_tuple,
            details={**request.outcome, **responder.final_counts},
        )


# -- C-FIND ---------------------------------------------------------------------------


def serve_c_find(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    _serve(assoc, request, context, _FIND)


def _find(
    assoc: ServiceAssociation,
    request: ServiceRequest,
    context: PresentationContext,
    responder: _Responder,
    results: Iterator[Any],
) -> None:
    matches = 0
    while True:
        item = _pull(results, evt.EVT_C_FIND)
        cancelled = assoc.is_cancelled(responder.message_id)
        if not assoc.is_established:
            return
        if item is _Step.ENDED:
            responder.send_status(status.SUCCESS)
            return
        if cancelled:
            responder.send_status(status.CANCEL)
            return
        pair = None if item is _Step.RAISED else _status_pair(item, evt.EVT_C_FIND)
        if pair is None:
            responder.send_status(FIND_HANDLER_FAILED)
            return
        reply, identifier = pair
        category = status.status_category(reply.status)
        if category == status.STATUS_PENDING:
            encoded = _encoded_match(identifier, responder.transfer_syntax)
            if encoded is None:
                responder.send_status(FIND_IDENTIFIER_NOT_ENCODABLE)
                return
            responder.send(_Response(reply, encoded))
            matches += 1
            # Published with the outcome: how many identifiers the query returned.
            request.outcome["matches"] = matches
            continue
        responder.send(_Response(reply))
        # As pynetdicom: a Warning (PS3.4 C.6.4, a Repository Query's 0xB001)
        # may be followed by more matches; any other status is the last.
        if category != status.STATUS_WARNING:
            return


def _encoded_match(identifier: Any, transfer_syntax: str) -> bytes | None:
    if not isinstance(identifier, Dataset):
        LOGGER.error(
            "the handler bound to 'evt.EVT_C_FIND' yielded a Pending status with %s; "
            "a Pending status needs the matching identifier as a pydicom Dataset",
            type(identifier).__name__,
        )
        return None
    try:
        return encode_dataset(identifier, transfer_syntax)
    except Exception as exc:
        LOGGER.error(
            "Failed encoding the response 'Identifier' dataset yielded by the "
            "'evt.EVT_C_FIND' handler: %s",
            exc,
        )
        return None


# -- C-GET and C-MOVE: sub-operations -------------------------------------------------


@dataclass(slots=True)
class _SubOperations:
    """The tally of one retrieval's C-STORE sub-operations (PS3.4 C.4.2.3, C.4.3.3)."""

    total: int
    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def pending_counts(self) -> Counts:
        return self.remaining, self.completed, self.failed, self.warning

    def final_counts(self) -> Counts:
        # PS3.7 9.1.3.1.5 / 9.1.4.1.6: no Remaining count in a final response.
        return None, self.completed, self.failed, self.warning

    def failed_list(self, transfer_syntax: str, offered: Any = None) -> bytes:
        """The identifier of a Cancel, Warning or Failure response: the handler's own
        dataset when it holds the list, else the UIDs of the failed sub-operations."""
        if isinstance(offered, Dataset) and "FailedSOPInstanceUIDList" in offered:
            try:
                return encode_dataset(offered, transfer_syntax)
            except Exception as exc:
                LOGGER.error(
                    "the Failed SOP Instance UID List yielded by the handler cannot be "
                    "encoded (%s); sending the list of the failed sub-operations instead",
                    exc,
                )
        identifier = Dataset()
        identifier.FailedSOPInstanceUIDList = list(self.failed_uids)
        return encode_dataset(identifier, transfer_syntax)


StoreSubOperation = Callable[[Dataset, int], Dataset]


class _Retrieval:
    """Runs the (status, dataset) part of a C-GET or C-MOVE handler."""

    def __init__(
        self,
        assoc: ServiceAssociation,
        responder: _Responder,
        event: evt.InterventionEvent,
        codes: _RetrieveCodes,
        total: int,
        store: StoreSubOperation,
    ) -> None:
        self.assoc = assoc
        self.responder = responder
        self.event = event
        self.codes = codes
        self.ops = _SubOperations(total=total, remaining=total)
        self.store = store
        self._message_id = responder.message_id

    def run(self, results: Iterator[Any]) -> _Response | None:
        """The final response to send, or None when the association went away."""
        try:
            return self._run(results)
        except _EndRetrieval as end:
            return _Response(HandlerStatus(end.status))

    def _run(self, results: Iterator[Any]) -> _Response | None:
        ops = self.ops
        while True:
            item = _pull(results, self.event)
            cancelled = self.assoc.is_cancelled(self.responder.message_id)
            if not self.assoc.is_established:
                return None
            if item is _Step.ENDED:
                return self._final()
            if cancelled:
                return self._cancelled(HandlerStatus(status.CANCEL), None)
            if ops.remaining <= 0:
                LOGGER.warning(
                    "the handler bound to 'evt.%s' yielded more after its %d sub-operations; "
                    "the rest is ignored",
                    self.event.name,
                    ops.total,
                )
                return self._final()
            pair = None if item is _Step.RAISED else _status_pair(item, self.event)
            reply, dataset = pair or (HandlerStatus(self.codes.handler_failed), None)
            category = status.status_category(reply.status)
            if category == status.STATUS_PENDING:
                if dataset is None or (isinstance(dataset, Dataset) and not dataset):
                    LOGGER.warning(
                        "the handler bound to 'evt.%s' yielded a Pending status without a "
                        "dataset; nothing to store, ignored",
                        self.event.name,
                    )
                    continue
                self._sub_operation(dataset)
                self.responder.send(_Response(reply, counts=ops.pending_counts()))
                continue
            if category == status.STATUS_CANCEL:
                return self._cancelled(reply, dataset)
            if category == status.STATUS_SUCCESS:
                return self._final()
            # Warning, Failure, or a status of no category: the handler ends the
            # retrieval, and what was not attempted counts as failed.
            counts = (None, ops.completed, ops.failed + ops.remaining, ops.warning)
            return _Response(reply, self._failed_list(dataset), counts)

    def _cancelled(self, reply: HandlerStatus, dataset: Any) -> _Response:
        if standard_logging():
            LOGGER.info("Received C-CANCEL-%s RQ from peer", self.responder.name.upper())
        ops = self.ops
        return _Response(reply, self._failed_list(dataset), ops.pending_counts())

    def _final(self) -> _Response:
        ops = self.ops
        if not ops.failed and not ops.warning:
            return _Response(HandlerStatus(status.SUCCESS), None, ops.final_counts())
        # As pynetdicom: 0xA702 when every sub-operation failed, else 0xB000.
        if ops.failed == ops.total:
            code = status.OUT_OF_RESOURCES_SUB_OPERATIONS
        else:
            code = status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES
        return _Response(HandlerStatus(code), self._failed_list(None), ops.final_counts())

    def _failed_list(self, offered: Any) -> bytes:
        return self.ops.failed_list(self.responder.transfer_syntax, offered)

    def _next_message_id(self) -> int:
        # Message IDs are US: 1..65535 after the request's own, wrapping.
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _sub_operation(self, dataset: Any) -> None:
        ops = self.ops
        ops.remaining -= 1
        if not isinstance(dataset, Dataset):
            LOGGER.error(
                "the handler bound to 'evt.%s' yielded a Pending status with %s; a Pending "
                "status needs the instance to store as a pydicom Dataset (counted as failed)",
                self.event.name,
                type(dataset).__name__,
            )
            ops.failed += 1
            return
        category = self._store(dataset)
        if category == status.STATUS_SUCCESS:
            ops.completed += 1
        elif category == status.STATUS_WARNING:
            ops.warning += 1
        else:
            # PS3.4 C.4.3.1.3.2: the failed instance goes in the list.
            ops.failed += 1
            uid = dataset.get("SOPInstanceUID")
            if uid:
                ops.failed_uids.append(str(uid))

    def _store(self, dataset: Dataset) -> str:
        """Send one C-STORE sub-operation; the category of its outcome."""
        try:
            result = self.store(dataset, self._next_message_id())
        except _EndRetrieval:
            raise
        except Exception as exc:
            LOGGER.warning("C-STORE sub-operation failed: %s", exc)
            return status.STATUS_FAILURE
        code = result.get("Status")
        if code is None:
            LOGGER.warning("C-STORE sub-operation failed: no response")
            return status.STATUS_FAILURE
        category = status.status_category(int(code))
        if standard_logging():
            LOGGER.info(
                "%s SCP: Received Store SCP response 0x%04X (%s)",
                self.responder.name,
                code,
                category,
            )
        return category


def _sub_operation_count(
    assoc: ServiceAssociation,
    responder: _Responder,
    results: Iterator[Any],
    event: evt.InterventionEvent,
    codes: _RetrieveCodes,
) -> int | None:
    """The number the handler yielded first (PS3.4 C.4.2.3.1); None when there is
    nothing more to do (answered already, or the association went away)."""
    item = _pull(results, event)
    assoc.poll_peer()
    if not assoc.is_established:
        return None
    if item is _Step.ENDED or item is _Step.RAISED:
        if item is _Step.ENDED:
            LOGGER.error(
                "the handler bound to 'evt.%s' ended before yielding the number of sub-operations",
                event.name,
            )
        responder.send_status(codes.invalid_count)
        return None
    if isinstance(item, bool) or not isinstance(item, numbers.Integral) or int(item) < 0:
        LOGGER.error(
            "the handler bound to 'evt.%s' must first yield the number of sub-operations "
            "as an int from 0 to %d, not %r",
            event.name,
            MAX_SUB_OPERATIONS,
            item if isinstance(item, numbers.Number) else type(item).__name__,
        )
        responder.send_status(codes.invalid_count)
        return None
    count = int(item)
    if count > MAX_SUB_OPERATIONS:
        LOGGER.error(
            "the handler bound to 'evt.%s' yielded %d sub-operations; a retrieval has at most "
            "%d, as the response's counters are 16-bit",
            event.name,
            count,
            MAX_SUB_OPERATIONS,
        )
        responder.send_status(codes.too_many)
        return None
    if count == 0:
        responder.send(_Response(HandlerStatus(status.SUCCESS), counts=(None, 0, 0, 0)))
        return None
    return count


# -- C-GET ----------------------------------------------------------------------------


def serve_c_get(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    _serve(assoc, request, context, _GET)


def _get(
    assoc: ServiceAssociation,
    request: ServiceRequest,
    context: PresentationContext,
    responder: _Responder,
    results: Iterator[Any],
) -> None:
    total = _sub_operation_count(assoc, responder, results, evt.EVT_C_GET, _GET_CODES)
    if total is None:
        return
    without_bulk = context.abstract_syntax == RETRIEVE_WITHOUT_BULK_DATA

    def store(dataset: Dataset, message_id: int) -> Dataset:
        if without_bulk:
            dataset = _without_bulk_data(dataset)
        # Sent on this association from its reader thread, which then reads
        # the response itself (see Association._next_response).
        return send_c_store(assoc, dataset, msg_id=message_id)

    final = _Retrieval(assoc, responder, evt.EVT_C_GET, _GET_CODES, total, store).run(results)
    if final is not None:
        responder.send(final)


def _without_bulk_data(dataset: Dataset) -> Dataset:
    """The instance without its bulk data (PS3.4 Z.1.2.1), as a new Dataset: the
    handler's own is left as it was."""
    kept = Dataset()
    removed: list[str] = []
    for element in dataset:
        if _is_bulk_data(element.tag):
            removed.append(element.keyword or str(element.tag))
        elif element.tag == _WAVEFORM_SEQUENCE:
            items = []
            for item in element.value:
                copy = Dataset()
                for inner in item:
                    if inner.tag == _WAVEFORM_DATA:
                        removed.append("WaveformData")
                    else:
                        copy.add(inner)
                items.append(copy)
            kept.WaveformSequence = items
        else:
            kept.add(element)
    meta = getattr(dataset, "file_meta", None)
    if meta is not None:
        kept.file_meta = meta
    if removed:
        LOGGER.warning(
            "Composite Instance Retrieve Without Bulk Data: removed %s from the instance",
            ", ".join(sorted(set(removed))),
        )
    return kept


def _is_bulk_data(tag: BaseTag) -> bool:
    if tag in _BULK_DATA_TAGS:
        return True
    group, element = tag.group, tag.element
    if group % 2:
        return False
    # PS3.4 Z.1.2.1: the repeating groups 50xx (Audio Sample Data 200C,
    # Curve Data 3000) and 60xx (Overlay Data 3000).
    if 0x5000 <= group <= 0x50FF:
        return element in (0x200C, 0x3000)
    return 0x6000 <= group <= 0x60FF and element == 0x3000


# -- C-MOVE ---------------------------------------------------------------------------


def serve_c_move(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    _serve(assoc, request, context, _MOVE)


def _move(
    assoc: ServiceAssociation,
    request: ServiceRequest,
    context: PresentationContext,
    responder: _Responder,
    results: Iterator[Any],
) -> None:
    item = _pull(results, evt.EVT_C_MOVE)
    assoc.poll_peer()
    if not assoc.is_established:
        return
    destination = _destination(item, request)
    if isinstance(destination, int):
        responder.send_status(destination)
        return
    total = _sub_operation_count(assoc, responder, results, evt.EVT_C_MOVE, _MOVE_CODES)
    if total is None:
        return
    store = _MoveDestination(assoc, request, *destination)
    try:
        final = _Retrieval(assoc, responder, evt.EVT_C_MOVE, _MOVE_CODES, total, store).run(results)
    finally:
        # Released before the final response, so that when the requestor
        # hears "done" the destination has everything.
        store.release()
    if final is not None:
        responder.send(final)


def _destination(item: Any, request: ServiceRequest) -> tuple[str, int, dict[str, Any]] | int:
    """The handler's first yield checked: (address, port, associate kwargs), or the
    status to answer with."""
    if isinstance(item, _Step):
        LOGGER.error(
            "The C-MOVE request handler must yield the (address, port) of the destination AE, "
            "then yield the number of sub-operations, then yield (status, dataset) pairs."
        )
        return MOVE_NO_DESTINATION
    if isinstance(item, tuple | list) and len(item) in (2, 3):
        address, port = item[0], item[1]
        if address is None or port is None:
            LOGGER.error("Unknown Move Destination: %s", request.MoveDestination)
            return status.MOVE_DESTINATION_UNKNOWN
        options = item[2] if len(item) == 3 else None
        valid_port = isinstance(port, int) and not isinstance(port, bool)
        if isinstance(address, str) and valid_port and isinstance(options, dict | None):
            return address, port, dict(options or {})
    LOGGER.error(
        "The handler bound to 'evt.EVT_C_MOVE' yielded an invalid destination AE: %r; "
        "yield (address, port) or (address, port, kwargs), or (None, None) when the move "
        "destination is unknown",
        item if isinstance(item, tuple | list) else type(item).__name__,
    )
    return MOVE_INVALID_DESTINATION


class _MoveDestination:
    """The association to the move destination, opened for the first sub-operation."""

    def __init__(
        self,
        assoc: ServiceAssociation,
        request: ServiceRequest,
        address: str,
        port: int,
        options: dict[str, Any],
    ) -> None:
        self.opener = assoc.association_opener
        self.address = address
        self.port = port
        self.options = {"ae_title": request.MoveDestination, **options}
        # PS3.7 9.3.1.1: the Move Originator is the AE that invoked the C-MOVE.
        self.originator_aet = assoc.requestor.ae_title
        self.originator_id = request.message_id
        self.store_assoc: RequestorAssociation | None = None

    def __call__(self, dataset: Dataset, message_id: int) -> Dataset:
        if self.store_assoc is None:
            self.store_assoc = self._open(dataset)
        return send_c_store(
            self.store_assoc,
            dataset,
            msg_id=message_id,
            originator_aet=self.originator_aet,
            originator_id=self.originator_id,
        )

    def _open(self, first: Dataset) -> RequestorAssociation:
        options = dict(self.options)
        contexts = options.pop("contexts", None) or _move_contexts(
            self.opener.requested_contexts, first
        )
        try:
            store_assoc = self.opener.associate(self.address, self.port, contexts, **options)
        except Exception:
            LOGGER.exception(
                "The handler bound to 'evt.EVT_C_MOVE' yielded an invalid destination AE "
                "(addr, port) or (addr, port, kwargs) value"
            )
            raise _EndRetrieval(MOVE_INVALID_DESTINATION) from None
        if not store_assoc.is_established:
            LOGGER.error("Move SCP: Unable to associate with destination AE")
            raise _EndRetrieval(status.MOVE_DESTINATION_UNKNOWN)
        return store_assoc

    def release(self) -> None:
        if self.store_assoc is not None:
            self.store_assoc.release()


def _move_contexts(
    configured: list[PresentationContext], first: Dataset
) -> list[PresentationContext]:
    """What to propose to the move destination.

    The AE's requested contexts when it has any (pynetdicom's behaviour);
    otherwise the common storage contexts, with the first instance's SOP
    class offered in its own transfer syntax, so that at least a retrieval
    of one kind of instance always finds its context.
    """
    if configured:
        return configured
    sop_class = first.get("SOPClassUID")
    if not sop_class:
        return list(StoragePresentationContexts)
    meta = getattr(first, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    syntaxes = [str(syntax)] if syntax else []
    syntaxes.extend(ts for ts in DEFAULT_TRANSFER_SYNTAXES if ts not in syntaxes)
    others = [c for c in StoragePresentationContexts if c.abstract_syntax != sop_class]
    return [build_context(str(sop_class), syntaxes), *others][:MAX_PRESENTATION_CONTEXTS]


_FIND = _Service(evt.EVT_C_FIND, CommandField.C_FIND_RSP, FIND_HANDLER_FAILED, _find)
_GET = _Service(evt.EVT_C_GET, CommandField.C_GET_RSP, GET_HANDLER_FAILED, _get)
_MOVE = _Service(evt.EVT_C_MOVE, CommandField.C_MOVE_RSP, MOVE_HANDLER_FAILED, _move)
