"""Sending a batch to a DIMSE destination: one association, the contexts the batch needs.

PS3.4 B: the Storage Service Class, with our SCU. Each instance is read from the file the
edge stored (streamed as it is when the destination takes its transfer syntax and the
destination changes nothing), or decoded, changed by the destination's transforms and
encoded for the accepted context. Every response is reported as it arrives, so the caller
records it before the next instance goes: a process killed mid-batch loses no
acknowledgement it had received.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from dicombus import AE
from dicombus.association import Association
from dicombus.routing.delivery_store import Delivery
from dicombus.routing.destinations import DimseDestination
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombus_workers.routing.fetch import InstanceFiles
from dicombus_workers.routing.tls_args import tls_args
from dicombus_workers.routing.transport import (
    ConnectionFailed,
    OnResponse,
    Response,
    stored_instance,
)

LOGGER = logging.getLogger("dicombus_workers.routing")

VERIFICATION = "1.2.840.10008.1.1"
# PS3.8 9.3.2.2: an A-ASSOCIATE-RQ holds at most 128 presentation contexts.
MAX_CONTEXTS = 128
# Every SCP must accept Implicit VR Little Endian (PS3.5 10.1); Explicit is proposed first.
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
TIMEOUT = 30.0


def contexts_for(
    destination: DimseDestination, deliveries: Iterable[Delivery]
) -> list[tuple[str, str]]:
    """(SOP class, transfer syntax) presentation contexts to propose for the batch.

    One context per transfer syntax (PS3.8 9.3.2.2: the acceptor picks one syntax per
    context), so the destination can accept each instance in its own syntax and it goes
    byte for byte: the destination's configured syntaxes, else the instances' own, then the
    uncompressed ones every SCP takes (an uncompressed instance is re-encoded for them)."""
    own: dict[str, list[str]] = {}
    for delivery in deliveries:
        own.setdefault(delivery.request.sop_class_uid, []).append(delivery.request.transfer_syntax)
    found = []
    for sop_class, syntaxes in own.items():
        preferred = list(destination.transfer_syntaxes) or syntaxes
        for syntax in dict.fromkeys([*preferred, *UNCOMPRESSED]):
            found.append((sop_class, syntax))
    return found


def split_for_contexts(
    destination: DimseDestination, deliveries: Sequence[Delivery]
) -> list[Delivery]:
    """The deliveries, in order, whose contexts fit in one A-ASSOCIATE-RQ."""
    taken: list[Delivery] = []
    for delivery in deliveries:
        if len(contexts_for(destination, [*taken, delivery])) <= MAX_CONTEXTS:
            taken.append(delivery)
    return taken


def _associate(destination: DimseDestination, contexts: Sequence[tuple[str, str]]) -> Association:
    ae = AE(destination.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.connection_timeout = TIMEOUT
    for abstract_syntax, syntax in contexts:
        ae.add_requested_context(abstract_syntax, syntax)
    try:
        tls = tls_args(destination, f"the destination {destination.name!r}")
    except ValueError as exc:
        raise ConnectionFailed(str(exc)) from exc
    try:
        assoc = ae.associate(
            destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls
        )
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {destination.address}: {exc}") from exc
    if assoc.connection_error is not None:
        raise ConnectionFailed(f"cannot connect to {destination.address}: {assoc.connection_error}")
    if not assoc.is_established:
        how = (
            "rejected"
            if assoc.is_rejected
            else "aborted"
            if assoc.is_aborted
            else "not established"
        )
        raise ConnectionFailed(f"association with {destination.address} {how}")
    return assoc


def send_batch(
    destination: DimseDestination,
    deliveries: Sequence[Delivery],
    on_response: OnResponse,
    files: InstanceFiles,
) -> None:
    """Send ``deliveries`` on one association, calling ``on_response`` after each.

    Raises :class:`ConnectionFailed` when no association could be made; once one is, an
    association that breaks reports every instance it did not answer with an ``error``."""
    assoc = _associate(destination, contexts_for(destination, deliveries))
    broken: str | None = None
    try:
        for number, delivery in enumerate(deliveries, start=1):
            if broken is None and not assoc.is_established:
                broken = f"association with {destination.address} ended"
            if broken is not None:
                on_response(delivery, Response(None, broken))
                continue
            try:
                source = stored_instance(destination.transform, delivery, files)
            except (OSError, ValueError) as exc:  # pydicom's InvalidDicomError is an OSError
                on_response(delivery, Response(None, f"cannot read the instance: {exc}", True))
                continue
            try:
                answer = assoc.send_c_store(source, msg_id=number)
            except ValueError as exc:
                # No accepted context for its SOP class and transfer syntax: the destination
                # will not take it as it is.
                on_response(delivery, Response(None, f"not sent: {exc}", True))
                continue
            status = answer.get("Status")
            if status is None:
                broken = f"no C-STORE response from {destination.address} (association ended)"
                on_response(delivery, Response(None, broken))
                continue
            on_response(delivery, Response(int(status)))
    finally:
        if assoc.is_established:
            assoc.release()


def echo(destination: DimseDestination) -> str | None:
    """C-ECHO (PS3.4 A): None when the destination answers Success, else why not."""
    try:
        assoc = _associate(destination, [(VERIFICATION, ImplicitVRLittleEndian)])
    except ConnectionFailed as exc:
        return str(exc)
    try:
        status = assoc.send_c_echo().get("Status")
    finally:
        if assoc.is_established:
            assoc.release()
    return None if status == 0 else f"C-ECHO answered {status!r}"


class DimseTransport:
    """A DIMSE destination as its senders use it (:class:`.transport.Transport`)."""

    def __init__(self, destination: DimseDestination, files: InstanceFiles) -> None:
        self.destination = destination
        self.files = files

    def batch(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return split_for_contexts(self.destination, deliveries)

    def send_batch(self, deliveries: Sequence[Delivery], on_response: OnResponse) -> None:
        send_batch(self.destination, deliveries, on_response, self.files)

    def probe(self) -> str | None:
        return echo(self.destination)

    def describe(self) -> dict[str, Any]:
        d = self.destination
        return {
            "association": {
                "role": "requestor",
                "calling_ae_title": d.calling_ae_title,
                "called_ae_title": d.ae_title,
                "peer_address": d.host,
                "peer_port": d.port,
            },
            "destination": {"name": d.name, "ae_title": d.ae_title, "host": d.host, "port": d.port},
            "calling_ae_title": d.calling_ae_title,
        }
