"""TLS for the associations a routing worker requests: to a DIMSE destination, to the edge.

DICOM over TLS (PS3.15 B.1): the peer's certificate is verified against the configured CA
and its host name checked (:func:`dicombus.tls.client_context`); our own certificate goes
along when one is configured, for a peer that requires it (mutual TLS).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Protocol

from dicombus.tls import client_context


class TlsPeer(Protocol):
    """A peer's address and our TLS settings for it (a DIMSE destination, the edge)."""

    @property
    def host(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def tls(self) -> bool: ...
    @property
    def tls_ca(self) -> Path | None: ...
    @property
    def tls_cert(self) -> Path | None: ...
    @property
    def tls_key(self) -> Path | None: ...


def tls_args(peer: TlsPeer, settings: str) -> tuple[ssl.SSLContext, str] | None:
    """``AE.associate``'s ``tls_args`` for ``peer`` (None: no TLS); ValueError naming the
    setting, in ``settings`` (where it is configured), that is missing or unusable."""
    if not peer.tls:
        return None
    if peer.tls_ca is None:
        raise ValueError(
            f"DICOM over TLS to {peer.address} needs tls_ca in {settings}, "
            "to verify its certificate"
        )
    try:
        context = client_context(peer.tls_ca, peer.tls_cert, peer.tls_key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is not PEM
        raise ValueError(f"cannot use the TLS files of {settings}: {exc}") from exc
    return context, peer.host
