"""An association: one thread reading PDUs, the user's thread sending requests.

Requestor: :meth:`dicombus.ae.AE.associate` creates one, its thread connects
and negotiates, and the user calls ``send_c_echo`` / ``send_c_store`` /
``release``. Responses are matched to requests by message ID; requests that
arrive from the peer (C-STORE sub-operations, N-EVENT-REPORT) are served in
the reader thread.

Acceptor: the server creates one per connection; its thread negotiates and
then serves requests, calling the bound intervention handlers in that thread,
as pynetdicom does.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from dicombus import config, evt
from dicombus.acse import Rejection, ServiceUser, describe_rejection
from dicombus.negotiation import absorb_associate_ac, answer_associate_rq, build_associate_rq
from dicombus.presentation import PresentationContext
from dicombus.protocol.commands import CommandField, CommandSet, encode_command_set
from dicombus.protocol.errors import AbortSource, RemoteProtocolError
from dicombus.protocol.fragments import (
    DatasetSink,
    DimseMessage,
    MemoryDatasetSink,
    MessageAssembler,
    fragment_message,
)
from dicombus.protocol.fsm import Event, State, Transition
from dicombus.protocol.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
)
from dicombus.runtime.link import UpperLayerLink
from dicombus.runtime.spool import SpoolingDatasetSink
from dicombus.runtime.transport import Buffer, PduChannel, configure_socket
from dicombus.service_request import ServiceRequest

if TYPE_CHECKING:
    from dicombus.ae import AE
    from dicombus.server import AssociationServer

LOGGER = logging.getLogger("dicombus.assoc")

# Datasets of messages other than C-STORE (identifiers, N-service attribute
# lists) are small; a peer that sends more is cut off, not buffered.
MAX_NON_STORAGE_DATASET = 64 * 1024 * 1024

_NO_RESPONSE: DimseMessage | None = None


class Association:
    """One DICOM association (pynetdicom's ``Association`` API)."""

    def __init__(
        self,
        ae: AE,
        mode: str,
        *,
        handlers: evt.HandlerRegistry,
        server: AssociationServer | None = None,
    ) -> None:
        if mode not in ("requestor", "acceptor"):
            raise ValueError("mode is 'requestor' or 'acceptor'")
        self.ae = ae
        self.mode = mode
        self.server = server
        self.handlers = handlers
        self.requestor = ServiceUser()
        self.acceptor = ServiceUser()
        self.acse_timeout: float | None = ae.acse_timeout
        self.dimse_timeout: float | None = ae.dimse_timeout
        self.network_timeout: float | None = ae.network_timeout
        self.connection_timeout: float | None = ae.connection_timeout
        self.is_established = False
        self.is_rejected = False
        self.is_aborted = False
        self.is_released = False
        self.rejection: Rejection | None = None
        self.accepted_contexts: list[PresentationContext] = []
        self.rejected_contexts: list[PresentationContext] = []
        self.requested_contexts: list[PresentationContext] = []
        self.supported_contexts: list[PresentationContext] = []
        self.extended_negotiation: list[Any] = []
        self.link: UpperLayerLink | None = None
        self._negotiated = threading.Event()
        self._released = threading.Event()
        self._waiters: dict[int, queue.SimpleQueue[DimseMessage | None]] = {}
        self._waiters_lock = threading.Lock()
        self._cancelled: set[int] = set()
        self._assembler = MessageAssembler(dataset_sink_factory=self._new_dataset_sink)
        self._thread = threading.Thread(target=self._run, name=f"dicombus-{mode}", daemon=True)
        self._target: Callable[[], None] = self._run_acceptor
        self._socket: socket.socket | None = None
        self._tls: tuple[ssl.SSLContext, str | None] | None = None
        self._log = LOGGER if config.LOG_HANDLER_LEVEL == "standard" else None

    # -- identity ----------------------------------------------------------------

    @property
    def is_requestor(self) -> bool:
        return self.mode == "requestor"

    @property
    def is_acceptor(self) -> bool:
        return self.mode == "acceptor"

    @property
    def local(self) -> ServiceUser:
        return self.requestor if self.is_requestor else self.acceptor

    @property
    def remote(self) -> ServiceUser:
        return self.acceptor if self.is_requestor else self.requestor

    @property
    def name(self) -> str:
        return self._thread.name

    @property
    def native_id(self) -> int | None:
        return self._thread.native_id

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread() and self._thread.ident is not None:
            self._thread.join(timeout)

    def __str__(self) -> str:
        peer = self.remote
        return f"Association({self.mode}, {peer.ae_title or '?'} at {peer.address}:{peer.port})"

    # -- handlers ----------------------------------------------------------------

    def bind(
        self, event: evt.EventType, handler: evt.Handler, args: Sequence[Any] | None = None
    ) -> None:
        self.handlers.bind(event, handler, args)
        self._observe()

    def unbind(self, event: evt.EventType, handler: evt.Handler) -> None:
        self.handlers.unbind(event, handler)
        self._observe()

    def get_handlers(self, event: evt.EventType) -> Any:
        return self.handlers.get_handlers(event)

    def _observe(self) -> None:
        """Tell the link whether anyone wants per-PDU or per-transition events (they cost)."""
        if self.link is None:
            return
        bound = self.handlers.is_bound
        self.link.observe_pdus = (
            bound(evt.EVT_PDU_RECV)
            or bound(evt.EVT_PDU_SENT)
            or bound(evt.EVT_DATA_RECV)
            or bound(evt.EVT_DATA_SENT)
            or bound(evt.EVT_ACSE_RECV)
            or bound(evt.EVT_ACSE_SENT)
            or (self._log is not None and LOGGER.isEnabledFor(logging.DEBUG))
        )
        self.link.observe_transitions = bound(evt.EVT_FSM_TRANSITION)

    def _notify(self, event: evt.NotificationEvent, **attrs: Any) -> None:
        if self.handlers.is_bound(event):
            evt.trigger(self, event, attrs)

    # -- starting --------------------------------------------------------------------

    def start_as_requestor(
        self,
        address: str,
        port: int,
        *,
        bind_address: tuple[str, int] | None,
        tls: tuple[ssl.SSLContext, str | None] | None,
    ) -> None:
        self.acceptor.address, self.acceptor.port = address, port
        self._bind_address = bind_address
        self._tls = tls
        self._target = self._run_requestor
        self._thread.start()

    def start_as_acceptor(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        self._socket = sock
        self._tls = (ssl_context, None) if ssl_context is not None else None
        self._thread.start()

    def wait_for_negotiation(self) -> None:
        """Block the caller of ``associate`` until accepted, rejected or failed."""
        limit = None
        if self.acse_timeout is not None:
            limit = self.acse_timeout + (self.connection_timeout or self.acse_timeout) + 1
        if not self._negotiated.wait(limit):
            LOGGER.error("association negotiation did not finish; aborting")
            self.abort()

    def _run(self) -> None:
        try:
            self._target()
        except Exception:
            LOGGER.exception("unexpected error in %s; aborting", self)
            if self.link is not None:
                self.link.abort_local(source=AbortSource.SERVICE_PROVIDER)
        finally:
            self._finish()

    def _run_requestor(self) -> None:
        # As pynetdicom: the local user's request is announced before the connection opens.
        self._notify(evt.EVT_REQUESTED)
        sock = self._connect()
        if sock is None:
            return
        self._start_link(sock)
        assert self.link is not None
        self.link.fire(Event.EVT1)
        self.link.await_response_until(
            None if self.acse_timeout is None else time.monotonic() + self.acse_timeout
        )
        rq = build_associate_rq(self)
        self._notify(evt.EVT_ACSE_SENT, primitive=rq)
        self.link.fire(Event.EVT2, rq)
        self.link.run()

    def _connect(self) -> socket.socket | None:
        address, port = self.acceptor.address, self.acceptor.port
        try:
            sock = socket.create_connection(
                (address, port),
                timeout=self.connection_timeout,
                source_address=self._bind_address,
            )
            configure_socket(sock)
            if self._tls is not None:
                context, hostname = self._tls
                sock.settimeout(self.acse_timeout)
                sock = context.wrap_socket(sock, server_hostname=hostname)
        except (OSError, ssl.SSLError) as exc:
            LOGGER.error(
                "association request failed: unable to connect to %s:%s (%s)", address, port, exc
            )
            self._mark_aborted("(the connection could not be opened)")
            return None
        self.requestor.address, self.requestor.port = sock.getsockname()[:2]
        return sock

    def _run_acceptor(self) -> None:
        sock = self._socket
        assert sock is not None
        configure_socket(sock)
        self.requestor.address, self.requestor.port = sock.getpeername()[:2]
        self.acceptor.address, self.acceptor.port = sock.getsockname()[:2]
        if self._tls is not None:
            sock = self._tls_handshake(sock)
            if sock is None:
                return
        self._start_link(sock)
        assert self.link is not None
        self.link.fire(Event.EVT5)
        self.link.run()

    def _tls_handshake(self, sock: socket.socket) -> socket.socket | None:
        assert self._tls is not None
        context = self._tls[0]
        try:
            sock.settimeout(self.acse_timeout)
            wrapped = context.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            LOGGER.error("TLS handshake with %s failed: %s", self.requestor.address, exc)
            sock.close()
            self.is_aborted = True
            return None
        peer = wrapped.getpeercert()
        if peer:
            subject = ", ".join("=".join(pair) for rdn in peer.get("subject", ()) for pair in rdn)
            self.requestor.tls_peer_subject = subject
        return wrapped

    def _start_link(self, sock: socket.socket) -> None:
        # The Maximum Length we advertise caps every P-DATA-TF we read. The
        # acceptor's is only recorded during negotiation, after this point, and
        # 0 would mean "unlimited": a header claiming 4 GiB would be read.
        advertised = self.local.maximum_length if self.is_requestor else self.ae.maximum_pdu_size
        channel = PduChannel(
            sock,
            max_pdata_length=advertised,
            max_associate_length=self.ae.maximum_associate_pdu_size,
        )
        self.link = UpperLayerLink(
            channel,
            self,
            is_requestor=self.is_requestor,
            artim_timeout=self.acse_timeout or 30.0,
            network_timeout=self.network_timeout,
            acse_timeout=self.acse_timeout,
        )
        self._observe()
        peer = self.remote
        self._notify(evt.EVT_CONN_OPEN, address=(peer.address, peer.port))

    def _finish(self) -> None:
        if not self.is_established and not self.is_rejected:
            self.is_aborted = self.is_aborted or not self.is_released
        self.is_established = False
        self._negotiated.set()
        self._released.set()
        self._wake_waiters()
        self._assembler = MessageAssembler(dataset_sink_factory=self._new_dataset_sink)
        if self.server is not None:
            self.server.forget(self)

    # -- LinkUser: what the link reports ---------------------------------------------

    def on_associate_indication(self, rq: AAssociateRQ) -> None:
        assert self.link is not None
        self._notify(evt.EVT_ACSE_RECV, primitive=rq)
        self._notify(evt.EVT_REQUESTED)
        reply = answer_associate_rq(self, rq)
        self._notify(evt.EVT_ACSE_SENT, primitive=reply)
        if isinstance(reply, AAssociateRJ):
            self.is_rejected = True
            self.rejection = Rejection(reply.result, reply.source, reply.reason, "")
            self.link.fire(Event.EVT8, reply)
            if self._log:
                self._log.info(
                    "Association Rejected (%s)",
                    describe_rejection(reply.result, reply.source, reply.reason),
                )
            self._notify(evt.EVT_REJECTED)
            self._negotiated.set()
            return
        self.link.fire(Event.EVT7, reply)
        self.is_established = True
        if self._log:
            self._log.info("Association Accepted")
        self._notify(evt.EVT_ACCEPTED)
        self._notify(evt.EVT_ESTABLISHED)
        self._negotiated.set()

    def on_associate_accepted(self, ac: AAssociateAC) -> None:
        self._notify(evt.EVT_ACSE_RECV, primitive=ac)
        absorb_associate_ac(self, ac)
        assert self.link is not None
        if not self.accepted_contexts:
            # Nothing can be sent on an association without contexts (as pynetdicom).
            LOGGER.error("the peer accepted none of our presentation contexts; aborting")
            self._notify(evt.EVT_ACCEPTED)
            self._mark_aborted("locally: no presentation context was accepted")
            self.link.abort_local(source=AbortSource.SERVICE_PROVIDER)
            return
        self.is_established = True
        if self._log:
            self._log.info("Association Accepted")
        self._notify(evt.EVT_ACCEPTED)
        self._notify(evt.EVT_ESTABLISHED)
        self._negotiated.set()

    def on_associate_rejected(self, rj: AAssociateRJ) -> None:
        self._notify(evt.EVT_ACSE_RECV, primitive=rj)
        self.is_rejected = True
        why = describe_rejection(rj.result, rj.source, rj.reason)
        self.rejection = Rejection(rj.result, rj.source, rj.reason, why)
        LOGGER.error("Association Rejected (%s)", why)
        self._notify(evt.EVT_REJECTED)
        self._negotiated.set()

    def on_p_data(self, pdu: PDataTF) -> None:
        for pdv in pdu.pdvs:
            try:
                message = self._assembler.add_pdv(pdv)
            except RemoteProtocolError as exc:
                LOGGER.error("aborting: invalid DIMSE message from the peer: %s", exc)
                assert self.link is not None
                self.link.abort_invalid(exc)
                return
            if message is not None:
                self._on_message(message)

    def on_release_indication(self, state: State) -> None:
        assert self.link is not None
        self._notify(evt.EVT_ACSE_RECV, primitive=AReleaseRQ())
        if state is State.STA10:
            return  # PS3.8 AR-8 acceptor side: answer after our own release is confirmed
        self._respond_to_release()

    def _respond_to_release(self) -> None:
        assert self.link is not None
        self._notify(evt.EVT_ACSE_SENT, primitive=AReleaseRP())
        self.link.fire(Event.EVT14, AReleaseRP())
        if self.link.state is State.STA13:
            self._mark_released()

    def on_release_confirmation(self, state: State) -> None:
        self._notify(evt.EVT_ACSE_RECV, primitive=AReleaseRP())
        if state is State.STA12:
            self._respond_to_release()  # PS3.8 AR-10 then AR-4: the acceptor's half of a collision
        self._mark_released()

    def _mark_released(self) -> None:
        if not self.is_released:
            self.is_released = True
            self.is_established = False
            if self._log:
                self._log.info("Association Released")
            self._notify(evt.EVT_RELEASED)
        self._released.set()

    def on_abort(self, abort: AAbort | None, *, provider: bool) -> None:
        if abort is not None:
            self._notify(evt.EVT_ACSE_RECV, primitive=abort)
        self._mark_aborted("by the peer" if abort is not None else "by the service provider")

    def _mark_aborted(self, how: str) -> None:
        if self.is_aborted:
            return
        self.is_aborted = True
        self.is_established = False
        if self._log:
            self._log.warning("Association Aborted %s", how)
        self._notify(evt.EVT_ABORTED)
        self._negotiated.set()
        self._wake_waiters()

    def on_closed(self) -> None:
        if not (self.is_released or self.is_rejected or self.is_aborted):
            self._mark_aborted("(the connection closed)")
        peer = self.remote
        self._notify(evt.EVT_CONN_CLOSE, address=(peer.address, peer.port))

    def on_pdu(self, pdu: PDU, raw: Callable[[], bytes], *, sent: bool) -> None:
        if sent:
            self._notify(evt.EVT_PDU_SENT, pdu=pdu)
            if self.handlers.is_bound(evt.EVT_DATA_SENT):
                self._notify(evt.EVT_DATA_SENT, data=raw())
        else:
            self._notify(evt.EVT_PDU_RECV, pdu=pdu)
            if self.handlers.is_bound(evt.EVT_DATA_RECV):
                self._notify(evt.EVT_DATA_RECV, data=raw())
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug("%s %s", "Sent" if sent else "Received", type(pdu).__name__)

    def on_transition(self, transition: Transition) -> None:
        self._notify(
            evt.EVT_FSM_TRANSITION,
            current_state=f"Sta{transition.current_state.value}",
            fsm_event=f"Evt{transition.event.value}",
            action=transition.action.value,
            next_state=f"Sta{transition.next_state.value}",
        )

    # -- ending --------------------------------------------------------------------------

    def release(self) -> None:
        """Ask the peer to release the association and wait (at most the ACSE timeout)."""
        if not self.is_established or self.link is None:
            return
        if self._thread is threading.current_thread():
            raise RuntimeError("release() from a handler would wait on itself; use abort()")
        self._notify(evt.EVT_ACSE_SENT, primitive=AReleaseRQ())
        self.link.await_response_until(
            None if self.acse_timeout is None else time.monotonic() + self.acse_timeout
        )
        try:
            self.link.fire(Event.EVT11, AReleaseRQ())
        except Exception as exc:
            LOGGER.error("cannot release in state %s: %s", self.link.state.name, exc)
            self.abort()
            return
        if not self._released.wait(None if self.acse_timeout is None else self.acse_timeout + 1):
            LOGGER.error("the peer did not answer our A-RELEASE-RQ in time; aborting")
            self.abort()
            return
        self.join(self.acse_timeout)

    def abort(self) -> None:
        """Send an A-ABORT (service user) and close the connection."""
        if self.link is None:
            return
        if not self.link.is_closed:
            self._notify(evt.EVT_ACSE_SENT, primitive=AAbort(source=0, reason=0))
            self._mark_aborted("locally")
            self.link.abort_local(source=AbortSource.SERVICE_USER)
        self.join(self.acse_timeout)

    def _wake_waiters(self) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters.values())
        for waiter in waiters:
            waiter.put(_NO_RESPONSE)

    # -- DIMSE -------------------------------------------------------------------------

    def _new_dataset_sink(self, command: CommandSet) -> DatasetSink:
        if command.command_field is CommandField.C_STORE_RQ:
            threshold = 0 if config.STORE_RECV_CHUNKED_DATASET else config.STORE_SPOOL_THRESHOLD
            return SpoolingDatasetSink(threshold=threshold, spool_dir=config.STORE_SPOOL_DIRECTORY)
        return MemoryDatasetSink(max_size=MAX_NON_STORAGE_DATASET)

    def send_message(self, context_id: int, command: CommandSet, dataset: Buffer | None) -> None:
        """Encode, fragment (within the peer's maximum PDU length) and send one message."""
        if self.link is None or self.link.is_closed or self.is_aborted:
            raise ConnectionError("the association is not open")
        encoded = encode_command_set(command)
        for segments in fragment_message(
            context_id=context_id,
            command=encoded,
            dataset=dataset,
            max_pdu_length=self.remote.maximum_length,
        ):
            self.link.send_pdata(segments)
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug("Sent %s (context %d)", command.command_field.name, context_id)
        if self.handlers.is_bound(evt.EVT_DIMSE_SENT):
            self._notify(
                evt.EVT_DIMSE_SENT,
                message=DimseMessage(context_id=context_id, command=command, dataset=None),
            )

    def send_request(
        self, context_id: int, command: CommandSet, dataset: Buffer | None
    ) -> Iterator[DimseMessage | None]:
        """Send a request and yield its responses (several for C-FIND/GET/MOVE).

        Yields None, and stops, when no response came within the DIMSE timeout
        or the association ended; the association is then aborted.
        """
        message_id = command.MessageID or 0
        waiter: queue.SimpleQueue[DimseMessage | None] = queue.SimpleQueue()
        with self._waiters_lock:
            self._waiters[message_id] = waiter
        try:
            self.send_message(context_id, command, dataset)
            while True:
                try:
                    response = waiter.get(timeout=self.dimse_timeout)
                except queue.Empty:
                    LOGGER.error(
                        "no response to message %d within the DIMSE timeout; aborting", message_id
                    )
                    self.abort()
                    response = _NO_RESPONSE
                yield response
                if response is None or not _is_pending(response.command):
                    return
        finally:
            with self._waiters_lock:
                self._waiters.pop(message_id, None)

    def _on_message(self, message: DimseMessage) -> None:
        if self.handlers.is_bound(evt.EVT_DIMSE_RECV):
            self._notify(evt.EVT_DIMSE_RECV, message=message)
        command = message.command
        field = command.command_field
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug("Received %s (context %d)", field.name, message.context_id)
        if field.is_response:
            with self._waiters_lock:
                waiter = self._waiters.get(command.MessageIDBeingRespondedTo or 0)
            if waiter is None:
                LOGGER.warning(
                    "ignoring a %s for message %s, which we did not send or no longer wait for",
                    field.name,
                    command.MessageIDBeingRespondedTo,
                )
                return
            waiter.put(message)
            return
        if field is CommandField.C_CANCEL_RQ:
            self._cancelled.add(command.MessageIDBeingRespondedTo or 0)
            return
        self._serve(message)

    def is_cancelled(self, message_id: int) -> bool:
        return message_id in self._cancelled

    def _serve(self, message: DimseMessage) -> None:
        from dicombus.services import dispatch  # services import this module's types

        context = next(
            (c for c in self.accepted_contexts if c.context_id == message.context_id), None
        )
        request = ServiceRequest(message)
        try:
            if context is None:
                raise RemoteProtocolError(
                    f"a {message.command.command_field.name} arrived on presentation context "
                    f"{message.context_id}, which was not accepted"
                )
            dispatch(self, request, context)
        except RemoteProtocolError as exc:
            LOGGER.error("aborting: %s", exc)
            assert self.link is not None
            self.link.abort_invalid(exc)
        except ConnectionError as exc:
            # Aborted (say, by a server shutdown) while the handler ran.
            LOGGER.warning("no %s response sent: %s", message.command.command_field.name, exc)
        finally:
            request.release()

    # -- SCU services (pynetdicom's names) -----------------------------------------------

    def send_c_echo(self, msg_id: int = 1) -> Dataset:
        from dicombus.services.verification import send_c_echo

        return send_c_echo(self, msg_id)

    def send_c_store(
        self,
        dataset: Any,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        from dicombus.services.storage import send_c_store

        return send_c_store(
            self,
            dataset,
            msg_id=msg_id,
            priority=priority,
            originator_aet=originator_aet,
            originator_id=originator_id,
        )


def _is_pending(command: CommandSet) -> bool:
    # PS3.7 C.4.1: 0xFF00 / 0xFF01 mean more responses follow.
    return command.Status in (0xFF00, 0xFF01)
