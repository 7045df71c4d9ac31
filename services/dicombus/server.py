"""The association server: a listening socket, an accept thread, one thread per association."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dicombus import evt
from dicombus.association import Association
from dicombus.presentation import PresentationContext

if TYPE_CHECKING:
    from dicombus.ae import AE

LOGGER = logging.getLogger("dicombus.server")

# Connections waiting in the kernel for accept(); beyond this the kernel
# refuses new SYNs, which bounds what a flood can queue up.
LISTEN_BACKLOG = 128


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
    ) -> None:
        self.ae = ae
        self.ae_title = ae_title
        self.contexts = list(contexts)
        self.ssl_context = ssl_context
        self.handlers = evt.HandlerRegistry()
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
    def active_associations(self) -> list[Association]:
        with self._lock:
            return [assoc for assoc in self._associations if assoc.is_alive()]

    def bind(
        self, event: evt.EventType, handler: evt.Handler, args: Sequence[Any] | None = None
    ) -> None:
        """Bind on the server: reaches running associations and every later one."""
        self.handlers.bind(event, handler, args)
        for assoc in self.active_associations:
            assoc.bind(event, handler, args)

    def unbind(self, event: evt.EventType, handler: evt.Handler) -> None:
        self.handlers.unbind(event, handler)
        for assoc in self.active_associations:
            assoc.unbind(event, handler)

    def get_handlers(self, event: evt.EventType) -> Any:
        return self.handlers.get_handlers(event)

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
        assoc = Association(self.ae, "acceptor", handlers=self.handlers.copy(), server=self)
        assoc.supported_contexts = self.contexts
        with self._lock:
            self._associations.append(assoc)
        assoc.start_as_acceptor(conn, self.ssl_context)

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
        if self in self.ae._servers:
            self.ae._servers.remove(self)

    def server_close(self) -> None:
        self.shutdown()
