"""The association server: a listening socket, an accept thread, one thread per association."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dicombus import evt
from dicombus.acse import Rejection
from dicombus.ae_title import checked_ae_title
from dicombus.association import Association
from dicombus.negotiation import Admission
from dicombus.outcomes import OutcomeObserver
from dicombus.presentation import PresentationContext
from dicombus.protocol.pdus import PresentationRejectReason, RejectResult, RejectSource

if TYPE_CHECKING:
    from dicombus.ae import AE

LOGGER = logging.getLogger("dicombus.server")

# Connections waiting in the kernel for accept(); beyond this the kernel
# refuses new SYNs, which bounds what a flood can queue up.
LISTEN_BACKLOG = 128

# Connections that have not finished negotiating (a TLS handshake, or an
# A-ASSOCIATE-RQ still on its way) each hold a thread for up to the ARTIM
# timeout. The server keeps at most maximum_associations * 2 + this many; a
# new connection beyond that closes the one that has waited longest, so a flood
# of idle connections neither exhausts threads nor locks out a real requestor,
# which sends its A-ASSOCIATE-RQ at once.
PENDING_HEADROOM = 8


class AssociationServer:
    """Accepts connections for one AE and runs an acceptor Association for each."""

    def __init__(
        self,
        ae: AE,
        address: tuple[str, int],
        *,
        ae_title: str,
        contexts: Sequence[PresentationContext],
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: Sequence[evt.HandlerBinding] | None = None,
        on_shutdown: Callable[[AssociationServer], None] | None = None,
    ) -> None:
        self.ae = ae
        # Told once the server has stopped: the AE that lists its servers forgets it.
        self._on_shutdown = on_shutdown
        # Checked here too: start_server(ae_title=...) bypasses the AE's own check.
        self.ae_title = checked_ae_title(ae_title)
        self.contexts = list(contexts)
        self.ssl_context = ssl_context
        self.handlers = evt.HandlerRegistry()
        # Observers of intervention outcomes, handed to every association.
        self.outcome_observers: list[OutcomeObserver] = []
        # Asked before each negotiation: a reason to turn requestors away for
        # now (an edge whose event outbox is full), or None to go on.
        self.admission_check: Callable[[], str | None] | None = None
        self.handlers.bind_all(evt_handlers)
        self._associations: list[Association] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind(address)
            self.socket.listen(LISTEN_BACKLOG)
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]

    @property
    def maximum_pending(self) -> int:
        """How many connections may be negotiating at once (see PENDING_HEADROOM)."""
        return self.ae.maximum_associations * 2 + PENDING_HEADROOM

    @property
    def active_associations(self) -> list[Association]:
        with self._lock:
            return [assoc for assoc in self._associations if assoc.is_alive()]

    def bind(
        self, event: evt.EventType, handler: evt.Handler, args: Sequence[Any] | None = None
    ) -> None:
        """Bind on the server: reaches running associations and every later one."""
        with self._lock:
            self.handlers.bind(event, handler, args)
            associations = list(self._associations)
        for assoc in associations:
            assoc.bind(event, handler, args)

    def unbind(self, event: evt.EventType, handler: evt.Handler) -> None:
        with self._lock:
            self.handlers.unbind(event, handler)
            associations = list(self._associations)
        for assoc in associations:
            assoc.unbind(event, handler)

    def update_outcome_observers(
        self, change: Callable[[list[OutcomeObserver]], list[OutcomeObserver]]
    ) -> None:
        """Replace the outcome observers of the server and of every association it has,
        with ``change(current)`` (a new list: an association may be iterating its own)."""
        with self._lock:
            self.outcome_observers = change(self.outcome_observers)
            associations = list(self._associations)
        for assoc in associations:
            assoc.outcome_observers = change(assoc.outcome_observers)

    def get_handlers(self, event: evt.EventType) -> Any:
        return self.handlers.get_handlers(event)

    def refusal(self) -> Rejection | None:
        """A transient rejection while ``admission_check`` gives a reason, else None."""
        reason = self.admission_check() if self.admission_check is not None else None
        if reason is None:
            return None
        # PS3.8 9.3.4: rejected-transient, by the UL service-provider's
        # presentation function, temporary-congestion: try again later.
        return Rejection(
            RejectResult.TRANSIENT,
            RejectSource.SERVICE_PROVIDER_PRESENTATION,
            PresentationRejectReason.TEMPORARY_CONGESTION,
            reason,
        )

    def admission(self) -> Admission:
        """The load a new association request meets: the associations already
        established (connections still negotiating, an idle flood among them, are
        bounded by PENDING_HEADROOM instead) and the admission check's refusal."""
        established = sum(assoc.is_established for assoc in self.active_associations)
        return Admission(active_associations=established + 1, refusal=self.refusal())

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, name="dicombus-server", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        LOGGER.info(
            "listening for associations on %s:%s as %s", *self.server_address, self.ae_title
        )
        while not self._stopping.is_set():
            try:
                conn, _peer = self.socket.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                LOGGER.exception("accept failed; the server goes on")
                continue
            self._start_association(conn)

    def _start_association(self, conn: socket.socket) -> None:
        self._make_room()
        # Copied and listed in one step: a bind or an observer change made meanwhile
        # (the edge attaching its event capture as it starts) reaches this association
        # either through the copy or through the list, never neither.
        with self._lock:
            assoc = Association(self.ae, "acceptor", handlers=self.handlers.copy(), server=self)
            assoc.supported_contexts = self.contexts
            assoc.outcome_observers = list(self.outcome_observers)
            self._associations.append(assoc)
        assoc.start_as_acceptor(conn, self.ssl_context)

    def _make_room(self) -> None:
        """Keep the connections still negotiating under maximum_pending, oldest out first."""
        with self._lock:
            pending = [assoc for assoc in self._associations if assoc.is_negotiating]
        limit = self.maximum_pending
        # The list is in order of arrival; hang up as many as needed for one more.
        for oldest in pending[: max(0, len(pending) - limit + 1)]:
            if oldest.hang_up_unnegotiated():
                LOGGER.warning(
                    "%d connections are waiting to negotiate, the limit is %d: closing the "
                    "oldest, from %s:%s",
                    len(pending),
                    limit,
                    oldest.requestor.address or "?",
                    oldest.requestor.port,
                )

    def forget(self, assoc: Association) -> None:
        """Called by an association's thread as it ends."""
        with self._lock:
            if assoc in self._associations:
                self._associations.remove(assoc)

    def shutdown(self) -> None:
        """Stop accepting, abort the running associations and wait for their threads."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        for assoc in self.active_associations:
            assoc.abort()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if self._on_shutdown is not None:
            self._on_shutdown(self)

    def server_close(self) -> None:
        self.shutdown()
