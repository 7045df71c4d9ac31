"""One association's Upper Layer and DIMSE provider, without I/O.

In the manner of h11's and h2's ``Connection``: bytes and the local user's
intents go in, typed events and bytes come out.

- Bytes in: :meth:`DimseConnection.receive_data` (``b""`` for the end of the
  stream), framed by :class:`~dicombus.protocol.framing.PduFramer`, which
  checks each PDU header against our caps before its body is allocated. A
  runtime that reads into a framer of its own, without copying, hands over
  whole PDUs (:meth:`~DimseConnection.receive_pdu`) and the end of the stream
  (:meth:`~DimseConnection.connection_lost`).
- Intents in: :meth:`~DimseConnection.request_association`,
  :meth:`~DimseConnection.accept`, :meth:`~DimseConnection.reject`,
  :meth:`~DimseConnection.send_pdata` (the P-DATA-TFs of
  :meth:`~DimseConnection.fragment`), :meth:`~DimseConnection.release`,
  :meth:`~DimseConnection.respond_to_release`, :meth:`~DimseConnection.abort`,
  and the expiry of the ARTIM timer, :meth:`~DimseConnection.timer_expired`.
- Out: :meth:`~DimseConnection.next_event` until :data:`NEED_DATA`, and
  :meth:`~DimseConnection.data_to_send`, the buffers to write, in order.
  :attr:`~DimseConnection.artim_running` tells the runtime when to run the
  ARTIM deadline; :attr:`~DimseConnection.transport_closed` when to close.

Every event goes through the PS3.8 9.2 state machine (``fsm``), whose table
decides what is sent, indicated or refused. P-DATA is reassembled into DIMSE
messages (PS3.8 Annex E) and routed: a response to its requester, a C-CANCEL
to the request it names, a request to the queue of those waiting to be
served (:meth:`~DimseConnection.next_request`), bounded. A peer's malformed
or misplaced PDU is answered by a provider A-ABORT (EVT19, AA-8) and ends
the stream. :meth:`~DimseConnection.close` releases every data set sink
still held, so no spool file outlives an abort. No sockets, threads, clocks
or logging.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from dicombus.protocol.commands import CommandField, CommandSet, encode_command_set
from dicombus.protocol.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from dicombus.protocol.fragments import (
    DatasetSink,
    DimseMessage,
    MessageAssembler,
    fragment_message,
)
from dicombus.protocol.framing import PduFramer
from dicombus.protocol.fsm import TRANSITIONS, Effect, Event, State, StateMachine, Transition
from dicombus.protocol.limits import DEFAULT_MAX_ASSOCIATE_PDU_LENGTH, PDU_HEADER_LENGTH
from dicombus.protocol.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    decode_pdu,
)

# Requests that arrive while one is being served wait their turn, up to this
# many. A peer within the default asynchronous operations window (PS3.7
# D.3.3.3: one outstanding operation) never queues any; one that floods us
# while a retrieve runs is aborted rather than buffered without end.
MAX_QUEUED_REQUESTS: Final = 16

Buffer = bytes | bytearray | memoryview

# PS3.8 9.3: which state-machine event each received PDU type is.
_EVENT_BY_PDU_TYPE: Final = {
    AAssociateRQ.pdu_type: Event.EVT6,
    AAssociateAC.pdu_type: Event.EVT3,
    AAssociateRJ.pdu_type: Event.EVT4,
    PDataTF.pdu_type: Event.EVT10,
    AReleaseRQ.pdu_type: Event.EVT12,
    AReleaseRP.pdu_type: Event.EVT13,
    AAbort.pdu_type: Event.EVT16,
}

# PS3.8 9.3.1: PDU type (1), reserved (1), PDU length (4), big endian.
_PDU_HEADER: Final = struct.Struct(">BBI")


# -- events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRequested:
    """Acceptor: the peer's A-ASSOCIATE-RQ (AE-6); answer with accept() or reject()."""

    rq: AAssociateRQ


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateAccepted:
    """Requestor: the peer accepted our request (AE-3); P-DATA may flow."""

    ac: AAssociateAC


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRejected:
    """Requestor: the peer rejected our request (AE-4); the connection is closing."""

    rj: AAssociateRJ


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseRequested:
    """The peer asked to release (AR-2 or, in a collision, AR-8).

    ``answer_now``: call respond_to_release() now. In a release collision the
    acceptor (Sta10) answers only once its own request is confirmed: it then
    gets :class:`ReleaseConfirmed` with ``answer_now`` (PS3.8 9.2.2, AR-10).
    """

    answer_now: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseConfirmed:
    """The peer answered our A-RELEASE-RQ (AR-3 or AR-10); ``answer_now`` in a
    collision on the acceptor side, which still owes its own A-RELEASE-RP."""

    answer_now: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Aborted:
    """The association was aborted: by the peer's A-ABORT (``abort``, AA-3), or by
    the provider (``abort`` None: a protocol error, a lost connection, AA-4/AA-8)."""

    abort: AAbort | None
    provider: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolViolation:
    """The peer broke PS3.8 or PS3.7; an A-ABORT is on its way (AA-8) and the
    stream is given up, since its PDU boundaries cannot be trusted."""

    error: RemoteProtocolError


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The transport is closed, or must be now (the last event of a connection)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PduReceived:
    """A whole PDU came in (only while ``observe_pdus``); ``raw`` is its bytes."""

    pdu: PDU
    raw: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PduSent:
    """A PDU was queued to send (only while ``observe_pdus``)."""

    pdu: PDU
    raw: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Transitioned:
    """The state machine took a transition (only while ``observe_transitions``)."""

    transition: Transition


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
ConnectionEvent = (
    AssociateRequested
    | AssociateAccepted
    | AssociateRejected
    | ReleaseRequested
    | ReleaseConfirmed
    | Aborted
    | ProtocolViolation
    | ConnectionClosed
    | PduReceived
    | PduSent
    | Transitioned
    | DimseEvent
)


