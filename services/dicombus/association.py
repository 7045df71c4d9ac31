"""An association (pynetdicom's ``Association``): what users and services hold.

Requestor: :meth:`dicombus.ae.AE.associate` creates one; its thread connects
and negotiates, and the user calls ``send_c_echo`` / ``send_c_store`` / ...
and ``release``. Acceptor: the server creates one per connection; its thread
negotiates and then serves the peer's requests, calling the bound
intervention handlers in that thread, as pynetdicom does.

This class is the facade: the negotiation results (``is_established``,
``accepted_contexts``, ``requestor`` / ``acceptor`` ...), the timeouts, the
handlers (``bind`` / ``unbind``), ``release`` / ``abort``, and the DIMSE calls
(``send_c_*``, ``send_n_*``, and the narrow interface the service classes
use: ``send_message``, ``start_request``, ``is_cancelled``, ``report_outcome``).
The thread, the link and what the link reports live in
:class:`dicombus.session.AssociationSession`.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from dicombus import evt
from dicombus.acse import Rejection, ServiceUser
from dicombus.outcomes import OutcomeNotRecorded, OutcomeObserver, OutcomeReport
from dicombus.presentation import PresentationContext
from dicombus.protocol.commands import CommandSet
from dicombus.protocol.fragments import DimseMessage
from dicombus.runtime.link import UpperLayerLink
from dicombus.runtime.transport import Buffer
from dicombus.services import n_scu, qr_scu, storage, verification
from dicombus.session import AssociationSession

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
        # Requestor: why the connection to the acceptor could not be opened (the socket
        # error, or the TLS handshake's failure); None when it was, or was not tried.
        self.connection_error: str | None = None
        self.accepted_contexts: list[PresentationContext] = []
        self.rejected_contexts: list[PresentationContext] = []
        self.requested_contexts: list[PresentationContext] = []
        self.supported_contexts: list[PresentationContext] = []
        self.extended_negotiation: list[Any] = []
        # Observers of intervention outcomes (the event bus); copied from the server.
        self.outcome_observers: list[OutcomeObserver] = []
        self._session = AssociationSession(self)

    # -- who and where -------------------------------------------------------------------

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
    def link(self) -> UpperLayerLink | None:
        """The Upper Layer link, once the connection is open."""
        return self._session.link

    @property
    def association_opener(self) -> AssociationOpener:
        """How services open associations of their own (C-MOVE's): the AE's opener."""
        return self.ae.association_opener

    # pynetdicom's Association is a thread; so, in these respects, is ours.

    @property
    def name(self) -> str:
        return self._session.thread.name

    @property
    def native_id(self) -> int | None:
        return self._session.thread.native_id

    def is_alive(self) -> bool:
        return self._session.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._session.join(timeout)

    def __str__(self) -> str:
        peer = self.remote
        return f"Association({self.mode}, {peer.ae_title or '?'} at {peer.address}:{peer.port})"

    # -- handlers ------------------------------------------------------------------------

    def bind(
        self, event: evt.EventType, handler: evt.Handler, args: Sequence[Any] | None = None
    ) -> None:
        self.handlers.bind(event, handler, args)
        self._session.observe()

    def unbind(self, event: evt.EventType, handler: evt.Handler) -> None:
        self.handlers.unbind(event, handler)
        self._session.observe()

    def get_handlers(self, event: evt.EventType) -> Any:
        return self.handlers.get_handlers(event)

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

    # -- starting (the AE and the server) -------------------------------------------------

    def start_as_requestor(
        self,
        address: str,
        port: int,
        *,
        bind_address: tuple[str, int] | None,
        tls: tuple[ssl.SSLContext, str | None] | None,
    ) -> None:
        self._session.start_as_requestor(address, port, bind_address=bind_address, tls=tls)

    def start_as_acceptor(self, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
        self._session.start_as_acceptor(sock, ssl_context)

    @property
    def is_negotiating(self) -> bool:
        """Connected (or connecting), but neither accepted nor rejected yet, and not ended."""
        return self._session.is_negotiating

    def hang_up_unnegotiated(self) -> bool:
        """Close the connection if it has not finished negotiating; False if it had."""
        return self._session.hang_up_unnegotiated()

    def wait_for_negotiation(self) -> None:
        """Block the caller of ``associate`` until accepted, rejected or failed."""
        self._session.wait_for_negotiation()

    # -- ending ----------------------------------------------------------------------------

    def release(self) -> None:
        """Ask the peer to release the association and wait (at most the ACSE timeout)."""
        self._session.release()

    def abort(self) -> None:
        """Send an A-ABORT (service user) and close the connection."""
        self._session.abort()

    # -- DIMSE: what the service classes use (services.interface.ServiceAssociation) -------

    def send_message(self, context_id: int, command: CommandSet, dataset: Buffer | None) -> None:
        """Encode, fragment (within the peer's maximum PDU length) and send one message."""
        self._session.exchange.send_message(context_id, command, dataset)

    def send_request(
        self, context_id: int, command: CommandSet, dataset: Buffer | None
    ) -> Generator[DimseMessage | None, None, None]:
        """Send a request and yield its responses (several for C-FIND/GET/MOVE).

        The request goes out when the first response is asked for. Yields
        None, and stops, when no response came within the DIMSE timeout or
        the association ended; the association is then aborted.
        """
        yield from self._session.exchange.start_request(context_id, command, dataset)

    def start_request(
        self,
        context_id: int,
        command: CommandSet,
        dataset: Buffer | None,
        *,
        more_follow: Callable[[CommandSet], bool] | None = None,
    ) -> Iterator[DimseMessage | None]:
        """Send a request now; return an iterator over its responses, as send_request's."""
        return self._session.exchange.start_request(
            context_id, command, dataset, more_follow=more_follow
        )

    def is_cancelled(self, message_id: int) -> bool:
        """Whether the peer sent a C-CANCEL for the request ``message_id`` being served
        (``event.is_cancelled``); the PDUs that already arrived are handled first."""
        return self._session.exchange.is_cancelled(message_id)

    def poll_peer(self) -> None:
        """In the reader thread: handle what the peer has already sent, without waiting."""
        self._session.exchange.poll_peer()

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
