"""The edge as the source: what it stores, it finds, gives back, moves and commits.

Real edges (publishing off: this is about the index) on 127.0.0.1, filled by DCMTK's
storescu and pynetdicom; queried by DCMTK's findscu at every level of both models; retrieved
by DCMTK's getscu and movescu (to DCMTK's storescp), compared byte for byte with what was
sent; Storage Commitment asked by pynetdicom. Then the edge restarts over a storage folder
changed while it was down.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus.bus.edge import EdgeNode
from dicombus.bus.edge_config import EdgeConfig
from dicombus.qr.scp import Destination
from dicombus.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)
from helpers import DcmtkProcess, import_peer, small_dataset
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit, generate_uid
from qr.qr_archive import ENTRIES, build_archive
from storage_commitment import (
    FAILURES_EXIST,
    NO_SUCH_OBJECT_INSTANCE,
    REQUEST_STORAGE_COMMITMENT,
    CommitmentResults,
    new_transaction,
)
from up_support import UpProcess

RunTool = Callable[..., subprocess.CompletedProcess[str]]
WAIT = 10.0
EDGE = "EDGE"
# DCMTK's SCUs propose uncompressed syntaxes only, unless told otherwise.
PLAIN = [entry for entry in ENTRIES if entry.syntax != JPEGBaseline8Bit]
CLASS_INSTANCE_CONFLICT = 0x0119  # PS3.4 J.3.3.1.2: Failure Reason


def edge_config(folder: Path, **settings: Any) -> EdgeConfig:
    return EdgeConfig(
        ae_title=EDGE,
        port=0,
        data_dir=folder,
        bus_enabled=False,
        acse_timeout=WAIT,
        dimse_timeout=WAIT,
        network_timeout=WAIT,
        **settings,
    )


@contextlib.contextmanager
def running(config: EdgeConfig) -> Iterator[EdgeNode]:
    node = EdgeNode(config)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def dataset_bytes(path: Path) -> bytes:
    """A Part 10 file's data set, after its File Meta Information (PS3.10 7.1)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00", path
    (group_length,) = struct.unpack_from("<I", data, 140)  # (0002,0000) UL, explicit VR
    return data[144 + group_length :]


def by_uid(folder: Path) -> dict[str, Path]:
    """SOP Instance UID -> file, of every file under ``folder``."""
    return {
        str(dcmread(path, stop_before_pixels=True).SOPInstanceUID): path
        for path in folder.rglob("*")
        if path.is_file()
    }


def assert_same_instances(received: dict[str, Path], sent: dict[str, Path]) -> None:
    """Byte for byte where the transfer syntax is the one sent; a retrieve converts an
    instance to the uncompressed syntax the peer accepted (DCMTK proposes Explicit VR
    Little Endian first), and then it is the same data set, element for element."""
    assert set(received) == set(sent)
    for uid, path in received.items():
        got, original = dcmread(path), dcmread(sent[uid])
        if got.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID:
            assert dataset_bytes(path) == dataset_bytes(sent[uid]), uid
        else:
            assert got == original, uid


