"""Storage Commitment Push Model, SCP side (PS3.4 Annex J), answered from the index.

A requestor asks with an N-ACTION (Action Type 1, Request Storage Commitment)
naming a Transaction UID and the instances (SOP Class and Instance UID) it
wants us to keep. The N-ACTION is answered Success once the request is
understood; the result follows in an N-EVENT-REPORT (PS3.4 J.3.3):

- Event Type 1 when every instance is committed, 2 when some failed;
- Referenced SOP Sequence: the instances the index holds, under the SOP
  Class the requestor named, with a file on disk (the edge stores durably and
  indexes before it answers Success, so these are what we keep);
- Failed SOP Sequence: the others with a Failure Reason: 0x0112 (no such
  object instance) or 0x0119 (held under another SOP Class).

The report goes on the request's association while it is open, after its
N-ACTION response (J.3.3: never before it), from a thread of its own: the
association's reader waits for the report's response. A requestor that
released first gets it on a new association to its AE title, looked up in
the move destinations, proposing the SCP role (J.3.3, PS3.7 D.3.3.4); an
unknown requestor's report is logged and dropped, as PS3.4 J.3.3 lets an SCP
do when it cannot reach the SCU.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from dicombus import evt
from dicombus.presentation import build_context, build_role
from dicombus.protocol import status
from dicombus.protocol.commands import CommandField
from dicombus.protocol.errors import DicombusError
from dicombus.qr.index import Index
from dicombus.qr.scp import Destination
from dicombus.sop_class import StorageCommitmentPushModel, StorageCommitmentPushModelInstance
from dicombus.storage_handler import failure_reply

if TYPE_CHECKING:
    from dicombus.association import Association

LOGGER = logging.getLogger("dicombus.qr")

# PS3.4 J.3.2: Action Type ID of Request Storage Commitment.
REQUEST_STORAGE_COMMITMENT = 1
# PS3.4 J.3.3: Event Type IDs of the result.
COMMITTED = 1  # Storage Commitment Request Successful
FAILURES_EXIST = 2  # Storage Commitment Request Complete - Failures Exist
# PS3.4 J.3.3.1.2: Failure Reasons.
NO_SUCH_OBJECT_INSTANCE = status.NO_SUCH_SOP_INSTANCE
CLASS_INSTANCE_CONFLICT = status.CLASS_INSTANCE_CONFLICT
# Message IDs of the reports we send: 1..65535 (PS3.7 E.1, US).
_MESSAGE_IDS = 0xFFFF


class CommitmentRequestError(DicombusError, ValueError):
    """An N-ACTION that is no usable commitment request, with the status to answer."""

    def __init__(self, code: int, comment: str) -> None:
        super().__init__(comment)
        self.code = code
        self.comment = comment


@dataclass(frozen=True, slots=True)
class _Request:
    assoc: Association
    action_information: Dataset


class StorageCommitmentSCP:
    """EVT_N_ACTION for the Storage Commitment Push Model over an index.

    ``destinations`` maps a requestor's AE title to where it listens, for
    reports it can no longer take on its own association. :meth:`close`
    waits for the reports being sent.
    """

    def __init__(
        self, index: Index, *, ae_title: str, destinations: Mapping[str, Destination]
    ) -> None:
        self.index = index
        self.ae_title = ae_title
        self.destinations = dict(destinations)
        self._lock = threading.Lock()
        # (association, Message ID) -> the request whose response is being sent.
        self._answering: dict[tuple[int, int], _Request] = {}
        self._message_ids = itertools.cycle(range(1, _MESSAGE_IDS + 1))
        # One reporter: reports leave in the order their requests were answered.
        self._reporter = ThreadPoolExecutor(1, thread_name_prefix="dicombus-commitment")

    def handlers(self) -> list[evt.HandlerBinding]:
        return [(evt.EVT_N_ACTION, self.handle_action)]

    def close(self) -> None:
        self._reporter.shutdown(wait=True)

    def handle_action(self, event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
        """EVT_N_ACTION: accept a well-formed request; its report follows the response."""
        request: Any = event.request  # type: ignore[attr-defined]
        try:
            information = _checked_request(
                event.action_type,
                request.RequestedSOPClassUID,
                request.RequestedSOPInstanceUID,
                event.action_information,
            )
        except CommitmentRequestError as exc:
            LOGGER.warning("refused a storage commitment request: %s", exc.comment)
            return failure_reply(exc.code, exc.comment), None
        assoc: Association = event.assoc
        with self._lock:
            self._answering[(id(assoc), int(request.MessageID))] = _Request(assoc, information)
        # Bound on this association only, and only until its responses are out:
        # EVT_DIMSE_SENT copies each sent data set for its handlers.
        assoc.bind(evt.EVT_DIMSE_SENT, self._on_sent)
        return status.SUCCESS, None

    def _on_sent(self, event: evt.Event) -> None:
        command = event.message.command  # type: ignore[attr-defined]
        if command.command_field is not CommandField.N_ACTION_RSP:
            return
        assoc: Association = event.assoc
        with self._lock:
            answered = self._answering.pop((id(assoc), command.MessageIDBeingRespondedTo), None)
            waiting = any(key[0] == id(assoc) for key in self._answering)
        if not waiting:
            assoc.unbind(evt.EVT_DIMSE_SENT, self._on_sent)
        if answered is not None and command.Status == status.SUCCESS:
            self._reporter.submit(self._report, answered)

    def result(self, action_information: Dataset) -> tuple[int, Dataset]:
        """(Event Type ID, Event Information) of a request, from what the index holds now."""
        items = list(action_information.ReferencedSOPSequence)
        held = self.index.locate(str(item.ReferencedSOPInstanceUID) for item in items)
        committed: list[Dataset] = []
        failed: list[Dataset] = []
        for item in items:
            sop_class, sop_instance = _uids(item)
            stored = held.get(sop_instance)
            if stored is None or not stored.path.is_file():
                failed.append(_reference(sop_class, sop_instance, NO_SUCH_OBJECT_INSTANCE))
            elif stored.sop_class_uid != sop_class:
                failed.append(_reference(sop_class, sop_instance, CLASS_INSTANCE_CONFLICT))
            else:
                committed.append(_reference(sop_class, sop_instance))
        information = Dataset()
        information.TransactionUID = action_information.TransactionUID
        if committed:
            # PS3.4 J.3.3.1.1: where the committed instances can be retrieved.
            information.RetrieveAETitle = self.ae_title
            information.ReferencedSOPSequence = committed
        if failed:
            information.FailedSOPSequence = failed
        return (FAILURES_EXIST if failed else COMMITTED), information

    def _report(self, request: _Request) -> None:
        event_type, information = self.result(request.action_information)
        transaction = information.TransactionUID
        assoc = request.assoc
        if assoc.is_established and self._send(assoc, event_type, information):
            LOGGER.info("storage commitment %s reported on the request's association", transaction)
            return
        title = assoc.requestor.ae_title.strip(" ")
        destination = self.destinations.get(title)
        if destination is None:
            LOGGER.error(
                "cannot report storage commitment %s: %s released its association and is "
                "not among the move destinations",
                transaction,
                title,
            )
            return
        self._report_on_new_association(assoc, title, destination, event_type, information)

    def _report_on_new_association(
        self,
        assoc: Association,
        title: str,
        destination: Destination,
        event_type: int,
        information: Dataset,
    ) -> None:
        transaction = information.TransactionUID
        try:
            back = assoc.ae.associate(
                destination.host,
                destination.port,
                [build_context(StorageCommitmentPushModel)],
                ae_title=title,
                # PS3.4 J.3.3: the SCP that opens the association proposes the SCP role.
                ext_neg=[build_role(StorageCommitmentPushModel, scp_role=True)],
            )
        except OSError as exc:
            LOGGER.error("cannot report storage commitment %s to %s: %s", transaction, title, exc)
            return
        if not back.is_established:
            LOGGER.error("cannot report storage commitment %s: %s refused", transaction, title)
            return
        try:
            if self._send(back, event_type, information):
                LOGGER.info("storage commitment %s reported to %s", transaction, title)
            else:
                LOGGER.error("storage commitment %s: %s refused the report", transaction, title)
        finally:
            back.release()

    def _send(self, assoc: Association, event_type: int, information: Dataset) -> bool:
        """Whether the requestor answered the report with Success."""
        try:
            reply, _ = assoc.send_n_event_report(
                information,
                event_type,
                StorageCommitmentPushModel,
                StorageCommitmentPushModelInstance,
                msg_id=next(self._message_ids),
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            LOGGER.warning("storage commitment report not sent: %s", exc)
            return False
        return bool(reply.get("Status") == status.SUCCESS)


def _checked_request(
    action_type: int | None,
    sop_class: str | None,
    sop_instance: str | None,
    information: Dataset,
) -> Dataset:
    """The Action Information of a Request Storage Commitment (PS3.4 J.3.2.1.1), checked."""
    if action_type != REQUEST_STORAGE_COMMITMENT:
        raise CommitmentRequestError(status.NO_SUCH_ACTION_TYPE, f"no action type {action_type}")
    if sop_class != StorageCommitmentPushModel:
        raise CommitmentRequestError(status.NO_SUCH_SOP_CLASS, f"not the Push Model: {sop_class}")
    # PS3.4 J.3.5: every request names the well-known SOP Instance.
    if sop_instance != StorageCommitmentPushModelInstance:
        raise CommitmentRequestError(
            status.NO_SUCH_SOP_INSTANCE, f"not the well-known instance: {sop_instance}"
        )
    if not information.get("TransactionUID"):
        raise CommitmentRequestError(status.MISSING_ATTRIBUTE, "no Transaction UID")
    items = information.get("ReferencedSOPSequence")
    if not items:
        raise CommitmentRequestError(status.MISSING_ATTRIBUTE, "no Referenced SOP Sequence")
    for number, item in enumerate(items, start=1):
        if not all(_uids(item)):
            raise CommitmentRequestError(
                status.MISSING_ATTRIBUTE_VALUE, f"Referenced SOP item {number} lacks a UID"
            )
    return information


def _uids(item: Dataset) -> tuple[str, str]:
    return (
        str(item.get("ReferencedSOPClassUID") or ""),
        str(item.get("ReferencedSOPInstanceUID") or ""),
    )


def _reference(sop_class: str, sop_instance: str, failure_reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    if failure_reason is not None:
        item.FailureReason = failure_reason
    return item
