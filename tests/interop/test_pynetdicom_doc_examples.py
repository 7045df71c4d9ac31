"""The examples of pynetdicom's documentation (docs/examples/*.rst) run on dicombus.

Each example's code is transcribed here as pynetdicom users write it, shortened
to its calls, with the port a test setting instead of 11112 and SCPs started
with ``block=False``. It then runs twice, as written and with ``from pynetdicom``
changed to ``from dicombus``, against the same real pynetdicom peer: an SCU
example against a pynetdicom SCP, an SCP example driven by a pynetdicom SCU.
Both runs must print the same lines and leave the peer with the same record.

Where an example cannot run as printed (a placeholder such as ``my_code``, or a
slip that breaks it on pynetdicom too) the transcription says what it changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus.server import AssociationServer
from helpers import (
    free_port,
    import_peer,
    part10_dataset_bytes,
    small_dataset,
    write_part10,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

pynetdicom = import_peer("pynetdicom")
from pynetdicom import evt as peer_evt  # noqa: E402  (after the peer check)
from pynetdicom import sop_class as peer_sop  # noqa: E402

LIBRARIES = ["pynetdicom", "dicombus"]
WAIT = 10.0  # seconds: the peer's ACSE / DIMSE / network timeouts

Run = Callable[..., dict[str, Any]]
Serve = Callable[..., Any]


@pytest.fixture
def run_example(peer_shutdowns: list[threading.Thread]) -> Iterator[Run]:
    """``run_example(source, library, **names)`` runs ``source`` with its pynetdicom imports
    pointed at ``library``; ``names`` are the settings it reads (``port``, ``fdir`` ...).
    Returns its namespace; a ``server`` it leaves running is shut down after the test."""
    servers: list[Any] = []

    def run(source: str, library: str, **names: Any) -> dict[str, Any]:
        namespace: dict[str, Any] = dict(names)
        code = source.replace("from pynetdicom", f"from {library}")
        try:
            exec(compile(code, f"{library}-example", "exec"), namespace)
        finally:
            if "server" in namespace:
                servers.append(namespace["server"])
        return namespace

    yield run
    for server in servers:
        if isinstance(server, AssociationServer):
            server.shutdown()
        else:  # pynetdicom's accept loop wakes every 0.5 s; let it end in the background
            thread = threading.Thread(target=server.shutdown, daemon=True)
            thread.start()
            peer_shutdowns.append(thread)


def peer_ae(title: str = "PEER") -> Any:
    ae = pynetdicom.AE(title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae


def peer_scp(serve: Serve, contexts: list[str], handlers: list[Any], **roles: bool) -> int:
    """A pynetdicom SCP for an SCU example; returns its port."""
    ae = peer_ae("PEER-SCP")
    for uid in contexts:
        ae.add_supported_context(uid, **roles)
    return int(serve(ae, handlers).server_address[1])


def peer_scu(port: int, contexts: list[str], **kwargs: Any) -> Any:
    """An established pynetdicom association to an SCP example."""
    ae = peer_ae("PEER-SCU")
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, **kwargs)
    assert assoc.is_established
    return assoc


def both_print_the_same(
    capsys: pytest.CaptureFixture[str], run_once: Callable[[str], Any]
) -> tuple[list[str], dict[str, Any]]:
    """Run ``run_once(library)`` for both libraries; their printed lines must agree.
    Returns those lines and what each run returned."""
    printed: dict[str, list[str]] = {}
    results: dict[str, Any] = {}
    for library in LIBRARIES:
        results[library] = run_once(library)
        printed[library] = capsys.readouterr().out.splitlines()
    assert printed["dicombus"] == printed["pynetdicom"]
    return printed["dicombus"], results


def patient(name: str, patient_id: str, fdir: Path) -> Dataset:
    """A small CT instance of one patient, saved in ``fdir`` as the QR SCP examples expect."""
    ds = small_dataset(transfer_syntax=ImplicitVRLittleEndian)
    ds.PatientName, ds.PatientID = name, patient_id
    write_part10(ds, fdir / str(ds.SOPInstanceUID))
    return ds


# -- Verification (docs/examples/verification.rst) --------------------------------------------

VERIFICATION_SCU = """
from pynetdicom import AE
from pynetdicom.sop_class import Verification

ae = AE()
ae.add_requested_context(Verification)
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    status = assoc.send_c_echo()
    if status:
        print(f"C-ECHO request status: 0x{status.Status:04x}")
    else:
        print('Connection timed out, was aborted or received invalid response')
    assoc.release()
else:
    print('Association rejected, aborted or never connected')
"""

VERIFICATION_SCP = """
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

def handle_echo(event):
    return 0x0000

handlers = [(evt.EVT_C_ECHO, handle_echo)]
ae = AE()
ae.add_supported_context(Verification)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers if bound else [])
"""


def test_verification_scu(serve: Serve, run_example: Run, capsys: Any) -> None:
    port = peer_scp(serve, [peer_sop.Verification], [])
    lines, _ = both_print_the_same(
        capsys, lambda library: run_example(VERIFICATION_SCU, library, port=port)
    )
    assert lines == ["C-ECHO request status: 0x0000"]


@pytest.mark.parametrize("bound", [False, True], ids=["default handler", "handle_echo"])
def test_verification_scp(run_example: Run, bound: bool) -> None:
    for library in LIBRARIES:
        server = run_example(VERIFICATION_SCP, library, bound=bound)["server"]
        assoc = peer_scu(server.server_address[1], [peer_sop.Verification])
        assert assoc.send_c_echo().Status == 0x0000, library
        assoc.release()


# -- Storage (docs/examples/storage.rst) ------------------------------------------------------

STORAGE_SCU = """
from pydicom import dcmread
from pynetdicom import AE, build_context
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

ae = AE()
ae.add_requested_context(CTImageStorage)
ds = dcmread(dataset_path)
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    status = assoc.send_c_store(ds)
    if status:
        print(f"C-STORE request status: 0x{status.Status:04x}")
    assoc.release()

