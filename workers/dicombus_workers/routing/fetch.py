"""Where a sender reads an instance: the edge's stored file, or a copy fetched by C-GET.

A routing worker on the edge's host (or with its storage mounted at the same path) reads
the file the C-STORE event names. Elsewhere that path is not readable, and the worker asks
the edge for the batch's instances over **one association**: the edge it names in its
events (``retrieveuri``, where it serves C-GET), or ``[routing] edge`` when configured (an
override, for an edge behind NAT or with several addresses). An edge that speaks DICOM
over TLS (``dicom-tls://``, or ``tls = true`` there) is reached over TLS (PS3.15 B.1) with
``[routing] edge``'s ``tls_ca`` (and ``tls_cert`` / ``tls_key``); without a CA to verify
it, its instances are a permanent failure naming the setting. On that association:

- one C-GET per series of the batch, at the IMAGE level of the Study Root model (PS3.4
  C.4.3), the Study and Series Instance UIDs single-valued (PS3.4 C.4.3.2.1: hierarchical
  retrieve names each level above) and the SOP Instance UIDs as a list (List of UID
  matching, PS3.4 C.2.2.2.2: allowed for the unique key of the retrieve level);
- the instances come back as C-STORE sub-operations on the same association, in our SCP
  role for each of the batch's SOP classes (SCP/SCU Role Selection, PS3.7 D.3.3.4,
  negotiated as PS3.4 C.4.3.1 asks), on one presentation context per SOP class and
  transfer syntax: each instance's own syntax is offered, so the edge sends its stored
  bytes and the copy matches them byte for byte.

What could not be fetched is classed like a destination's answer
(:mod:`dicombus.routing.delivery_policy`): no connection, a transient rejection, an
association that ended, or "Refused: Out of Resources" (0xA7xx, PS3.4 C.4.3.1.4) are
transient, retried with the destination's back-off; a permanent rejection, or a C-GET
failure status (0xA900 identifier does not match, 0xCxxx unable to process, 0x0122 ...)
is permanent. An instance the edge did not send although it answered the C-GET (it does
not hold it) is retried :data:`NOT_FOUND_TRIES` times, then is permanent. The copies live
in a private folder until their batch has gone.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicombus import AE, build_role, evt
from dicombus.bus.envelope import parse_retrieve_uri
from dicombus.protocol.status import OUT_OF_RESOURCES_RANGE
from dicombus.routing.delivery_policy import describe_status
from dicombus.routing.delivery_store import Delivery
from dicombus.routing.destinations import EdgeSettings, EdgeSource
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombus_workers.routing.tls_args import tls_args

LOGGER = logging.getLogger("dicombus_workers.routing")

STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"  # PS3.4 C.6.2.1.3
SUCCESS = 0x0000
DOES_NOT_MATCH = 0xA900  # PS3.4 B.2.3: a sub-operation's instance we did not ask for
# PS3.8 9.3.4, A-ASSOCIATE-RJ Result: 1 rejected-permanent (2: rejected-transient).
REJECTED_PERMANENT = 1
# PS3.4 C.4.3.1.4: the statuses a C-GET ends with when the edge did its part; an
# instance it then did not send is one it does not hold (or could not read).
COMPLETED = frozenset({0x0000, 0xB000, 0xFE00})
TIMEOUT = 30.0
# PS3.8 9.3.2.2: an A-ASSOCIATE-RQ holds at most 128 presentation contexts; one is the
# C-GET model's.
MAX_STORAGE_CONTEXTS = 127
# Every SCP must accept Implicit VR Little Endian (PS3.5 10.1).
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# An instance the edge answers it does not have is asked for again this many times in
# all, with the destination's back-off, before it is a dead letter: an edge restored
# from a backup, or re-indexing its storage at start, holds it again a moment later.
NOT_FOUND_TRIES = 3


@dataclass(frozen=True, slots=True)
class Unfetched:
    """Why an instance's file could not be had here, and whether trying again can help."""

    reason: str
    permanent: bool


