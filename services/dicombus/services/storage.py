"""Storage service class (PS3.4 Annex B): C-STORE, both roles.

SCP: the handler bound to EVT_C_STORE gets the request with its dataset still
encoded (in memory, or in a spool file for large ones) and decides the status.
SCU: a dataset is encoded in the accepted transfer syntax; a Part 10 file whose
transfer syntax was accepted is sent as its bytes lie on disk (memory-mapped,
never copied into Python).
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicombus import config, evt
from dicombus.dataset_codec import (
    DatasetCodecError,
    Part10Header,
    encode_dataset,
    read_part10_header,
)
from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.commands import c_store_rq, c_store_rsp
from dicombus.service_request import ServiceRequest
from dicombus.services.handler_status import HandlerStatus, interpret_status
from dicombus.services.interface import ServiceAssociation
from dicombus.services.scu import require_established, status_dataset
from dicombus.services.standard_log import standard_logging
from dicombus.sop_class import STORAGE_SOP_CLASSES

LOGGER = logging.getLogger("dicombus.services")

_STORAGE = frozenset(STORAGE_SOP_CLASSES)
# pynetdicom answers 0xC211 when the C-STORE handler fails; peers see the same.
STATUS_HANDLER_FAILED = 0xC211
# Error Comment (0000,0902) is at most 64 characters.
OUTCOME_NOT_RECORDED = "the node cannot record the event of this store"
# PS3.7 9.1.1.1: Priority (0000,0700) 0002H is LOW; pynetdicom sends it by default.
LOW_PRIORITY = 2


def serve_c_store(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> None:
    command = request.command
    if not (config.UNRESTRICTED_STORAGE_SERVICE or context.abstract_syntax in _STORAGE):
        reply = HandlerStatus(
            status.SOP_CLASS_NOT_SUPPORTED, error_comment="not a storage presentation context"
        )
    elif command.AffectedSOPClassUID != context.abstract_syntax:
        # A message travels on the presentation context negotiated for its SOP
        # class (the context's abstract syntax, PS3.8 9.3.2.2.1). A C-STORE
        # claiming another class over it would be stored as that class although
        # negotiation never accepted it, bypassing the configured SOP classes.
        # 0x0122 (PS3.7 C.5: Refused, SOP Class not supported) says the class
        # is not supported there, as pynetdicom answers for a class it has no
        # context for.
        reply = HandlerStatus(
            status.SOP_CLASS_NOT_SUPPORTED,
            error_comment="SOP class differs from the presentation context",
        )
    else:
        reply = _ask_handler(assoc, request, context)
    # Reported before the response leaves: a Success is sent only once its outcome is
    # accounted for (the event bus journals the event). If it cannot be, the peer
    # hears Out of Resources (PS3.4 B.2.3: a failure it may retry) instead, the
    # observers hear that status (those after the refusing one heard nothing yet),
    # and the file this request wrote goes, so that the disk agrees with the answer.
    if not _report(assoc, request, context, reply.status):
        withdraw_stored_file(request.outcome)
        reply = HandlerStatus(status.OUT_OF_RESOURCES, error_comment=OUTCOME_NOT_RECORDED)
        _report(assoc, request, context, reply.status)
    response = c_store_rsp(
        request.message_id,
        reply.status,
        command.AffectedSOPClassUID,
        command.AffectedSOPInstanceUID,
        offending_element=reply.offending_element,
        error_comment=reply.error_comment,
    )
    assoc.send_message(context.context_id or 0, response, None)


def _report(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext, code: int
) -> bool:
    return assoc.report_outcome(
        evt.EVT_C_STORE, code, request=request, context=context.as_tuple, details=request.outcome
    )


def withdraw_stored_file(outcome: dict[str, Any]) -> None:
    """Remove the file the handler recorded as ``stored_path`` if this request wrote it
    under a name that was free. One it found there already (``duplicate`` recorded: an
    identical copy, or a different one replaced or kept beside) belongs to an earlier
    store that was answered, and stays."""
    path = outcome.get("stored_path")
    if path is None or "duplicate" in outcome:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        LOGGER.error("cannot remove %s, whose store is answered as failed: %s", path, exc)
        return
    else:
        LOGGER.warning("removed %s: its store is answered as failed (event not recorded)", path)
    del outcome["stored_path"]
    outcome.pop("stored_size", None)


def _ask_handler(
    assoc: ServiceAssociation, request: ServiceRequest, context: PresentationContext
) -> HandlerStatus:
    try:
        result = evt.trigger(
            assoc, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple}
        )
    except evt.NoHandlerBound:
        LOGGER.error(
            "no handler is bound to evt.EVT_C_STORE; answering 0x%04X", STATUS_HANDLER_FAILED
        )
        return HandlerStatus(STATUS_HANDLER_FAILED, error_comment="no storage handler")
    except Exception as exc:
        LOGGER.exception("the EVT_C_STORE handler raised; answering 0x%04X", STATUS_HANDLER_FAILED)
        return HandlerStatus(STATUS_HANDLER_FAILED, error_comment=str(exc)[:64] or None)
    return interpret_status(result, evt.EVT_C_STORE.name)


# -- SCU ------------------------------------------------------------------------------


def send_c_store(
    assoc: ServiceAssociation,
    dataset: Dataset | str | Path,
    *,
    msg_id: int,
    priority: int = LOW_PRIORITY,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> Dataset:
    """Send one instance; return the response's status Dataset (empty if none came)."""
    require_established(assoc, "C-STORE")
    with _encoded_instance(assoc, dataset) as (context, sop_class, sop_instance, payload):
        command = c_store_rq(
            msg_id,
            sop_class,
            sop_instance,
            priority,
            move_originator_ae_title=originator_aet,
            move_originator_message_id=originator_id,
        )
        if standard_logging():
            LOGGER.info("Sending Store Request: MsgID %d (%s)", msg_id, sop_instance)
        for response in assoc.send_request(context.context_id or 0, command, payload):
            return status_dataset(response)
    return Dataset()