# Contexts per association.
ct_context = build_context(CTImageStorage)
mr_context = build_context(MRImageStorage)
assoc = ae.associate("127.0.0.1", port, contexts=[ct_context])
print([cx.abstract_syntax.name for cx in assoc.accepted_contexts])
assoc.release()
assoc = ae.associate("127.0.0.1", port, contexts=[mr_context])
print([cx.abstract_syntax.name for cx in assoc.accepted_contexts])
assoc.release()
"""

STORAGE_SCP = """
from pynetdicom import AE, evt, AllStoragePresentationContexts

def handle_store(event):
    ds = event.dataset
    ds.file_meta = event.file_meta
    ds.save_as(ds.SOPInstanceUID, enforce_file_format=True)
    return 0x0000

handlers = [(evt.EVT_C_STORE, handle_store)]
ae = AE()
ae.supported_contexts = AllStoragePresentationContexts
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""

# The faster SCP: unlimited PDUs, the received bytes written as they are.
STORAGE_SCP_RAW = """
import uuid
from pynetdicom import AE, evt, AllStoragePresentationContexts

def handle_store(event):
    with open(f"{uuid.uuid4()}", 'wb') as f:
        f.write(event.encoded_dataset())
    return 0x0000

handlers = [(evt.EVT_C_STORE, handle_store)]
ae = AE()
ae.maximum_pdu_size = 0
ae.supported_contexts = AllStoragePresentationContexts
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""


def test_storage_scu(serve: Serve, run_example: Run, capsys: Any, tmp_path: Path) -> None:
    stored: list[str] = []

    def on_store(event: Any) -> int:
        stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    port = peer_scp(
        serve,
        [peer_sop.CTImageStorage, peer_sop.MRImageStorage],
        [(peer_evt.EVT_C_STORE, on_store)],
    )
    ds = small_dataset()
    path = write_part10(ds, tmp_path / "ct.dcm")
    lines, _ = both_print_the_same(
        capsys, lambda library: run_example(STORAGE_SCU, library, port=port, dataset_path=path)
    )
    assert lines == [
        "C-STORE request status: 0x0000",
        "['CT Image Storage']",
        "['MR Image Storage']",
    ]
    assert stored == [str(ds.SOPInstanceUID)] * 2


@pytest.mark.parametrize("source", [STORAGE_SCP, STORAGE_SCP_RAW], ids=["decoded", "raw bytes"])
def test_storage_scp(
    run_example: Run, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = small_dataset()
    for library in LIBRARIES:
        # The example writes into the current folder.
        folder = tmp_path / library
        folder.mkdir()
        monkeypatch.chdir(folder)
        server = run_example(source, library)["server"]
        assoc = peer_scu(server.server_address[1], [peer_sop.CTImageStorage])
        assert assoc.send_c_store(ds).Status == 0x0000, library
        assoc.release()
    files = {library: list((tmp_path / library).iterdir()) for library in LIBRARIES}
    assert [len(found) for found in files.values()] == [1, 1]
    theirs, ours = files["pynetdicom"][0], files["dicombus"][0]
    assert part10_dataset_bytes(ours) == part10_dataset_bytes(theirs)
    assert dcmread(ours).SOPInstanceUID == ds.SOPInstanceUID
    assert dcmread(ours).file_meta.TransferSyntaxUID == dcmread(theirs).file_meta.TransferSyntaxUID


# -- Query/Retrieve: Find (docs/examples/qr_find.rst) -----------------------------------------

QR_FIND_SCU = """
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

ae = AE()
ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
ds = Dataset()
ds.PatientName = 'CITIZEN^Jan'
ds.QueryRetrieveLevel = 'PATIENT'
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    responses = assoc.send_c_find(ds, PatientRootQueryRetrieveInformationModelFind)
    for (status, identifier) in responses:
        if status:
            print(f"C-FIND query status: 0x{status.Status:04x}")
        else:
            print('Connection timed out, was aborted or received invalid response')
    assoc.release()
"""

QR_FIND_SCP = """
import os
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

def handle_find(event):
    ds = event.identifier
    instances = []
    for fpath in os.listdir(fdir):
        instances.append(dcmread(os.path.join(fdir, fpath)))
    if 'QueryRetrieveLevel' not in ds:
        yield 0xC000, None
        return
    if ds.QueryRetrieveLevel == 'PATIENT':
        if 'PatientName' in ds:
            if ds.PatientName not in ['*', '', '?']:
                matching = [inst for inst in instances if inst.PatientName == ds.PatientName]
    for instance in matching:
        if event.is_cancelled:
            yield (0xFE00, None)
            return
        identifier = Dataset()
        identifier.PatientName = instance.PatientName
        identifier.QueryRetrieveLevel = ds.QueryRetrieveLevel
        yield (0xFF00, identifier)

handlers = [(evt.EVT_C_FIND, handle_find)]
ae = AE()
ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""

PATIENT_ROOT_FIND = peer_sop.PatientRootQueryRetrieveInformationModelFind
PATIENT_ROOT_GET = peer_sop.PatientRootQueryRetrieveInformationModelGet
PATIENT_ROOT_MOVE = peer_sop.PatientRootQueryRetrieveInformationModelMove


def one_match(keyword: str, value: str) -> Callable[[Any], Iterator[Any]]:
    """A pynetdicom C-FIND handler answering every query with one match."""

    def on_find(event: Any) -> Iterator[Any]:
        match = Dataset()
        setattr(match, keyword, value)
        yield 0xFF00, match

    return on_find


def test_qr_find_scu(serve: Serve, run_example: Run, capsys: Any) -> None:
    handlers = [(peer_evt.EVT_C_FIND, one_match("PatientName", "CITIZEN^Jan"))]
    port = peer_scp(serve, [PATIENT_ROOT_FIND], handlers)
    lines, _ = both_print_the_same(
        capsys, lambda library: run_example(QR_FIND_SCU, library, port=port)
    )
    assert lines == ["C-FIND query status: 0xff00", "C-FIND query status: 0x0000"]


