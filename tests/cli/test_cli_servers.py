"""``dicombus storescp`` and ``dicombus up`` as processes: start, serve, stop on a signal.

Every test starts a few ``dicombus`` processes (about 0.4 s each to start).
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import STOP_TIMEOUT, RunningServer, run_cli
from dicombus import AE
from dicombus.cli.common import ExitCode
from dicombus.sop_class import Verification
from helpers import immutable, part10_dataset_bytes, small_dataset, write_part10


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_storescp_stops_cleanly_on_a_signal(
    storescp: Callable[..., RunningServer], sig: signal.Signals
) -> None:
    server = storescp()
    assert run_cli("echo", "127.0.0.1", server.port).returncode == ExitCode.OK
    assert server.stop(sig) < STOP_TIMEOUT
    assert server.process.returncode == ExitCode.OK
    assert f"{sig.name} received, stopped" in server.text()
    assert "Traceback" not in server.text()


def test_storescp_stops_with_an_association_open(storescp: Callable[..., RunningServer]) -> None:
    """An association the peer never releases does not hold the server up: it is aborted."""
    server = storescp()
    ae = AE("LINGER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="STORESCP")
    assert assoc.is_established
    try:
        assert server.stop() < STOP_TIMEOUT
        assert server.process.returncode == ExitCode.OK
        assoc.join(STOP_TIMEOUT)
        assert assoc.is_aborted
    finally:
        assoc.abort()


def test_storescp_port_in_use_is_a_local_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("storescp", taken.getsockname()[1], "--output", tmp_path)
    assert result.returncode == ExitCode.LOCAL_ERROR
    assert "cannot listen on 127.0.0.1:" in result.stderr


def test_storescp_refuses_an_output_folder_it_cannot_write(tmp_path: Path) -> None:
    """Before, it started, and then answered every C-STORE with 0xA700."""
    with immutable(tmp_path / "out") as output:
        result = run_cli("storescp", 0, "--output", output)
    assert result.returncode == ExitCode.LOCAL_ERROR
    assert f"--output {output} is not writable" in result.stderr


def test_storescp_removes_what_a_killed_run_left_at_start(
    storescp: Callable[..., RunningServer], tmp_path: Path
) -> None:
    incoming = tmp_path / "out" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "tmpq1w2e3.part").write_bytes(b"half an instance")
    storescp()
    assert list(incoming.iterdir()) == []


def test_storescp_flat_layout(storescp: Callable[..., RunningServer], tmp_path: Path) -> None:
    ds = small_dataset()
    original = write_part10(ds, tmp_path / "one.dcm")
    server = storescp("--layout", "flat")
    assert run_cli("store", "127.0.0.1", server.port, original).returncode == ExitCode.OK
    stored = tmp_path / "out" / f"{ds.SOPInstanceUID}.dcm"
    assert part10_dataset_bytes(stored) == part10_dataset_bytes(original)


def test_up_serves_storage_and_stops_cleanly_on_sigint(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    data = tmp_path / "node"
    server = start_server("up", "--port", 0, "--data", data)
    banner = server.read_until("Press Ctrl-C to stop.")
    storage = data / "storage"
    assert "AE title:  DICOMBUS" in banner
    assert f"address:   127.0.0.1:{server.port}" in banner
    assert f"storage:   {storage.resolve()}" in banner
    assert storage.is_dir()
    ds = small_dataset()
    original = write_part10(ds, tmp_path / "one.dcm")
    assert run_cli("echo", "127.0.0.1", server.port, "-aec", "DICOMBUS").returncode == 0
    assert run_cli("store", "127.0.0.1", server.port, original).returncode == 0
    assert [path.name for path in storage.rglob("*.dcm")] == [f"{ds.SOPInstanceUID}.dcm"]
    assert server.stop(signal.SIGINT) < STOP_TIMEOUT
    assert server.process.returncode == ExitCode.OK
    assert "SIGINT received, stopped" in server.text()


def test_up_with_its_own_title_stops_on_sigterm(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = start_server("up", "--port", 0, "--data", tmp_path, "-aet", "EDGE1")
    assert "AE title:  EDGE1" in server.read_until("Press Ctrl-C")
    assert server.stop(signal.SIGTERM) < STOP_TIMEOUT
    assert server.process.returncode == ExitCode.OK
    assert "SIGTERM received, stopped" in server.text()