@contextmanager
def _encoded_instance(
    assoc: ServiceAssociation, source: Dataset | str | Path
) -> Iterator[tuple[PresentationContext, str, str, Any]]:
    if isinstance(source, Dataset):
        sop_class, sop_instance = str(source.SOPClassUID), str(source.SOPInstanceUID)
        meta = getattr(source, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        context = select_store_context(assoc, sop_class, syntax)
        yield context, sop_class, sop_instance, encode_dataset(source, context.transfer_syntax[0])
        return
    path = Path(source)
    try:
        header = read_part10_header(path)
    except DatasetCodecError:
        # Not a Part 10 file we can stream (no preamble/meta): decode it whole.
        with _encoded_instance(assoc, dcmread(path, force=True)) as encoded:
            yield encoded
        return
    context = select_store_context(assoc, header.sop_class_uid, header.transfer_syntax)
    if context.transfer_syntax[0] == header.transfer_syntax:
        with _mapped_dataset(path, header) as payload:
            yield context, header.sop_class_uid, header.sop_instance_uid, payload
        return
    converted = encode_dataset(dcmread(path), context.transfer_syntax[0])
    yield context, header.sop_class_uid, header.sop_instance_uid, converted


@contextmanager
def _mapped_dataset(path: Path, header: Part10Header) -> Iterator[memoryview | bytes]:
    with path.open("rb") as stream:
        size = path.stat().st_size
        if size <= header.dataset_offset:
            yield b""
            return
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            payload = view[header.dataset_offset :]
            try:
                yield payload
            finally:
                # The caller's `as` target still holds the slice when its block
                # ends; an unreleased slice keeps the map from closing.
                payload.release()
                view.release()


def select_store_context(
    assoc: ServiceAssociation, sop_class: str, transfer_syntax: str | None
) -> PresentationContext:
    """An accepted SCU context for ``sop_class``: the same transfer syntax if we have it,
    else one we can convert an uncompressed dataset to."""
    candidates = [
        c
        for c in assoc.accepted_contexts
        if c.abstract_syntax == sop_class and c.as_scu is not False
    ]
    for context in candidates:
        if transfer_syntax is not None and context.transfer_syntax[0] == transfer_syntax:
            return context
    if transfer_syntax is None or not UID(transfer_syntax).is_compressed:
        for context in candidates:
            if not UID(context.transfer_syntax[0]).is_compressed:
                return context
    wanted = f" with transfer syntax '{UID(transfer_syntax).name}'" if transfer_syntax else ""
    raise ValueError(
        f"no presentation context for '{UID(sop_class).name}'{wanted} has been accepted by "
        "the peer for the SCU role"
    )