def test_qr_find_scp(run_example: Run, tmp_path: Path) -> None:
    for name in ("CITIZEN^Jan", "CITIZEN^Jan", "OTHER^Ann"):
        patient(name, "1", tmp_path)
    query = Dataset()
    query.PatientName = "CITIZEN^Jan"
    query.QueryRetrieveLevel = "PATIENT"
    results = {}
    for library in LIBRARIES:
        server = run_example(QR_FIND_SCP, library, fdir=str(tmp_path))["server"]
        assoc = peer_scu(server.server_address[1], [PATIENT_ROOT_FIND])
        results[library] = [
            (status.Status, identifier and str(identifier.PatientName))
            for status, identifier in assoc.send_c_find(query, PATIENT_ROOT_FIND)
        ]
        assoc.release()
    assert results["dicombus"] == results["pynetdicom"]
    assert results["dicombus"] == [(0xFF00, "CITIZEN^Jan")] * 2 + [(0x0000, None)]


# -- Query/Retrieve: Get (docs/examples/qr_get.rst) -------------------------------------------

QR_GET_SCU = """
from pydicom.dataset import Dataset
from pynetdicom import AE, evt, build_role
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelGet, CTImageStorage

def handle_store(event):
    ds = event.dataset
    ds.file_meta = event.file_meta
    ds.save_as(ds.SOPInstanceUID, enforce_file_format=True)
    return 0x0000

handlers = [(evt.EVT_C_STORE, handle_store)]
ae = AE()
ae.add_requested_context(PatientRootQueryRetrieveInformationModelGet)
ae.add_requested_context(CTImageStorage)
role = build_role(CTImageStorage, scp_role=True)
ds = Dataset()
ds.QueryRetrieveLevel = 'SERIES'
ds.PatientID = '1234567'
ds.StudyInstanceUID = '1.2.3'
ds.SeriesInstanceUID = '1.2.3.4'
assoc = ae.associate("127.0.0.1", port, ext_neg=[role], evt_handlers=handlers)
if assoc.is_established:
    responses = assoc.send_c_get(ds, PatientRootQueryRetrieveInformationModelGet)
    for (status, identifier) in responses:
        if status:
            print(f"C-GET query status: 0x{status.Status:04x}")
    assoc.release()
"""

QR_GET_SCP = """
import os
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelGet

def handle_get(event):
    ds = event.identifier
    if 'QueryRetrieveLevel' not in ds:
        yield 0xC000, None
        return
    instances = []
    matching = []
    for fpath in os.listdir(fdir):
        instances.append(dcmread(os.path.join(fdir, fpath)))
    if ds.QueryRetrieveLevel == 'PATIENT':
        if 'PatientID' in ds:
            matching = [inst for inst in instances if inst.PatientID == ds.PatientID]
    yield len(instances)
    for instance in matching:
        if event.is_cancelled:
            yield (0xFE00, None)
            return
        yield (0xFF00, instance)

handlers = [(evt.EVT_C_GET, handle_get)]
ae = AE()
ae.supported_contexts = StoragePresentationContexts
for cx in ae.supported_contexts:
    cx.scp_role = True
    cx.scu_role = False
ae.add_supported_context(PatientRootQueryRetrieveInformationModelGet)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""


def test_qr_get_scu(
    serve: Serve, run_example: Run, capsys: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = small_dataset(transfer_syntax=ImplicitVRLittleEndian)

    def on_get(event: Any) -> Iterator[Any]:
        yield 1
        yield 0xFF00, instance

    ae = peer_ae("PEER-SCP")
    ae.add_supported_context(PATIENT_ROOT_GET)
    ae.add_supported_context(peer_sop.CTImageStorage, scu_role=False, scp_role=True)
    port = serve(ae, [(peer_evt.EVT_C_GET, on_get)]).server_address[1]

    def run_once(library: str) -> list[str]:
        folder = tmp_path / library
        folder.mkdir()
        monkeypatch.chdir(folder)
        run_example(QR_GET_SCU, library, port=port)
        return [path.name for path in folder.iterdir()]

    lines, stored = both_print_the_same(capsys, run_once)
    assert lines == ["C-GET query status: 0xff00", "C-GET query status: 0x0000"]
    assert stored["dicombus"] == stored["pynetdicom"] == [str(instance.SOPInstanceUID)]


def test_qr_get_scp(run_example: Run, tmp_path: Path) -> None:
    """The example announces every file in its folder as a sub-operation but sends only the
    matching ones; both stacks answer the same."""
    wanted = {str(patient("A^B", "1234567", tmp_path).SOPInstanceUID) for _ in range(2)}
    patient("C^D", "7654321", tmp_path)
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "1234567"
    results = {}
    for library in LIBRARIES:
        received: list[str] = []

        def on_store(event: Any, into: list[str] = received) -> int:
            into.append(str(event.dataset.SOPInstanceUID))
            return 0x0000

        server = run_example(QR_GET_SCP, library, fdir=str(tmp_path))["server"]
        assoc = peer_scu(
            server.server_address[1],
            [PATIENT_ROOT_GET, peer_sop.CTImageStorage],
            ext_neg=[pynetdicom.build_role(peer_sop.CTImageStorage, scp_role=True)],
            evt_handlers=[(peer_evt.EVT_C_STORE, on_store)],
        )
        responses = list(assoc.send_c_get(query, PATIENT_ROOT_GET))
        assoc.release()
        final = responses[-1][0]
        results[library] = (
            [status.Status for status, _ in responses],
            final.get("NumberOfCompletedSuboperations"),
            final.get("NumberOfFailedSuboperations"),
        )
        assert set(received) == wanted, library
    assert results["dicombus"] == results["pynetdicom"]


# -- Query/Retrieve: Move (docs/examples/qr_move.rst) -----------------------------------------

# The second SCU example: a Storage SCP in the same AE is the move destination.
# It listens on ``store_port``, not 11120, which the peer's Move SCP knows.
QR_MOVE_SCU = """
from pydicom.dataset import Dataset
from pynetdicom import AE, evt, StoragePresentationContexts
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelMove

def handle_store(event):
    return 0x0000

handlers = [(evt.EVT_C_STORE, handle_store)]
ae = AE()
ae.add_requested_context(PatientRootQueryRetrieveInformationModelMove)
ae.supported_contexts = StoragePresentationContexts
ae.ae_title = 'OUR_STORE_SCP'
scp = ae.start_server(("127.0.0.1", store_port), block=False, evt_handlers=handlers)
ds = Dataset()
ds.QueryRetrieveLevel = 'SERIES'
ds.PatientID = '1234567'
ds.StudyInstanceUID = '1.2.3'
ds.SeriesInstanceUID = '1.2.3.4'
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    responses = assoc.send_c_move(
        ds, 'OUR_STORE_SCP', PatientRootQueryRetrieveInformationModelMove
    )
    for (status, identifier) in responses:
        if status:
            print(f"C-MOVE query status: 0x{status.Status:04x}")
    assoc.release()
scp.shutdown()
"""

# ``get_known_aet`` is the example's placeholder for the user's own lookup.
QR_MOVE_SCP = """
import os
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelMove

def handle_move(event):
    ds = event.identifier
    if 'QueryRetrieveLevel' not in ds:
        yield 0xC000, None
        return
    known_aet_dict = get_known_aet()
    try:
        (addr, port) = known_aet_dict[event.move_destination]
    except KeyError:
        yield (None, None)
        return
    yield (addr, port)
    instances = []
    matching = []
    for fpath in os.listdir(fdir):
        instances.append(dcmread(os.path.join(fdir, fpath)))
    if ds.QueryRetrieveLevel == 'PATIENT':
        if 'PatientID' in ds:
            matching = [inst for inst in instances if inst.PatientID == ds.PatientID]
    yield len(matching)
    for instance in matching:
        if event.is_cancelled:
            yield (0xFE00, None)
            return
        yield (0xFF00, instance)

handlers = [(evt.EVT_C_MOVE, handle_move)]
ae = AE()
ae.requested_contexts = StoragePresentationContexts
ae.add_supported_context(PatientRootQueryRetrieveInformationModelMove)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""


def test_qr_move_scu(serve: Serve, run_example: Run, capsys: Any) -> None:
    store_port = free_port()
    instance = small_dataset(transfer_syntax=ImplicitVRLittleEndian)

    def on_move(event: Any) -> Iterator[Any]:
        assert event.move_destination == "OUR_STORE_SCP"
        yield "127.0.0.1", store_port
        yield 1
        yield 0xFF00, instance

    ae = peer_ae("PEER-SCP")
    ae.add_supported_context(PATIENT_ROOT_MOVE)
    ae.add_requested_context(peer_sop.CTImageStorage)
    port = serve(ae, [(peer_evt.EVT_C_MOVE, on_move)]).server_address[1]
    lines, _ = both_print_the_same(
        capsys,
        lambda library: run_example(QR_MOVE_SCU, library, port=port, store_port=store_port),
    )
    assert lines == ["C-MOVE query status: 0xff00", "C-MOVE query status: 0x0000"]


@pytest.mark.parametrize("destination", ["STORE_SCP", "NOWHERE"])
def test_qr_move_scp(serve: Serve, run_example: Run, tmp_path: Path, destination: str) -> None:
    wanted = {str(patient("A^B", "1234567", tmp_path).SOPInstanceUID) for _ in range(2)}
    patient("C^D", "7654321", tmp_path)
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    store_port = peer_scp(serve, [peer_sop.CTImageStorage], [(peer_evt.EVT_C_STORE, on_store)])
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "1234567"
    results = {}
    for library in LIBRARIES:
        server = run_example(
            QR_MOVE_SCP,
            library,
            fdir=str(tmp_path),
            get_known_aet=lambda: {"STORE_SCP": ("127.0.0.1", store_port)},
        )["server"]
        assoc = peer_scu(server.server_address[1], [PATIENT_ROOT_MOVE])
        responses = list(assoc.send_c_move(query, destination, PATIENT_ROOT_MOVE))
        assoc.release()
        results[library] = [status.Status for status, _ in responses]
        assert set(received) == (wanted if destination == "STORE_SCP" else set()), library
        received.clear()
    assert results["dicombus"] == results["pynetdicom"]
    expected = [0xFF00, 0xFF00, 0x0000] if destination == "STORE_SCP" else [0xA801]
    assert results["dicombus"] == expected


# -- Basic Worklist and Relevant Patient Information (basic_worklist.rst, relevant_patient.rst)

WORKLIST_SCU = """
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

ae = AE()
ae.add_requested_context(ModalityWorklistInformationFind)
ds = Dataset()
ds.PatientName = '*'
ds.ScheduledProcedureStepSequence = [Dataset()]
item = ds.ScheduledProcedureStepSequence[0]
item.ScheduledStationAETitle = 'CTSCANNER'
item.ScheduledProcedureStepStartDate = '20181005'
item.Modality = 'CT'
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    responses = assoc.send_c_find(ds, ModalityWorklistInformationFind)
    for (status, identifier) in responses:
        if status:
            print(f"C-FIND query status: 0x{status.Status:04x}")
    assoc.release()
"""

RELEVANT_PATIENT_SCU = """
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import GeneralRelevantPatientInformationQuery

ae = AE()
ae.add_requested_context(GeneralRelevantPatientInformationQuery)
ds = Dataset()
ds.PatientName = ''
ds.PatientID = '1234567'
ds.ContentTemplateSequence = [Dataset()]
ds.ContentTemplateSequence[0].MappingResource = 'DCMR'
ds.ContentTemplateSequence[0].TemplateIdentifier = '9007'
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    responses = assoc.send_c_find(ds, GeneralRelevantPatientInformationQuery)
    for (status, identifier) in responses:
        if status:
            print(f"C-FIND query status: 0x{status.Status:04x}")
    assoc.release()
"""

