"""Storage Commitment Push Model (PS3.4 Annex J) peers for tests.

Written against the event API that dicombus and pynetdicom share, so either
stack can play either role: the SCP answers an N-ACTION (Request Storage
Commitment) and, once that response is on its way, hands the result to the
test, which sends it back as an N-EVENT-REPORT -- on the same association or
on a new one to the SCU's own server (PS3.4 J.3.3).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
# PS3.4 J.3.5: the well-known SOP instance every request and report names.
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_STORAGE_COMMITMENT = 1  # PS3.4 J.3.2: Action Type ID
COMMITTED = 1  # PS3.4 J.3.3: Event Type ID, "Storage Commitment Request Successful"
FAILURES_EXIST = 2  # PS3.4 J.3.3: Event Type ID, "Storage Commitment Request Complete -
# Failures Exist"
NO_SUCH_OBJECT_INSTANCE = 0x0112  # PS3.4 J.3.3.1.2: Failure Reason
N_ACTION_RSP = 0x8130  # PS3.7 E.1: Command Field

WAIT = 5.0  # seconds: every wait here is bounded


def commitment_request(transaction_uid: str, references: list[tuple[str, str]]) -> Dataset:
    """PS3.4 J.3.2.1.1: the Action Information of a Request Storage Commitment."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = [_reference(uid_pair) for uid_pair in references]
    return ds


def _reference(uid_pair: tuple[str, str], failure_reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = uid_pair
    if failure_reason is not None:
        item.FailureReason = failure_reason
    return item


def _command_field(message: Any) -> int:
    """The Command Field of a sent message, for either stack's EVT_DIMSE_SENT."""
    command = getattr(message, "command", None)  # dicombus: DimseMessage.command
    if command is None:
        command = message.command_set  # pynetdicom: DIMSEMessage.command_set
    return int(command.CommandField)


@dataclass(frozen=True)
class Report:
    """A commitment result ready to send: on ``assoc`` (the one the request came on)."""

    assoc: Any
    event_type: int
    event_information: Dataset


class CommitmentScp:
    """Commits the instances in ``stored``; reports each request after answering it."""

    def __init__(self, stored: set[str]) -> None:
        self.stored = stored
        self._requests: dict[int, Dataset] = {}
        self._answered: queue.Queue[Report] = queue.Queue()
        self._lock = threading.Lock()

    def handlers(self, evt: Any) -> list[tuple[Any, Any]]:
        """The bindings, with ``evt`` the event module of the stack that serves."""
        return [(evt.EVT_N_ACTION, self.on_action), (evt.EVT_DIMSE_SENT, self.on_sent)]

    def on_action(self, event: Any) -> tuple[int, Dataset | None]:
        if event.action_type != REQUEST_STORAGE_COMMITMENT:
            return 0x0123, None  # PS3.7 C.5: No such action
        with self._lock:
            self._requests[id(event.assoc)] = event.action_information
        return 0x0000, None

    def on_sent(self, event: Any) -> None:
        # PS3.4 J.3.3: the result follows the N-ACTION response, never precedes it.
        if _command_field(event.message) != N_ACTION_RSP:
            return
        with self._lock:
            request = self._requests.pop(id(event.assoc), None)
        if request is not None:
            self._answered.put(self._result(event.assoc, request))

    def next_report(self) -> Report:
        return self._answered.get(timeout=WAIT)

    def _result(self, assoc: Any, request: Dataset) -> Report:
        """PS3.4 J.3.3.1: what was committed, and what failed and why."""
        committed, failed = [], []
        for item in request.ReferencedSOPSequence:
            pair = (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
            if item.ReferencedSOPInstanceUID in self.stored:
                committed.append(_reference(pair))
            else:
                failed.append(_reference(pair, NO_SUCH_OBJECT_INSTANCE))
        info = Dataset()
        info.TransactionUID = request.TransactionUID
        if committed:
            info.ReferencedSOPSequence = committed
        if failed:
            info.FailedSOPSequence = failed
        return Report(assoc, FAILURES_EXIST if failed else COMMITTED, info)


@dataclass(frozen=True)
class ReceivedReport:
    event_type: int
    event_information: Dataset
    # Whether the report came on a new association that the SCP requested,
    # rather than on the one we sent the request on.
    on_new_association: bool
    roles: tuple[bool | None, bool | None]


class CommitmentResults:
    """The SCU's EVT_N_EVENT_REPORT handler: records each result and answers Success."""

    def __init__(self) -> None:
        self._received: queue.Queue[ReceivedReport] = queue.Queue()

    def __call__(self, event: Any) -> tuple[int, Dataset | None]:
        context = next(
            c for c in event.assoc.accepted_contexts if c.context_id == event.context.context_id
        )
        self._received.put(
            ReceivedReport(
                event.event_type,
                event.event_information,
                on_new_association=event.assoc.is_acceptor,
                roles=(context.as_scu, context.as_scp),
            )
        )
        return 0x0000, None

    def next(self) -> ReceivedReport:
        return self._received.get(timeout=WAIT)


def new_transaction(references: list[tuple[str, str]]) -> tuple[str, Dataset]:
    uid = generate_uid()
    return uid, commitment_request(uid, references)