class InstanceFiles:
    """The Part 10 file of each delivery, as readable on this host."""

    def __init__(self, edge: EdgeSettings | None) -> None:
        """``edge``: the configured ``[routing] edge``: an address used instead of the
        events', and how the edge is reached."""
        self.edge = edge or EdgeSettings()
        self._folder: Path | None = None
        self._lock = threading.Lock()  # the destination's sender threads share it

    def fetch(self, deliveries: Sequence[Delivery]) -> dict[str, Unfetched]:
        """Fetch the instances of ``deliveries`` whose stored file is not readable here,
        one association per edge; returns those that could not be had, by SOP Instance UID."""
        by_edge: dict[EdgeSource, list[Delivery]] = {}
        failed: dict[str, Unfetched] = {}
        for delivery in deliveries:
            if self._readable(delivery) is not None:
                continue
            try:
                edge = self.edge_of(delivery)
            except ValueError as exc:
                failed[delivery.sop_instance_uid] = Unfetched(str(exc), permanent=True)
                continue
            by_edge.setdefault(edge, []).append(delivery)
        for edge, wanted in by_edge.items():
            failed.update(fetch_batch(edge, wanted, self.folder))
        return failed

    def edge_of(self, delivery: Delivery) -> EdgeSource:
        """The configured edge, else the one the event names; ValueError without either."""
        uri = delivery.request.context.get("retrieve_uri")
        edge = self.edge.source(parse_retrieve_uri(str(uri)) if uri else None)
        if edge is None:
            raise ValueError(
                f"the stored file {delivery.request.stored_path} is not readable on this host "
                "and its event names no edge serving C-GET (set [routing] edge)"
            )
        return edge

    def path(self, delivery: Delivery) -> Path:
        """The stored file, or the copy :meth:`fetch` made; FileNotFoundError without."""
        found = self._readable(delivery)
        if found is None:
            raise FileNotFoundError(
                f"the stored file {delivery.request.stored_path} is not readable on this host "
                "and was not fetched"
            )
        return found

    def size(self, delivery: Delivery) -> int:
        """The instance's size in bytes, before it is fetched: the file's, else the event's."""
        found = self._readable(delivery)
        if found is not None:
            return found.stat().st_size
        stored_size = delivery.request.context.get("stored_size")
        return stored_size if isinstance(stored_size, int) else 0

    def _readable(self, delivery: Delivery) -> Path | None:
        stored = Path(delivery.request.stored_path)
        if stored.is_file():
            return stored
        copy = copy_path(self._folder, delivery.sop_instance_uid) if self._folder else None
        return copy if copy is not None and copy.is_file() else None

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
            copy_path(self._folder, delivery.sop_instance_uid).unlink(missing_ok=True)

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def copy_path(folder: Path, sop_instance_uid: str) -> Path:
    return folder / f"{sop_instance_uid}.dcm"


def fetch_batch(
    edge: EdgeSource, deliveries: Sequence[Delivery], folder: Path
) -> dict[str, Unfetched]:
    """C-GET ``deliveries``' instances from ``edge`` into ``folder``, on one association
    (more only when their contexts do not fit in one); returns what could not be had."""
    failed: dict[str, Unfetched] = {}
    rest = list(deliveries)
    while rest:
        contexts: set[tuple[str, str]] = set()
        taken: list[Delivery] = []
        left: list[Delivery] = []
        for delivery in rest:
            wanted = contexts | set(_contexts_of(delivery))
            if taken and len(wanted) > MAX_STORAGE_CONTEXTS:
                left.append(delivery)
                continue
            contexts = wanted
            taken.append(delivery)
        failed.update(_fetch_on_one_association(edge, taken, sorted(contexts), folder))
        rest = left
    return failed


def _contexts_of(delivery: Delivery) -> list[tuple[str, str]]:
    request = delivery.request
    syntaxes = dict.fromkeys([request.transfer_syntax, *UNCOMPRESSED])
    return [(request.sop_class_uid, syntax) for syntax in syntaxes if syntax]


