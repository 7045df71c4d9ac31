"""``dicombus qrscp``, ``find``, ``get`` and ``move`` as processes, against each other.

Each test starts a ``dicombus qrscp`` process and a few client processes: about 1.5 s of
Python start-ups per test, 10 s for the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli.cli_helpers import RunningServer, run_cli
from dicombus.cli.common import ExitCode
from helpers import free_port, immutable, small_dataset, write_part10
from pydicom import dcmread
from qr_archive import ENTRIES, build_archive

QrScp = Callable[..., RunningServer]


@pytest.fixture
def qrscp(tmp_path: Path) -> Iterator[QrScp]:
    """``qrscp(*options)``: ``dicombus qrscp`` serving tmp_path/store (the archive)."""
    build_archive(tmp_path / "store")
    servers: list[RunningServer] = []

    def start(*options: object) -> RunningServer:
        args = ["qrscp", "0", "--storage", tmp_path / "store", "-aet", "QRSCP", *options]
        server = RunningServer([str(arg) for arg in args])
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def test_find_prints_each_match(qrscp: QrScp) -> None:
    server = qrscp()
    assert f"serving {len(ENTRIES)} instances" in server.text()
    result = run_cli(
        "find", "127.0.0.1", server.port, "-S", "-aec", "QRSCP",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=doe*",
        "-k", "StudyDate", "-k", "ModalitiesInStudy",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("# match") == 2
    assert "StudyDate=20240102\n" in result.stdout
    assert "ModalitiesInStudy=CT\\MR\n" in result.stdout
    assert "2 matches" in result.stderr
    table = run_cli(
        "find", "127.0.0.1", server.port, "-P", "--table",
        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", "-k", "PatientName",
    )  # fmt: skip
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["QueryRetrieveLevel", "RetrieveAETitle", "PatientName", "PatientID"]
    assert [line.split()[-1] for line in lines[1:]] == ["P1", "P2", "P3"]


def test_find_failures_and_usage_errors(qrscp: QrScp) -> None:
    server = qrscp()
    refused = run_cli("find", "127.0.0.1", server.port, "-S", "-k", "QueryRetrieveLevel=PATIENT")
    assert refused.returncode == 1
    assert "0xA900" in refused.stderr and "PATIENT" in refused.stderr
    no_level = run_cli("find", "127.0.0.1", server.port, "-k", "PatientID=P1")
    assert no_level.returncode == 2
    assert "QueryRetrieveLevel" in no_level.stderr
    bad_number = run_cli(
        "find", "127.0.0.1", server.port, "-k", "QueryRetrieveLevel=IMAGE", "-k", "InstanceNumber=x"
    )
    assert bad_number.returncode == 2
    assert "InstanceNumber=x" in bad_number.stderr


def test_get_writes_the_instances(qrscp: QrScp, tmp_path: Path) -> None:
    server = qrscp()
    result = run_cli(
        "get", "127.0.0.1", server.port, "-S", "--output", tmp_path / "got",
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"SeriesInstanceUID={ENTRIES[0].series_uid}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 completed, 0 failed" in result.stderr
    stored = sorted(dcmread(path).SOPInstanceUID for path in (tmp_path / "got").rglob("*.dcm"))
    assert stored == sorted([ENTRIES[0].sop_uid, ENTRIES[1].sop_uid])


def test_move_to_the_commands_own_storage_scp(qrscp: QrScp, tmp_path: Path) -> None:
    store_port = free_port()
    config = tmp_path / "qrscp.toml"
    config.write_text(f'[destinations]\nMOVESCU = {{host = "127.0.0.1", port = {store_port}}}\n')
    server = qrscp("--config", config)
    result = run_cli(
        "move", "127.0.0.1", server.port, "-aem", "MOVESCU", "--store-port", store_port,
        "--output", tmp_path / "moved", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stored = sorted(dcmread(path).SOPInstanceUID for path in (tmp_path / "moved").rglob("*.dcm"))
    assert stored == sorted([ENTRIES[4].sop_uid, ENTRIES[5].sop_uid])
    unknown = run_cli(
        "move", "127.0.0.1", server.port, "-aem", "ELSEWHERE",
        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P2",
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "0xA801" in unknown.stderr


def test_stored_instances_are_found_at_once_and_after_a_restart(
    qrscp: QrScp, tmp_path: Path
) -> None:
    server = qrscp()
    new = small_dataset()
    new.PatientID = "NEW-1"
    path = write_part10(new, tmp_path / "new.dcm")
    stored = run_cli("store", "127.0.0.1", server.port, path)
    assert stored.returncode == 0, stored.stderr
    find = ("find", "127.0.0.1", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=NEW-1")
    assert run_cli(*find[:2], server.port, *find[2:]).stdout.count("# match") == 1
    server.stop()
    again = qrscp()
    # Only the stored file is new to this process; the index file kept the rest.
    assert f"serving {len(ENTRIES) + 1} instances (0 newly indexed)" in again.text()
    assert run_cli(*find[:2], again.port, *find[2:]).stdout.count("# match") == 1


def test_a_bad_config_names_the_key_and_line(qrscp: QrScp, tmp_path: Path) -> None:
    config = tmp_path / "qrscp.toml"
    config.write_text('[destinations]\nA = {host = "h", port = 1}\nB = {host = "h", port = 0}\n')
    result = run_cli("qrscp", "0", "--storage", tmp_path / "store", "--config", config)
    assert result.returncode == 2
    assert "line 3" in result.stderr and "destinations.B.port" in result.stderr


def test_qrscp_refuses_a_storage_folder_it_cannot_write(tmp_path: Path) -> None:
    """Before, with its index elsewhere, it started and answered every C-STORE with 0xA700."""
    with immutable(tmp_path / "store") as storage:
        result = run_cli("qrscp", "0", "--storage", storage, "--index", tmp_path / "index.sqlite")
    assert result.returncode == ExitCode.LOCAL_ERROR
    assert f"--storage {storage} is not writable" in result.stderr


def test_qrscp_removes_what_a_killed_run_left_at_start(qrscp: QrScp, tmp_path: Path) -> None:
    incoming = tmp_path / "store" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "tmpq1w2e3.part").write_bytes(b"half an instance")
    qrscp()
    assert list(incoming.iterdir()) == []
