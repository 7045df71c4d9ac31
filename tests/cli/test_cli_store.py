"""``dicombus store`` to ``dicombus storescp``, both as subprocesses on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from cli_helpers import RunningServer, run_cli
from dicombus.cli.common import ExitCode
from dicombus.dataset_codec import read_part10_header
from helpers import (
    free_port,
    part10_dataset_bytes,
    small_dataset,
    write_part10,
)
from pydicom import dcmread
from pydicom.uid import (
    UID,
)

PRIVATE_SOP_CLASS = UID("1.2.826.0.1.3680043.8.498.1.99")


def _stored_path(output: Path, original: Path) -> Path:
    """Where storescp's default layout (study) puts ``original``."""
    ds = dcmread(original, stop_before_pixels=True)
    return output / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def test_store_a_folder_tree_byte_for_byte(
    storescp: Callable[..., RunningServer], folder: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    server = storescp()
    root, files = folder
    result = run_cli("store", "127.0.0.1", server.port, "-aec", "STORESCP", root)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.startswith("sent 5, failed 0, skipped 1: ")
    assert "MB/s" in result.stdout
    assert "skipped" in result.stderr and "notes.txt" in result.stderr
    output = tmp_path / "out"
    assert len(list(output.rglob("*.dcm"))) == len(files)
    for original in files:
        stored = _stored_path(output, original)
        assert dcmread(stored).SOPInstanceUID == dcmread(original).SOPInstanceUID
        # The peer got the dataset as it lies on disk, and stored it unchanged.
        assert part10_dataset_bytes(stored) == part10_dataset_bytes(original)
        assert (
            read_part10_header(stored).transfer_syntax
            == read_part10_header(original).transfer_syntax
        )
    # No temporary file left: .incoming (where they are written) is the only hidden entry.
    hidden = [path for path in output.rglob("*") if path.name.startswith(".")]
    assert hidden == [output / ".incoming"]
    assert list(hidden[0].iterdir()) == []


def test_store_single_files_and_a_missing_one(
    storescp: Callable[..., RunningServer], folder: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    server = storescp()
    _root, files = folder
    missing = tmp_path / "nowhere.dcm"
    result = run_cli("store", "127.0.0.1", server.port, files[0], files[3], missing)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.startswith("sent 2, failed 0, skipped 1: ")
    assert f"skipped {missing}: no such file or folder" in result.stderr


def test_store_only_non_dicom_files_is_an_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = run_cli("store", "127.0.0.1", free_port(), text)
    assert result.returncode == ExitCode.FAILED
    assert "no DICOM files to send" in result.stderr


def test_store_connection_refused_fails_every_file(folder: tuple[Path, list[Path]]) -> None:
    root, files = folder
    result = run_cli("store", "127.0.0.1", free_port(), root)
    assert result.returncode == ExitCode.NO_ASSOCIATION
    assert result.stdout.startswith(f"sent 0, failed {len(files)}, skipped 1: ")
    assert "Connection refused" in result.stderr


def test_store_reports_out_of_resources_when_the_scp_cannot_write(
    storescp: Callable[..., RunningServer], folder: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """The output folder turns into a file after the SCP started: every write fails, the
    SCP answers 0xA700 (out of resources) and keeps running."""
    server = storescp()
    output = tmp_path / "out"
    shutil.rmtree(output)
    output.write_text("in the way")
    _root, files = folder
    result = run_cli("store", "127.0.0.1", server.port, files[0], files[1])
    assert result.returncode == ExitCode.FAILED
    assert result.stdout.startswith("sent 0, failed 2, skipped 0: ")
    assert result.stderr.count("status 0xA700 (Failure)") == 2
    assert server.process.poll() is None
    server.stop()
    assert "cannot store an instance" in server.text()


def test_store_private_sop_class_needs_accept_all_storage(
    storescp: Callable[..., RunningServer], tmp_path: Path
) -> None:
    private = write_part10(small_dataset(PRIVATE_SOP_CLASS), tmp_path / "private.dcm")
    refused = run_cli("store", "127.0.0.1", storescp().port, private)
    assert refused.returncode != ExitCode.OK
    promiscuous = storescp("--accept-all-storage")
    result = run_cli("store", "127.0.0.1", promiscuous.port, private)
    assert result.returncode == ExitCode.OK, result.stderr
    stored = _stored_path(tmp_path / "out", private)
    assert part10_dataset_bytes(stored) == part10_dataset_bytes(private)
