"""TLS for DICOM associations (PS3.15 B.1, the Basic TLS Secure Transport Connection Profile).

dicombus takes a standard :class:`ssl.SSLContext` on both sides, as pynetdicom
does: ``AE.start_server(..., ssl_context=ctx)`` for an acceptor and
``AE.associate(..., tls_args=(ctx, server_hostname))`` for a requestor. The
context decides everything -- protocol versions, ciphers, certificates,
whether a client certificate is required, hostname checking -- and dicombus
does not override it. The two helpers below build contexts with safe choices:
TLS 1.2 or later only (PS3.15 B.9 / BCP 195), peer certificates verified.

Handshakes are bounded by the ACSE timeout, counted for the whole handshake,
so a peer that trickles its handshake is cut off like one that trickles a PDU.
The subject of a verified peer certificate is recorded as
``tls_peer_subject`` on ``assoc.requestor`` (acceptor side) or
``assoc.acceptor`` (requestor side), for handlers that authorize by it.
"""

from __future__ import annotations

import os
import re
import ssl
from typing import cast

Path = str | os.PathLike[str]


def server_context(
    cert: Path,
    key: Path,
    ca: Path | None = None,
    *,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A context for an acceptor presenting ``cert`` / ``key`` (PEM files).

    With ``ca``, client certificates signed by it are verified when offered;
    ``require_client_cert`` makes one mandatory (mutual TLS), which needs ``ca``.
    """
    if require_client_cert and ca is None:
        raise ValueError("require_client_cert needs the CA that signs client certificates")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(
    ca: Path,
    cert: Path | None = None,
    key: Path | None = None,
) -> ssl.SSLContext:
    """A context for a requestor that trusts ``ca`` and checks the acceptor's hostname.

    Pass the hostname as the second item of ``tls_args``. ``cert`` (and ``key``,
    unless the certificate file holds it) is the client certificate for
    acceptors that require one.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and its hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    elif key is not None:
        raise ValueError("a key without its certificate")
    return context


def peer_subject(sock: ssl.SSLSocket) -> str | None:
    """The verified peer certificate's subject as ``"commonName=x, organizationName=y"``;
    None when the peer sent none (or it was not verified)."""
    certificate = sock.getpeercert()
    if not certificate:
        return None
    # ssl's documented shape: a tuple of RDNs, each a tuple of (name, value) pairs.
    rdns = cast(tuple[tuple[tuple[str, str], ...], ...], certificate.get("subject", ()))
    return ", ".join(f"{name}={value}" for rdn in rdns for name, value in rdn)


def handshake_failure(exc: OSError) -> str:
    """Why a TLS handshake failed, in words for logs and the audit trail: OpenSSL's
    reason and message (``[SSL: WRONG_VERSION_NUMBER] wrong version number``: a
    plaintext peer; ``... TLSV1_ALERT_UNKNOWN_CA ...``: the peer does not trust our
    certificate) without CPython's source location, or the socket error (a timeout,
    which CPython words ``_ssl.c:NNN: The handshake operation timed out``)."""
    text = _SOURCE_PREFIX.sub("", str(exc).split(" (_ssl.c:", 1)[0])
    return text or type(exc).__name__


# CPython's location in its own source, before a TLS timeout's message.
_SOURCE_PREFIX = re.compile(r"^_ssl\.c:\d+: ")
