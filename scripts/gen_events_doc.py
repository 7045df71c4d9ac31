"""Write docs/events.md and the shipped JSON Schema, from dicombus.bus.event_data.

    python scripts/gen_events_doc.py            # write both files
    python scripts/gen_events_doc.py --check    # exit 1 if either is out of date

Field tables come from the specs in dicombus/bus/event_data.py; the schema is
dicombus.bus.json_schema.json_schema(). Each event type's example is real: the
script runs a tour on 127.0.0.1 -- a dicombus SCU talks to a dicombus SCP
whose EventCapture wants every event type -- and prints the first envelope
of each type as it came (ids, times and ports included). --check compares
after replacing those volatile values (see normalise()).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dicombus import AE, build_role, evt
from dicombus.association import Association
from dicombus.bus.capture import EventCapture
from dicombus.bus.dicom_json import DEFAULT_THRESHOLD
from dicombus.bus.envelope import PendingEvent
from dicombus.bus.event_data import (
    ASSOCIATION_FIELDS,
    CONTEXTS_FIELD,
    EVENT_SPECS,
    PDV_FIELDS,
    PRESENTATION_CONTEXT_FIELDS,
    Field,
)
from dicombus.bus.json_schema import SCHEMA_FILE, schema_text
from dicombus.protocol.items import (
    AsynchronousOperationsWindowSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityRQSubItem,
)
from dicombus.server import AssociationServer
from dicombus.sop_class import (
    BasicFilmSession,
    CTImageStorage,
    DisplaySystem,
    ModalityPerformedProcedureStep,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    Verification,
)
from dicombus.storage_files import Layout, store_instance
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "events.md"
SCHEMA = ROOT / "services" / "dicombus" / "bus" / "schema" / SCHEMA_FILE

EDGE_ID = "edge-1"
WORKDIR_PREFIX = "dicombus-events-doc-"
# Raw bytes are published only when asked for; the tour asks for these.
RAW_TYPES = frozenset({"EVT_DATA_RECV"})
# PS3.4 B.5: the Storage Service Class, for SOP class common extended negotiation.
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
# Fixed UIDs (under the 2.25 root, PS3.5 B.2) so the examples only vary where
# the values really are volatile.
STUDY_UID = "2.25.1000000000000000000000000000000001"
SERIES_UID = "2.25.1000000000000000000000000000000002"
INSTANCE_UID = "2.25.1000000000000000000000000000000003"
MPPS_UID = "2.25.1000000000000000000000000000000004"
WAIT = 5.0  # seconds: every wait in the tour

NOT_REPORTED = (
    "No example: the tour's request for this service completed, but this build of dicombus "
    "did not report its outcome."
)


# -- the tour ------------------------------------------------------------------------------


def instance() -> Dataset:
    """A small CT instance (32 x 48 x 8 bit: its 1536 bytes of pixel data are bulk data)."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = INSTANCE_UID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.Modality = "CT"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P-0001"
    ds.StudyDate = "20261122"
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 32, 48
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(i % 251 for i in range(32 * 48))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def quick_ae(title: str) -> AE:
    ae = AE(title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae


class Edge:
    """The SCP under capture: storage, verification, Q/R, N-services, negotiation handlers."""

    SUPPORTED = (
        Verification,
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelGet,
        PatientRootQueryRetrieveInformationModelMove,
        ModalityPerformedProcedureStep,
        StorageCommitmentPushModel,
        DisplaySystem,
        BasicFilmSession,
    )

    def __init__(self, storage: Path, destination: tuple[str, int]) -> None:
        self.storage = storage
        self.destination = destination

    def ae(self) -> AE:
        ae = quick_ae("EDGE")
        ae.require_called_aet = True
        for uid in self.SUPPORTED:
            ae.add_supported_context(uid)
        # Both roles, so the SCU stores on it and also takes C-GET sub-operations.
        ae.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
        return ae

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [
            (evt.EVT_C_STORE, self.store),
            (evt.EVT_C_FIND, self.find),
            (evt.EVT_C_GET, self.get),
            (evt.EVT_C_MOVE, self.move),
            (evt.EVT_N_EVENT_REPORT, lambda event: (0x0000, None)),
            (evt.EVT_N_GET, self.n_get),
            (evt.EVT_N_SET, lambda event: (0x0000, event.modification_list)),
            (evt.EVT_N_ACTION, lambda event: (0x0000, None)),
            (evt.EVT_N_CREATE, lambda event: (0x0000, event.attribute_list)),
            (evt.EVT_N_DELETE, lambda event: 0x0000),
            (evt.EVT_USER_ID, lambda event: (True, None)),
            (evt.EVT_ASYNC_OPS, lambda event: (1, 1)),
            (evt.EVT_SOP_EXTENDED, lambda event: dict(event.app_info)),
            (evt.EVT_SOP_COMMON, lambda event: dict(event.items)),
        ]

    def store(self, event: Any) -> int:
        path = store_instance(
            self.storage,
            file_meta=event.file_meta,
            dataset_bytes=event.encoded_dataset(include_meta=False),
            layout=Layout.SOP_CLASS,
        ).path
        # What the event bus publishes as stored_path / stored_size.
        event.request.outcome.update(stored_path=str(path), stored_size=path.stat().st_size)
        return 0x0000

    def find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        match.QueryRetrieveLevel = "PATIENT"
        match.PatientName = "Doe^Jane"
        match.PatientID = "P-0001"
        yield 0xFF00, match

    def get(self, event: Any) -> Iterator[Any]:
        yield 1
        yield 0xFF00, instance()

    def move(self, event: Any) -> Iterator[Any]:
        yield self.destination
        yield 1
        yield 0xFF00, instance()

    def n_get(self, event: Any) -> tuple[int, Dataset]:
        reply = Dataset()
        reply.Manufacturer = "dicombus"
        return 0x0000, reply


def negotiation_items() -> list[Any]:
    return [
        build_role(CTImageStorage, scu_role=True, scp_role=True),
        AsynchronousOperationsWindowSubItem(max_operations_invoked=2, max_operations_performed=2),
        SOPClassExtendedNegotiationSubItem(
            sop_class_uid=CTImageStorage, service_class_application_information=b"\x01\x00"
        ),
        SOPClassCommonExtendedNegotiationSubItem(
            sop_class_uid=CTImageStorage,
            service_class_uid=STORAGE_SERVICE_CLASS,
            related_general_sop_class_uids=(),
        ),
        # The passcode must never reach an event (tests/bus check it).
        UserIdentityRQSubItem(
            user_identity_type=2,
            positive_response_requested=True,
            primary_field=b"tech1",
            secondary_field=b"not-for-the-bus",
        ),
    ]


def modality() -> AE:
    ae = quick_ae("MODALITY")
    for uid in (*Edge.SUPPORTED, CTImageStorage):
        ae.add_requested_context(uid)
    return ae


def exercise(assoc: Association) -> None:
    """Every DIMSE service the edge answers, once."""
    assoc.send_c_echo()
    assoc.send_c_store(instance())
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "P-0001"
    query.PatientName = ""
    for _ in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind):
        pass
    for _ in assoc.send_c_get(query, PatientRootQueryRetrieveInformationModelGet):
        pass
    for _ in assoc.send_c_move(query, "ARCHIVE", PatientRootQueryRetrieveInformationModelMove):
        pass
    mpps = Dataset()
    mpps.PerformedProcedureStepStatus = "IN PROGRESS"
    assoc.send_n_create(mpps, ModalityPerformedProcedureStep, MPPS_UID)
    mpps.PerformedProcedureStepStatus = "COMPLETED"
    assoc.send_n_set(mpps, ModalityPerformedProcedureStep, MPPS_UID)
    commitment = Dataset()
    commitment.TransactionUID = "2.25.1000000000000000000000000000000005"
    assoc.send_n_action(commitment, 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE)
    assoc.send_n_event_report(
        commitment, 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE
    )
    assoc.send_n_get([0x00080070], DisplaySystem, "2.25.1000000000000000000000000000000006")
    assoc.send_n_delete(BasicFilmSession, "2.25.1000000000000000000000000000000007")


