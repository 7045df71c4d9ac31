"""The Upper Layer link of one association: the protocol core pumped over a socket.

The sans-I/O :class:`~dicombus.protocol.connection.DimseConnection` decides
(the PS3.8 state machine, framing, DIMSE reassembly and routing); this class
feeds it the PDUs read from the socket and the local user's intents, writes
the bytes it produces, runs the deadlines it asks for (ARTIM) and those of the
association (ACSE, network), and reports its events to its owner, the
:class:`~dicombus.association.Association`, through :class:`LinkUser`.

Threads: one reader thread per association runs :meth:`UpperLayerLink.run`.
Other threads (the user's) may send P-DATA, release or abort; every call into
the connection, and the write of what it produced, happens under one lock,
and the events are reported by the calling thread after that lock is
released, so a slow handler never blocks a sender.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dicombus.protocol.connection import (
    DIMSE_EVENT_TYPES,
    Aborted,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    ConnectionClosed,
    ConnectionEvent,
    DimseConnection,
    DimseEvent,
    PduReceived,
    PduSent,
    ProtocolViolation,
    ReleaseConfirmed,
    ReleaseRequested,
    Transitioned,
)
from dicombus.protocol.errors import AbortSource, RemoteProtocolError
from dicombus.protocol.fsm import State, Transition
from dicombus.protocol.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
)
from dicombus.runtime.transport import Buffer, DeadlineExpired, PduChannel
from dicombus.runtime.transport import ConnectionClosed as TransportClosed

LOGGER = logging.getLogger("dicombus.link")


class LinkUser(Protocol):
    """What the link reports to (implemented by the Association)."""

    def on_associate_indication(self, rq: AAssociateRQ) -> None: ...
    def on_associate_accepted(self, ac: AAssociateAC) -> None: ...
    def on_associate_rejected(self, rj: AAssociateRJ) -> None: ...
    def on_messages(self, events: Sequence[DimseEvent]) -> None: ...
    def on_release_indication(self, *, answer_now: bool) -> None: ...
    def on_release_confirmation(self, *, answer_now: bool) -> None: ...
    def on_abort(self, abort: AAbort | None, *, provider: bool) -> None: ...
    def on_closed(self) -> None: ...
    def on_pdu(self, pdu: PDU, raw: Callable[[], bytes], *, sent: bool) -> None: ...
    def on_transition(self, transition: Transition) -> None: ...


class UpperLayerLink:
    """One association's socket, its protocol core and their deadlines."""

    def __init__(
        self,
        channel: PduChannel,
        connection: DimseConnection,
        user: LinkUser,
        *,
        artim_timeout: float,
        network_timeout: float | None,
        acse_timeout: float | None,
    ) -> None:
        self.channel = channel
        self.connection = connection
        self.user = user
        self.artim_timeout = artim_timeout
        self.network_timeout = network_timeout
        self.acse_timeout = acse_timeout
        self._lock = threading.RLock()
        self._artim_deadline: float | None = None
        self._awaiting_deadline: float | None = None
        self._closed = threading.Event()
        # Set when a send failed: the stream may end mid-PDU, so nothing more is sent.
        self._send_failed = False
        self._reporters = self._reporter_table()

    @property
    def state(self) -> State:
        return self.connection.state

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def observe_pdus(self) -> bool:
        return self.connection.observe_pdus

    @observe_pdus.setter
    def observe_pdus(self, value: bool) -> None:
        self.connection.observe_pdus = value

    @property
    def observe_transitions(self) -> bool:
        return self.connection.observe_transitions

    @observe_transitions.setter
    def observe_transitions(self, value: bool) -> None:
        self.connection.observe_transitions = value

    # -- local intents (any thread) ------------------------------------------------

    def start(self) -> None:
        """Acceptor: the connection is accepted; ARTIM waits for the A-ASSOCIATE-RQ."""
        self._perform(self.connection.start)

    def request_association(self, rq: AAssociateRQ) -> None:
        self._perform(lambda: self.connection.request_association(rq))

    def accept(self, ac: AAssociateAC) -> None:
        self._perform(lambda: self.connection.accept(ac))

    def reject(self, rj: AAssociateRJ) -> None:
        self._perform(lambda: self.connection.reject(rj))

    def release(self) -> None:
        self._perform(self.connection.release)

    def respond_to_release(self) -> None:
        self._perform(self.connection.respond_to_release)

    def send_pdata(self, segments: Sequence[Buffer]) -> None:
        """Send one P-DATA-TF; ConnectionError once the association can carry none.

        The peer may abort, or the connection fail, between two PDUs of one
        message: the caller learns that the association ended, not that it
        misused the state machine.
        """
        connection = self.connection

        def send() -> None:
            if self._send_failed or not connection.can_send_data:
                state = connection.state
                raise ConnectionError(
                    f"the association can no longer send data ({state.name}: {state.description})"
                )
            connection.send_pdata(segments)

        self._perform(send)

    def abort_local(self, *, source: AbortSource = AbortSource.SERVICE_USER) -> None:
        """EVT15: send A-ABORT, then hang up without waiting out ARTIM."""
        self._perform(lambda: self.connection.abort(source))

    def abort_invalid(self, exc: RemoteProtocolError) -> None:
        """PS3.8 EVT19 / AA-8: answer what the peer broke with a provider A-ABORT, hang up."""
        self._perform(lambda: self.connection.abort_for_protocol_error(exc))

    def await_response_until(self, deadline: float | None) -> None:
        """Bound the wait for the peer's A-ASSOCIATE or A-RELEASE response (the ACSE timeout)."""
        self._awaiting_deadline = deadline

    def shutdown_transport(self) -> None:
        """Wake the reader by shutting the socket down."""
        self.channel.shutdown()

    def _perform(self, intent: Callable[[], None]) -> None:
        """Run one call into the connection, write what it produced, then report its events.

        The events are taken under the lock, so each thread reports those of its
        own call, in order; they are reported after it is released.
        """
        with self._lock:
            try:
                intent()
            finally:
                events = self.connection.events()
                self._write()
        self._report(events)

    def _write(self) -> None:
        """Under the lock: send what the connection produced, follow its timer and closing."""
        connection = self.connection
        data = connection.data_to_send()
        if data and not self._send_failed:
            try:
                self.channel.send_segments(data, timeout=self.network_timeout)
            except (TransportClosed, DeadlineExpired, OSError) as exc:
                LOGGER.error("sending to the peer failed: %s", exc)
                self._send_failed = True
                self.channel.shutdown()
        if connection.artim_running:
            if self._artim_deadline is None:
                self._artim_deadline = time.monotonic() + self.artim_timeout
        else:
            self._artim_deadline = None
        if connection.transport_closed:
            # The reader wakes with EOF and closes the socket as it leaves run().
            self.channel.shutdown()

    # -- the reader loop (the association's own thread) --------------------------------

    def run(self) -> None:
        """Read and handle PDUs until the transport is closed."""
        try:
            while not self._closed.is_set():
                self.read_one()
        finally:
            self.channel.close()

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
        state = self.connection.state
        idle_deadline = self._idle_deadline(state)
        caller_bound = wait_until is not None and (
            idle_deadline is None or wait_until < idle_deadline
        )
        if caller_bound:
            idle_deadline = wait_until
        try:
            pdu_type, body, _header = self.channel.read_pdu(
                idle_deadline=idle_deadline, pdu_timeout=self._pdu_timeout(state)
            )
        except RemoteProtocolError as exc:
            # The framer refused a header (type, length): the A-ABORT goes out and
            # the stream is given up, since its PDU boundaries are lost.
            self.abort_invalid(exc)
        except DeadlineExpired as exc:
            if caller_bound and not exc.mid_pdu:
                return False
            self._on_deadline(exc)
        except TransportClosed:
            self._perform(self.connection.connection_lost)
        else:
            self._perform(lambda: self.connection.receive_pdu(pdu_type, body))
        return True

    def input_ready(self) -> bool:
        """Whether a read would find bytes (or the end of the stream) at once: no waiting."""
        if self._closed.is_set():
            return False
        if self.channel.has_read_ahead or self.channel.tls_holds_input:
            return True
        sock = self.channel.sock
        try:
            if not hasattr(select, "poll"):  # Windows
                return bool(select.select([sock], [], [], 0)[0])
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True  # a closed socket: the read reports it

    def _on_deadline(self, exc: DeadlineExpired) -> None:
        if self._artim_deadline is not None:
            # PS3.8 EVT18: ARTIM expired (an association request that never
            # came, or a peer that never closed after our RJ/RP/abort).
            LOGGER.warning("ARTIM timer expired in %s; closing the connection", self.state.name)
            self._perform(self.connection.timer_expired)
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

    # -- reporting -----------------------------------------------------------------

    def _report(self, events: Sequence[ConnectionEvent]) -> None:
        # Consecutive DIMSE messages go to the user together: it serves the
        # requests among them once all are routed (a C-CANCEL right behind a
        # request in the same PDU is then already known).
        messages: list[DimseEvent] = []
        for event in events:
            if isinstance(event, DIMSE_EVENT_TYPES):
                messages.append(event)
                continue
            if messages:
                self.user.on_messages(messages)
                messages = []
            self._reporters[type(event)](event)
        if messages:
            self.user.on_messages(messages)

    def _reporter_table(self) -> dict[type, Callable[[Any], None]]:
        user = self.user
        return {
            Transitioned: lambda event: user.on_transition(event.transition),
            PduReceived: lambda event: user.on_pdu(event.pdu, _frozen(event.raw), sent=False),
            PduSent: lambda event: user.on_pdu(event.pdu, _frozen(event.raw), sent=True),
            AssociateRequested: lambda event: user.on_associate_indication(event.rq),
            AssociateAccepted: self._on_accepted,
            AssociateRejected: self._on_rejected,
            ReleaseRequested: lambda event: user.on_release_indication(answer_now=event.answer_now),
            ReleaseConfirmed: self._on_release_confirmed,
            Aborted: lambda event: user.on_abort(event.abort, provider=event.provider),
            ProtocolViolation: lambda event: LOGGER.error(
                "aborting: the peer broke the protocol: %s", event.error
            ),
            ConnectionClosed: self._on_closed,
        }

    def _on_accepted(self, event: AssociateAccepted) -> None:
        self._awaiting_deadline = None
        self.user.on_associate_accepted(event.ac)

    def _on_rejected(self, event: AssociateRejected) -> None:
        self._awaiting_deadline = None
        self.user.on_associate_rejected(event.rj)

    def _on_release_confirmed(self, event: ReleaseConfirmed) -> None:
        self._awaiting_deadline = None
        self.user.on_release_confirmation(answer_now=event.answer_now)

    def _on_closed(self, _event: ConnectionClosed) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.user.on_closed()

    # -- deadlines ---------------------------------------------------------------

    def _idle_deadline(self, state: State) -> float | None:
        """How long the reader may wait for the next PDU to start (read before every PDU:
        the earliest of ARTIM, the ACSE timeout and, in Sta6, the network timeout)."""
        deadline = self._artim_deadline
        awaited = self._awaiting_deadline
        if awaited is not None and (deadline is None or awaited < deadline):
            deadline = awaited
        if self.network_timeout is not None and state is State.STA6:
            idle = time.monotonic() + self.network_timeout
            if deadline is None or idle < deadline:
                deadline = idle
        return deadline

    def _pdu_timeout(self, state: State) -> float | None:
        """How long one PDU may take to arrive once it has started."""
        if state is State.STA2:
            return self.artim_timeout
        if state is State.STA5:
            return self.acse_timeout
        return self.network_timeout


def _frozen(raw: bytes) -> Callable[[], bytes]:
    return lambda: raw
