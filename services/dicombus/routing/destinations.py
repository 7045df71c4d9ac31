"""Where routed instances go: a DICOM C-STORE SCP or a DICOMweb STOW-RS service.

Each destination has its own Celery queue, named from the destination, and its own
concurrency cap, so a slow or dead destination never delays the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from dicombus.bus.envelope import RetrieveAddress, dicom_scheme
from dicombus.routing.delivery_policy import DeliveryPolicy
from dicombus.routing.transforms import Transform

QUEUE_PREFIX = "dicombus.route."
# A destination's name becomes part of its queue's name and of log lines: keep it plain.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class StowAuth(StrEnum):
    NONE = "none"
    BASIC = "basic"  # RFC 7617: user, and the password from an environment variable
    BEARER = "bearer"  # RFC 6750: the token from an environment variable


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSource:
    """The edge routing workers fetch instances from with C-GET (PS3.4 C.4.3) when its
    stored file is not readable where they run, and how they reach it."""

    ae_title: str
    host: str
    port: int
    calling_ae_title: str = "DICOMBUS"
    tls: bool = False  # DICOM over TLS (PS3.15 B.1)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def address(self) -> str:
        return f"{dicom_scheme(self.tls)}://{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSettings:
    """``[routing] edge``: the edge's address, instead of the one each event gives
    (``retrieveuri``), and the TLS settings and calling AE title to reach it with."""

    # All three or none: none keeps the address each event gives.
    ae_title: str | None = None
    host: str | None = None
    port: int | None = None
    calling_ae_title: str = "DICOMBUS"
    # True: TLS to the edge. Without an address here, also to an edge whose events say
    # dicom:// (one behind a TLS-terminating proxy); dicom-tls:// needs no setting.
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def source(self, advertised: RetrieveAddress | None) -> EdgeSource | None:
        """The edge to fetch from: this address, else ``advertised``; None without either."""
        if self.ae_title is not None and self.host is not None and self.port is not None:
            address = RetrieveAddress(self.ae_title, self.host, self.port, self.tls)
        elif advertised is not None:
            address = advertised._replace(tls=advertised.tls or self.tls)
        else:
            return None
        return EdgeSource(
            ae_title=address.ae_title,
            host=address.host,
            port=address.port,
            calling_ae_title=self.calling_ae_title,
            tls=address.tls,
            tls_ca=self.tls_ca,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DimseDestination:
    """A C-STORE SCP (PS3.4 B), reached with our SCU."""

    name: str
    ae_title: str
    host: str
    port: int
    calling_ae_title: str = "DICOMBUS"
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Proposed first, in this order; empty: the instance's own transfer syntax.
    transfer_syntaxes: tuple[str, ...] = ()
    concurrency: int = 1
    transform: Transform = field(default_factory=Transform)
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    kind = "dimse"

    @property
    def queue(self) -> str:
        return QUEUE_PREFIX + self.name

    @property
    def address(self) -> str:
        return f"{dicom_scheme(self.tls)}://{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StowDestination:
    """A DICOMweb origin server's STOW-RS endpoint (PS3.18 10.5)."""

    name: str
    url: str
    auth: StowAuth = StowAuth.NONE
    username: str | None = None
    password_env: str | None = None  # basic: the environment variable holding the password
    token_env: str | None = None  # bearer: the environment variable holding the token
    tls_verify: bool = True
    tls_ca: Path | None = None
    concurrency: int = 1
    transform: Transform = field(default_factory=Transform)
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    kind = "stow-rs"

    @property
    def queue(self) -> str:
        return QUEUE_PREFIX + self.name

    @property
    def address(self) -> str:
        return self.url


Destination = DimseDestination | StowDestination