@contextmanager
def serving(ae: AE, handlers: list[tuple[Any, Callable[..., Any]]]) -> Iterator[AssociationServer]:
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    assert server is not None
    try:
        yield server
    finally:
        server.shutdown()


def wait_idle(server: AssociationServer) -> None:
    """Until the server's associations have ended (their last events are captured)."""
    deadline = time.monotonic() + WAIT
    while server.active_associations:
        if time.monotonic() > deadline:
            raise TimeoutError("the edge's associations did not end")
        time.sleep(0.01)


def tour_events(workdir: Path) -> list[PendingEvent]:
    """Run the tour; every captured PendingEvent, in capture order.

    Build them while ``workdir`` exists: a C-STORE's data is read from the stored file.
    """
    captured: list[PendingEvent] = []
    lock = threading.Lock()

    def sink(pending: PendingEvent) -> None:
        with lock:
            captured.append(pending)

    storage = workdir / "storage"
    archive = quick_ae("ARCHIVE")
    archive.add_supported_context(CTImageStorage)
    with serving(archive, [(evt.EVT_C_STORE, lambda event: 0x0000)]) as destination:
        edge = Edge(storage, destination.server_address)
        edge_ae = edge.ae()
        edge_ae.add_requested_context(CTImageStorage)  # C-MOVE sub-operations
        capture = EventCapture(
            edge_id=EDGE_ID,
            sink=sink,
            wants=lambda event_type: True,
            bulk_data_uri_base=storage.resolve().as_uri(),
            raw_wanted=lambda event_type: event_type in RAW_TYPES,
        )
        with serving(edge_ae, edge.handlers()) as server:
            capture.attach(server)
            port = server.server_address[1]
            scu = modality()
            assoc = scu.associate(
                "127.0.0.1",
                port,
                ae_title="EDGE",
                ext_neg=negotiation_items(),
                evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],
            )
            exercise(assoc)
            assoc.release()
            wait_idle(server)
            # A wrong called AE title: EVT_REJECTED.
            modality().associate("127.0.0.1", port, ae_title="NOT-THE-EDGE")
            wait_idle(server)
            # EVT_ABORTED.
            modality().associate("127.0.0.1", port, ae_title="EDGE").abort()
            wait_idle(server)
            capture.detach()
    with lock:
        return list(captured)