class NeedData:
    """No event until more bytes arrive (h11's NEED_DATA)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class DimseConnection:
    """The Upper Layer and DIMSE provider of one association (PS3.8 9, Annex E; PS3.7 6).

    ``max_pdata_length`` is the Maximum Length we advertise (PS3.8 D.1, 0 for
    unlimited, then capped at UNLIMITED_PDATA_CAP): a received P-DATA-TF over
    it is refused before its body is read. ``dataset_sink_factory(command)``
    gives the sink a received data set is written to as it arrives (the
    runtime's spooling file for a C-STORE, a bounded memory buffer
    otherwise). Every sink it returns must have a ``close()`` that frees it;
    the connection closes those it still holds when :meth:`close` is called,
    and the runtime those of the requests it was handed.
    """

    def __init__(
        self,
        *,
        is_requestor: bool,
        dataset_sink_factory: Callable[[CommandSet], DatasetSink],
        max_pdata_length: int,
        max_associate_length: int = DEFAULT_MAX_ASSOCIATE_PDU_LENGTH,
    ) -> None:
        self._fsm = StateMachine(is_requestor=is_requestor)
        # Whether to report PduReceived / PduSent / Transitioned (each costs a copy).
        self.observe_pdus = False
        self.observe_transitions = False
        # Frames what receive_data() is handed.
        self._framer = PduFramer(
            max_pdata_length=max_pdata_length, max_associate_length=max_associate_length
        )
        self._stream_failed = False
        # Out.
        self._events: deque[ConnectionEvent] = deque()
        self._outgoing: list[Buffer] = []
        self._artim_running = False
        self._transport_closed = False
        # DIMSE.
        self._assembler = MessageAssembler(dataset_sink_factory=dataset_sink_factory)
        self._queued: deque[DimseMessage] = deque()
        # Requests received and not yet answered (by message ID), and those of
        # them that the peer cancelled.
        self._open_requests: set[int] = set()
        self._cancelled: set[int] = set()
        self._closed = False

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The Upper Layer state (PS3.8 Table 9-1)."""
        return self._fsm.state

    @property
    def is_requestor(self) -> bool:
        return self._fsm.is_requestor

    @property
    def max_pdata_length(self) -> int:
        """The Maximum Length we advertise (PS3.8 D.1), which caps what receive_data takes."""
        return self._framer.max_pdata_length

    @max_pdata_length.setter
    def max_pdata_length(self, value: int) -> None:
        self._framer.max_pdata_length = value

    @property
    def can_send_data(self) -> bool:
        """Whether a P-DATA request is allowed now (PS3.8 Table 9-10: Sta6 and Sta8)."""
        return (self._fsm.state, Event.EVT9) in TRANSITIONS and not self._transport_closed

    @property
    def artim_running(self) -> bool:
        """Whether the ARTIM timer runs: the runtime calls timer_expired() when it expires."""
        return self._artim_running

    @property
    def transport_closed(self) -> bool:
        """Whether the transport is to be closed once data_to_send() is written."""
        return self._transport_closed

    # -- receiving ------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        """Take bytes as they came off the wire; ``b""`` is the end of the stream.

        A runtime that reads into a :class:`PduFramer` of its own (no copy)
        hands each PDU to :meth:`receive_pdu` instead: the same path after framing.
        """
        view = memoryview(data).cast("B")
        if not view:
            self.connection_lost()
            return
        framer = self._framer
        while view and not self._stream_failed and not self._transport_closed:
            target = framer.receive_buffer()
            count = min(len(target), len(view))
            target[:count] = view[:count]
            view = view[count:]
            try:
                pdu = framer.received(count)
            except RemoteProtocolError as exc:
                self.abort_for_protocol_error(exc)
                return
            if pdu is not None:
                self.receive_pdu(*pdu)

    @property
    def mid_pdu(self) -> bool:
        """Whether receive_data() holds part of a PDU: the peer owes us its rest."""
        return self._framer.mid_pdu

    def receive_pdu(self, pdu_type: int, body: memoryview) -> None:
        """Take one whole PDU whose header the framer checked (PS3.8 9.3.1).

        A malformed or misplaced PDU, or a DIMSE message that breaks PS3.7, is
        answered by a provider A-ABORT (ProtocolViolation, then Aborted) and
        ends the stream.
        """
        if self._stream_failed or self._transport_closed:
            return
        try:
            pdu = decode_pdu(pdu_type, body)
            if self.observe_pdus:
                # Observers may keep event.pdu, but ``pdu`` may view a buffer the
                # next PDU overwrites: theirs is decoded from a copy.
                raw = _PDU_HEADER.pack(pdu_type, 0, len(body)) + bytes(body)
                kept = decode_pdu(pdu_type, memoryview(raw)[PDU_HEADER_LENGTH:])
                self._events.append(PduReceived(pdu=kept, raw=raw))
            if isinstance(pdu, AAbort):
                self._fire(
                    Event.EVT16,
                    pdu,
                    abort_from_service_user=pdu.source != AbortSource.SERVICE_PROVIDER,
                )
            else:
                self._fire(_EVENT_BY_PDU_TYPE[pdu_type], pdu)
        except RemoteProtocolError as exc:
            self.abort_for_protocol_error(exc)

    def connection_lost(self) -> None:
        """EVT17: the transport closed under us (EOF, a reset)."""
        if self._transport_closed:
            return
        if self._fsm.state is not State.STA1:
            self._fire(Event.EVT17)
        self._mark_transport_closed()

    def abort_for_protocol_error(self, exc: RemoteProtocolError) -> None:
        """PS3.8 EVT19 / AA-8: answer what the peer broke with a provider A-ABORT, then
        give the stream up (its PDU boundaries cannot be trusted any more)."""
        if self._transport_closed:
            return
        self._stream_failed = True
        self._events.append(ProtocolViolation(error=exc))
        # Every state but Sta1 has EVT19 (AA-8, or AA-7 in Sta13): an A-ABORT goes out.
        if self._fsm.state is not State.STA1:
            reason = (
                exc.abort_reason
                if exc.abort_source == AbortSource.SERVICE_PROVIDER
                else AbortReason.NOT_SPECIFIED
            )
            self._fire(Event.EVT19, AAbort(source=AbortSource.SERVICE_PROVIDER, reason=reason))
        self.connection_lost()

    # -- local intents ------------------------------------------------------------

    def start(self) -> None:
        """Acceptor: a connection was accepted (EVT5); ARTIM runs until the A-ASSOCIATE-RQ."""
        self._refuse_if_closed("start")
        self._fire(Event.EVT5)

    def request_association(self, rq: AAssociateRQ) -> None:
        """Requestor, connected: send the A-ASSOCIATE-RQ (EVT1, then EVT2)."""
        self._refuse_if_closed("request an association")
        self._fire(Event.EVT1)
        self._fire(Event.EVT2, rq)

    def _refuse_if_closed(self, what: str) -> None:
        # A connection serves one association: back in Sta1 after its transport
        # closed, the table would allow a new one on a transport that is gone.
        if self._transport_closed:
            raise LocalProtocolError(f"the connection is closed: cannot {what}")

    def accept(self, ac: AAssociateAC) -> None:
        """Acceptor: answer the request with an A-ASSOCIATE-AC (EVT7)."""
        self._fire(Event.EVT7, ac)

    def reject(self, rj: AAssociateRJ) -> None:
        """Acceptor: answer the request with an A-ASSOCIATE-RJ (EVT8); ARTIM runs
        until the peer closes."""
        self._fire(Event.EVT8, rj)

    @staticmethod
    def fragment(
        context_id: int, command: CommandSet, dataset: Buffer | None, *, max_pdu_length: int
    ) -> Iterator[list[bytes | memoryview]]:
        """The P-DATA-TFs of one message, each as buffers for one scatter-gather send,
        within ``max_pdu_length`` (the peer's Maximum Length, PS3.8 D.1). Each is
        handed to send_pdata(): PS3.7 6.3.1 forbids interleaving another message's."""
        return fragment_message(
            context_id=context_id,
            command=encode_command_set(command),
            dataset=dataset,
            max_pdu_length=max_pdu_length,
        )

    def send_pdata(self, segments: Sequence[Buffer]) -> None:
        """Send one P-DATA-TF (EVT9); LocalProtocolError unless can_send_data."""
        self._refuse_if_closed("send P-DATA")
        self._fire(Event.EVT9, segments=segments)

    def release(self) -> None:
        """Send an A-RELEASE-RQ (EVT11): after it, we send no more P-DATA (Sta7)."""
        self._fire(Event.EVT11, AReleaseRQ())

    def respond_to_release(self) -> None:
        """Send the A-RELEASE-RP a ReleaseRequested / ReleaseConfirmed asked for (EVT14)."""
        self._fire(Event.EVT14, AReleaseRP())

    def abort(self, source: AbortSource = AbortSource.SERVICE_USER) -> None:
        """Send an A-ABORT (EVT15) where there is an association to abort, and close.

        Before the peer's A-ASSOCIATE-RQ (Sta2), and once the connection is closing
        (Sta13) or closed, there is none (PS3.8 Table 9-10): the transport just closes.
        """
        state = self._fsm.state
        if state in (State.STA1, State.STA2, State.STA13) or self._transport_closed:
            self._mark_transport_closed()
            return
        self._fire(
            Event.EVT15, AAbort(source=source, reason=0) if state is not State.STA4 else None
        )
        self._mark_transport_closed()

    def timer_expired(self) -> None:
        """EVT18: the ARTIM timer ran out (no A-ASSOCIATE-RQ came, or the peer never
        closed after our RJ, RP or A-ABORT)."""
        if self._artim_running:
            self._fire(Event.EVT18)

    # -- out ---------------------------------------------------------------------

    def next_event(self) -> ConnectionEvent | NeedData:
        """The next event, in order of occurrence, or NEED_DATA."""
        return self._events.popleft() if self._events else NEED_DATA

    def events(self) -> list[ConnectionEvent]:
        """Every event queued, taken at once."""
        taken = list(self._events)
        self._events.clear()
        return taken

    def data_to_send(self) -> list[Buffer]:
        """The buffers to write, in order (PDUs whole, possibly several), taken at once."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    # -- the state machine --------------------------------------------------------

    def _fire(
        self,
        event: Event,
        outgoing: PDU | None = None,
        *,
        segments: Sequence[Buffer] | None = None,
        abort_from_service_user: bool = True,
    ) -> None:
        """Feed one event to the state machine and carry out its effects.

        ``outgoing`` (a PDU) or ``segments`` (an encoded P-DATA-TF) is what a
        SEND effect sends; a received ``outgoing`` PDU is what an indication reports.
        """
        transition = self._fsm.handle(event, abort_from_service_user=abort_from_service_user)
        if self.observe_transitions:
            self._events.append(Transitioned(transition=transition))
        received = outgoing if event in _RECEIVED_EVENTS else None
        sent = None if received is not None else outgoing
        closing = False
        for effect in transition.effects:
            if effect in _SENDS:
                if segments is None:
                    if sent is None:
                        # AA-1, AA-7 or AA-8 met by a received PDU that this state
                        # does not allow: PS3.8 Table 9-26 reason 2, unexpected PDU.
                        sent = AAbort(
                            source=AbortSource.SERVICE_PROVIDER,
                            reason=AbortReason.UNEXPECTED_PDU,
                        )
                    segments = [sent.encode()]
                self._outgoing.extend(segments)
                if self.observe_pdus:
                    self._report_sent(sent, segments)
            elif effect is Effect.START_ARTIM:
                self._artim_running = True
            elif effect is Effect.STOP_ARTIM:
                self._artim_running = False
            elif effect is Effect.CLOSE_TRANSPORT:
                closing = True
            elif effect in _INDICATIONS:
                self._indicate(effect, transition, received)
        if closing:
            # After the indications: a release or rejection confirmed in the same
            # transition is known before the user hears that the connection closed.
            self._mark_transport_closed()

    def _indicate(self, effect: Effect, transition: Transition, received: PDU | None) -> None:
        if effect is Effect.INDICATE_P_DATA:
            if isinstance(received, PDataTF):
                self._receive_pdata(received)
        elif effect is Effect.INDICATE_ASSOCIATE and isinstance(received, AAssociateRQ):
            self._events.append(AssociateRequested(rq=received))
        elif effect is Effect.CONFIRM_ASSOCIATE_ACCEPT and isinstance(received, AAssociateAC):
            self._events.append(AssociateAccepted(ac=received))
        elif effect is Effect.CONFIRM_ASSOCIATE_REJECT and isinstance(received, AAssociateRJ):
            self._events.append(AssociateRejected(rj=received))
        elif effect is Effect.INDICATE_RELEASE:
            # AR-8 in Sta10 (the acceptor's side of a collision) answers later, AR-10.
            self._events.append(
                ReleaseRequested(answer_now=transition.next_state is not State.STA10)
            )
        elif effect is Effect.CONFIRM_RELEASE:
            self._events.append(ReleaseConfirmed(answer_now=transition.next_state is State.STA12))
        elif effect in (Effect.INDICATE_ABORT, Effect.INDICATE_P_ABORT):
            abort = received if isinstance(received, AAbort) else None
            self._events.append(Aborted(abort=abort, provider=effect is Effect.INDICATE_P_ABORT))

    def _report_sent(self, pdu: PDU | None, segments: Sequence[Buffer]) -> None:
        raw = b"".join(segments)
        if pdu is None:
            pdu = decode_pdu(raw[0], memoryview(raw)[PDU_HEADER_LENGTH:])
        self._events.append(PduSent(pdu=pdu, raw=raw))

    def _mark_transport_closed(self) -> None:
        if not self._transport_closed:
            self._transport_closed = True
            self._artim_running = False
            self._events.append(ConnectionClosed())

    # -- DIMSE --------------------------------------------------------------------

    def _receive_pdata(self, pdu: PDataTF) -> None:
        """Take every PDV of one P-DATA-TF (PS3.8 9.3.5) before any event is acted on:
        serving a request may read further PDUs into the buffer these PDVs view."""
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

    # -- ending -------------------------------------------------------------------

    def close(self) -> None:
        """The association ended: release the sink of a message cut off mid-way and of
        every request never served. Idempotent; P-DATA received afterwards is ignored."""
        self._closed = True
        _close_sink(self._assembler.abandon())
        while self._queued:
            _close_sink(self._queued.popleft().dataset)
        # The messages whose sinks were just released are not handed out any more;
        # what the runtime still needs to hear (Aborted, ConnectionClosed) stays.
        self._events = deque(
            event for event in self._events if not isinstance(event, DIMSE_EVENT_TYPES)
        )
        self._open_requests.clear()
        self._cancelled.clear()


# The DimseEvent union's members, for isinstance.
DIMSE_EVENT_TYPES: Final = (RequestReceived, ResponseReceived, CancelReceived)

# Events that a received PDU causes: the PDU is what their indication reports.
_RECEIVED_EVENTS: Final = frozenset(_EVENT_BY_PDU_TYPE.values())

_SENDS: Final = frozenset(
    {
        Effect.SEND_ASSOCIATE_RQ,
        Effect.SEND_ASSOCIATE_AC,
        Effect.SEND_ASSOCIATE_RJ,
        Effect.SEND_P_DATA,
        Effect.SEND_RELEASE_RQ,
        Effect.SEND_RELEASE_RP,
        Effect.SEND_ABORT,
    }
)

_INDICATIONS: Final = frozenset(
    {
        Effect.INDICATE_ASSOCIATE,
        Effect.CONFIRM_ASSOCIATE_ACCEPT,
        Effect.CONFIRM_ASSOCIATE_REJECT,
        Effect.INDICATE_P_DATA,
        Effect.INDICATE_RELEASE,
        Effect.CONFIRM_RELEASE,
        Effect.INDICATE_ABORT,
        Effect.INDICATE_P_ABORT,
    }
)


def _close_sink(sink: DatasetSink | None) -> None:
    if sink is not None:
        sink.close()
