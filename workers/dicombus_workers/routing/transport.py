"""What a sender needs of a destination's protocol: one batch per connection, and a probe.

:mod:`.dimse` (C-STORE on one association) and :mod:`.stow` (one STOW-RS request) report
each instance's answer as a :class:`Response`, so the sender classifies and records both
alike (:mod:`dicombus.routing.delivery_policy`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dicombus.routing.delivery_store import Delivery
from dicombus.routing.transforms import Transform
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicombus_workers.routing.fetch import InstanceFiles


class ConnectionFailed(Exception):
    """No connection: refused, rejected, aborted, or no response in time."""


@dataclass(frozen=True, slots=True)
class Response:
    """An instance's status (C-STORE codes), or why none came (``status`` None, ``error``
    set): ``permanent`` when sending it again as it is cannot help (no context for it, an
    unreadable file, a request the destination refuses as a whole)."""

    status: int | None
    error: str | None = None
    permanent: bool = False


OnResponse = Callable[[Delivery, Response], None]


class Transport(Protocol):
    """A destination's protocol, as its senders use it."""

    def batch(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """The deliveries, in order, that fit in one connection (the rest go back)."""

    def send_batch(self, deliveries: Sequence[Delivery], on_response: OnResponse) -> None:
        """Send them, calling ``on_response`` for each; :class:`ConnectionFailed` when no
        connection could be made."""

    def probe(self) -> str | None:
        """None when the destination answers, else why not (the breaker's probe)."""

    def describe(self) -> dict[str, Any]:
        """The ``association`` and ``destination`` of the routing events' data."""


def stored_instance(
    transform: Transform, delivery: Delivery, files: InstanceFiles
) -> Dataset | Path:
    """The stored file as it is (no transform), or its data set after the transform."""
    path = files.path(delivery)
    if transform.is_identity:
        return path  # sent as stored, byte for byte
    return transform.apply(dcmread(path))
