"""Fixtures of the command-line tests: ``dicombus`` servers as subprocesses."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import RunningServer
from helpers import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    small_dataset,
    write_part10,
)
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """``start_server("storescp", "0", "--output", dir)``: a running server, killed if a test
    leaves it running."""
    servers: list[RunningServer] = []

    def start(*args: object) -> RunningServer:
        server = RunningServer([str(arg) for arg in args])
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def storescp(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> Callable[..., RunningServer]:
    """``storescp(*options)``: ``dicombus storescp`` on a free port storing in tmp_path/out."""

    def start(*options: object) -> RunningServer:
        return start_server("storescp", 0, "--output", tmp_path / "out", *options)

    return start


def _testdata(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, f"pydicom ships {name}"
    return Path(found)


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A folder tree of DICOM files (three SOP classes, four transfer syntaxes) and a text file."""
    root = tmp_path / "send"
    (root / "series" / "deep").mkdir(parents=True)
    files = [
        write_part10(small_dataset(CT_IMAGE_STORAGE, ExplicitVRLittleEndian), root / "a.dcm"),
        write_part10(
            small_dataset(MR_IMAGE_STORAGE, ImplicitVRLittleEndian), root / "series" / "b.dcm"
        ),
        write_part10(
            small_dataset(SECONDARY_CAPTURE_IMAGE_STORAGE, DeflatedExplicitVRLittleEndian),
            root / "series" / "deep" / "c.dcm",
        ),
        Path(shutil.copy(_testdata("CT_small.dcm"), root / "ct_small.dcm")),
        Path(shutil.copy(_testdata("SC_rgb_rle.dcm"), root / "series" / "rle.dcm")),
    ]
    (root / "series" / "notes.txt").write_text("not DICOM\n")
    return root, files
