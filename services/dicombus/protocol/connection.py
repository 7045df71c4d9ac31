"""One association's DIMSE traffic, without I/O: P-DATA-TFs in, messages out.

In the manner of h11's ``Connection``: the runtime hands over each received
P-DATA-TF (:meth:`DimseConnection.receive_pdata`) and then takes typed
events (:meth:`DimseConnection.next_event`) until :data:`NEED_DATA`; it takes
the peer's requests to serve, one at a time, from :meth:`next_request`, and
says when each is answered (:meth:`request_answered`). Outgoing messages come
back as the P-DATA-TFs to send (:meth:`data_to_send`).

It owns what the runtime must not get wrong and can test only with sockets
otherwise: reassembly (PS3.8 Annex E), the routing of each complete message
(a response to its requester, a C-CANCEL to the request it names, a request to
the queue of those waiting to be served), the bound on that queue, and the
release of every data set sink it still holds when the association ends
(:meth:`close`), so no spool file outlives an abort. No sockets, threads,
clocks or logging.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from dicombus.protocol.commands import CommandField, CommandSet, encode_command_set
from dicombus.protocol.errors import RemoteProtocolError
from dicombus.protocol.fragments import (
    DatasetSink,
    DimseMessage,
    MessageAssembler,
    fragment_message,
)
from dicombus.protocol.pdus import PDataTF

# Requests that arrive while one is being served wait their turn, up to this
# many. A peer within the default asynchronous operations window (PS3.7
# D.3.3.3: one outstanding operation) never queues any; one that floods us
# while a retrieve runs is aborted rather than buffered without end.
MAX_QUEUED_REQUESTS: Final = 16

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """The peer sent a request; it waits in :meth:`DimseConnection.next_request`'s queue."""

    message: DimseMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """The peer answered one of our requests (``message_id_being_responded_to``)."""

    message: DimseMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived:
    """The peer sent a C-CANCEL; ``applies`` when it names a request still open (PS3.7
    9.3.2.3), and :meth:`DimseConnection.is_cancelled` then reports that request."""

    message: DimseMessage
    applies: bool


DimseEvent = RequestReceived | ResponseReceived | CancelReceived


class NeedData:
    """No event until more P-DATA arrives (h11's NEED_DATA)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class DimseConnection:
    """The DIMSE provider of one association (PS3.7 6, PS3.8 Annex E), sans I/O.

    ``dataset_sink_factory(command)`` gives the sink a received data set is
    written to as it arrives (the runtime's spooling file for a C-STORE, a
    bounded memory buffer otherwise). Every sink it returns must have a
    ``close()`` that frees it; the connection closes those it still holds
    when :meth:`close` is called, and the runtime those of the requests it
    was handed.
    """

    __slots__ = ("_assembler", "_cancelled", "_closed", "_events", "_open_requests", "_queued")

    def __init__(self, *, dataset_sink_factory: Callable[[CommandSet], DatasetSink]) -> None:
        self._assembler = MessageAssembler(dataset_sink_factory=dataset_sink_factory)
        self._events: deque[DimseEvent] = deque()
        self._queued: deque[DimseMessage] = deque()
        # Requests received and not yet answered (by message ID), and those of
        # them that the peer cancelled.
        self._open_requests: set[int] = set()
        self._cancelled: set[int] = set()
        self._closed = False

    # -- receiving -----------------------------------------------------------------

    def receive_pdata(self, pdu: PDataTF) -> None:
        """Take every PDV of one P-DATA-TF (PS3.8 9.3.5).

        All of them are taken in before any event is acted on: serving one
        may read further PDUs into the buffer the remaining PDVs point into.
        Raises RemoteProtocolError for a message out of order or too large,
        or a request that overflows the queue; the runtime then aborts.
        """
        if self._closed:
            return
        for pdv in pdu.pdvs:
            message = self._assembler.add_pdv(pdv)
            if message is not None:
                self._route(message)

    def _route(self, message: DimseMessage) -> None:
        field = message.command.command_field
        if field.is_response:
            self._events.append(ResponseReceived(message=message))
        elif field is CommandField.C_CANCEL_RQ:
            # PS3.7 9.3.2.3: a C-CANCEL names a request still open; one that
            # arrives after the final response is moot, and must not cancel a
            # later request that reuses the message ID.
            cancelled = message.command.MessageIDBeingRespondedTo or 0
            applies = cancelled in self._open_requests
            if applies:
                self._cancelled.add(cancelled)
            self._events.append(CancelReceived(message=message, applies=applies))
        else:
            self._queue_request(message)

    def _queue_request(self, message: DimseMessage) -> None:
        if len(self._queued) >= MAX_QUEUED_REQUESTS:
            _close_sink(message.dataset)
            raise RemoteProtocolError(
                f"more than {MAX_QUEUED_REQUESTS} requests sent while one was being served"
            )
        self._open_requests.add(message.command.MessageID or 0)
        self._queued.append(message)
        self._events.append(RequestReceived(message=message))

    def next_event(self) -> DimseEvent | NeedData:
        """The next message received, in order of arrival, or NEED_DATA."""
        return self._events.popleft() if self._events else NEED_DATA

    def next_request(self) -> DimseMessage | None:
        """The oldest request waiting to be served (its sink is now the caller's), or None."""
        return self._queued.popleft() if self._queued else None

    def request_answered(self, message_id: int) -> None:
        """The service has sent the final response to ``message_id``: it is no longer open."""
        self._open_requests.discard(message_id)
        self._cancelled.discard(message_id)

    def is_cancelled(self, message_id: int) -> bool:
        """Whether the peer sent a C-CANCEL for the open request ``message_id``."""
        return message_id in self._cancelled

    # -- sending -------------------------------------------------------------------

    @staticmethod
    def data_to_send(
        context_id: int, command: CommandSet, dataset: Buffer | None, *, max_pdu_length: int
    ) -> Iterator[list[bytes | memoryview]]:
        """The P-DATA-TFs of one message, each as buffers for one scatter-gather send;
        within ``max_pdu_length`` (the peer's Maximum Length, PS3.8 D.1)."""
        return fragment_message(
            context_id=context_id,
            command=encode_command_set(command),
            dataset=dataset,
            max_pdu_length=max_pdu_length,
        )

    # -- ending --------------------------------------------------------------------

    def close(self) -> None:
        """The association ended: release the sink of a message cut off mid-way and of
        every request never served. Idempotent; P-DATA received afterwards is ignored."""
        self._closed = True
        _close_sink(self._assembler.abandon())
        while self._queued:
            _close_sink(self._queued.popleft().dataset)
        self._events.clear()
        self._open_requests.clear()
        self._cancelled.clear()


def _close_sink(sink: DatasetSink | None) -> None:
    if sink is not None:
        sink.close()
