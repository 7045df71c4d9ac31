"""The life of one association: its thread, its link, and what the link reports.

:class:`~dicombus.association.Association` is the facade users hold
(pynetdicom's API); behind it, an :class:`AssociationSession` runs the
association's reader thread. The requestor's thread connects, sends the
A-ASSOCIATE-RQ and reads; the acceptor's runs the TLS handshake, answers
the A-ASSOCIATE-RQ with :func:`dicombus.negotiation.negotiate` and reads.
The session is the link's user (:class:`~dicombus.runtime.link.LinkUser`:
negotiation, release and abort as the link reports them, turned into the
association's state and its notification events) and the owner of its
:class:`~dicombus.runtime.exchange.MessageExchange` (the data set sinks,
serving the peer's requests through :func:`dicombus.services.dispatch`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dicombus import config, evt
from dicombus.acse import Rejection, describe_rejection
from dicombus.ae_title import our_ae_title
from dicombus.negotiation import (
    AcceptorConfig,
    Negotiated,
    NegotiationResult,
    RequestorConfig,
    absorb_associate_ac,
    build_associate_rq,
    negotiate,
)
from dicombus.protocol.commands import CommandField, CommandSet
from dicombus.protocol.connection import DimseConnection, DimseEvent
from dicombus.protocol.errors import AbortSource, RemoteProtocolError
from dicombus.protocol.fragments import DatasetSink, DimseMessage, MemoryDatasetSink
from dicombus.protocol.fsm import State, Transition
from dicombus.protocol.limits import DEFAULT_MAX_DATASET_IN_MEMORY
from dicombus.protocol.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
)
from dicombus.runtime.connect import open_connection, tls_handshake
from dicombus.runtime.exchange import MessageExchange
from dicombus.runtime.link import UpperLayerLink
from dicombus.runtime.spool import SpoolingDatasetSink
from dicombus.runtime.transport import Buffer, PduChannel, configure_socket
from dicombus.service_request import ServiceRequest
from dicombus.services import dispatch
from dicombus.tls import handshake_failure, peer_subject

if TYPE_CHECKING:
    from dicombus.association import Association

LOGGER = logging.getLogger("dicombus.assoc")


class AssociationSession:
    """The reader thread of one association and everything it drives."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        ae = assoc.ae
        self.link: UpperLayerLink | None = None
        self.connection = DimseConnection(
            is_requestor=assoc.is_requestor,
            dataset_sink_factory=self._new_dataset_sink,
            max_pdata_length=ae.maximum_pdu_size,
            max_associate_length=ae.maximum_associate_pdu_size,
        )
        self.thread = threading.Thread(target=self.run, name=f"dicombus-{assoc.mode}", daemon=True)
        self.exchange = MessageExchange(self, self.connection, reader_thread=self.thread)
        self._negotiated = threading.Event()
        self._released = threading.Event()
        self._target: Callable[[], None] = self._run_acceptor
        self._socket: socket.socket | None = None
        self._bind_address: tuple[str, int] | None = None
        self._hung_up = False
        self._tls: tuple[ssl.SSLContext, str | None] | None = None
        self._log = LOGGER if config.LOG_HANDLER_LEVEL == "standard" else None

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not threading.current_thread() and self.thread.ident is not None:
            self.thread.join(timeout)

    # -- what users observe --------------------------------------------------------------

    def observe(self) -> None:
        """Tell the link whether anyone wants per-PDU or per-transition events (they cost)."""
        if self.link is None:
            return
        bound = self.assoc.handlers.is_bound
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

    def notify(self, event: evt.NotificationEvent, **attrs: Any) -> None:
        if self.assoc.handlers.is_bound(event):
            evt.trigger(self.assoc, event, attrs)

    # -- starting and running ------------------------------------------------------------

    def start_as_requestor(
        self,
        address: str,
        port: int,
        *,
        bind_address: tuple[str, int] | None,
        tls: tuple[ssl.SSLContext, str | None] | None,
    ) -> None:
        self.assoc.acceptor.address, self.assoc.acceptor.port = address, port
        self._bind_address = bind_address
        self._tls = tls
        self._target = self._run_requestor
        self.thread.start()

    def start_as_acceptor(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        self._socket = sock
        self._tls = (ssl_context, None) if ssl_context is not None else None
        self.thread.start()

    @property
    def is_negotiating(self) -> bool:
        """Connected (or connecting), but neither accepted nor rejected yet, and not ended."""
        return not self._negotiated.is_set() and not self._hung_up

    def hang_up_unnegotiated(self) -> bool:
        """Close the connection if it has not finished negotiating; False if it had.

        A server short of room for new connections calls this on the one that
        has waited longest. Its thread, blocked in the TLS handshake or in
        reading the A-ASSOCIATE-RQ, wakes to a closed connection and ends.
        """
        if not self.is_negotiating:
            return False
        self._hung_up = True
        sock = self.link.channel.sock if self.link is not None else self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown: SSLSocket's would also drop the
                # TLS state that a handshake in the other thread is using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        return True

    def wait_for_negotiation(self) -> None:
        """Block the caller of ``associate`` until accepted, rejected or failed."""
        limit = None
        if self.assoc.acse_timeout is not None:
            limit = (
                self.assoc.acse_timeout
                + (self.assoc.connection_timeout or self.assoc.acse_timeout)
                + 1
            )
        if not self._negotiated.wait(limit):
            LOGGER.error("association negotiation did not finish; aborting")
            self.abort()

    def run(self) -> None:
        try:
            self._target()
        except Exception:
            LOGGER.exception("unexpected error in %s; aborting", self.assoc)
            if self.link is not None:
                self.link.abort_local(source=AbortSource.SERVICE_PROVIDER)
        finally:
            self._finish()

    def _run_requestor(self) -> None:
        # As pynetdicom: the local user's request is announced before the connection opens.
        self.notify(evt.EVT_REQUESTED)
        sock = self._connect()
        if sock is None:
            return
        link = self._start_link(sock)
        link.await_response_until(
            None if self.assoc.acse_timeout is None else time.monotonic() + self.assoc.acse_timeout
        )
        rq = build_associate_rq(self._requestor_config())
        # What we propose, as the acceptor sees it (pynetdicom's requestor.user_identity ...).
        self.assoc.requestor.absorb(rq.user_information)
        self.notify(evt.EVT_ACSE_SENT, primitive=rq)
        link.request_association(rq)
        link.run()

    def _connect(self) -> socket.socket | None:
        address, port = self.assoc.acceptor.address, self.assoc.acceptor.port
        try:
            sock = open_connection(
                address,
                port,
                connection_timeout=self.assoc.connection_timeout,
                handshake_timeout=self.assoc.acse_timeout,
                bind_address=self._bind_address,
                tls=self._tls,
            )
        except OSError as exc:
            why = str(exc) or type(exc).__name__
            self.assoc.connection_error = why
            LOGGER.error(
                "association request failed: unable to connect to %s:%s (%s)", address, port, why
            )
            self._mark_aborted("(the connection could not be opened)")
            return None
        if isinstance(sock, ssl.SSLSocket):
            self.assoc.acceptor.tls_peer_subject = peer_subject(sock)
        self.assoc.requestor.address, self.assoc.requestor.port = sock.getsockname()[:2]
        return sock

    def _run_acceptor(self) -> None:
        sock = self._socket
        if sock is None:
            raise RuntimeError("start_as_acceptor() gives the acceptor its socket")
        configure_socket(sock)
        self.assoc.requestor.address, self.assoc.requestor.port = sock.getpeername()[:2]
        self.assoc.acceptor.address, self.assoc.acceptor.port = sock.getsockname()[:2]
        if self._tls is not None:
            wrapped = self._tls_handshake(sock, self._tls[0])
            if wrapped is None:
                return
            sock = wrapped
        link = self._start_link(sock)
        link.start()
        link.run()

    def _tls_handshake(self, sock: socket.socket, context: ssl.SSLContext) -> socket.socket | None:
        def hold(wrapped: ssl.SSLSocket) -> None:
            # Kept where hang_up_unnegotiated() finds it: a server short of room
            # may close a connection that is still in its handshake.
            self._socket = wrapped

        try:
            wrapped = tls_handshake(sock, context, timeout=self.assoc.acse_timeout, hold=hold)
        except OSError as exc:
            reason = handshake_failure(exc)
            LOGGER.error("TLS handshake with %s failed: %s", self.assoc.requestor.address, reason)
            self.assoc.is_aborted = True
            # No link, so no EVT_CONN_OPEN: the close says why, for the audit trail's
            # Security Alert (PS3.15 A.5.3.11). A connection the server itself hung up
            # to make room is no security event.
            peer = self.assoc.remote
            self.notify(
                evt.EVT_CONN_CLOSE,
                address=(peer.address, peer.port),
                tls_error=None if self._hung_up else reason,
            )
            return None
        self.assoc.requestor.tls_peer_subject = peer_subject(wrapped)
        return wrapped

    def _start_link(self, sock: socket.socket) -> UpperLayerLink:
        # The Maximum Length we advertise caps every P-DATA-TF we read. The
        # acceptor's is only recorded during negotiation, after this point, and
        # 0 would mean "unlimited": a header claiming 4 GiB would be read.
        advertised = (
            self.assoc.local.maximum_length
            if self.assoc.is_requestor
            else self.assoc.ae.maximum_pdu_size
        )
        channel = PduChannel(
            sock,
            max_pdata_length=advertised,
            max_associate_length=self.assoc.ae.maximum_associate_pdu_size,
        )
        self.connection.max_pdata_length = advertised
        link = UpperLayerLink(
            channel,
            self.connection,
            self,
            artim_timeout=self.assoc.acse_timeout or 30.0,
            network_timeout=self.assoc.network_timeout,
            acse_timeout=self.assoc.acse_timeout,
        )
        self.link = self.exchange.link = link
        self.observe()
        peer = self.assoc.remote
        self.notify(evt.EVT_CONN_OPEN, address=(peer.address, peer.port))
        return link

    def _finish(self) -> None:
        if not self.assoc.is_established and not self.assoc.is_rejected:
            self.assoc.is_aborted = self.assoc.is_aborted or not self.assoc.is_released
        self.assoc.is_established = False
        self._negotiated.set()
        self._released.set()
        self.exchange.wake_waiters()
        # A dataset cut off by an abort, or a request never served, leaves its
        # spool file unless released here.
        self.connection.close()
        if self.assoc.server is not None:
            self.assoc.server.forget(self.assoc)

    # -- LinkUser: what the link reports ---------------------------------------------

    def _reporting_link(self) -> UpperLayerLink:
        """The link, from a callback of it (so it exists)."""
        if self.link is None:
            raise RuntimeError("a link callback ran before the link was made")
        return self.link

    def on_associate_indication(self, rq: AAssociateRQ) -> None:
        link = self._reporting_link()
        # Known before EVT_REQUESTED fires, so its handlers see who is asking.
        self.assoc.requestor.ae_title = rq.calling_ae_title
        self.assoc.requestor.absorb(rq.user_information)
        self.assoc.acceptor.ae_title = self.assoc.called_ae_title = rq.called_ae_title
        self.notify(evt.EVT_ACSE_RECV, primitive=rq)
        self.notify(evt.EVT_REQUESTED)
        result = negotiate(
            AcceptorConfig.of(
                self.assoc.ae,
                ae_title=our_ae_title(self.assoc.ae, self.assoc.server),
                supported_contexts=self.assoc.supported_contexts,
            ),
            rq,
            admission=self.assoc.server.admission() if self.assoc.server is not None else None,
            intervene=functools.partial(evt.trigger, self.assoc),
        )
        self._record(result)
        reply = result.reply
        self.notify(evt.EVT_ACSE_SENT, primitive=reply)
        if isinstance(reply, AAssociateRJ):
            self.assoc.is_rejected = True
            self.assoc.rejection = result.rejection
            link.reject(reply)
            if self._log:
                self._log.info(
                    "Association Rejected (%s)",
                    describe_rejection(reply.result, reply.source, reply.reason),
                )
            self.notify(evt.EVT_REJECTED)
            self._negotiated.set()
            return
        # Established before the A-ASSOCIATE-AC leaves: once the peer has it, it may
        # send requests, and a user thread holding this association may send too.
        # A failed send aborts, which clears it.
        self.assoc.is_established = True
        link.accept(reply)
        if self._log:
            self._log.info("Association Accepted")
        self.notify(evt.EVT_ACCEPTED)
        self.notify(evt.EVT_ESTABLISHED)
        self._negotiated.set()

    def on_associate_accepted(self, ac: AAssociateAC) -> None:
        self.notify(evt.EVT_ACSE_RECV, primitive=ac)
        self._record(absorb_associate_ac(self._requestor_config(), ac))
        if not self.assoc.accepted_contexts:
            # Nothing can be sent on an association without contexts (as pynetdicom).
            LOGGER.error("the peer accepted none of our presentation contexts; aborting")
            self.notify(evt.EVT_ACCEPTED)
            self._mark_aborted("locally: no presentation context was accepted")
            self._reporting_link().abort_local(source=AbortSource.SERVICE_PROVIDER)
            return
        self.assoc.is_established = True
        if self._log:
            self._log.info("Association Accepted")
        self.notify(evt.EVT_ACCEPTED)
        self.notify(evt.EVT_ESTABLISHED)
        self._negotiated.set()

    def _requestor_config(self) -> RequestorConfig:
        return RequestorConfig(
            ae_title=self.assoc.requestor.ae_title,
            called_ae_title=self.assoc.called_ae_title,
            maximum_length=self.assoc.requestor.maximum_length,
            implementation_class_uid=self.assoc.ae.implementation_class_uid,
            implementation_version_name=self.assoc.ae.implementation_version_name,
            requested_contexts=tuple(self.assoc.requested_contexts),
            extended_negotiation=tuple(self.assoc.extended_negotiation),
        )

    def _record(self, negotiated: Negotiated) -> None:
        """Take on what negotiation decided (see dicombus.negotiation)."""
        if negotiated.requestor is not None:
            self.assoc.requestor.record(negotiated.requestor)
        self.assoc.acceptor.record(negotiated.acceptor)
        self.assoc.accepted_contexts = list(negotiated.accepted_contexts)
        self.assoc.rejected_contexts = list(negotiated.rejected_contexts)
        if isinstance(negotiated, NegotiationResult):
            for outcome in negotiated.outcomes:
                self.assoc.report_outcome(outcome.event, None, details=outcome.details)

    def on_associate_rejected(self, rj: AAssociateRJ) -> None:
        self.notify(evt.EVT_ACSE_RECV, primitive=rj)
        self.assoc.is_rejected = True
        why = describe_rejection(rj.result, rj.source, rj.reason)
        self.assoc.rejection = Rejection(rj.result, rj.source, rj.reason, why)
        LOGGER.error("Association Rejected (%s)", why)
        self.notify(evt.EVT_REJECTED)
        self._negotiated.set()

    def on_messages(self, events: Sequence[DimseEvent]) -> None:
        self.exchange.on_messages(events)

    def on_release_indication(self, *, answer_now: bool) -> None:
        self.notify(evt.EVT_ACSE_RECV, primitive=AReleaseRQ())
        if answer_now:
            # Not in a collision on the acceptor side (PS3.8 AR-8): that answer
            # waits until our own release is confirmed.
            self._respond_to_release()

    def _respond_to_release(self) -> None:
        link = self._reporting_link()
        self.notify(evt.EVT_ACSE_SENT, primitive=AReleaseRP())
        link.respond_to_release()
        if link.state is State.STA13:
            self._mark_released()

    def on_release_confirmation(self, *, answer_now: bool) -> None:
        self.notify(evt.EVT_ACSE_RECV, primitive=AReleaseRP())
        if answer_now:
            self._respond_to_release()  # PS3.8 AR-10 then AR-4: the acceptor's half of a collision
        self._mark_released()

    def _mark_released(self) -> None:
        if not self.assoc.is_released:
            self.assoc.is_released = True
            self.assoc.is_established = False
            if self._log:
                self._log.info("Association Released")
            self.notify(evt.EVT_RELEASED)
        self._released.set()

    def on_abort(self, abort: AAbort | None, *, provider: bool) -> None:
        if abort is not None:
            self.notify(evt.EVT_ACSE_RECV, primitive=abort)
        self._mark_aborted("by the peer" if abort is not None else "by the service provider")

    def _mark_aborted(self, how: str) -> None:
        if self.assoc.is_aborted:
            return
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        if self._log:
            self._log.warning("Association Aborted %s", how)
        self.notify(evt.EVT_ABORTED)
        self._negotiated.set()
        self.exchange.wake_waiters()

    def on_closed(self) -> None:
        if not (self.assoc.is_released or self.assoc.is_rejected or self.assoc.is_aborted):
            self._mark_aborted("(the connection closed)")
        peer = self.assoc.remote
        self.notify(evt.EVT_CONN_CLOSE, address=(peer.address, peer.port), tls_error=None)

    def on_pdu(self, pdu: PDU, raw: Callable[[], bytes], *, sent: bool) -> None:
        if sent:
            self.notify(evt.EVT_PDU_SENT, pdu=pdu)
            if self.assoc.handlers.is_bound(evt.EVT_DATA_SENT):
                self.notify(evt.EVT_DATA_SENT, data=raw())
        else:
            self.notify(evt.EVT_PDU_RECV, pdu=pdu)
            if self.assoc.handlers.is_bound(evt.EVT_DATA_RECV):
                self.notify(evt.EVT_DATA_RECV, data=raw())
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug("%s %s", "Sent" if sent else "Received", type(pdu).__name__)

    def on_transition(self, transition: Transition) -> None:
        self.notify(
            evt.EVT_FSM_TRANSITION,
            current_state=f"Sta{transition.current_state.value}",
            fsm_event=f"Evt{transition.event.value}",
            action=transition.action.value,
            next_state=f"Sta{transition.next_state.value}",
        )

    def release(self) -> None:
        """Ask the peer to release the association and wait (at most the ACSE timeout)."""
        if not self.assoc.is_established or self.link is None:
            return
        if self.thread is threading.current_thread():
            raise RuntimeError("release() from a handler would wait on itself; use abort()")
        self.notify(evt.EVT_ACSE_SENT, primitive=AReleaseRQ())
        self.link.await_response_until(
            None if self.assoc.acse_timeout is None else time.monotonic() + self.assoc.acse_timeout
        )
        try:
            # After the message being sent, if any: Sta7 allows no more P-DATA.
            with self.exchange.send_lock:
                self.link.release()
        except Exception as exc:
            LOGGER.error("cannot release in state %s: %s", self.link.state.name, exc)
            self.abort()
            return
        # This thread keeps the ACSE timeout: the reader may be blocked in a read
        # that began before the release, under the longer network timeout.
        if not self._released.wait(self.assoc.acse_timeout):
            LOGGER.error("ACSE timeout: the peer did not answer our A-RELEASE-RQ; aborting")
            self.abort()
            return
        self.join(self.assoc.acse_timeout)

    def abort(self) -> None:
        """Send an A-ABORT (service user) and close the connection."""
        if self.link is None:
            return
        if not self.link.is_closed:
            self.notify(evt.EVT_ACSE_SENT, primitive=AAbort(source=0, reason=0))
            self._mark_aborted("locally")
            self.link.abort_local(source=AbortSource.SERVICE_USER)
        self.join(self.assoc.acse_timeout)

    # -- DIMSE: the exchange sends, awaits and serves; these are the owner's parts ----------

    def _new_dataset_sink(self, command: CommandSet) -> DatasetSink:
        if command.command_field is CommandField.C_STORE_RQ:
            threshold = 0 if config.STORE_RECV_CHUNKED_DATASET else config.STORE_SPOOL_THRESHOLD
            return SpoolingDatasetSink(
                threshold=threshold,
                spool_dir=self.assoc.ae.spool_directory or config.STORE_SPOOL_DIRECTORY,
                max_size=self.assoc.ae.maximum_dataset_size,
            )
        return MemoryDatasetSink(
            # Datasets of messages other than C-STORE (identifiers, N-service attribute
            # lists) are small; a peer that sends more is cut off, not buffered.
            max_size=DEFAULT_MAX_DATASET_IN_MEMORY
        )

    @property
    def peer_maximum_length(self) -> int:
        """The peer's Maximum Length (PS3.8 D.1): what each P-DATA-TF we send fits in."""
        return self.assoc.remote.maximum_length

    def message_sent(self, context_id: int, command: CommandSet, dataset: Buffer | None) -> None:
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug("Sent %s (context %d)", command.command_field.name, context_id)
        if self.assoc.handlers.is_bound(evt.EVT_DIMSE_SENT):
            self.notify(
                evt.EVT_DIMSE_SENT,
                message=DimseMessage(
                    context_id=context_id, command=command, dataset=_sent_dataset(dataset)
                ),
            )

    def message_received(self, message: DimseMessage) -> None:
        if self.assoc.handlers.is_bound(evt.EVT_DIMSE_RECV):
            self.notify(evt.EVT_DIMSE_RECV, message=message)
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug(
                "Received %s (context %d)", message.command.command_field.name, message.context_id
            )

    def serve(self, message: DimseMessage) -> None:
        """Serve one request of the peer (the reader thread); RemoteProtocolError aborts."""
        context = next(
            (c for c in self.assoc.accepted_contexts if c.context_id == message.context_id), None
        )
        request = ServiceRequest(message)
        try:
            if context is None:
                raise RemoteProtocolError(
                    f"a {message.command.command_field.name} arrived on presentation context "
                    f"{message.context_id}, which was not accepted"
                )
            dispatch(self.assoc, request, context)
        finally:
            request.release()

    # -- the exchange's owner ------------------------------------------------------------

    @property
    def dimse_timeout(self) -> float | None:
        return self.assoc.dimse_timeout

    @property
    def is_aborted(self) -> bool:
        return self.assoc.is_aborted


def _sent_dataset(dataset: Buffer | None) -> MemoryDatasetSink | None:
    """A copy of a sent data set for EVT_DIMSE_SENT handlers (``event.message.data_set``);
    made only when one is bound, since a C-STORE sent from a file can be large."""
    if dataset is None:
        return None
    view = memoryview(dataset).cast("B")
    sink = MemoryDatasetSink(max_size=view.nbytes)
    sink.write(view)
    return sink