def capture_tour(workdir: Path) -> list[dict[str, Any]]:
    """Run the tour; every captured envelope, in capture order."""
    return [pending.to_envelope() for pending in tour_events(workdir)]


def examples(envelopes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first envelope of each type, from the earliest association that has one.

    Associations (subjects) are taken in the order they started, so a type's
    example does not depend on how the threads of two associations interleave.
    """
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for envelope in envelopes:
        by_subject.setdefault(envelope["subject"], []).append(envelope)
    chosen: dict[str, dict[str, Any]] = {}
    for events in by_subject.values():
        for envelope in sorted(events, key=lambda item: item["sequence"]):
            chosen.setdefault(envelope["type"], envelope)
    return chosen


# -- Markdown ------------------------------------------------------------------------------


def type_label(schema: Mapping[str, Any]) -> str:
    """A field's JSON Schema in a few words."""
    if "anyOf" in schema:
        return " or ".join(type_label(option) for option in schema["anyOf"])
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return {"dicom_json": "DICOM JSON"}.get(name, f"{name} object")
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_label(schema.get('items', {}))}"
    if kind == "string" and schema.get("contentEncoding") == "base64":
        return "base64 string"
    if kind == "string" and "pattern" in schema:
        return "UID" if "0-9." in schema["pattern"] else "string"
    return str(kind or "any")


def field_table(fields: tuple[Field, ...]) -> list[str]:
    lines = ["| field | type | description |", "| --- | --- | --- |"]
    for field in fields:
        lines.append(f"| `{field.name}` | {type_label(field.schema)} | {field.description} |")
    return lines


