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

import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from dicombus import config, evt
from dicombus.acse import Rejection, ServiceUser, describe_rejection
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
from dicombus.outcomes import OutcomeNotRecorded, OutcomeObserver, OutcomeReport
from dicombus.presentation import PresentationContext
from dicombus.protocol.commands import CommandField, CommandSet
from dicombus.protocol.connection import (
    DimseConnection,
    DimseEvent,
)
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
from dicombus.services import dispatch, n_scu, qr_scu, storage, verification
from dicombus.tls import peer_subject

if TYPE_CHECKING:
    from dicombus.ae import AE
    from dicombus.server import AssociationServer
    from dicombus.services.interface import AssociationOpener

LOGGER = logging.getLogger("dicombus.assoc")


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
        # PS3.8 7.1.1.4: the Called AE Title of the A-ASSOCIATE-RQ. On the
        # requestor, the title we call; on the acceptor, the title the peer
        # asked for, kept because acceptor.ae_title becomes our own title
        # while the RQ is answered (the two differ when require_called_aet is off).
        self.called_ae_title = ""
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
        self._dimse = DimseConnection(
            is_requestor=mode == "requestor",
            dataset_sink_factory=self._new_dataset_sink,
            max_pdata_length=ae.maximum_pdu_size,
            max_associate_length=ae.maximum_associate_pdu_size,
        )
        self._thread = threading.Thread(target=self._run, name=f"dicombus-{mode}", daemon=True)
        self._exchange = MessageExchange(self, self._dimse, reader_thread=self._thread)
        self._target: Callable[[], None] = self._run_acceptor
        self._socket: socket.socket | None = None
        self._hung_up = False
        self._tls: tuple[ssl.SSLContext, str | None] | None = None
        self._log = LOGGER if config.LOG_HANDLER_LEVEL == "standard" else None
        # Observers of intervention outcomes (the event bus); copied from the server.
        self.outcome_observers: list[OutcomeObserver] = []

    @property
    def association_opener(self) -> AssociationOpener:
        """How services open associations of their own (C-MOVE's): the AE's opener."""
        return self.ae.association_opener

    def report_outcome(
        self,
        event: evt.InterventionEvent,
        status: int | None,
        *,
        request: Any = None,
        context: Any = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Tell the outcome observers what an intervention event decided; False when one
        of them raised :class:`OutcomeNotRecorded` (it could not account for it). The
        observers after that one are not told: the caller reports the status it answers
        instead, so each of them hears one outcome per request."""
        if not self.outcome_observers:
            return True
        report = OutcomeReport(
            assoc=self,
            event=event,
            status=status,
            request=request,
            context=context,
            details=details if details is not None else {},
        )
        for observer in self.outcome_observers:
            try:
                observer(report)
            except OutcomeNotRecorded as exc:
                LOGGER.error("%s outcome not recorded: %s", event.name, exc)
                return False
            except Exception:
                LOGGER.exception("an outcome observer failed; the association goes on")
        return True

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
        link = self._start_link(sock)
        link.await_response_until(
            None if self.acse_timeout is None else time.monotonic() + self.acse_timeout
        )
        rq = build_associate_rq(self._requestor_config())
        # What we propose, as the acceptor sees it (pynetdicom's requestor.user_identity ...).
        self.requestor.absorb(rq.user_information)
        self._notify(evt.EVT_ACSE_SENT, primitive=rq)
        link.request_association(rq)
        link.run()

    def _connect(self) -> socket.socket | None:
        address, port = self.acceptor.address, self.acceptor.port
        try:
            sock = open_connection(
                address,
                port,
                connection_timeout=self.connection_timeout,
                handshake_timeout=self.acse_timeout,
                bind_address=self._bind_address,
                tls=self._tls,
            )
        except OSError as exc:
            LOGGER.error(
                "association request failed: unable to connect to %s:%s (%s)", address, port, exc
            )
            self._mark_aborted("(the connection could not be opened)")
            return None
        if isinstance(sock, ssl.SSLSocket):
            self.acceptor.tls_peer_subject = peer_subject(sock)
        self.requestor.address, self.requestor.port = sock.getsockname()[:2]
        return sock

    def _run_acceptor(self) -> None:
        sock = self._socket
        if sock is None:
            raise RuntimeError("start_as_acceptor() gives the acceptor its socket")
        configure_socket(sock)
        self.requestor.address, self.requestor.port = sock.getpeername()[:2]
        self.acceptor.address, self.acceptor.port = sock.getsockname()[:2]
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
            wrapped = tls_handshake(sock, context, timeout=self.acse_timeout, hold=hold)
        except OSError as exc:
            LOGGER.error("TLS handshake with %s failed: %s", self.requestor.address, exc)
            self.is_aborted = True
            return None
        self.requestor.tls_peer_subject = peer_subject(wrapped)
        return wrapped

    def _start_link(self, sock: socket.socket) -> UpperLayerLink:
        # The Maximum Length we advertise caps every P-DATA-TF we read. The
        # acceptor's is only recorded during negotiation, after this point, and
        # 0 would mean "unlimited": a header claiming 4 GiB would be read.
        advertised = self.local.maximum_length if self.is_requestor else self.ae.maximum_pdu_size
        channel = PduChannel(
            sock,
            max_pdata_length=advertised,
            max_associate_length=self.ae.maximum_associate_pdu_size,
        )
        self._dimse.max_pdata_length = advertised
        link = UpperLayerLink(
            channel,
            self._dimse,
            self,
            artim_timeout=self.acse_timeout or 30.0,
            network_timeout=self.network_timeout,
            acse_timeout=self.acse_timeout,
        )
        self.link = self._exchange.link = link
        self._observe()
        peer = self.remote
        self._notify(evt.EVT_CONN_OPEN, address=(peer.address, peer.port))
        return link

    def _finish(self) -> None:
        if not self.is_established and not self.is_rejected:
            self.is_aborted = self.is_aborted or not self.is_released
        self.is_established = False
        self._negotiated.set()
        self._released.set()
        self._exchange.wake_waiters()
        # A dataset cut off by an abort, or a request never served, leaves its
        # spool file unless released here.
        self._dimse.close()
        if self.server is not None:
            self.server.forget(self)

    # -- LinkUser: what the link reports ---------------------------------------------

    def _reporting_link(self) -> UpperLayerLink:
        """The link, from a callback of it (so it exists)."""
        if self.link is None:
            raise RuntimeError("a link callback ran before the link was made")
        return self.link

    def on_associate_indication(self, rq: AAssociateRQ) -> None:
        link = self._reporting_link()
        # Known before EVT_REQUESTED fires, so its handlers see who is asking.
        self.requestor.ae_title = rq.calling_ae_title
        self.requestor.absorb(rq.user_information)
        self.acceptor.ae_title = self.called_ae_title = rq.called_ae_title
        self._notify(evt.EVT_ACSE_RECV, primitive=rq)
        self._notify(evt.EVT_REQUESTED)
        result = negotiate(
            AcceptorConfig.of(
                self.ae,
                ae_title=our_ae_title(self.ae, self.server),
                supported_contexts=self.supported_contexts,
            ),
            rq,
            admission=self.server.admission() if self.server is not None else None,
            intervene=functools.partial(evt.trigger, self),
        )
        self._record(result)
        reply = result.reply
        self._notify(evt.EVT_ACSE_SENT, primitive=reply)
        if isinstance(reply, AAssociateRJ):
            self.is_rejected = True
            self.rejection = result.rejection
            link.reject(reply)
            if self._log:
                self._log.info(
                    "Association Rejected (%s)",
                    describe_rejection(reply.result, reply.source, reply.reason),
                )
            self._notify(evt.EVT_REJECTED)
            self._negotiated.set()
            return
        # Established before the A-ASSOCIATE-AC leaves: once the peer has it, it may
        # send requests, and a user thread holding this association may send too.
        # A failed send aborts, which clears it.
        self.is_established = True
        link.accept(reply)
        if self._log:
            self._log.info("Association Accepted")
        self._notify(evt.EVT_ACCEPTED)
        self._notify(evt.EVT_ESTABLISHED)
        self._negotiated.set()

    def on_associate_accepted(self, ac: AAssociateAC) -> None:
        self._notify(evt.EVT_ACSE_RECV, primitive=ac)
        self._record(absorb_associate_ac(self._requestor_config(), ac))
        if not self.accepted_contexts:
            # Nothing can be sent on an association without contexts (as pynetdicom).
            LOGGER.error("the peer accepted none of our presentation contexts; aborting")
            self._notify(evt.EVT_ACCEPTED)
            self._mark_aborted("locally: no presentation context was accepted")
            self._reporting_link().abort_local(source=AbortSource.SERVICE_PROVIDER)
            return
        self.is_established = True
        if self._log:
            self._log.info("Association Accepted")
        self._notify(evt.EVT_ACCEPTED)
        self._notify(evt.EVT_ESTABLISHED)
        self._negotiated.set()

    def _requestor_config(self) -> RequestorConfig:
        return RequestorConfig(
            ae_title=self.requestor.ae_title,
            called_ae_title=self.called_ae_title,
            maximum_length=self.requestor.maximum_length,
            implementation_class_uid=self.ae.implementation_class_uid,
            implementation_version_name=self.ae.implementation_version_name,
            requested_contexts=tuple(self.requested_contexts),
            extended_negotiation=tuple(self.extended_negotiation),
        )

    def _record(self, negotiated: Negotiated) -> None:
        """Take on what negotiation decided (see dicombus.negotiation)."""
        if negotiated.requestor is not None:
            self.requestor.record(negotiated.requestor)
        self.acceptor.record(negotiated.acceptor)
        self.accepted_contexts = list(negotiated.accepted_contexts)
        self.rejected_contexts = list(negotiated.rejected_contexts)
        if isinstance(negotiated, NegotiationResult):
            for outcome in negotiated.outcomes:
                self.report_outcome(outcome.event, None, details=outcome.details)

    def on_associate_rejected(self, rj: AAssociateRJ) -> None:
        self._notify(evt.EVT_ACSE_RECV, primitive=rj)
        self.is_rejected = True
        why = describe_rejection(rj.result, rj.source, rj.reason)
        self.rejection = Rejection(rj.result, rj.source, rj.reason, why)
        LOGGER.error("Association Rejected (%s)", why)
        self._notify(evt.EVT_REJECTED)
        self._negotiated.set()

    def on_messages(self, events: Sequence[DimseEvent]) -> None:
        self._exchange.on_messages(events)

    def on_release_indication(self, *, answer_now: bool) -> None:
        self._notify(evt.EVT_ACSE_RECV, primitive=AReleaseRQ())
        if answer_now:
            # Not in a collision on the acceptor side (PS3.8 AR-8): that answer
            # waits until our own release is confirmed.
            self._respond_to_release()

    def _respond_to_release(self) -> None:
        link = self._reporting_link()
        self._notify(evt.EVT_ACSE_SENT, primitive=AReleaseRP())
        link.respond_to_release()
        if link.state is State.STA13:
            self._mark_released()

    def on_release_confirmation(self, *, answer_now: bool) -> None:
        self._notify(evt.EVT_ACSE_RECV, primitive=AReleaseRP())
        if answer_now:
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
        self._exchange.wake_waiters()

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
            # After the message being sent, if any: Sta7 allows no more P-DATA.
            with self._exchange.send_lock:
                self.link.release()
        except Exception as exc:
            LOGGER.error("cannot release in state %s: %s", self.link.state.name, exc)
            self.abort()
            return
        # This thread keeps the ACSE timeout: the reader may be blocked in a read
        # that began before the release, under the longer network timeout.
        if not self._released.wait(self.acse_timeout):
            LOGGER.error("ACSE timeout: the peer did not answer our A-RELEASE-RQ; aborting")
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

    # -- DIMSE: the exchange sends, awaits and serves; these are the owner's parts ----------

    def _new_dataset_sink(self, command: CommandSet) -> DatasetSink:
        if command.command_field is CommandField.C_STORE_RQ:
            threshold = 0 if config.STORE_RECV_CHUNKED_DATASET else config.STORE_SPOOL_THRESHOLD
            return SpoolingDatasetSink(
                threshold=threshold,
                spool_dir=self.ae.spool_directory or config.STORE_SPOOL_DIRECTORY,
                max_size=self.ae.maximum_dataset_size,
            )
        return MemoryDatasetSink(
            # Datasets of messages other than C-STORE (identifiers, N-service attribute
            # lists) are small; a peer that sends more is cut off, not buffered.
            max_size=DEFAULT_MAX_DATASET_IN_MEMORY
        )

    @property
    def peer_maximum_length(self) -> int:
        """The peer's Maximum Length (PS3.8 D.1): what each P-DATA-TF we send fits in."""
        return self.remote.maximum_length

    def send_message(self, context_id: int, command: CommandSet, dataset: Buffer | None) -> None:
        """Encode, fragment (within the peer's maximum PDU length) and send one message."""
        self._exchange.send_message(context_id, command, dataset)

    def send_request(
        self, context_id: int, command: CommandSet, dataset: Buffer | None
    ) -> Generator[DimseMessage | None, None, None]:
        """Send a request and yield its responses (several for C-FIND/GET/MOVE).

        The request goes out when the first response is asked for. Yields
        None, and stops, when no response came within the DIMSE timeout or
        the association ended; the association is then aborted.
        """
        yield from self._exchange.start_request(context_id, command, dataset)

    def start_request(
        self,
        context_id: int,
        command: CommandSet,
        dataset: Buffer | None,
        *,
        more_follow: Callable[[CommandSet], bool] | None = None,
    ) -> Iterator[DimseMessage | None]:
        """Send a request now; return an iterator over its responses, as send_request's."""
        return self._exchange.start_request(context_id, command, dataset, more_follow=more_follow)

    def is_cancelled(self, message_id: int) -> bool:
        """Whether the peer sent a C-CANCEL for the request ``message_id`` being served
        (``event.is_cancelled``); the PDUs that already arrived are handled first."""
        return self._exchange.is_cancelled(message_id)

    def poll_peer(self) -> None:
        """In the reader thread: handle what the peer has already sent, without waiting."""
        self._exchange.poll_peer()

    def message_sent(self, context_id: int, command: CommandSet, dataset: Buffer | None) -> None:
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug("Sent %s (context %d)", command.command_field.name, context_id)
        if self.handlers.is_bound(evt.EVT_DIMSE_SENT):
            self._notify(
                evt.EVT_DIMSE_SENT,
                message=DimseMessage(
                    context_id=context_id, command=command, dataset=_sent_dataset(dataset)
                ),
            )

    def message_received(self, message: DimseMessage) -> None:
        if self.handlers.is_bound(evt.EVT_DIMSE_RECV):
            self._notify(evt.EVT_DIMSE_RECV, message=message)
        if self._log and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug(
                "Received %s (context %d)", message.command.command_field.name, message.context_id
            )

    def serve(self, message: DimseMessage) -> None:
        """Serve one request of the peer (the reader thread); RemoteProtocolError aborts."""
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
        finally:
            request.release()

    # -- SCU services (pynetdicom's names) -----------------------------------------------

    def send_c_echo(self, msg_id: int = 1) -> Dataset:
        return verification.send_c_echo(self, msg_id)

    def send_c_store(
        self,
        dataset: Any,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        return storage.send_c_store(
            self,
            dataset,
            msg_id=msg_id,
            priority=priority,
            originator_aet=originator_aet,
            originator_id=originator_id,
        )

    def send_c_find(
        self, dataset: Dataset, query_model: str, msg_id: int = 1, priority: int = 2
    ) -> Iterator[tuple[Dataset, Dataset | None]]:
        return qr_scu.send_c_find(self, dataset, query_model, msg_id=msg_id, priority=priority)

    def send_c_get(
        self, dataset: Dataset, query_model: str, msg_id: int = 1, priority: int = 2
    ) -> Iterator[tuple[Dataset, Dataset | None]]:
        return qr_scu.send_c_get(self, dataset, query_model, msg_id=msg_id, priority=priority)

    def send_c_move(
        self,
        dataset: Dataset,
        move_aet: str,
        query_model: str,
        msg_id: int = 1,
        priority: int = 2,
    ) -> Iterator[tuple[Dataset, Dataset | None]]:
        return qr_scu.send_c_move(
            self, dataset, move_aet, query_model, msg_id=msg_id, priority=priority
        )

    def send_c_cancel(
        self, msg_id: int, context_id: int | None = None, query_model: str | None = None
    ) -> None:
        qr_scu.send_c_cancel(self, msg_id, context_id=context_id, query_model=query_model)

    # pynetdicom's DIMSE-N calls take the same arguments as n_scu's functions,
    # so those serve as the methods themselves (``self`` is their ``assoc``).
    send_n_event_report = n_scu.send_n_event_report
    send_n_get = n_scu.send_n_get
    send_n_set = n_scu.send_n_set
    send_n_action = n_scu.send_n_action
    send_n_create = n_scu.send_n_create
    send_n_delete = n_scu.send_n_delete


def _sent_dataset(dataset: Buffer | None) -> MemoryDatasetSink | None:
    """A copy of a sent data set for EVT_DIMSE_SENT handlers (``event.message.data_set``);
    made only when one is bound, since a C-STORE sent from a file can be large."""
    if dataset is None:
        return None
    view = memoryview(dataset).cast("B")
    sink = MemoryDatasetSink(max_size=view.nbytes)
    sink.write(view)
    return sink
