"""Query/Retrieve against DCMTK, both ways, on 127.0.0.1.

- DCMTK's findscu, getscu and movescu -> ``dicombus qrscp`` (moving to DCMTK's storescp).
- ``dicombus find / get / move`` and the Python API -> DCMTK's dcmqrscp, filled by DCMTK's
  storescu from a configuration generated here.

Every peer is a process started here and stopped by its handle; every wait is bounded. Each
test starts two to four processes: about 1.5 s per test, 13 s for the file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli.cli_helpers import RunningServer, run_cli
from dicombus import AE, evt
from dicombus.protocol import status
from dicombus.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)
from helpers import DcmtkProcess, StoreRecorder, free_port, wait_for_port
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit
from qr.qr_archive import ENTRIES, build_archive

RunTool = Callable[..., subprocess.CompletedProcess[str]]

# The archive without its compressed instance: DCMTK's SCUs propose
# uncompressed syntaxes only, unless told otherwise.
PLAIN = [entry for entry in ENTRIES if entry.syntax != JPEGBaseline8Bit]
ARCHIVE_TITLE = "ARCHIVE"
MOVE_TITLE = "MOVESCU"


def uids_in(folder: Path, keyword: str = "SOPInstanceUID") -> set[str]:
    return {str(dcmread(path).get(keyword)) for path in folder.rglob("*") if path.is_file()}


# -- DCMTK SCUs -> dicombus qrscp ---------------------------------------------------------


@pytest.fixture
def dicombus_qrscp(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """``dicombus_qrscp(*options)``: ``dicombus qrscp`` over the archive in tmp_path/store."""
    build_archive(tmp_path / "store")
    servers: list[RunningServer] = []

    def start(*options: object) -> RunningServer:
        args = ["qrscp", "0", "--storage", tmp_path / "store", "-aet", "QRSCP", *options]
        servers.append(RunningServer([str(arg) for arg in args]))
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


def test_dcmtk_findscu_queries_dicombus_qrscp(
    dicombus_qrscp: Callable[..., RunningServer], run_tool: RunTool, tmp_path: Path
) -> None:
    server = dicombus_qrscp()
    out = tmp_path / "responses"
    out.mkdir()
    result = run_tool(
        "findscu", "-S", "-X", "-od", str(out), "-aec", "QRSCP",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=DOE*",
        "-k", "StudyInstanceUID", "-k", "ModalitiesInStudy",
        "127.0.0.1", str(server.port),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    responses = [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]
    assert [r.StudyInstanceUID for r in responses] == [ENTRIES[0].study_uid, ENTRIES[3].study_uid]
    assert list(responses[0].ModalitiesInStudy) == ["CT", "MR"]


def test_dcmtk_getscu_retrieves_from_dicombus_qrscp(
    dicombus_qrscp: Callable[..., RunningServer], run_tool: RunTool, tmp_path: Path
) -> None:
    server = dicombus_qrscp()
    out = tmp_path / "got"
    out.mkdir()
    result = run_tool(
        "getscu", "-S", "-od", str(out), "-aec", "QRSCP",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ENTRIES[0].study_uid}",
        "127.0.0.1", str(server.port),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert uids_in(out) == {entry.sop_uid for entry in ENTRIES[:3]}


def test_dcmtk_movescu_moves_from_dicombus_qrscp_to_dcmtk_storescp(
    dicombus_qrscp: Callable[..., RunningServer],
    storescp: Callable[..., DcmtkProcess],
    run_tool: RunTool,
    tmp_path: Path,
) -> None:
    store = storescp()
    config = tmp_path / "qrscp.toml"
    config.write_text(f'[destinations]\nSTORESCP = {{host = "127.0.0.1", port = {store.port}}}\n')
    server = dicombus_qrscp("--config", config)
    result = run_tool(
        "movescu", "-P", "-aec", "QRSCP", "-aem", "STORESCP",
        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P2",
        "127.0.0.1", str(server.port),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert uids_in(store.output_dir) == {ENTRIES[4].sop_uid, ENTRIES[5].sop_uid}


def test_dcmtk_storescu_stores_into_dicombus_qrscp_and_findscu_finds_it(
    dicombus_qrscp: Callable[..., RunningServer], run_tool: RunTool, tmp_path: Path
) -> None:
    server = dicombus_qrscp()
    extra = build_archive(tmp_path / "extra")  # the same instances again: replaced, not added
    stored = run_tool(
        "storescu", "-aec", "QRSCP", "127.0.0.1", str(server.port),
        str(extra[ENTRIES[0].sop_uid]),
    )  # fmt: skip
    assert stored.returncode == 0, stored.stdout + stored.stderr
    out = tmp_path / "responses"
    out.mkdir()
    found = run_tool(
        "findscu", "-P", "-X", "-od", str(out), "-aec", "QRSCP",
        "-k", "QueryRetrieveLevel=IMAGE", "-k", f"SeriesInstanceUID={ENTRIES[0].series_uid}",
        "-k", "SOPInstanceUID", "127.0.0.1", str(server.port),
    )  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr
    assert uids_in(out) == {ENTRIES[0].sop_uid, ENTRIES[1].sop_uid}


# -- dicombus SCUs -> DCMTK dcmqrscp ----------------------------------------------------------


def dcmqrscp_config(port: int, database: Path, move_port: int) -> str:
    """A dcmqrscp.cfg: one read/write storage area for ARCHIVE, and our move destination
    (dcmqrscp takes host names, not IP addresses, in its HostTable)."""
    return f"""\
NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
mover = ({MOVE_TITLE}, localhost, {move_port})
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{ARCHIVE_TITLE} {database} RW (100, 1024mb) ANY
AETable END
"""


@pytest.fixture
def dcmqrscp(
    require_tool: Callable[[str], str], run_tool: RunTool, tmp_path: Path
) -> Iterator[tuple[DcmtkProcess, int]]:
    """DCMTK's dcmqrscp holding the plain archive; and the port of the move destination it
    knows as MOVESCU.

    It forks a child per association (which exits with it): its single-process mode (-s)
    crashes with SIGSEGV after the first association is released (DCMTK 3.6.7).
    """
    port, move_port = free_port(), free_port()
    database = tmp_path / "dcmqrscp-db"
    database.mkdir()
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text(dcmqrscp_config(port, database, move_port))
    process = subprocess.Popen(
        [require_tool("dcmqrscp"), "-c", str(config), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peer = DcmtkProcess(process, port, database)
    try:
        wait_for_port(port)
    except TimeoutError:
        pytest.fail(f"dcmqrscp did not start: {peer.stop()}")
    try:
        files = build_archive(tmp_path / "source")
        stored = run_tool(
            "storescu", "-aec", ARCHIVE_TITLE, "127.0.0.1", str(port),
            *(str(files[entry.sop_uid]) for entry in PLAIN),
        )  # fmt: skip
        assert stored.returncode == 0, stored.stdout + stored.stderr
        yield peer, move_port
    finally:
        peer.stop()


def test_dicombus_find_queries_dcmtk_dcmqrscp(dcmqrscp: tuple[DcmtkProcess, int]) -> None:
    peer, _ = dcmqrscp
    result = run_cli(
        "find", "127.0.0.1", peer.port, "-aec", ARCHIVE_TITLE, "-S",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "StudyDate",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = {line.split("=", 1)[1] for line in result.stdout.splitlines() if "UID=" in line}
    assert found == {entry.study_uid for entry in PLAIN}


def test_dicombus_api_finds_and_gets_from_dcmtk_dcmqrscp(
    dcmqrscp: tuple[DcmtkProcess, int],
) -> None:
    peer, _ = dcmqrscp
    ae = AE("APISCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for uid in (CTImageStorage, MRImageStorage):
        ae.add_requested_context(uid)
    from dicombus import build_role

    roles = [build_role(uid, scp_role=True) for uid in (CTImageStorage, MRImageStorage)]
    received = StoreRecorder()
    assoc = ae.associate(
        "127.0.0.1",
        peer.port,
        ae_title=ARCHIVE_TITLE,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, received)],
    )
    assert assoc.is_established
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = ENTRIES[0].study_uid
        query.SeriesInstanceUID = ""
        query.Modality = ""
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
        assert int(responses[-1][0].Status) == status.SUCCESS
        assert sorted(str(found.Modality) for _, found in responses[:-1]) == ["CT", "MR"]
        retrieve = Dataset()
        retrieve.QueryRetrieveLevel = "STUDY"
        retrieve.StudyInstanceUID = ENTRIES[0].study_uid
        outcome = list(assoc.send_c_get(retrieve, StudyRootQueryRetrieveInformationModelGet))
        assert int(outcome[-1][0].Status) == status.SUCCESS
    finally:
        assoc.release()
    assert set(received.by_uid()) == {entry.sop_uid for entry in ENTRIES[:3]}


def test_dicombus_get_retrieves_from_dcmtk_dcmqrscp(
    dcmqrscp: tuple[DcmtkProcess, int], tmp_path: Path
) -> None:
    peer, _ = dcmqrscp
    out = tmp_path / "got"
    result = run_cli(
        "get", "127.0.0.1", peer.port, "-aec", ARCHIVE_TITLE, "-P", "--output", out,
        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert uids_in(out) == {ENTRIES[4].sop_uid, ENTRIES[5].sop_uid}


def test_dicombus_move_from_dcmtk_dcmqrscp_to_its_own_store_scp(
    dcmqrscp: tuple[DcmtkProcess, int], tmp_path: Path
) -> None:
    peer, move_port = dcmqrscp
    out = tmp_path / "moved"
    result = run_cli(
        "move", "127.0.0.1", peer.port, "-aec", ARCHIVE_TITLE, "-aet", MOVE_TITLE,
        "-aem", MOVE_TITLE, "--store-port", move_port, "--output", out, "-S",
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={ENTRIES[3].study_uid}",
        "-k", f"SeriesInstanceUID={ENTRIES[3].series_uid}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert uids_in(out) == {ENTRIES[3].sop_uid}