def find(run_tool: RunTool, port: int, out: Path, model: str, *keys: str) -> list[Dataset]:
    """DCMTK findscu's responses (``model``: "-P" or "-S")."""
    out.mkdir()
    args = ["findscu", model, "-X", "-od", str(out), "-aec", EDGE]
    for key in keys:
        args += ["-k", key]
    result = run_tool(*args, "127.0.0.1", str(port))
    assert result.returncode == 0, result.stdout + result.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def test_dcmtk_stores_finds_at_every_level_gets_and_moves(
    tmp_path: Path, storescp: Callable[..., DcmtkProcess], run_tool: RunTool
) -> None:
    store = storescp()
    sources = build_archive(tmp_path / "source")
    destinations = {"STORESCP": Destination("127.0.0.1", store.port)}
    with running(edge_config(tmp_path / "edge", move_destinations=destinations)) as node:
        port = node.address[1]
        stored = run_tool(
            "storescu", "-aec", EDGE, "127.0.0.1", str(port),
            *(str(sources[entry.sop_uid]) for entry in PLAIN),
        )  # fmt: skip
        assert stored.returncode == 0, stored.stdout + stored.stderr

        patients = find(run_tool, port, tmp_path / "p", "-P", "QueryRetrieveLevel=PATIENT",
                        "PatientID")  # fmt: skip
        assert sorted(p.PatientID for p in patients) == ["P1", "P2", "P3"]
        studies = find(run_tool, port, tmp_path / "st", "-P", "QueryRetrieveLevel=STUDY",
                       "PatientID=P1", "StudyInstanceUID")  # fmt: skip
        assert {s.StudyInstanceUID for s in studies} == {ENTRIES[0].study_uid, ENTRIES[3].study_uid}
        series = find(run_tool, port, tmp_path / "se", "-S", "QueryRetrieveLevel=SERIES",
                      f"StudyInstanceUID={ENTRIES[0].study_uid}", "Modality")  # fmt: skip
        assert sorted(s.Modality for s in series) == ["CT", "MR"]
        images = find(run_tool, port, tmp_path / "im", "-S", "QueryRetrieveLevel=IMAGE",
                      f"StudyInstanceUID={ENTRIES[0].study_uid}",
                      f"SeriesInstanceUID={ENTRIES[0].series_uid}", "SOPInstanceUID")  # fmt: skip
        assert {i.SOPInstanceUID for i in images} == {ENTRIES[0].sop_uid, ENTRIES[1].sop_uid}
        assert {i.RetrieveAETitle for i in images} == {EDGE}

        got = tmp_path / "got"
        got.mkdir()
        result = run_tool(
            "getscu", "-S", "-od", str(got), "-aec", EDGE,
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ENTRIES[0].study_uid}",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert_same_instances(by_uid(got), {e.sop_uid: sources[e.sop_uid] for e in ENTRIES[:3]})

        result = run_tool(
            "movescu", "-P", "-aec", EDGE, "-aem", "STORESCP",
            "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P2", "127.0.0.1", str(port),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        moved = by_uid(store.output_dir)
        assert_same_instances(moved, {e.sop_uid: sources[e.sop_uid] for e in ENTRIES[4:6]})

        unknown = run_tool(
            "movescu", "-v", "-P", "-aec", EDGE, "-aem", "NOWHERE",
            "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P2", "127.0.0.1", str(port),
        )  # fmt: skip
        # DCMTK names 0xA801 (PS3.4 C.4.2.1.5) rather than printing the code.
        assert "Refused: MoveDestinationUnknown" in unknown.stdout + unknown.stderr


def pynetdicom_requestor(pynetdicom: Any, *contexts: str) -> Any:
    ae = pynetdicom.AE(ae_title="MODALITY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    for uid in contexts:
        ae.add_requested_context(uid)
    return ae


def test_pynetdicom_commitment_names_the_stored_and_the_failed(tmp_path: Path) -> None:
    """PS3.4 J.3.3: the report follows the N-ACTION response on the same association;
    an instance we hold is committed, one we never had fails with 0x0112, one held
    under another SOP class with 0x0119."""
    pynetdicom = import_peer("pynetdicom")
    instance = small_dataset()
    unknown = generate_uid()
    references = [
        (CTImageStorage, instance.SOPInstanceUID),
        (CTImageStorage, unknown),
        (MRImageStorage, instance.SOPInstanceUID),
    ]
    results = CommitmentResults()
    ae = pynetdicom_requestor(pynetdicom, CTImageStorage, StorageCommitmentPushModel)
    with running(edge_config(tmp_path)) as node:
        assoc = ae.associate(
            "127.0.0.1",
            node.address[1],
            ae_title=EDGE,
            evt_handlers=[(pynetdicom.evt.EVT_N_EVENT_REPORT, results)],
        )
        assert assoc.is_established
        try:
            assert assoc.send_c_store(instance).Status == 0x0000
            transaction, request = new_transaction(references)
            reply, _ = assoc.send_n_action(
                request,
                REQUEST_STORAGE_COMMITMENT,
                StorageCommitmentPushModel,
                StorageCommitmentPushModelInstance,
            )
            assert reply.Status == 0x0000
            report = results.next()
        finally:
            assoc.release()
    assert (report.event_type, report.on_new_association) == (FAILURES_EXIST, False)
    info = report.event_information
    assert info.TransactionUID == transaction
    assert info.RetrieveAETitle == EDGE
    assert [
        (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID)
        for item in info.ReferencedSOPSequence
    ] == [references[0]]
    assert [
        (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID, item.FailureReason)
        for item in info.FailedSOPSequence
    ] == [(*references[1], NO_SUCH_OBJECT_INSTANCE), (*references[2], CLASS_INSTANCE_CONFLICT)]


def pynetdicom_find(pynetdicom: Any, port: int, level: str = "IMAGE") -> set[str]:
    """The SOP Instance UIDs (Patient Root, at ``level``) the edge finds for patient QR-1."""
    ae = pynetdicom_requestor(pynetdicom, PatientRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = level
    query.PatientID = "QR-1"
    query.StudyInstanceUID = ""
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    assoc = ae.associate("127.0.0.1", port, ae_title=EDGE)
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert responses[-1][0].Status == 0x0000
    return {str(found.SOPInstanceUID) for _, found in responses[:-1]}


def test_the_index_is_repaired_at_start_from_the_storage_folder(tmp_path: Path) -> None:
    """A file removed while the edge was down is no longer found; a file on disk whose
    index row was lost (a crash between the two) is found again."""
    pynetdicom = import_peer("pynetdicom")
    instances = [small_dataset() for _ in range(3)]
    for instance in instances:
        instance.PatientID = "QR-1"
    config = edge_config(tmp_path)
    ae = pynetdicom_requestor(pynetdicom, CTImageStorage)
    with running(config) as node:
        assoc = ae.associate("127.0.0.1", node.address[1], ae_title=EDGE)
        assert assoc.is_established
        statuses = [assoc.send_c_store(instance).Status for instance in instances]
        assoc.release()
        assert statuses == [0x0000] * 3
        # Answered Success: found at once, at each level.
        assert pynetdicom_find(pynetdicom, node.address[1]) == {i.SOPInstanceUID for i in instances}
    files = {dcmread(path).SOPInstanceUID: path for path in config.storage.rglob("*.dcm")}
    removed, kept, unindexed = (instance.SOPInstanceUID for instance in instances)
    files[removed].unlink()
    saved = tmp_path / "saved.dcm"
    shutil.move(files[unindexed], saved)
    with running(config) as node:
        assert pynetdicom_find(pynetdicom, node.address[1]) == {kept}
    # Now the index is as a crash right after the file's fsync leaves it: no row for a
    # file on disk.
    shutil.move(saved, files[unindexed])
    with running(config) as node:
        assert pynetdicom_find(pynetdicom, node.address[1]) == {kept, unindexed}


@pytest.mark.parametrize("level", ["PATIENT", "STUDY", "SERIES"])
def test_a_removed_instance_leaves_no_empty_entity(tmp_path: Path, level: str) -> None:
    pynetdicom = import_peer("pynetdicom")
    instance = small_dataset()
    instance.PatientID = "QR-1"
    config = edge_config(tmp_path)
    ae = pynetdicom_requestor(pynetdicom, CTImageStorage)
    with running(config) as node:
        assoc = ae.associate("127.0.0.1", node.address[1], ae_title=EDGE)
        assert assoc.send_c_store(instance).Status == 0x0000
        assoc.release()
        assert len(pynetdicom_find(pynetdicom, node.address[1], level)) == 1
    for path in config.storage.rglob("*.dcm"):
        path.unlink()
    with running(config) as node:
        assert pynetdicom_find(pynetdicom, node.address[1], level) == set()


def test_dicombus_up_serves_what_it_stored_and_moves_it(
    tmp_path: Path, storescp: Callable[..., DcmtkProcess], run_tool: RunTool
) -> None:
    """``dicombus up --config``: DCMTK's storescu stores, findscu finds, movescu moves to
    the destination of the config's [query_retrieve.destinations]."""
    store = storescp()
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[edge]\nae_title = "{EDGE}"\n\n'
        "[query_retrieve.destinations]\n"
        f'STORESCP = {{ host = "127.0.0.1", port = {store.port} }}\n'
    )
    sources = build_archive(tmp_path / "source")
    node = UpProcess(tmp_path / "node", "--config", str(config), "--workers", "1")
    try:
        node.wait_ready()
        stored = run_tool(
            "storescu", "-aec", EDGE, "127.0.0.1", str(node.port),
            str(sources[ENTRIES[0].sop_uid]),
        )  # fmt: skip
        assert stored.returncode == 0, stored.stdout + stored.stderr
        found = find(run_tool, node.port, tmp_path / "found", "-S", "QueryRetrieveLevel=STUDY",
                     "StudyInstanceUID")  # fmt: skip
        assert [study.StudyInstanceUID for study in found] == [ENTRIES[0].study_uid]
        moved = run_tool(
            "movescu", "-S", "-aec", EDGE, "-aem", "STORESCP",
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ENTRIES[0].study_uid}",
            "127.0.0.1", str(node.port),
        )  # fmt: skip
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert_same_instances(
            by_uid(store.output_dir), {ENTRIES[0].sop_uid: sources[ENTRIES[0].sop_uid]}
        )
    finally:
        assert node.stop() == 0, node.text
