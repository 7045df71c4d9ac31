"""SpoolingDatasetSink: memory below the threshold, a temp file above it, refused past its
cap; and the association that removes the spool file of a dataset cut off halfway."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, config, evt
from dicombus.protocol.commands import c_store_rq, encode_command_set
from dicombus.protocol.errors import RemoteProtocolError
from dicombus.protocol.pdus import AAbort
from dicombus.runtime.spool import SpoolingDatasetSink
from helpers import CT_IMAGE_STORAGE
from pydicom.uid import ExplicitVRLittleEndian
from raw_peers import RawConnection, associate_rq, p_data, wait_idle, wait_until

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


# Run under ``python -O`` too: the sink's invariants are checks, not asserts.
_CLOSED_SINK = """
from dicombus.runtime.spool import SpoolingDatasetSink
sink = SpoolingDatasetSink(threshold=0, spool_dir={spool_dir!r})
sink.write(memoryview(b"abc"))
sink.close()
for use in (lambda: sink.write(memoryview(b"d")), sink.path, sink.getvalue):
    try:
        use()
    except ValueError as exc:
        assert str(exc) == "the data set sink is closed", exc
    else:
        raise SystemExit("a closed sink was used without an error")
print("ok")
"""


@pytest.mark.parametrize("flags", [[], ["-O"]], ids=["plain", "optimized"])
def test_a_closed_sink_refuses_use_with_a_clear_error(spool_dir: Path, flags: list[str]) -> None:
    """Writing to or reading a closed sink raised AssertionError, and under ``python -O``
    an AttributeError on None; it is a ValueError that says what is wrong."""
    done = subprocess.run(
        [sys.executable, *flags, "-c", _CLOSED_SINK.format(spool_dir=str(spool_dir))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
    assert spooled_files(spool_dir) == []


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


@pytest.mark.parametrize("threshold", [0, 1024, 1 << 30])
@pytest.mark.parametrize("fragments", [0, 1, 7])
def test_prefixed_is_the_prefix_then_the_data_set(
    spool_dir: Path, threshold: int, fragments: int
) -> None:
    sink = SpoolingDatasetSink(threshold=threshold, spool_dir=spool_dir)
    data = write_chunks(sink, fragments)
    assert sink.prefixed(b"DICM") == b"DICM" + data
    assert sink.prefixed(b"") == data
    assert sink.prefixed(b"") == data  # asking again gives the same bytes
    sink.close()


def test_an_unprefixed_data_set_of_one_fragment_is_not_copied(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(spool_dir=spool_dir)
    sink.write(memoryview(b"\x08\x00\x16\x00" * 512))
    assert sink.prefixed(b"") is sink.prefixed(b"")
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


def test_a_write_past_the_cap_is_refused_for_an_abort(spool_dir: Path) -> None:
    sink = SpoolingDatasetSink(threshold=0, spool_dir=spool_dir, max_size=3 * len(CHUNK))
    write_chunks(sink, 3)
    with pytest.raises(RemoteProtocolError, match="exceeds the 3072-byte limit"):
        write_chunks(sink, 1)
    assert sink.size == 3 * len(CHUNK)
    sink.close()
    assert spooled_files(spool_dir) == []


@pytest.mark.parametrize("ending", ["a-abort", "closed connection"])
def test_an_association_that_ends_mid_dataset_removes_its_spool_file(
    serve: Callable[..., Any],
    spool_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    """The assembler held the sink of the C-STORE under way; the association replaced it
    without closing it, and every aborted large C-STORE left its spool file."""
    monkeypatch.setattr(config, "STORE_RECV_CHUNKED_DATASET", True)
    monkeypatch.setattr(config, "STORE_SPOOL_DIRECTORY", str(spool_dir))
    ae = AE("STORESCP")
    ae.add_supported_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    server = serve(ae, [(evt.EVT_C_STORE, lambda event: 0x0000)])
    command = encode_command_set(c_store_rq(1, CT_IMAGE_STORAGE, "1.2.3.4"))
    with RawConnection.connect(server.server_address[1]) as connection:
        reply = connection.associate(
            associate_rq(
                called="STORESCP",
                abstract_syntax=CT_IMAGE_STORAGE,
                transfer_syntax=str(ExplicitVRLittleEndian),
            )
        )
        assert reply[0] == 0x02, "not an A-ASSOCIATE-AC"
        connection.send(p_data(is_command=True, is_last=True, data=command))
        connection.send(p_data(is_command=False, is_last=False, data=CHUNK))
        assert wait_until(lambda: spooled_files(spool_dir) != []), "the dataset never spooled"
        if ending == "a-abort":
            connection.send(AAbort(source=0, reason=0).encode())
    wait_idle(server)
    assert spooled_files(spool_dir) == []