def render(envelopes: list[dict[str, Any]]) -> str:
    chosen = examples(envelopes)
    schema_path = SCHEMA.relative_to(ROOT).as_posix()
    lines = [
        "# Event reference",
        "",
        "<!-- Generated by scripts/gen_events_doc.py from services/dicombus/bus/event_data.py;",
        "     do not edit by hand. -->",
        "",
        "Every event an edge publishes is a CloudEvents 1.0 JSON envelope "
        "(`dicombus.bus.envelope`): `specversion`, `id` (a ULID, the same in every retry and "
        "replay), `source` (`dicombus://<edge id>/<AE title>`), `type` (the event name), "
        "`time` (UTC), `subject` (the association's ULID), `datacontenttype`, the extension "
        "attributes `sequence` (1, 2, 3 ... per association) and `schemaversion`, and `data`. "
        "An edge that serves C-GET (`[query_retrieve]`) adds the extension attribute "
        "`retrieveuri`, `dicom://<AE title>@<host>:<port>` (the AE title percent-encoded, an "
        "IPv6 host in brackets; `dicom-tls://` from an edge with `[tls]`, whose listener "
        "speaks only DICOM over TLS): where what it stored can be retrieved, which routing workers "
        "on other hosts fetch from ([routing.md](routing.md#how-an-instance-travels)); the "
        "host is `[query_retrieve] host`, else `bind`, else (bound to every address) the "
        "host's name.",
        "",
        f"The JSON Schema of all of it ships with the package: `{schema_path}` "
        "(`dicombus.bus.load_schema()`). Datasets are in the DICOM JSON model (PS3.18 F.2); "
        f"pixel data and every value longer than the threshold ({DEFAULT_THRESHOLD} bytes by "
        "default) is a `BulkDataURI` -- the stored file's `file:` URI with `?tag=<tag path>`, "
        "which starts with the `bulk_data_uri_base` each C-STORE event carries -- never inline. "
        "A tag path is the tag in 8 hex digits, or `<sequence tag>/<item>/<tag>` inside "
        "sequences; `dicombus.bus.read_file_bulk_data(uri)` reads the value.",
        "",
        "Notification events are published as they happen; intervention events (C-STORE, "
        "user identity ...) when their outcome is decided, with what the handler answered.",
        "The examples below were captured from real associations on 127.0.0.1 "
        "(a dicombus SCU and a dicombus SCP) when this page was generated.",
        "",
        "This page and the schema cover the DICOM events. The edge and the routing workers "
        "also publish events about themselves, in the same envelope: "
        "`dicombus.node.started` / `dicombus.node.stopped` "
        "([bus.md](bus.md#the-nodes-own-events-started-stopped)), and `dicombus.route.*` "
        "and `dicombus.study.stable` ([routing.md](routing.md#routing-events)).",
        "",
        "## The association block",
        "",
        "Every `data` starts with `association`:",
        "",
        *field_table((*ASSOCIATION_FIELDS, CONTEXTS_FIELD)),
        "",
        "Each of `contexts`:",
        "",
        *field_table(PRESENTATION_CONTEXT_FIELDS),
        "",
        "Each of `pdvs` (EVT_PDU_RECV / EVT_PDU_SENT):",
        "",
        *field_table(PDV_FIELDS),
        "",
        "## Event types",
        "",
        "| type | kind | published |",
        "| --- | --- | --- |",
    ]
    for spec in EVENT_SPECS.values():
        kind = "outcome" if spec.is_outcome else "notification"
        lines.append(f"| [{spec.name}](#{spec.name.lower()}) | {kind} | {spec.when} |")
    for spec in EVENT_SPECS.values():
        lines += ["", f"## {spec.name}", "", f"Published {spec.when}.", ""]
        if spec.fields:
            lines += field_table(spec.fields)
        else:
            lines.append("No fields besides `association`.")
        lines.append("")
        example = chosen.get(spec.name)
        if example is None:
            lines.append(NOT_REPORTED)
        else:
            lines += ["```json", json.dumps(example, indent=2), "```"]
    return "\n".join(lines) + "\n"


# -- checking ------------------------------------------------------------------------------

_VOLATILE = (
    (re.compile(r"\b[0-9A-HJKMNP-TV-Z]{26}\b"), "<ULID>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"), "<TIME>"),
    (re.compile(r'"(peer_port|local_port|port)": \d+'), r'"\1": <PORT>'),
    (re.compile(r'"service_seconds": [0-9.e-]+'), '"service_seconds": <SECONDS>'),
    (re.compile(rf"/[^\"\s]*?{WORKDIR_PREFIX}[^/\"\s]*"), "<WORKDIR>"),
)


def normalise(text: str) -> str:
    """``text`` with ids, times, ports and the tour's folder replaced by placeholders."""
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def generate() -> tuple[str, list[dict[str, Any]]]:
    """(docs/events.md as it should be, the tour's envelopes)."""
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX) as workdir:
        envelopes = capture_tour(Path(workdir))
    return render(envelopes), envelopes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    doc, _ = generate()
    schema = schema_text()
    if args.check:
        stale = [
            path
            for path, wanted in ((DOC, doc), (SCHEMA, schema))
            if not path.exists() or normalise(path.read_text("utf-8")) != normalise(wanted)
        ]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run scripts/gen_events_doc.py")
        return 1 if stale else 0
    DOC.write_text(doc, "utf-8")
    SCHEMA.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA.write_text(schema, "utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} and {SCHEMA.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
