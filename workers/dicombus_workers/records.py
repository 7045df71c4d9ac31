"""EventRecord: a published event as a task sees it, named as a pynetdicom handler would.

A pynetdicom handler reads ``event.event.name``, ``event.timestamp``,
``event.assoc.requestor.ae_title`` and ``event.dataset``; a task reads the same
names on the record, plus what only the bus has: ``event.id`` (the ULID the
task is idempotent by), ``event.sequence`` (the order within the
association), ``event.edge`` and the raw envelope.

Differences from a live handler, because the association is gone by the time
a task runs: ``assoc`` is a read-only snapshot (titles, addresses, ports, the
TLS peer subject, the negotiated contexts when the event carries them;
``assoc.called_ae_title`` is the title the A-ASSOCIATE-RQ called, which on
the edge's side may differ from ``assoc.acceptor.ae_title``, the edge's own);
``data`` is the event's ``data`` object from the envelope, so the bytes of a
PDU or data event (``EVT_DATA_RECV`` handlers read them as ``event.data``)
are ``event.raw`` here; ``dataset`` and ``identifier`` are decoded from DICOM
JSON on first access, with bulk data left as its BulkDataURI.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import unquote, urlsplit

from dicombus import evt
from dicombus.bus.dicom_json import from_dicom_json, read_file_bulk_data
from dicombus.bus.envelope import parse_time
from pydicom.dataset import Dataset, FileMetaDataset

_EVENT_TYPES: dict[str, evt.EventType] = {
    **{event.name: event for event in evt.NOTIFICATION_EVENTS},
    **{event.name: event for event in evt.INTERVENTION_EVENTS},
}


@dataclass(frozen=True, slots=True)
class PeerView:
    """One side of the association (pynetdicom's ``assoc.requestor`` / ``assoc.acceptor``)."""

    ae_title: str = ""
    address: str | None = None
    port: int | None = None
    tls_peer_subject: str | None = None


@dataclass(frozen=True, slots=True)
class AssociationView:
    """What the event recorded about its association."""

    id: str
    requestor: PeerView
    acceptor: PeerView
    # The edge's role: "acceptor" when a modality associated with the edge.
    mode: str = "acceptor"
    accepted_contexts: list[dict[str, Any]] = field(default_factory=list)
    # PS3.8 7.1.1.3-4: the titles of the A-ASSOCIATE-RQ, the same in every event of
    # the association. On the acceptor the called title is what the peer asked
    # for, which is not the edge's own when require_called_aet is off.
    calling_ae_title: str = ""
    called_ae_title: str = ""

    @property
    def is_acceptor(self) -> bool:
        return self.mode == "acceptor"

    @property
    def is_requestor(self) -> bool:
        return self.mode == "requestor"


class EventRecord:
    """One event from the bus, built from its CloudEvents envelope."""

    def __init__(self, envelope: Mapping[str, Any]) -> None:
        self.envelope = envelope
        self.id: str = envelope["id"]
        self.type: str = envelope["type"]
        self.source: str = envelope["source"]
        self.subject: str = envelope.get("subject", "")
        self.sequence: int = int(envelope.get("sequence", 0))
        self.schema_version: str = str(envelope.get("schemaversion", ""))
        self.time: str = envelope["time"]
        self.data: dict[str, Any] = dict(envelope.get("data") or {})

    def __repr__(self) -> str:
        return f"<EventRecord {self.type} {self.id} seq={self.sequence} from {self.source}>"

    @cached_property
    def event(self) -> evt.EventType:
        """The event type, the same object as ``dicombus.evt.EVT_*`` (compare with ``==``)."""
        known = _EVENT_TYPES.get(self.type)
        return known if known is not None else evt.NotificationEvent(self.type, "")

    @cached_property
    def timestamp(self) -> datetime:
        """When the event happened on the edge, as an aware UTC datetime."""
        return parse_time(self.time)

    @cached_property
    def edge(self) -> str:
        """The edge id from ``source`` (``dicombus://<edge id>/<AE title>``)."""
        return unquote(urlsplit(self.source).netloc)

    @cached_property
    def source_ae_title(self) -> str:
        """The edge's own AE title from ``source`` (``dicombus://<edge id>/<AE title>``)."""
        return unquote(urlsplit(self.source).path.lstrip("/"))

    @cached_property
    def assoc(self) -> AssociationView:
        info: dict[str, Any] = self.data.get("association") or {}
        mode = info.get("role", "acceptor")
        peer = PeerView(
            ae_title="",
            address=info.get("peer_address"),
            port=info.get("peer_port"),
            tls_peer_subject=info.get("tls_peer_subject"),
        )
        local = PeerView(port=info.get("local_port"))
        requestor, acceptor = (peer, local) if mode == "acceptor" else (local, peer)
        calling = info.get("calling_ae_title") or ""
        called = info.get("called_ae_title") or ""
        # The calling AE is the requestor's title, whichever side the edge was on. An
        # acceptor is the edge itself, named in ``source`` (as a pynetdicom acceptor's
        # assoc.acceptor.ae_title is its own title, whatever the peer called).
        requestor = _with_title(requestor, calling)
        acceptor = _with_title(acceptor, self.source_ae_title if mode == "acceptor" else called)
        return AssociationView(
            id=self.subject,
            requestor=requestor,
            acceptor=acceptor,
            mode=mode,
            accepted_contexts=list(info.get("contexts") or []),
            calling_ae_title=calling,
            called_ae_title=called,
        )

    @property
    def status(self) -> int | None:
        """The status the edge answered with (intervention outcomes), else None."""
        value = self.data.get("status")
        return int(value) if value is not None else None

    @cached_property
    def dataset(self) -> Dataset | None:
        """The request's dataset (C-STORE, N-SET ...), decoded on first access."""
        return _decode(self.data.get("dataset"))

    def dataset_with_bulk_data(self) -> Dataset | None:
        """The dataset with its bulk data read from the stored file (``file://`` URIs).

        Only where the worker sees the edge's storage (the same host, a shared
        volume); elsewhere fetch the stored instance through DICOM instead.
        """
        model = self.data.get("dataset")
        return from_dicom_json(model, resolve_bulk_data=read_file_bulk_data) if model else None

    @cached_property
    def identifier(self) -> Dataset | None:
        """The query or retrieve identifier (C-FIND, C-GET, C-MOVE), decoded on first access."""
        return _decode(self.data.get("identifier"))

    @cached_property
    def file_meta(self) -> FileMetaDataset | None:
        """File meta for a stored instance (C-STORE), as pynetdicom's ``event.file_meta``."""
        sop_class = self.data.get("sop_class_uid")
        instance = self.data.get("sop_instance_uid")
        if not (sop_class and instance):
            return None
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = instance
        if self.data.get("transfer_syntax"):
            meta.TransferSyntaxUID = self.data["transfer_syntax"]
        return meta

    @property
    def raw(self) -> bytes | None:
        """The PDU or data bytes, for subscriptions made with ``raw=True``."""
        encoded = self.data.get("raw")
        return base64.b64decode(encoded) if encoded else None


def _with_title(peer: PeerView, title: str) -> PeerView:
    return PeerView(title, peer.address, peer.port, peer.tls_peer_subject)


def _decode(value: Any) -> Dataset | None:
    return from_dicom_json(value) if value else None
