"""The storage SCP's C-STORE handler, in process: spooled datasets, bad UIDs, full disks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, config, evt
from dicombus.cli import storescp
from dicombus.cli.main import build_parser
from dicombus.dataset_codec import encode_dataset
from dicombus.protocol import status
from dicombus.storage_files import Layout
from helpers import CT_IMAGE_STORAGE, part10_dataset_bytes, small_dataset
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

Send = Callable[[Dataset], int]


@pytest.fixture
def send_to_scp(tmp_path: Path) -> Iterator[Callable[[Path], Send]]:
    """``send_to_scp(root)(dataset)``: C-STORE ``dataset`` to the CLI's storage SCP (as
    ``dicombus storescp`` configures it) storing under ``root``; returns the status."""
    servers: list[Any] = []
    associations: list[Any] = []

    def start(root: Path) -> Send:
        args = build_parser().parse_args(["storescp", "0", "--output", str(root)])
        ae = storescp.storage_ae(args)
        handlers: list[evt.HandlerBinding] = [
            (evt.EVT_C_STORE, storescp.handle_store, [root, Layout.SOP_CLASS])
        ]
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        servers.append(server)
        scu = AE("SCU")
        scu.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", server.server_address[1])
        assert assoc.is_established
        associations.append(assoc)

        def send(dataset: Dataset) -> int:
            return int(assoc.send_c_store(dataset).Status)

        return send

    yield start
    for assoc in associations:
        assoc.release()
    for server in servers:
        server.shutdown()


def _stored(root: Path, ds: Dataset) -> Path:
    return root / CT_IMAGE_STORAGE / f"{ds.SOPInstanceUID}.dcm"


def test_in_memory_dataset_is_stored_byte_for_byte(
    send_to_scp: Callable[[Path], Send], tmp_path: Path
) -> None:
    ds = small_dataset()
    assert send_to_scp(tmp_path)(ds) == status.SUCCESS
    assert part10_dataset_bytes(_stored(tmp_path, ds)) == encode_dataset(
        ds, ExplicitVRLittleEndian
    )


def test_spooled_dataset_is_copied_from_its_spool_file(
    send_to_scp: Callable[[Path], Send], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "STORE_RECV_CHUNKED_DATASET", True)
    sources: list[type] = []
    real_write = storescp.write_instance

    def spy(root: Path, **kwargs: Any) -> Path:
        sources.append(type(kwargs["dataset_bytes"]))
        return real_write(root, **kwargs)

    monkeypatch.setattr(storescp, "write_instance", spy)
    ds = small_dataset()
    assert send_to_scp(tmp_path)(ds) == status.SUCCESS
    assert sources and all(issubclass(source, Path) for source in sources)
    assert part10_dataset_bytes(_stored(tmp_path, ds)) == encode_dataset(
        ds, ExplicitVRLittleEndian
    )


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_invalid_instance_uid_is_refused_with_0117(
    send_to_scp: Callable[[Path], Send], tmp_path: Path
) -> None:
    ds = small_dataset()
    ds.SOPInstanceUID = "1.02.3"
    assert send_to_scp(tmp_path)(ds) == status.INVALID_OBJECT_INSTANCE
    assert list(tmp_path.rglob("*.dcm")) == []


def test_unwritable_storage_answers_out_of_resources(
    send_to_scp: Callable[[Path], Send], tmp_path: Path
) -> None:
    root = tmp_path / "file-not-folder"
    root.write_text("in the way")
    assert send_to_scp(root)(small_dataset()) == status.OUT_OF_RESOURCES