# ``create_template`` is the example's placeholder for building the TID 9007 answer.
RELEVANT_PATIENT_SCP = """
import os
from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.sop_class import GeneralRelevantPatientInformationQuery

def handle_find(event):
    ds = event.identifier
    instances = []
    for fpath in os.listdir(fdir):
        instances.append(dcmread(os.path.join(fdir, fpath)))
    matching = [inst for inst in instances if inst.PatientID == ds.PatientID]
    if len(matching) == 1:
        identifier = create_template(matching[0], ds)
        yield (0xFF00, identifier)
    elif len(matching) > 1:
        yield (0xC100, None)

handlers = [(evt.EVT_C_FIND, handle_find)]
ae = AE()
ae.add_supported_context(GeneralRelevantPatientInformationQuery)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""


@pytest.mark.parametrize(
    ("source", "sop_class"),
    [
        (WORKLIST_SCU, peer_sop.ModalityWorklistInformationFind),
        (RELEVANT_PATIENT_SCU, peer_sop.GeneralRelevantPatientInformationQuery),
    ],
    ids=["worklist", "relevant patient"],
)
def test_c_find_scus(
    serve: Serve, run_example: Run, capsys: Any, source: str, sop_class: str
) -> None:
    port = peer_scp(serve, [sop_class], [(peer_evt.EVT_C_FIND, one_match("PatientID", "1"))])
    lines, _ = both_print_the_same(capsys, lambda library: run_example(source, library, port=port))
    assert lines == ["C-FIND query status: 0xff00", "C-FIND query status: 0x0000"]


@pytest.mark.parametrize(("copies", "expected"), [(1, [0xFF00, 0x0000]), (2, [0xC100])])
def test_relevant_patient_scp(
    run_example: Run, tmp_path: Path, copies: int, expected: list[int]
) -> None:
    for _ in range(copies):
        patient("A^B", "1234567", tmp_path)
    patient("C^D", "7654321", tmp_path)

    def create_template(instance: Dataset, query: Dataset) -> Dataset:
        answer = Dataset()
        answer.PatientID = instance.PatientID
        answer.PatientName = instance.PatientName
        answer.ContentTemplateSequence = query.ContentTemplateSequence
        return answer

    query = Dataset()
    query.PatientName = ""
    query.PatientID = "1234567"
    query.ContentTemplateSequence = [Dataset()]
    query.ContentTemplateSequence[0].MappingResource = "DCMR"
    query.ContentTemplateSequence[0].TemplateIdentifier = "9007"
    sop_class = peer_sop.GeneralRelevantPatientInformationQuery
    results = {}
    for library in LIBRARIES:
        server = run_example(
            RELEVANT_PATIENT_SCP, library, fdir=str(tmp_path), create_template=create_template
        )["server"]
        assoc = peer_scu(server.server_address[1], [sop_class])
        results[library] = [
            (status.Status, identifier and str(identifier.PatientName))
            for status, identifier in assoc.send_c_find(query, sop_class)
        ]
        assoc.release()
    assert results["dicombus"] == results["pynetdicom"]
    assert [status for status, _ in results["dicombus"]] == expected


# -- Display System Management (docs/examples/display.rst) ------------------------------------

DISPLAY_SCU = """
from pynetdicom import AE
from pynetdicom.sop_class import DisplaySystem, DisplaySystemInstance
from pynetdicom.status import code_to_category

ae = AE()
ae.add_requested_context(DisplaySystem)
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    status, attr_list = assoc.send_n_get(
        [(0x0008, 0x0070)], DisplaySystem, DisplaySystemInstance
    )
    if status:
        print(f"N-GET request status: 0x{status.Status:04x}")
        category = code_to_category(status.Status)
        if category in ['Warning', 'Success']:
            print(attr_list)
    assoc.release()
"""

# ``create_attribute_list`` is the example's placeholder (``from my_code import ...``).
DISPLAY_SCP = """
from pynetdicom import AE, evt
from pynetdicom.sop_class import DisplaySystem

def handle_get(event):
    attr = event.request.AttributeIdentifierList
    dataset = create_attribute_list(attr)
    return 0x0000, dataset

handlers = [(evt.EVT_N_GET, handle_get)]
ae = AE()
ae.add_supported_context(DisplaySystem)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""

DISPLAY_SYSTEM = peer_sop.DisplaySystem


def manufacturer(tags: Any) -> Dataset:
    """The attributes of a display system, those of ``tags`` only (pynetdicom gives a single
    tag as a BaseTag, an int, and several as a list)."""
    display = Dataset()
    display.Manufacturer = "DICOMBUS DISPLAYS"
    display.ManufacturerModelName = "DB-1"
    answer = Dataset()
    for tag in [tags] if isinstance(tags, int) else tags:
        answer.add(display[tag])
    return answer


def test_display_scu(serve: Serve, run_example: Run, capsys: Any) -> None:
    """Fails without ``dicombus.status``: the example imports code_to_category from it."""

    def on_get(event: Any) -> tuple[int, Dataset]:
        return 0x0000, manufacturer(event.request.AttributeIdentifierList)

    port = peer_scp(serve, [DISPLAY_SYSTEM], [(peer_evt.EVT_N_GET, on_get)])
    lines, _ = both_print_the_same(
        capsys, lambda library: run_example(DISPLAY_SCU, library, port=port)
    )
    assert lines[0] == "N-GET request status: 0x0000"
    assert "DICOMBUS DISPLAYS" in lines[1] and len(lines) == 2


