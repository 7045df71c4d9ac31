"""The Upper Layer link of one association: the PS3.8 state machine driven over a socket.

The sans-I/O :class:`~dicombus.protocol.fsm.StateMachine` decides; this class
does what its effects say (send a PDU, start or stop ARTIM, close the
transport) and reports indications and confirmations to its owner, the
:class:`~dicombus.association.Association`, through :class:`LinkUser`.

Threads: one reader thread per association runs :meth:`UpperLayerLink.run`.
Other threads (the user's) may send P-DATA, release or abort; every state
change happens under one lock, and indications are delivered to the owner
after that lock is released, so a slow handler never blocks a sender.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from dicombus.protocol.errors import AbortReason, AbortSource, RemoteProtocolError
from dicombus.protocol.fsm import TRANSITIONS, Effect, Event, State, StateMachine, Transition
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
from dicombus.runtime.transport import Buffer, ConnectionClosed, DeadlineExpired, PduChannel

LOGGER = logging.getLogger("dicombus.link")

# PS3.8 9.3: which state-machine event each received PDU type is.
_EVENT_BY_PDU_TYPE = {
    AAssociateRQ.pdu_type: Event.EVT6,
    AAssociateAC.pdu_type: Event.EVT3,
    AAssociateRJ.pdu_type: Event.EVT4,
    PDataTF.pdu_type: Event.EVT10,
    AReleaseRQ.pdu_type: Event.EVT12,
    AReleaseRP.pdu_type: Event.EVT13,
    AAbort.pdu_type: Event.EVT16,
}

# Effects that report to the association user; run after the lock is released.
_INDICATIONS = frozenset(
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


class LinkUser(Protocol):
    """What the link reports to (implemented by the Association)."""

    def on_associate_indication(self, rq: AAssociateRQ) -> None: ...
    def on_associate_accepted(self, ac: AAssociateAC) -> None: ...
    def on_associate_rejected(self, rj: AAssociateRJ) -> None: ...
    def on_p_data(self, pdu: PDataTF) -> None: ...
    def on_release_indication(self, state: State) -> None: ...
    def on_release_confirmation(self, state: State) -> None: ...
    def on_abort(self, abort: AAbort | None, *, provider: bool) -> None: ...
    def on_closed(self) -> None: ...
    def on_pdu(self, pdu: PDU, raw: Callable[[], bytes], *, sent: bool) -> None: ...
    def on_transition(self, transition: Transition) -> None: ...


class UpperLayerLink:
    """One association's socket, state machine and ARTIM timer."""

    def __init__(
        self,
        channel: PduChannel,
        user: LinkUser,
        *,
        is_requestor: bool,
        artim_timeout: float,
        network_timeout: float | None,
        acse_timeout: float | None,
    ) -> None:
        self.channel = channel
        self.user = user
        self.fsm = StateMachine(is_requestor=is_requestor)
        self.artim_timeout = artim_timeout
        self.network_timeout = network_timeout
        self.acse_timeout = acse_timeout
        self._lock = threading.RLock()
        self._artim_deadline: float | None = None
        self._awaiting_deadline: float | None = None
        self._closed = threading.Event()
        # Set when a send failed: the stream may end mid-PDU, so nothing more is sent.
        self._send_failed = False
        self.observe_pdus = False
        self.observe_transitions = False
        self._effects: dict[Effect, Callable[[Sequence[Buffer] | None], None]] = {
            Effect.OPEN_TRANSPORT: _no_effect,  # the requestor connected before EVT1's AE-1
            Effect.ACCEPT_TRANSPORT: _no_effect,  # the server accepted before EVT5
            Effect.SEND_ASSOCIATE_RQ: self._send,
            Effect.SEND_ASSOCIATE_AC: self._send,
            Effect.SEND_ASSOCIATE_RJ: self._send,
            Effect.SEND_P_DATA: self._send,
            Effect.SEND_RELEASE_RQ: self._send,
            Effect.SEND_RELEASE_RP: self._send,
            Effect.SEND_ABORT: self._send,
            Effect.START_ARTIM: self._start_artim,
            Effect.STOP_ARTIM: self._stop_artim,
            Effect.CLOSE_TRANSPORT: self._close_transport,
        }

    @property
    def state(self) -> State:
        return self.fsm.state

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    # -- local requests (any thread) -------------------------------------------------

    def fire(
        self,
        event: Event,
        outgoing: PDU | None = None,
        *,
        segments: Sequence[Buffer] | None = None,
        incoming: PDU | None = None,
        abort_from_service_user: bool = True,
    ) -> Transition:
        """Feed one event to the state machine and carry out its effects.

        ``outgoing`` (a PDU) or ``segments`` (an encoded P-DATA-TF) is what a
        SEND effect sends; ``incoming`` is the received PDU an indication reports.
        """
        if outgoing is not None:
            segments = [outgoing.encode()]
        with self._lock:
            transition = self.fsm.handle(event, abort_from_service_user=abort_from_service_user)
            if segments is None and Effect.SEND_ABORT in transition.effects:
                # AA-1, AA-7 or AA-8 met by a received PDU that this state does
                # not allow: PS3.8 Table 9-26 reason 2, unexpected PDU.
                outgoing = AAbort(
                    source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.UNEXPECTED_PDU
                )
                segments = [outgoing.encode()]
            if self.observe_transitions:
                self.user.on_transition(transition)
            for effect in transition.effects:
                if effect not in _INDICATIONS:
                    self._effects[effect](segments)
            if segments is not None and self.observe_pdus:
                self._report_sent(outgoing, segments)
        for effect in transition.effects:
            if effect in _INDICATIONS:
                self._indicate(effect, transition, incoming)
        if Effect.CLOSE_TRANSPORT in transition.effects:
            # Reported after the indications: a release or reject confirmed in
            # the same transition must be known before the user hears "closed".
            self._mark_closed()
        return transition

    def send_pdata(self, segments: Sequence[Buffer]) -> None:
        """Send one P-DATA-TF; ConnectionError once the association can carry none.

        The peer may abort, or the connection fail, between two PDUs of one
        message: the caller learns that the association ended, not that it
        misused the state machine.
        """
        with self._lock:
            state = self.state
            if self._send_failed or (state, Event.EVT9) not in TRANSITIONS:
                # PS3.8 Table 9-10: a P-DATA request is allowed in Sta6 and Sta8 only.
                raise ConnectionError(
                    f"the association can no longer send data ({state.name}: {state.description})"
                )
            self.fire(Event.EVT9, segments=segments)

    def await_response_until(self, deadline: float | None) -> None:
        """Bound the wait for the peer's A-ASSOCIATE or A-RELEASE response (the ACSE timeout)."""
        self._awaiting_deadline = deadline

    def shutdown_transport(self) -> None:
        """Wake the reader by shutting the socket down (used after we sent an A-ABORT)."""
        self.channel.shutdown()

    # -- the reader loop (the association's own thread) --------------------------------

    def run(self) -> None:
        """Read and handle PDUs until the transport is closed."""
        try:
            self._read_until_closed()
        finally:
            self.channel.close()

    def _read_until_closed(self) -> None:
        while not self._closed.is_set():
            self.read_one()

    def read_one(self, wait_until: float | None = None) -> bool:
        """Read one PDU and handle it (reader thread only).

        The reader loop calls this; so does a handler running in the reader
        thread that needs the peer's next message before it can go on (a
        C-GET SCP waiting for a C-STORE response on this same association).
        ``wait_until`` (a monotonic time) also bounds the wait for the PDU to
        start; returns False when that time passed before it did, True once a
        PDU, a timeout of the link's own or the end of the connection has
        been handled.
        """
        idle_deadline = self._idle_deadline()
        caller_bound = wait_until is not None and (
            idle_deadline is None or wait_until < idle_deadline
        )
        if caller_bound:
            idle_deadline = wait_until
        try:
            pdu_type, body, header = self.channel.read_pdu(
                idle_deadline=idle_deadline, pdu_timeout=self._pdu_timeout()
            )
            pdu = decode_pdu(pdu_type, body)
        except RemoteProtocolError as exc:
            self._on_invalid_pdu(exc)
        except DeadlineExpired as exc:
            if caller_bound and not exc.mid_pdu:
                return False
            self._on_deadline(exc)
        except ConnectionClosed:
            self._on_transport_closed()
        else:
            if self.observe_pdus:
                # Handlers may keep event.pdu, but ``pdu`` is a view of the
                # buffer the next read overwrites: theirs is decoded from a copy.
                raw = bytes(header) + bytes(body)
                kept = decode_pdu(pdu_type, memoryview(raw)[len(header) :])
                self.user.on_pdu(kept, _frozen(raw), sent=False)
            try:
                self._on_pdu(pdu)
            except RemoteProtocolError as exc:
                # A well-formed PDU whose content the upper layers refuse
                # (an AC for a context we never proposed, a bad DIMSE message).
                self._on_invalid_pdu(exc)
        return True

    def input_ready(self) -> bool:
        """Whether a read would find bytes (or the end of the stream) at once: no waiting."""
        if self._closed.is_set():
            return False
        sock = self.channel.sock
        # TLS may hold decrypted bytes that the socket no longer shows.
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            if not hasattr(select, "poll"):  # Windows
                return bool(select.select([sock], [], [], 0)[0])
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True  # a closed socket: the read reports it

    def _on_pdu(self, pdu: PDU) -> None:
        event = _EVENT_BY_PDU_TYPE[pdu.pdu_type]
        if event is Event.EVT16:
            assert isinstance(pdu, AAbort)
            self.fire(
                event,
                incoming=pdu,
                abort_from_service_user=pdu.source != AbortSource.SERVICE_PROVIDER,
            )
        else:
            self.fire(event, incoming=pdu)

    def _on_invalid_pdu(self, exc: RemoteProtocolError) -> None:
        LOGGER.error("aborting: the peer sent an invalid PDU: %s", exc)
        self.abort_invalid(exc)
        # The byte stream has lost its PDU boundaries: reading on would parse
        # the rest of a flood as PDUs (a log line per 6 bytes) until ARTIM
        # expires. The A-ABORT is sent; stop reading now.
        self._on_transport_closed()

    def abort_invalid(self, exc: RemoteProtocolError) -> None:
        """PS3.8 EVT19 / AA-8: answer garbage with a provider A-ABORT and hang up."""
        if self.state in (State.STA1, State.STA13):
            self.shutdown_transport()
            return
        reason = (
            exc.abort_reason
            if exc.abort_source == AbortSource.SERVICE_PROVIDER
            else AbortReason.NOT_SPECIFIED
        )
        self.fire(Event.EVT19, AAbort(source=AbortSource.SERVICE_PROVIDER, reason=reason))
        self.shutdown_transport()

    def _on_deadline(self, exc: DeadlineExpired) -> None:
        if self._artim_deadline is not None:
            # PS3.8 EVT18: ARTIM expired (an association request that never
            # came, or a peer that never closed after our RJ/RP/abort).
            LOGGER.warning("ARTIM timer expired in %s; closing the connection", self.state.name)
            self.fire(Event.EVT18)
            return
        awaited = self._awaiting_deadline
        if not exc.mid_pdu and awaited is not None and time.monotonic() >= awaited:
            self._awaiting_deadline = None
            LOGGER.error(
                "ACSE timeout: no answer from the peer in %s (%s); aborting the association",
                self.state.name,
                self.state.description,
            )
            self.abort_local(source=AbortSource.SERVICE_PROVIDER)
            return
        what = "in the middle of a PDU" if exc.mid_pdu else "while the association was idle"
        LOGGER.error("network timeout %s in %s; aborting the association", what, self.state.name)
        self.abort_local(source=AbortSource.SERVICE_PROVIDER)

    def abort_local(self, *, source: AbortSource = AbortSource.SERVICE_USER) -> None:
        """EVT15: send A-ABORT, then hang up without waiting out ARTIM."""
        with self._lock:
            state = self.state
            # PS3.8 Table 9-10 has no EVT15 in Sta2 either: before the peer's
            # A-ASSOCIATE-RQ there is no association to abort, only a connection.
            if state in (State.STA1, State.STA2, State.STA13):
                self.shutdown_transport()
                return
            self.fire(Event.EVT15, AAbort(source=source, reason=0) if state != State.STA4 else None)
        self.shutdown_transport()

    def _on_transport_closed(self) -> None:
        with self._lock:
            if self.state is State.STA1:
                self._mark_closed()
                return
            self.fire(Event.EVT17)
        self._mark_closed()

    # -- effects -----------------------------------------------------------------

    def _send(self, segments: Sequence[Buffer] | None) -> None:
        if segments is None:
            return
        try:
            self.channel.send_segments(segments, timeout=self.network_timeout)
        except (ConnectionClosed, DeadlineExpired, OSError) as exc:
            LOGGER.error("sending to the peer failed: %s", exc)
            self._send_failed = True
            self.shutdown_transport()

    def _start_artim(self, _segments: Sequence[Buffer] | None) -> None:
        self._artim_deadline = time.monotonic() + self.artim_timeout

    def _stop_artim(self, _segments: Sequence[Buffer] | None) -> None:
        self._artim_deadline = None

    def _close_transport(self, _segments: Sequence[Buffer] | None) -> None:
        self.channel.close()

    def _mark_closed(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.user.on_closed()

    def _indicate(self, effect: Effect, transition: Transition, incoming: PDU | None) -> None:
        user = self.user
        if effect is Effect.INDICATE_ASSOCIATE:
            assert isinstance(incoming, AAssociateRQ)
            user.on_associate_indication(incoming)
        elif effect is Effect.CONFIRM_ASSOCIATE_ACCEPT:
            assert isinstance(incoming, AAssociateAC)
            self._awaiting_deadline = None
            user.on_associate_accepted(incoming)
        elif effect is Effect.CONFIRM_ASSOCIATE_REJECT:
            assert isinstance(incoming, AAssociateRJ)
            self._awaiting_deadline = None
            user.on_associate_rejected(incoming)
        elif effect is Effect.INDICATE_P_DATA:
            assert isinstance(incoming, PDataTF)
            user.on_p_data(incoming)
        elif effect is Effect.INDICATE_RELEASE:
            user.on_release_indication(transition.next_state)
        elif effect is Effect.CONFIRM_RELEASE:
            self._awaiting_deadline = None
            user.on_release_confirmation(transition.next_state)
        elif effect is Effect.INDICATE_ABORT:
            user.on_abort(incoming if isinstance(incoming, AAbort) else None, provider=False)
        elif effect is Effect.INDICATE_P_ABORT:
            user.on_abort(incoming if isinstance(incoming, AAbort) else None, provider=True)

    # -- deadlines ---------------------------------------------------------------

    def _idle_deadline(self) -> float | None:
        """How long the reader may wait for the next PDU to start."""
        candidates = [d for d in (self._artim_deadline, self._awaiting_deadline) if d is not None]
        if self.network_timeout is not None and self.state is State.STA6:
            candidates.append(time.monotonic() + self.network_timeout)
        return min(candidates) if candidates else None

    def _pdu_timeout(self) -> float | None:
        """How long one PDU may take to arrive once it has started."""
        if self.state in (State.STA2, State.STA5):
            return self.artim_timeout if self.state is State.STA2 else self.acse_timeout
        return self.network_timeout

    def _report_sent(self, outgoing: PDU | None, segments: Sequence[Buffer]) -> None:
        raw = b"".join(segments)
        pdu = outgoing if outgoing is not None else decode_pdu(raw[0], memoryview(raw)[6:])
        self.user.on_pdu(pdu, lambda: raw, sent=True)


def _frozen(raw: bytes) -> Callable[[], bytes]:
    return lambda: raw


def _no_effect(_segments: Sequence[Buffer] | None) -> None:
    return None
