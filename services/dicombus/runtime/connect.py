"""Opening an association's transport: TCP, then TLS when configured (PS3.15 B.1).

The requestor connects (:func:`open_connection`); the acceptor, handed an
accepted socket, runs the server side of the TLS handshake
(:func:`tls_handshake`). Both disable Nagle (see transport.configure_socket)
and bound the TLS handshake by one deadline, so a peer that trickles bytes
is cut off.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from dicombus.protocol.errors import DicombusError
from dicombus.runtime.transport import configure_socket
from dicombus.tls import handshake_failure


class HandshakeFailed(DicombusError, ConnectionError):
    """The TCP connection was made, and the TLS handshake on it failed (OpenSSL's
    refusal, or the handshake's deadline), its words saying so; the cause is chained."""


def open_connection(
    address: str,
    port: int,
    *,
    connection_timeout: float | None,
    handshake_timeout: float | None,
    bind_address: tuple[str, int] | None,
    tls: tuple[ssl.SSLContext, str | None] | None,
) -> socket.socket:
    """A connected socket to the acceptor, TLS-wrapped when ``tls`` is
    (context, server hostname); OSError when it fails: :class:`HandshakeFailed` when
    the connection was made and its TLS handshake failed."""
    sock = socket.create_connection(
        (address, port), timeout=connection_timeout, source_address=bind_address
    )
    try:
        configure_socket(sock)
        if tls is None:
            return sock
        context, hostname = tls
        sock.settimeout(handshake_timeout)
        try:
            return context.wrap_socket(sock, server_hostname=hostname)
        except OSError as exc:  # ssl.SSLError, or the deadline (TimeoutError)
            raise HandshakeFailed(f"TLS handshake failed: {handshake_failure(exc)}") from exc
    except BaseException:
        sock.close()
        raise


def tls_handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    timeout: float | None,
    hold: Callable[[ssl.SSLSocket], None],
) -> ssl.SSLSocket:
    """The server side of the TLS handshake on an accepted socket.

    ``hold(wrapped)`` is called before the handshake starts, so the caller can
    close a connection still in its handshake (a server short of room does).
    OSError (ssl.SSLError included) when it fails; the socket is then closed.
    """
    wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    hold(wrapped)
    try:
        # One deadline for the whole handshake (CPython counts a socket
        # timeout across do_handshake's reads), so a trickle is cut off.
        wrapped.settimeout(timeout)
        wrapped.do_handshake()
    except OSError:
        wrapped.close()
        raise
    return wrapped