def test_display_scp(run_example: Run) -> None:
    results = {}
    for library in LIBRARIES:
        server = run_example(DISPLAY_SCP, library, create_attribute_list=manufacturer)["server"]
        assoc = peer_scu(server.server_address[1], [DISPLAY_SYSTEM])
        status, attributes = assoc.send_n_get(
            [(0x0008, 0x0070)], DISPLAY_SYSTEM, peer_sop.DisplaySystemInstance
        )
        assoc.release()
        results[library] = (status.Status, attributes)
    assert results["dicombus"] == results["pynetdicom"] == (0x0000, manufacturer([0x00080070]))


# -- Modality Performed Procedure Step (docs/examples/mpps.rst) --------------------------------

# The create and the set examples, the second "continuing on from the previous". The
# example's ScheduledProcedureProtocolCodeSequence is no DICOM keyword (pydicom warns and
# keeps it out of the dataset), so it is left out.
MPPS_SCU = """
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep, CTImageStorage
from pynetdicom.status import code_to_category

ct_study_uid = generate_uid()
mpps_instance_uid = generate_uid()

def build_attr_list():
    ds = Dataset()
    ds.ScheduledStepAttributesSequence = [Dataset()]
    step_seq = ds.ScheduledStepAttributesSequence
    step_seq[0].StudyInstanceUID = ct_study_uid
    step_seq[0].ReferencedStudySequence = []
    step_seq[0].AccessionNumber = '1'
    step_seq[0].RequestedProcedureID = "1"
    step_seq[0].ScheduledProcedureStepID = "1"
    ds.PatientName = 'Test^Test'
    ds.PatientID = '123456'
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "1"
    ds.PerformedStationAETitle = 'SOMEAE'
    ds.PerformedProcedureStepStartDate = '20000101'
    ds.PerformedProcedureStepStartTime = '1200'
    ds.PerformedProcedureStepStatus = 'IN PROGRESS'
    ds.PerformedProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.Modality = 'CT'
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds

ae = AE()
ae.add_requested_context(ModalityPerformedProcedureStep)
assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    status, attr_list = assoc.send_n_create(
        build_attr_list(), ModalityPerformedProcedureStep, mpps_instance_uid
    )
    if status:
        print(f"N-CREATE request status: 0x{status.Status:04x}")
        category = code_to_category(status.Status)
        if category in ['Warning', 'Success']:
            print(attr_list.PerformedProcedureStepStatus)
    assoc.release()

ct_series_uid = generate_uid()
ct_instance_uids = [generate_uid() for ii in range(10)]

def build_mod_list(series_instance, sop_instances):
    ds = Dataset()
    ds.PerformedSeriesSequence = [Dataset()]
    series_seq = ds.PerformedSeriesSequence
    series_seq[0].PerformingPhysicianName = None
    series_seq[0].ProtocolName = "Some protocol"
    series_seq[0].SeriesInstanceUID = series_instance
    series_seq[0].ReferencedImageSequence = []
    img_seq = series_seq[0].ReferencedImageSequence
    for uid in sop_instances:
        img_ds = Dataset()
        img_ds.ReferencedSOPClassUID = CTImageStorage
        img_ds.ReferencedSOPInstanceUID = uid
        img_seq.append(img_ds)
    return ds

final_ds = Dataset()
final_ds.PerformedProcedureStepStatus = "COMPLETED"
final_ds.PerformedProcedureStepEndDate = "20000101"
final_ds.PerformedProcedureStepEndTime = "1300"

assoc = ae.associate("127.0.0.1", port)
if assoc.is_established:
    status, attr_list = assoc.send_n_set(
        build_mod_list(ct_series_uid, ct_instance_uids),
        ModalityPerformedProcedureStep,
        mpps_instance_uid
    )
    if status:
        print(f"N-SET request status: 0x{status.Status:04x}")
        category = code_to_category(status.Status)
        if category in ['Warning', 'Success']:
            status, attr_list = assoc.send_n_set(
                final_ds, ModalityPerformedProcedureStep, mpps_instance_uid
            )
            if status:
                print(f"Final N-SET request status: 0x{status.Status:04x}")
    assoc.release()
"""

MPPS_SCP = """
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep

managed_instances = {}

def handle_create(event):
    req = event.request
    if req.AffectedSOPInstanceUID is None:
        return 0x0106, None
    if req.AffectedSOPInstanceUID in managed_instances:
        return 0x0111, None
    attr_list = event.attribute_list
    if "PerformedProcedureStepStatus" not in attr_list:
        return 0x0120, None
    if attr_list.PerformedProcedureStepStatus.upper() != 'IN PROGRESS':
        return 0x0106, None
    ds = Dataset()
    ds.SOPClassUID = ModalityPerformedProcedureStep
    ds.SOPInstanceUID = req.AffectedSOPInstanceUID
    ds.update(attr_list)
    managed_instances[ds.SOPInstanceUID] = ds
    return 0x0000, ds

def handle_set(event):
    req = event.request
    if req.RequestedSOPInstanceUID not in managed_instances:
        return 0x0112, None
    ds = managed_instances[req.RequestedSOPInstanceUID]
    mod_list = event.attribute_list
    ds.update(mod_list)
    return 0x0000, ds

handlers = [(evt.EVT_N_CREATE, handle_create), (evt.EVT_N_SET, handle_set)]
ae = AE()
ae.add_supported_context(ModalityPerformedProcedureStep)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
"""


@pytest.mark.parametrize(
    ("scu", "scp"),
    [("dicombus", "pynetdicom"), ("pynetdicom", "dicombus"), ("pynetdicom", "pynetdicom")],
)
def test_mpps_examples_against_each_other(
    run_example: Run, capsys: Any, scu: str, scp: str
) -> None:
    """The SCU example against the SCP example. dicombus as the SCU needs dicombus.status;
    as the SCP it needs ``event.attribute_list`` on an N-SET, which the example's
    handle_set reads (pynetdicom gives the Modification List)."""
    scp_names = run_example(MPPS_SCP, scp)
    run_example(MPPS_SCU, scu, port=scp_names["server"].server_address[1])
    assert capsys.readouterr().out.splitlines() == [
        "N-CREATE request status: 0x0000",
        "IN PROGRESS",
        "N-SET request status: 0x0000",
        "Final N-SET request status: 0x0000",
    ]
    (performed,) = scp_names["managed_instances"].values()
    assert performed.PerformedProcedureStepStatus == "COMPLETED"
    assert len(performed.PerformedSeriesSequence[0].ReferencedImageSequence) == 10


