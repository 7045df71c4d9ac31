"""Audit messages as RFC 5424 syslog, over TLS (RFC 5425) or UDP (RFC 5426).

The header follows IHE ITI TF-2 3.20 (Record Audit Event): facility 10
(security/authorization) with severity 5 (notice), so PRI 85; MSGID
``IHE+RFC-3881``; no structured data; the XML as the MSG, with no BOM (IHE
ITI CP-477 discourages it, and receivers then take the XML as is).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

FACILITY_AUTHPRIV = 10
SEVERITY_NOTICE = 5
PRI = FACILITY_AUTHPRIV * 8 + SEVERITY_NOTICE
VERSION = 1
MSGID = "IHE+RFC-3881"
NILVALUE = "-"
# RFC 5425 4.2: the IANA port of syslog over TLS; RFC 5426 3.3: of syslog over UDP.
TLS_PORT = 6514
UDP_PORT = 514
# RFC 5424 6.2.4-6.2.6: the lengths of HOSTNAME, APP-NAME and PROCID.
MAX_HOSTNAME, MAX_APP_NAME, MAX_PROCID = 255, 48, 128


def header_field(value: str, maximum: int) -> str:
    """``value`` as an RFC 5424 header field: printable US-ASCII, no spaces, ``maximum`` long."""
    if not value or len(value) > maximum or not all(33 <= ord(c) <= 126 for c in value):
        raise ValueError(
            f"expected 1 to {maximum} printable ASCII characters without spaces, got {value!r}"
        )
    return value


def syslog_message(
    body: bytes, *, time: datetime, hostname: str, app_name: str, procid: str
) -> bytes:
    """One RFC 5424 message: ``<85>1 TIMESTAMP HOSTNAME APP-NAME PROCID IHE+RFC-3881 - MSG``."""
    # RFC 5424 6.2.3: an RFC 3339 time, at most 6 fractional digits; UTC as "Z".
    stamp = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    header = (
        f"<{PRI}>{VERSION} {stamp} {header_field(hostname, MAX_HOSTNAME)} "
        f"{header_field(app_name, MAX_APP_NAME)} {header_field(procid, MAX_PROCID)} "
        f"{MSGID} {NILVALUE} "
    )
    return header.encode("ascii") + body


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 4.3: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d " % len(message) + message


class Sender(Protocol):
    def send(self, messages: Sequence[bytes]) -> None:
        """Deliver ``messages`` in order, or raise OSError (none counts as delivered)."""


class TlsSender:
    """RFC 5425: one TLS connection per batch, octet-counted frames.

    The batch counts as delivered once the repository answered our TLS
    close_notify, or closed the connection after reading up to it: TLS
    records arrive in order, so everything before it was received.
    """

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        server_name: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.context = host, port, context
        self.server_name = server_name or host
        self.timeout = timeout

    def send(self, messages: Sequence[bytes]) -> None:
        address = (self.host, self.port)
        with (
            socket.create_connection(address, timeout=self.timeout) as raw,
            self.context.wrap_socket(raw, server_hostname=self.server_name) as tls,
        ):
            tls.sendall(b"".join(octet_counted(message) for message in messages))
            # Closed without its own close_notify, after reading ours: delivered too.
            with contextlib.suppress(ssl.SSLEOFError):
                tls.unwrap()


class UdpSender:
    """RFC 5426: one message per datagram. UDP cannot tell whether it arrived."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def send(self, messages: Sequence[bytes]) -> None:
        family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((self.host, self.port))
            for message in messages:
                sock.send(message)


def tls_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """Verify the repository (``ca``, else the system's CAs); ``cert``: mutual TLS."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context
