"""The CLI against DCMTK's tools (the real peers): ``dicombus store`` to DCMTK storescp,
DCMTK echoscu and storescu to ``dicombus storescp``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import COMMAND_TIMEOUT, STOP_TIMEOUT, RunningServer, run_cli
from dicombus.cli.common import ExitCode
from helpers import free_port, part10_dataset_bytes, wait_for_port
from pydicom import dcmread

pytestmark = pytest.mark.interop


def _by_instance_uid(folder: Path) -> dict[str, Path]:
    return {str(dcmread(path).SOPInstanceUID): path for path in folder.rglob("*") if path.is_file()}


@pytest.fixture
def dcmtk_storescp(require_tool: Callable[[str], str], tmp_path: Path) -> Iterator[int]:
    """DCMTK storescp titled DCMTKSCP, accepting every transfer syntax it knows and writing
    datasets bit for bit (+B) into tmp_path/dcmtk; yields its port."""
    output = tmp_path / "dcmtk"
    output.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [require_tool("storescp"), "+xa", "+B", "-aet", "DCMTKSCP", "-od", str(output), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(STOP_TIMEOUT)


def test_dicombus_store_to_dcmtk_storescp(
    dcmtk_storescp: int, folder: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    root, files = folder
    result = run_cli("store", "127.0.0.1", dcmtk_storescp, "-aec", "DCMTKSCP", root)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.startswith(f"sent {len(files)}, failed 0, skipped 1: ")
    stored = _by_instance_uid(tmp_path / "dcmtk")
    for original in files:
        copy = stored[str(dcmread(original).SOPInstanceUID)]
        assert part10_dataset_bytes(copy) == part10_dataset_bytes(original)


def test_dcmtk_echoscu_and_storescu_to_dicombus_storescp(
    require_tool: Callable[[str], str],
    storescp: Callable[..., RunningServer],
    folder: tuple[Path, list[Path]],
    tmp_path: Path,
) -> None:
    server = storescp()
    peer = ["-aec", "STORESCP", "127.0.0.1", str(server.port)]
    echo = subprocess.run(
        [require_tool("echoscu"), *peer], capture_output=True, timeout=COMMAND_TIMEOUT
    )
    assert echo.returncode == 0, echo.stderr
    _root, files = folder
    explicit_ct = files[3]  # CT_small.dcm: storescu proposes its transfer syntax as is
    store = subprocess.run(
        [require_tool("storescu"), *peer, str(explicit_ct)],
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert store.returncode == 0, store.stderr
    original = dcmread(explicit_ct)
    copy = dcmread(_by_instance_uid(tmp_path / "out")[str(original.SOPInstanceUID)])
    # storescu re-encodes what it reads and drops the file's Data Set Trailing
    # Padding, so the copy matches element by element, not byte for byte.
    del original[0xFFFCFFFC]
    assert copy == original