# -- Print Management (docs/examples/print.rst) -----------------------------------------------

# The Grayscale Print SCU. Two slips of the printed example are corrected: step 1's
# ``else`` sits under the wrong ``if`` (as printed it exits after every N-GET), and its
# N-DELETE leaves out ``meta_uid`` (both stacks then find no Film Box context and raise).
PRINT_SCU = r"""
import sys
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    BasicGrayscalePrintManagementMeta,
    BasicFilmSession,
    BasicFilmBox,
    Printer,
    PrinterInstance,
)

DATASET = dcmread(dataset_path)

def build_session():
    attr_list = Dataset()
    attr_list.NumberOfCopies = '1'
    attr_list.PrintPriority = 'LOW'
    attr_list.MediumType = 'PAPER'
    attr_list.FilmDestination = 'SOMEWHERE'
    attr_list.FilmSessionLabel = 'TEST JOB'
    attr_list.MemoryAllocation = ''
    attr_list.OwnerID = 'PYNETDICOM'
    return attr_list

def build_film_box(session):
    attr_list = Dataset()
    attr_list.ImageDisplayFormat = 'STANDARD\1,1'
    attr_list.FilmOrientation = 'PORTRAIT'
    attr_list.FilmSizeID = 'A4'
    attr_list.ReferencedFilmSessionSequence = [Dataset()]
    item = attr_list.ReferencedFilmSessionSequence[0]
    item.ReferencedSOPClassUID = session.SOPClassUID
    item.ReferencedSOPInstanceUID = session.SOPInstanceUID
    return attr_list

def build_image_box(im):
    attr_list = Dataset()
    attr_list.ImageBoxPosition = 1
    attr_list.ReferencedImageBoxSequence = [Dataset()]
    item = attr_list.ReferencedImageBoxSequence[0]
    item.SamplesPerPixel = im.SamplesPerPixel
    item.PhotometricInterpretation = im.PhotometricInterpretation
    item.Rows = im.Rows
    item.Columns = im.Columns
    item.BitsAllocated = im.BitsAllocated
    item.BitsStored = im.BitsStored
    item.HighBit = im.HighBit
    item.PixelRepresentation = im.PixelRepresentation
    item.PixelData = im.PixelData
    return attr_list

def handle_n_er(event):
    return 0x0000

handlers = [(evt.EVT_N_EVENT_REPORT, handle_n_er)]
ae = AE()
ae.add_requested_context(BasicGrayscalePrintManagementMeta)
assoc = ae.associate("127.0.0.1", port, evt_handlers=handlers)
if assoc.is_established:
    status, attr_list = assoc.send_n_get(
        [0x21100010, 0x21100020], Printer, PrinterInstance,
        meta_uid=BasicGrayscalePrintManagementMeta
    )
    if status and status.Status == 0x0000:
        if getattr(attr_list, 'PrinterStatus', None) != "NORMAL":
            print("Printer status is not 'NORMAL'")
            assoc.release()
            sys.exit()
    else:
        print("Failed to get the printer status")
        assoc.release()
        sys.exit()
    print('Printer ready')

    status, film_session = assoc.send_n_create(
        build_session(), BasicFilmSession, generate_uid(),
        meta_uid=BasicGrayscalePrintManagementMeta
    )
    if not status or status.Status != 0x0000:
        print('Creation of Film Session failed, releasing association')
        assoc.release()
        sys.exit()
    print('Film Session created')

    status, film_box = assoc.send_n_create(
        build_film_box(film_session), BasicFilmBox, generate_uid(),
        meta_uid=BasicGrayscalePrintManagementMeta
    )
    if not status or status.Status != 0x0000:
        print('Creation of the Film Box failed, releasing association')
        assoc.release()
        sys.exit()
    print('Film Box created')

    item = film_box.ReferencedImageBoxSequence[0]
    status, image_box = assoc.send_n_set(
        build_image_box(DATASET), item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID,
        meta_uid=BasicGrayscalePrintManagementMeta
    )
    if not status or status.Status != 0x0000:
        print('Updating the Image Box failed, releasing association')
        assoc.release()
        sys.exit()
    print('Updated the Image Box with the image data')

    status, action_reply = assoc.send_n_action(
        None, 1, film_box.SOPClassUID, film_box.SOPInstanceUID,
        meta_uid=BasicGrayscalePrintManagementMeta
    )
    if not status or status.Status != 0x0000:
        print('Printing the Film Box failed, releasing association')
        assoc.release()
        sys.exit()
    print('Print command sent successfully')

    status = assoc.send_n_delete(
        film_box.SOPClassUID, film_box.SOPInstanceUID,
        meta_uid=BasicGrayscalePrintManagementMeta
    )
    print(f"N-DELETE status: 0x{status.Status:04x}")
    assoc.release()
"""


