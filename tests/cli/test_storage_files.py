"""dicombus.storage_files: UID checks and the durable Part 10 write."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from dicombus import storage_files
from dicombus.dataset_codec import create_file_meta, encode_part10_header, read_part10_header
from dicombus.storage_files import InvalidUIDError, Layout, check_uid, write_instance
from helpers import CT_IMAGE_STORAGE, part10_dataset_bytes, small_dataset, write_part10
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

INSTANCE = "1.2.826.0.1.3680043.8.498.1"
# pydicom warns when file meta holds an invalid UID; these tests make some on purpose.
INVALID_UI_WARNING = "ignore:Invalid value for VR UI"


def _meta(instance: str = INSTANCE, sop_class: str = CT_IMAGE_STORAGE) -> FileMetaDataset:
    return create_file_meta(
        sop_class_uid=sop_class, sop_instance_uid=instance, transfer_syntax=ExplicitVRLittleEndian
    )


@pytest.fixture
def encoded(tmp_path: Path) -> tuple[FileMetaDataset, bytes]:
    """The file meta and the Explicit VR Little Endian dataset bytes of a small image."""
    ds = small_dataset(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    path = write_part10(ds, tmp_path / "source.dcm")
    return _meta(ds.SOPInstanceUID), part10_dataset_bytes(path)


def _everything_under(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*"))


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "1.2.a",
        "",
        "1" * 65,
        "1.02.3",  # PS3.5 9.1: no leading zero in a component
        "1..2",
        ".1",
        "1.",
        "1.2/3",
        "1.2\x00",
        " 1.2",
        None,
        b"1.2",
    ],
)
def test_check_uid_refuses(bad: Any) -> None:
    with pytest.raises(InvalidUIDError, match="SOP Instance UID"):
        check_uid(bad, "SOP Instance UID")


@pytest.mark.parametrize("good", ["0", "1.2.840.10008.1.1", "1.0.3", "1." + "2" * 62])
def test_check_uid_accepts(good: str) -> None:
    assert check_uid(good, "UID") == good


@pytest.mark.filterwarnings(INVALID_UI_WARNING)
def test_invalid_instance_uid_touches_nothing(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    with pytest.raises(InvalidUIDError):
        write_instance(root, file_meta=_meta("../../etc/passwd"), dataset_bytes=encoded[1])
    assert _everything_under(root) == []


@pytest.mark.filterwarnings(INVALID_UI_WARNING)
def test_invalid_sop_class_uid_is_refused_in_the_sop_class_layout(tmp_path: Path) -> None:
    with pytest.raises(InvalidUIDError, match="SOP Class"):
        write_instance(tmp_path, file_meta=_meta(sop_class="1.2.x"), dataset_bytes=b"")


@pytest.mark.parametrize("as_type", [bytes, memoryview])
def test_write_instance_stores_a_valid_part10_file_and_no_temp_file(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], as_type: type
) -> None:
    meta, dataset = encoded
    root = tmp_path / "store"
    path = write_instance(root, file_meta=meta, dataset_bytes=as_type(dataset))
    assert path == root / CT_IMAGE_STORAGE / f"{meta.MediaStorageSOPInstanceUID}.dcm"
    assert _everything_under(root) == [
        Path(CT_IMAGE_STORAGE),
        Path(CT_IMAGE_STORAGE, path.name),
    ]
    assert path.read_bytes() == encode_part10_header(meta) + dataset
    assert dcmread(path).SOPInstanceUID == meta.MediaStorageSOPInstanceUID


def test_flat_layout(tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]) -> None:
    meta, dataset = encoded
    path = write_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT)
    assert path == tmp_path / f"{meta.MediaStorageSOPInstanceUID}.dcm"


def test_a_second_copy_replaces_the_first(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    meta, dataset = encoded
    root = tmp_path / "store"
    write_instance(root, file_meta=meta, dataset_bytes=b"\x00" * 8, layout=Layout.FLAT)
    path = write_instance(root, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT)
    assert _everything_under(root) == [Path(path.name)]
    assert part10_dataset_bytes(path) == dataset


def test_dataset_from_a_spool_file_is_copied_byte_for_byte(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    meta, dataset = encoded
    spool = tmp_path / "spool.bin"
    spool.write_bytes(dataset)
    path = write_instance(tmp_path / "store", file_meta=meta, dataset_bytes=spool)
    assert part10_dataset_bytes(path) == dataset
    assert read_part10_header(path).sop_instance_uid == meta.MediaStorageSOPInstanceUID


def test_copy_falls_back_when_the_kernel_copy_refuses_midway(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_file_range copies one chunk, then fails with EXDEV: the plain copy goes on."""
    meta, dataset = encoded
    spool = tmp_path / "spool.bin"
    spool.write_bytes(dataset)
    real_copy = os.copy_file_range
    calls: list[int] = []

    def copy_once(source: int, target: int, count: int, *args: Any) -> int:
        calls.append(count)
        if len(calls) > 1:
            raise OSError(errno.EXDEV, "cross-device")
        return real_copy(source, target, count, *args)

    monkeypatch.setattr(storage_files, "_COPY_CHUNK", 100)
    monkeypatch.setattr(os, "copy_file_range", copy_once)
    path = write_instance(tmp_path / "store", file_meta=meta, dataset_bytes=spool)
    assert len(calls) == 2
    assert part10_dataset_bytes(path) == dataset


def test_a_failed_write_leaves_no_temp_file(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(_descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    root = tmp_path / "store"
    with pytest.raises(OSError, match="No space left"):
        write_instance(root, file_meta=encoded[0], dataset_bytes=encoded[1], layout=Layout.FLAT)
    assert list(root.iterdir()) == []


def test_a_root_that_is_a_file_raises_oserror(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    root = tmp_path / "not-a-folder"
    root.write_text("a file")
    with pytest.raises(OSError):
        write_instance(root, file_meta=encoded[0], dataset_bytes=encoded[1])