def _fetch_on_one_association(
    edge: EdgeSource,
    deliveries: Sequence[Delivery],
    contexts: Sequence[tuple[str, str]],
    folder: Path,
) -> dict[str, Unfetched]:
    wanted = {delivery.sop_instance_uid: delivery for delivery in deliveries}
    received: set[str] = set()

    def store(event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if uid not in wanted:
            return DOES_NOT_MATCH  # not what was asked for
        copy_path(folder, uid).write_bytes(event.encoded_dataset(include_meta=True))
        received.add(uid)
        return SUCCESS

    try:
        tls = tls_args(edge, "[routing] edge")
    except ValueError as exc:  # a setting missing here: asking again cannot help
        return _all(wanted, Unfetched(str(exc), True))
    ae = AE(edge.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.connection_timeout = TIMEOUT
    ae.add_requested_context(STUDY_ROOT_GET)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    roles = [
        build_role(sop_class, scp_role=True) for sop_class in dict.fromkeys(c for c, _ in contexts)
    ]
    try:
        assoc = ae.associate(
            edge.host,
            edge.port,
            ae_title=edge.ae_title,
            ext_neg=roles,
            tls_args=tls,
            evt_handlers=[(evt.EVT_C_STORE, store)],
        )
    except OSError as exc:
        return _all(wanted, Unfetched(f"cannot connect to the edge {edge.address}: {exc}", False))
    if not assoc.is_established:
        rejection = assoc.rejection
        if rejection is not None:
            why = (
                f"the edge {edge.address} rejected the C-GET association ({rejection.explanation})"
            )
            return _all(wanted, Unfetched(why, rejection.result == REJECTED_PERMANENT))
        why = f"no C-GET association with the edge {edge.address}"
        if assoc.connection_error is not None:
            why = f"cannot connect to the edge {edge.address}: {assoc.connection_error}"
        return _all(wanted, Unfetched(why, False))
    finals: dict[str, int | None] = {}
    try:
        for (study, series), uids in _by_series(deliveries).items():
            if not assoc.is_established:
                break
            final: Any = None
            identifier = _identifier(study, series, uids)
            for status, _answer in assoc.send_c_get(identifier, STUDY_ROOT_GET):
                final = status
            code = None if final is None else final.get("Status")
            finals.update(dict.fromkeys(uids, None if code is None else int(code)))
    finally:
        if assoc.is_established:
            assoc.release()
    LOGGER.debug("fetched %d of %d instances from %s", len(received), len(wanted), edge.address)
    return {
        uid: _unfetched(edge, delivery, finals.get(uid))
        for uid, delivery in wanted.items()
        if uid not in received
    }


def _unfetched(edge: EdgeSource, delivery: Delivery, code: int | None) -> Unfetched:
    """The class of an instance the C-GET did not bring, from the C-GET's final status."""
    uid = delivery.sop_instance_uid
    if code is None:
        return Unfetched(f"the C-GET association with the edge {edge.address} ended", False)
    answered = f"the edge {edge.address} answered the C-GET of {uid} {describe_status(code)}"
    if code in OUT_OF_RESOURCES_RANGE:
        return Unfetched(answered, False)
    if code not in COMPLETED:
        return Unfetched(answered, True)  # refused: asking again as is cannot help
    tries = delivery.attempts + 1
    if tries < NOT_FOUND_TRIES:
        return Unfetched(f"the edge {edge.address} did not send {uid}", False)
    return Unfetched(f"the edge {edge.address} did not send {uid} in {tries} tries", True)


def _all(wanted: Iterable[str], unfetched: Unfetched) -> dict[str, Unfetched]:
    return dict.fromkeys(wanted, unfetched)


def _by_series(deliveries: Sequence[Delivery]) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for delivery in deliveries:
        context = delivery.request.context
        key = (context.get("study_instance_uid") or "", context.get("series_instance_uid") or "")
        found.setdefault(key, []).append(delivery.sop_instance_uid)
    return found


def _identifier(study: str, series: str, uids: Sequence[str]) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    if study:
        identifier.StudyInstanceUID = study
    if series:
        identifier.SeriesInstanceUID = series
    # List of UID matching (PS3.4 C.2.2.2.2): one C-GET for the study's instances.
    identifier.SOPInstanceUID = list(uids)
    return identifier