class PeerPrintScp:
    """A pynetdicom Print SCP of the Basic Grayscale Print Management Meta SOP Class.

    As the example assumes, it reports the Printer's status with an N-EVENT-REPORT over
    the same association, here as it creates the Film Box, and keeps the SCU's answer.
    It records every request it serves.
    """

    META = peer_sop.BasicGrayscalePrintManagementMeta

    def __init__(self) -> None:
        self.served: list[tuple[Any, ...]] = []
        self.event_report_statuses: list[int] = []

    @property
    def handlers(self) -> list[Any]:
        return [
            (peer_evt.EVT_N_GET, self.on_get),
            (peer_evt.EVT_N_CREATE, self.on_create),
            (peer_evt.EVT_N_SET, self.on_set),
            (peer_evt.EVT_N_ACTION, self.on_action),
            (peer_evt.EVT_N_DELETE, self.on_delete),
        ]

    def on_get(self, event: Any) -> tuple[int, Dataset]:
        self.served.append(("N-GET", event.request.RequestedSOPClassUID.name))
        printer = Dataset()
        printer.PrinterStatus = "NORMAL"
        printer.PrinterStatusInfo = "NORMAL"
        return 0x0000, printer

    def on_create(self, event: Any) -> tuple[int, Dataset]:
        request = event.request
        self.served.append(("N-CREATE", request.AffectedSOPClassUID.name))
        created = Dataset()
        created.update(event.attribute_list)
        created.SOPClassUID = request.AffectedSOPClassUID
        created.SOPInstanceUID = request.AffectedSOPInstanceUID
        if request.AffectedSOPClassUID == peer_sop.BasicFilmBox:
            image_box = Dataset()
            image_box.ReferencedSOPClassUID = peer_sop.BasicGrayscaleImageBox
            image_box.ReferencedSOPInstanceUID = generate_uid()
            created.ReferencedImageBoxSequence = [image_box]
            status, _ = event.assoc.send_n_event_report(
                None, 1, peer_sop.Printer, peer_sop.PrinterInstance, meta_uid=self.META
            )
            self.event_report_statuses.append(status.get("Status"))
        return 0x0000, created

    def on_set(self, event: Any) -> tuple[int, Dataset]:
        image = event.modification_list.ReferencedImageBoxSequence[0]
        self.served.append(("N-SET", event.request.RequestedSOPClassUID.name, image.Rows))
        return 0x0000, event.modification_list

    def on_action(self, event: Any) -> tuple[int, None]:
        self.served.append(("N-ACTION", event.request.RequestedSOPClassUID.name))
        return 0x0000, None

    def on_delete(self, event: Any) -> int:
        self.served.append(("N-DELETE", event.request.RequestedSOPClassUID.name))
        return 0x0000


def test_print_scu(serve: Serve, run_example: Run, capsys: Any, tmp_path: Path) -> None:
    """The whole print sequence runs, and the example's handle_n_er (which returns 0x0000
    alone, as the example's text says minimal conformance may) answers the Printer's
    N-EVENT-REPORT with Success. dicombus used to refuse that return (0xC002). pynetdicom
    itself cannot unpack it and aborts the association, so only dicombus runs here."""
    printer = PeerPrintScp()
    port = peer_scp(serve, [PeerPrintScp.META], printer.handlers)
    image = small_dataset()
    run_example(PRINT_SCU, "dicombus", port=port, dataset_path=write_part10(image, tmp_path / "im"))
    assert capsys.readouterr().out.splitlines() == [
        "Printer ready",
        "Film Session created",
        "Film Box created",
        "Updated the Image Box with the image data",
        "Print command sent successfully",
        "N-DELETE status: 0x0000",
    ]
    assert printer.event_report_statuses == [0x0000]
    assert printer.served == [
        ("N-GET", "Printer SOP Class"),
        ("N-CREATE", "Basic Film Session SOP Class"),
        ("N-CREATE", "Basic Film Box SOP Class"),
        ("N-SET", "Basic Grayscale Image Box SOP Class", image.Rows),
        ("N-ACTION", "Basic Film Box SOP Class"),
        ("N-DELETE", "Basic Film Box SOP Class"),
    ]


# -- event.message in EVT_DIMSE_RECV / EVT_DIMSE_SENT handlers ---------------------------------


def message_recorder(stack: Any) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """EVT_DIMSE_RECV / EVT_DIMSE_SENT bindings for ``stack`` that read ``event.message``
    as pynetdicom's DIMSE messages offer it, and the list they fill."""
    record: list[tuple[Any, ...]] = []

    def on_message(event: Any) -> None:
        command = event.message.command_set
        data = event.message.data_set
        record.append(
            (
                event.event.name,
                command.CommandField,
                command.get("AffectedSOPInstanceUID"),
                command.get("Status"),
                data.getvalue() if data is not None else b"",
            )
        )

    handlers = [(stack.evt.EVT_DIMSE_RECV, on_message), (stack.evt.EVT_DIMSE_SENT, on_message)]
    return handlers, record


@pytest.mark.parametrize("side", ["scp", "scu"])
def test_dimse_message_handlers_see_the_same_on_both_stacks(serve: Serve, side: str) -> None:
    """A handler reading ``event.message.command_set`` and ``.data_set`` sees the same on
    dicombus as on pynetdicom, as the SCP of a C-STORE and as its SCU."""
    ds = small_dataset(transfer_syntax=ImplicitVRLittleEndian)
    ct = peer_sop.CTImageStorage
    store = [(peer_evt.EVT_C_STORE, lambda event: 0x0000)]
    seen: dict[str, list[tuple[Any, ...]]] = {}
    for library in LIBRARIES:
        stack = pynetdicom if library == "pynetdicom" else __import__("dicombus")
        handlers, seen[library] = message_recorder(stack)
        ae = stack.AE("STACK")
        if side == "scp":
            ae.add_supported_context(ct, ImplicitVRLittleEndian)
            server = serve(ae, [(stack.evt.EVT_C_STORE, lambda event: 0x0000), *handlers])
            assoc = peer_scu(server.server_address[1], [ct])
        else:
            ae.add_requested_context(ct, ImplicitVRLittleEndian)
            port = peer_scp(serve, [ct], store)
            assoc = ae.associate("127.0.0.1", port, evt_handlers=handlers)
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
    assert seen["dicombus"] == seen["pynetdicom"]
    (request,) = [entry for entry in seen["dicombus"] if entry[1] == 0x0001]
    assert request[2] == ds.SOPInstanceUID and len(request[4]) > len(ds.PixelData)
