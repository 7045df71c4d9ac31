"""The edge node's storage: its layout, its start-up checks and sweep, spooled datasets cut
off by an abort, and the cap on a C-STORE data set.

Real edges (publishing off: these are about the disk) on 127.0.0.1, fed by dicombus's
SCU, or by a raw connection where a C-STORE must stop halfway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, config
from dicombus.bus.edge import EdgeNode
from dicombus.bus.edge_config import EdgeConfig
from dicombus.protocol.commands import c_store_rq, encode_command_set
from dicombus.protocol.pdus import AAbort
from dicombus.storage_files import StorageRootError
from helpers import CT_IMAGE_STORAGE, ct_dataset, immutable, import_peer, small_dataset
from pydicom.uid import ExplicitVRLittleEndian
from raw_peers import RawConnection, associate_rq, p_data, wait_idle, wait_until

WAIT = 5.0
EXPLICIT = str(ExplicitVRLittleEndian)


@contextlib.contextmanager
def edge(folder: Path, **settings: Any) -> Iterator[EdgeNode]:
    """An edge node titled EDGE on a free loopback port, publishing nothing."""
    node = EdgeNode(
        EdgeConfig(
            ae_title="EDGE",
            port=0,
            data_dir=folder,
            bus_enabled=False,
            acse_timeout=WAIT,
            dimse_timeout=WAIT,
            network_timeout=WAIT,
            **settings,
        )
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _dcm_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


def test_the_edge_files_instances_by_study_and_series(tmp_path: Path) -> None:
    ds = small_dataset()
    with edge(tmp_path) as node:
        scu = AE("MODALITY")
        scu.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", node.address[1], ae_title="EDGE")
        assert assoc.send_c_store(ds).Status == 0
        assoc.release()
    storage = tmp_path / "storage"
    assert _dcm_files(storage) == [
        storage / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    ]


def test_the_edge_sweeps_what_a_killed_node_left_at_start(tmp_path: Path) -> None:
    incoming = tmp_path / "storage" / ".incoming"
    incoming.mkdir(parents=True)
    leftovers = [incoming / "tmp8k2j1x.part", incoming / "dicombus-q0w9e8.dcm"]
    for leftover in leftovers:
        leftover.write_bytes(b"PHI, half written")
    with edge(tmp_path):
        assert [path for path in leftovers if path.exists()] == []


def test_a_c_store_cut_off_by_an_abort_leaves_no_spool_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataset spools into the storage root's .incoming folder as it arrives (where
    the start-up sweep finds it), and an A-ABORT halfway removes it."""
    monkeypatch.setattr(config, "STORE_RECV_CHUNKED_DATASET", True)  # spool from byte one
    incoming = tmp_path / "storage" / ".incoming"
    ds = small_dataset()
    command = encode_command_set(c_store_rq(1, CT_IMAGE_STORAGE, ds.SOPInstanceUID))
    with edge(tmp_path) as node, RawConnection.connect(node.address[1], WAIT) as connection:
        reply = connection.associate(
            associate_rq(called="EDGE", abstract_syntax=CT_IMAGE_STORAGE, transfer_syntax=EXPLICIT)
        )
        assert reply[0] == 0x02, "not an A-ASSOCIATE-AC"
        connection.send(p_data(is_command=True, is_last=True, data=command))
        connection.send(p_data(is_command=False, is_last=False, data=b"\x08\x00" * 64))
        assert wait_until(lambda: any(incoming.iterdir()), WAIT), "nothing spooled in .incoming"
        connection.send(AAbort(source=0, reason=0).encode())
        assert node.server is not None
        wait_idle(node.server)
        assert list(incoming.iterdir()) == []


def test_a_data_set_over_the_cap_aborts_the_association_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom sends 512 KiB of pixel data to an edge capped at 64 KiB: A-ABORT, and
    neither the instance nor its spool file is left on disk."""
    pynetdicom = import_peer("pynetdicom")
    monkeypatch.setattr(config, "STORE_RECV_CHUNKED_DATASET", True)  # on disk as it arrives
    with edge(tmp_path, max_dataset_size=64 * 1024) as node:
        scu = pynetdicom.AE(ae_title="MODALITY")
        scu.acse_timeout = scu.dimse_timeout = scu.network_timeout = WAIT
        scu.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", node.address[1], ae_title="EDGE")
        assert assoc.is_established
        small = small_dataset()
        assert assoc.send_c_store(small).Status == 0  # under the cap: stored
        reply = assoc.send_c_store(ct_dataset())
        assert "Status" not in reply  # no response: aborted
        assert wait_until(lambda: assoc.is_aborted, WAIT)
        assert node.server is not None
        wait_idle(node.server)
    storage = tmp_path / "storage"
    assert [path.name for path in _dcm_files(storage)] == [f"{small.SOPInstanceUID}.dcm"]
    assert list((storage / ".incoming").iterdir()) == []


def test_an_unwritable_storage_root_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    with (
        immutable(tmp_path / "storage") as root,
        pytest.raises(StorageRootError) as raised,
        edge(tmp_path, storage_root=root),
    ):
        pass
    assert str(raised.value).startswith(f"[storage] root {root} is not writable")


def test_a_storage_root_under_a_file_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    """Not creatable at all: a regular file where a folder of its path should be."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with (
        pytest.raises(StorageRootError, match=r"^\[storage\] root .*blocker/storage is not"),
        edge(tmp_path, storage_root=blocker / "storage"),
    ):
        pass
