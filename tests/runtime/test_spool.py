"""SpoolingDatasetSink: memory below the threshold, a temp file above it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dicombus.runtime.spool import SpoolingDatasetSink

CHUNK = bytes(range(256)) * 4  # 1 KiB


def write_chunks(sink: SpoolingDatasetSink, count: int) -> bytes:
    """Write ``count`` 1 KiB fragments, as the assembler would; return what was written."""
    for _ in range(count):
        sink.write(memoryview(CHUNK))
    return CHUNK * count


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


def spooled_files(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.iterdir())


def test_below_and_at_the_threshold_stays_in_memory(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(threshold=4 * len(CHUNK), spool_dir=spool_dir)
    data = write_chunks(sink, 4)
    assert sink.in_memory
    assert sink.size == len(data)
    assert sink.getvalue() == data
    view = sink.view()
    assert view is not None and bytes(view) == data
    assert spooled_files(spool_dir) == []
    sink.close()


def test_above_the_threshold_spills_and_later_fragments_go_to_disk(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(threshold=4 * len(CHUNK), spool_dir=spool_dir)
    data = write_chunks(sink, 5)
    assert not sink.in_memory
    assert sink.view() is None
    data += write_chunks(sink, 3)
    assert sink.size == len(data)
    assert sink.getvalue() == data
    path = sink.path()
    assert path.parent == spool_dir and path.name.startswith("dicombus-")
    assert path.read_bytes() == data
    assert spooled_files(spool_dir) == [path]
    sink.close()


def test_threshold_zero_spills_the_first_fragment(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(threshold=0, spool_dir=spool_dir)
    sink.write(memoryview(b"\x08\x00"))
    assert not sink.in_memory
    assert sink.path().read_bytes() == b"\x08\x00"
    sink.close()


def test_path_of_an_in_memory_dataset_writes_it_out(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(spool_dir=spool_dir)
    data = write_chunks(sink, 2)
    assert sink.in_memory
    path = sink.path()
    assert path.read_bytes() == data
    assert not sink.in_memory
    assert sink.path() == path  # asking again neither copies nor moves it
    # A fragment after the spill lands in the same file.
    data += write_chunks(sink, 1)
    assert sink.getvalue() == data == path.read_bytes()
    sink.close()


def test_path_of_an_empty_dataset_is_an_empty_file(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(threshold=0, spool_dir=spool_dir)
    assert sink.path().read_bytes() == b""
    sink.close()
    assert spooled_files(spool_dir) == []


@pytest.mark.parametrize("threshold", [0, 1024, 1 << 30])
def test_getvalue_is_identical_in_memory_and_on_disk(spool_dir: Path, threshold: int) -> None:
    sink = SpoolingDatasetSink(threshold=threshold, spool_dir=spool_dir)
    data = write_chunks(sink, 7)
    assert sink.getvalue() == data
    assert sink.getvalue() == data  # reading does not consume or move the write position
    data += write_chunks(sink, 1)
    assert sink.getvalue() == data
    sink.close()


def test_close_removes_the_spool_file_and_is_idempotent(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(threshold=0, spool_dir=spool_dir)
    write_chunks(sink, 3)
    path = sink.path()
    sink.close()
    assert not path.exists()
    assert spooled_files(spool_dir) == []
    sink.close()


def test_close_of_an_in_memory_dataset_frees_it(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(spool_dir=spool_dir)
    write_chunks(sink, 1)
    sink.close()
    assert sink.view() is None
    assert spooled_files(spool_dir) == []


def test_a_file_moved_away_by_the_handler_survives_close(spool_dir: Path, tmp_path: Path) -> None:
    """A handler that keeps the instance moves event.dataset_path to its storage."""
    sink = SpoolingDatasetSink(threshold=0, spool_dir=spool_dir)
    data = write_chunks(sink, 4)
    stored = tmp_path / "storage" / "instance.dcm"
    stored.parent.mkdir()
    shutil.move(sink.path(), stored)
    # The dataset is still readable after the move (a handler may decode it afterwards).
    assert sink.getvalue() == data
    sink.close()
    assert stored.read_bytes() == data
    assert spooled_files(spool_dir) == []


def test_default_spool_dir_is_the_system_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    sink = SpoolingDatasetSink(threshold=0)
    write_chunks(sink, 1)
    assert sink.path().parent == tmp_path
    sink.close()
