"""Where a sender reads an instance: the edge's stored file, or a copy fetched by C-GET.

A routing worker on the edge's host (or with its storage mounted at the same path) reads
the file the C-STORE event names. Elsewhere that path is not readable, and with
``[routing] edge`` configured the worker asks the edge for the instance: a C-GET at the
IMAGE level of the Study Root model (PS3.4 C.4.3), its SOP Instance UID as the unique key,
the instance coming back as a C-STORE sub-operation on the same association, in our SCP
role for its SOP class (PS3.7 D.3.3.4 role selection). The instance's own transfer syntax
is proposed first, so the edge sends its stored bytes and the copy matches them byte for
byte. The copy lives in a private folder until its batch has gone.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dicombus import AE, build_role, evt
from dicombus.routing.delivery_store import Delivery
from dicombus.routing.destinations import EdgeSource
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

LOGGER = logging.getLogger("dicombus_workers.routing")

STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"  # PS3.4 C.6.2.1.3
SUCCESS = 0x0000
TIMEOUT = 30.0
# Every SCP must accept Implicit VR Little Endian (PS3.5 10.1).
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class InstanceFiles:
    """The Part 10 file of each delivery, as readable on this host."""

    def __init__(self, edge: EdgeSource | None) -> None:
        self.edge = edge
        self._folder: Path | None = None
        self._lock = threading.Lock()  # the destination's sender threads share it

    def path(self, delivery: Delivery) -> Path:
        """The stored file, or (not readable here, an edge configured) a fetched copy.

        Raises FileNotFoundError when neither can be had: the instance cannot be sent."""
        stored = Path(delivery.request.stored_path)
        if stored.is_file() or self.edge is None:
            if not stored.is_file():
                raise FileNotFoundError(
                    f"the stored file {stored} is not readable on this host "
                    "(set [routing] edge to fetch it with C-GET)"
                )
            return stored
        copy = self.folder / f"{delivery.sop_instance_uid}.dcm"
        if not copy.is_file():
            fetch(self.edge, delivery, copy)
        return copy

    @property
    def folder(self) -> Path:
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="dicombus-route-"))
            return self._folder

    def discard(self, deliveries: Iterable[Delivery]) -> None:
        """Remove the fetched copies of ``deliveries`` (their batch has gone)."""
        if self._folder is None:
            return
        for delivery in deliveries:
            (self._folder / f"{delivery.sop_instance_uid}.dcm").unlink(missing_ok=True)

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def fetch(edge: EdgeSource, delivery: Delivery, target: Path) -> None:
    """C-GET the delivery's instance from ``edge`` into the Part 10 file ``target``."""
    request = delivery.request
    syntaxes = list(dict.fromkeys([request.transfer_syntax, *UNCOMPRESSED]))
    ae = AE(edge.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.connection_timeout = TIMEOUT
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context(request.sop_class_uid, syntaxes)
    received: list[bytes] = []

    def store(event: Any) -> int:
        if str(event.request.AffectedSOPInstanceUID) != request.sop_instance_uid:
            return 0xA900  # not what was asked for: PS3.4 B.2.3 "does not match"
        received.append(event.encoded_dataset(include_meta=True))
        return SUCCESS

    try:
        assoc = ae.associate(
            edge.host,
            edge.port,
            ae_title=edge.ae_title,
            ext_neg=[build_role(request.sop_class_uid, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, store)],
        )
    except OSError as exc:
        raise FileNotFoundError(f"cannot connect to the edge {edge.address}: {exc}") from exc
    if not assoc.is_established:
        raise FileNotFoundError(f"the edge {edge.address} did not accept the C-GET association")
    try:
        final = None
        for status, _identifier in assoc.send_c_get(_identifier_of(delivery), STUDY_ROOT_GET):
            final = status
    finally:
        if assoc.is_established:
            assoc.release()
    if not received:
        code = None if final is None else final.get("Status")
        raise FileNotFoundError(
            f"the edge {edge.address} sent no {request.sop_instance_uid} "
            f"(C-GET status {'none' if code is None else f'0x{int(code):04X}'})"
        )
    target.write_bytes(received[0])
    LOGGER.debug("fetched %s from %s", request.sop_instance_uid, edge.address)


def _identifier_of(delivery: Delivery) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    study = delivery.request.context.get("study_instance_uid")
    if study:
        identifier.StudyInstanceUID = study
    identifier.SOPInstanceUID = delivery.sop_instance_uid
    return identifier
