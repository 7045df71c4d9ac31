"""dicombus.storage_files: UID checks, layouts, duplicates, modes and the durable Part 10 write."""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from dicombus import storage_files
from dicombus.dataset_codec import (
    InstanceMeta,
    create_file_meta,
    decode_dataset,
    encode_dataset,
    encode_part10_header,
    read_part10_header,
)
from dicombus.instance_uids import InstanceUIDs
from dicombus.storage_files import (
    Duplicate,
    DuplicateInstanceError,
    Duplicates,
    InvalidUIDError,
    Layout,
    StorageRootError,
    StoredInstance,
    check_uid,
    prepare_storage_root,
    store_instance,
)
from disk_support import fill, small_tmpfs
from helpers import CT_IMAGE_STORAGE, part10_dataset_bytes, small_dataset, write_part10
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

INSTANCE = "1.2.826.0.1.3680043.8.498.1"
WAIT = 30.0
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
    # Outside tmp_path itself, where the tests store and then list everything.
    source = tmp_path.parent / f"{tmp_path.name}-source.dcm"
    path = write_part10(ds, source)
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
        store_instance(root, file_meta=_meta("../../etc/passwd"), dataset_bytes=encoded[1])
    assert _everything_under(root) == []


@pytest.mark.filterwarnings(INVALID_UI_WARNING)
def test_invalid_sop_class_uid_is_refused_in_the_sop_class_layout(tmp_path: Path) -> None:
    with pytest.raises(InvalidUIDError, match="SOP Class"):
        store_instance(
            tmp_path,
            file_meta=_meta(sop_class="1.2.x"),
            dataset_bytes=b"",
            layout=Layout.SOP_CLASS,
        )


STUDY = "1.2.826.0.1.3680043.8.498.10"
SERIES = "1.2.826.0.1.3680043.8.498.11"


def _uids(study: str | None = STUDY, series: str | None = SERIES) -> InstanceUIDs:
    return InstanceUIDs(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=INSTANCE,
        study_instance_uid=study,
        series_instance_uid=series,
    )


def test_the_study_layout_is_the_default_and_files_by_study_and_series(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    meta, dataset = encoded
    path = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, uids=_uids()).path
    assert path == tmp_path / STUDY / SERIES / f"{meta.MediaStorageSOPInstanceUID}.dcm"


@pytest.mark.parametrize(
    ("study", "series", "refused"),
    [
        (None, SERIES, "Study Instance UID"),
        ("../../etc", SERIES, "Study Instance UID"),
        (STUDY, "1.02.3", "Series Instance UID"),
        (STUDY, None, "Series Instance UID"),
    ],
)
def test_the_study_layout_refuses_missing_or_invalid_study_and_series_uids(
    tmp_path: Path,
    encoded: tuple[FileMetaDataset, bytes],
    study: str | None,
    series: str | None,
    refused: str,
) -> None:
    meta, dataset = encoded
    with pytest.raises(InvalidUIDError, match=refused) as raised:
        store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, uids=_uids(study, series))
    assert raised.value.what == refused
    assert _everything_under(tmp_path) == []


@pytest.mark.parametrize("as_type", [bytes, memoryview])
def test_store_instance_writes_a_valid_part10_file_and_no_temp_file(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], as_type: type
) -> None:
    meta, dataset = encoded
    root = tmp_path / "store"
    path = store_instance(
        root, file_meta=meta, dataset_bytes=as_type(dataset), layout=Layout.SOP_CLASS
    ).path
    assert path == root / CT_IMAGE_STORAGE / f"{meta.MediaStorageSOPInstanceUID}.dcm"
    assert _everything_under(root) == [
        Path(".incoming"),
        Path(CT_IMAGE_STORAGE),
        Path(CT_IMAGE_STORAGE, path.name),
    ]
    assert path.read_bytes() == encode_part10_header(meta) + dataset
    assert dcmread(path).SOPInstanceUID == meta.MediaStorageSOPInstanceUID


def test_instance_meta_writes_the_file_its_file_meta_writes(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    # What the storage handler passes: the three UIDs instead of a FileMetaDataset.
    meta, dataset = encoded
    uids = InstanceMeta(
        sop_class_uid=meta.MediaStorageSOPClassUID,
        sop_instance_uid=meta.MediaStorageSOPInstanceUID,
        transfer_syntax=meta.TransferSyntaxUID,
    )
    by_meta = store_instance(tmp_path / "a", file_meta=meta, dataset_bytes=dataset, uids=_uids())
    by_uids = store_instance(tmp_path / "b", file_meta=uids, dataset_bytes=dataset, uids=_uids())
    assert by_uids.path.relative_to(tmp_path / "b") == by_meta.path.relative_to(tmp_path / "a")
    assert by_uids.path.read_bytes() == by_meta.path.read_bytes()


def test_folders_removed_after_a_store_are_made_again(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    # The folders are looked for only when a write finds one missing.
    meta, dataset = encoded
    first = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, uids=_uids()).path
    first.unlink()
    first.parent.rmdir()
    (tmp_path / ".incoming").rmdir()
    again = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, uids=_uids())
    assert again == StoredInstance(first, first.stat().st_size)
    assert first.read_bytes() == encode_part10_header(meta) + dataset
    assert (tmp_path / ".incoming").is_dir()
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_flat_layout(tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]) -> None:
    meta, dataset = encoded
    path = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT).path
    assert path == tmp_path / f"{meta.MediaStorageSOPInstanceUID}.dcm"


def _files(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*") if path.is_file())


def test_the_same_bytes_again_are_a_duplicate_and_nothing_is_rewritten(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    """A retry after a lost response: the stored file is not touched (same inode)."""
    meta, dataset = encoded
    first = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT)
    again = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT)
    assert (first.duplicate, again.duplicate) == (None, Duplicate.IDENTICAL)
    assert again.path == first.path
    assert first.path.stat().st_ino == os.stat(again.path).st_ino
    assert _files(tmp_path) == [Path(first.path.name)]


def test_a_retry_after_a_failed_folder_fsync_is_made_durable_before_success(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    """The first store linked its file, then its folder fsync failed (the SCP answered
    a failure): the retry finds the file, and must make its entry durable itself."""
    meta, dataset = encoded

    def failing(folder: Path) -> None:
        raise OSError(errno.EIO, "folder fsync failed")

    with pytest.raises(OSError, match="folder fsync failed"):
        store_instance(
            tmp_path,
            file_meta=meta,
            dataset_bytes=dataset,
            layout=Layout.FLAT,
            folder_sync=storage_files.FolderSync(grouped=False, sync_one=failing),
        )
    synced: list[Path] = []

    def counting(folder: Path) -> None:
        synced.append(folder)
        storage_files.fsync_folder(folder)

    again = store_instance(
        tmp_path,
        file_meta=meta,
        dataset_bytes=dataset,
        layout=Layout.FLAT,
        folder_sync=storage_files.FolderSync(grouped=False, sync_one=counting),
    )
    assert again.duplicate is Duplicate.IDENTICAL
    assert synced == [again.path.parent]


@pytest.fixture
def first_and_other(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> tuple[FileMetaDataset, bytes, bytes, Path]:
    """An instance stored flat, and other bytes under the same SOP Instance UID."""
    meta, dataset = encoded
    path = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT).path
    return meta, dataset, dataset[:-2] + b"\x7f\x7f", path


def test_different_bytes_keep_the_first_by_default(
    tmp_path: Path, first_and_other: tuple[FileMetaDataset, bytes, bytes, Path]
) -> None:
    meta, dataset, other, path = first_and_other
    with pytest.raises(DuplicateInstanceError) as raised:
        store_instance(tmp_path, file_meta=meta, dataset_bytes=other, layout=Layout.FLAT)
    assert raised.value.path == path
    assert part10_dataset_bytes(path) == dataset
    assert _files(tmp_path) == [Path(path.name)]


def test_replace_overwrites_different_bytes_with_a_warning(
    tmp_path: Path,
    first_and_other: tuple[FileMetaDataset, bytes, bytes, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    meta, _dataset, other, path = first_and_other
    with caplog.at_level(logging.WARNING, logger="dicombus.storage"):
        stored = store_instance(
            tmp_path,
            file_meta=meta,
            dataset_bytes=other,
            layout=Layout.FLAT,
            duplicates=Duplicates.REPLACE,
        )
    assert (stored.path, stored.duplicate) == (path, Duplicate.DIFFERENT)
    assert part10_dataset_bytes(path) == other
    assert f"replacing {path}" in caplog.text


def test_keep_both_stores_the_second_beside_the_first_under_a_deterministic_name(
    tmp_path: Path,
    first_and_other: tuple[FileMetaDataset, bytes, bytes, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    meta, dataset, other, path = first_and_other

    def keep_both() -> tuple[Path, Duplicate | None]:
        stored = store_instance(
            tmp_path,
            file_meta=meta,
            dataset_bytes=other,
            layout=Layout.FLAT,
            duplicates=Duplicates.KEEP_BOTH,
        )
        return stored.path, stored.duplicate

    with caplog.at_level(logging.WARNING, logger="dicombus.storage"):
        beside, duplicate = keep_both()
    assert duplicate is Duplicate.DIFFERENT
    assert beside.parent == path.parent
    stem, digest = beside.stem.split("-")
    assert stem == meta.MediaStorageSOPInstanceUID
    assert len(digest) == 16 and set(digest) <= set("0123456789abcdef")
    assert part10_dataset_bytes(path) == dataset
    assert part10_dataset_bytes(beside) == other
    assert f"kept {beside}" in caplog.text
    # The same second instance again: the same name, found identical, nothing written.
    assert keep_both() == (beside, Duplicate.IDENTICAL)
    assert _files(tmp_path) == sorted([Path(path.name), Path(beside.name)])


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask of 0, under which plain mkdir and open make world-readable entries."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_stored_files_are_0600_and_folders_0700_whatever_the_umask(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    meta, dataset = encoded
    root = tmp_path / "data" / "storage"
    path = store_instance(root, file_meta=meta, dataset_bytes=dataset, uids=_uids()).path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "data", root, root / ".incoming", root / STUDY, path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_prepare_storage_root_removes_what_a_killed_node_left(tmp_path: Path) -> None:
    incoming = tmp_path / "storage" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "tmpab12cd.part").write_bytes(b"half an instance")
    (incoming / "dicombus-x1y2.dcm").write_bytes(b"a spooled dataset")
    assert prepare_storage_root(tmp_path / "storage") == incoming
    assert list(incoming.iterdir()) == []


def test_prepare_storage_root_names_the_setting_when_the_root_cannot_be_made(
    tmp_path: Path,
) -> None:
    """A root under a regular file: not creatable, even for root (ENOTDIR is no permission)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    with pytest.raises(StorageRootError, match=r"^\[storage\] root .*a-file/storage is not"):
        prepare_storage_root(blocker / "storage", "[storage] root")


def test_dataset_from_a_spool_file_is_copied_byte_for_byte(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    meta, dataset = encoded
    spool = tmp_path / "spool.bin"
    spool.write_bytes(dataset)
    path = store_instance(
        tmp_path / "store", file_meta=meta, dataset_bytes=spool, layout=Layout.FLAT
    ).path
    assert part10_dataset_bytes(path) == dataset
    assert read_part10_header(path).sop_instance_uid == meta.MediaStorageSOPInstanceUID


def test_the_same_instance_spooled_in_another_syntax_is_identical(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    """Compared by content from the spool file: no second copy, the first file untouched."""
    meta, dataset = encoded
    first = store_instance(tmp_path, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT)
    implicit = _meta(meta.MediaStorageSOPInstanceUID)
    implicit.TransferSyntaxUID = ImplicitVRLittleEndian
    spool = tmp_path.parent / f"{tmp_path.name}-spool.bin"
    spool.write_bytes(
        encode_dataset(decode_dataset(dataset, ExplicitVRLittleEndian), implicit.TransferSyntaxUID)
    )
    again = store_instance(tmp_path, file_meta=implicit, dataset_bytes=spool, layout=Layout.FLAT)
    assert again == StoredInstance(first.path, first.size, Duplicate.IDENTICAL)
    assert part10_dataset_bytes(first.path) == dataset
    assert _files(tmp_path) == [Path(first.path.name)]


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
    path = store_instance(
        tmp_path / "store", file_meta=meta, dataset_bytes=spool, layout=Layout.FLAT
    ).path
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
        store_instance(root, file_meta=encoded[0], dataset_bytes=encoded[1], layout=Layout.FLAT)
    assert _files(root) == []


def test_a_root_that_is_a_file_raises_oserror(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes]
) -> None:
    root = tmp_path / "not-a-folder"
    root.write_text("a file")
    with pytest.raises(OSError):
        store_instance(root, file_meta=encoded[0], dataset_bytes=encoded[1], layout=Layout.FLAT)


@pytest.mark.usefixtures("open_umask")
@pytest.mark.parametrize("spooled", [False, True], ids=["in-memory", "spooled"])
@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named"])
def test_unnamed_and_named_temporary_files_store_the_same_durable_file(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], unnamed: bool, spooled: bool
) -> None:
    """O_TMPFILE linked into place, or (forced here, as where the file system has no
    unnamed files) a named temporary file in .incoming: the same bytes, 0600 under any
    umask, the folder fsynced, nothing left behind."""
    meta, dataset = encoded
    source: bytes | Path = dataset
    if spooled:
        source = tmp_path.parent / f"{tmp_path.name}-spool.bin"
        source.write_bytes(dataset)
    synced: list[Path] = []

    def counting(folder: Path) -> None:
        synced.append(folder)
        storage_files.fsync_folder(folder)

    root = tmp_path / "store"
    stored = store_instance(
        root,
        file_meta=meta,
        dataset_bytes=source,
        uids=_uids(),
        folder_sync=storage_files.FolderSync(grouped=False, sync_one=counting),
        unnamed=unnamed,
    )
    assert stored.path.read_bytes() == encode_part10_header(meta) + dataset
    assert stored.size == stored.path.stat().st_size
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o600
    assert synced[-1] == stored.path.parent
    assert list((root / ".incoming").iterdir()) == []
    assert [path for path in root.rglob("*") if path.is_file()] == [stored.path]


def test_a_file_system_refusing_unnamed_files_gets_named_ones(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """open(O_TMPFILE) refused: the store goes on with a named temporary file, and that
    folder is not asked for an unnamed one again."""
    # A fake: no file system this machine mounts refuses O_TMPFILE (tmpfs, ext4, ramfs
    # and overlay all have it); NFS, FAT and older kernels answer EOPNOTSUPP or EISDIR.
    real_open = os.open
    refused: list[str] = []

    def no_unnamed(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            refused.append(str(path))
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_unnamed)
    monkeypatch.setattr(storage_files, "_NAMED_ONLY", set())
    _, dataset = encoded
    for instance in (f"{INSTANCE}.1", f"{INSTANCE}.2"):
        stored = store_instance(
            tmp_path, file_meta=_meta(instance), dataset_bytes=dataset, layout=Layout.FLAT
        )
        assert stored.path.read_bytes() == encode_part10_header(_meta(instance)) + dataset
    assert refused == [str(tmp_path / ".incoming")]
    assert list((tmp_path / ".incoming").iterdir()) == []


def _link_from_proc_refused(monkeypatch: pytest.MonkeyPatch, error: int) -> list[str]:
    """os.link raising ``error`` for a source in /proc (the unnamed file's link); the
    sources it was asked to link are listed in the list returned."""
    # A fake: no security module on this machine refuses linkat(2) of /proc/self/fd/N
    # (SELinux or AppArmor policies can, with EPERM or EACCES), and a full disk cannot
    # be made to refuse only the link after the file's bytes were written.
    real_link = os.link
    asked: list[str] = []

    def refusing(source: Any, *args: Any, **kwargs: Any) -> None:
        if str(source).startswith("/proc/"):
            asked.append(str(source))
            raise OSError(error, os.strerror(error))
        real_link(source, *args, **kwargs)

    monkeypatch.setattr(os, "link", refusing)
    monkeypatch.setattr(storage_files, "_NAMED_ONLY", set())
    return asked


def test_a_refused_link_from_proc_gets_named_files(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_TMPFILE works but linking it from /proc is refused (EPERM): the instance is
    stored through a named temporary file, not refused, and that folder is not asked
    for an unnamed one again; nothing is left in .incoming."""
    asked = _link_from_proc_refused(monkeypatch, errno.EPERM)
    _, dataset = encoded
    for instance in (f"{INSTANCE}.1", f"{INSTANCE}.2"):
        stored = store_instance(
            tmp_path, file_meta=_meta(instance), dataset_bytes=dataset, layout=Layout.FLAT
        )
        assert stored.duplicate is None
        assert stored.path.read_bytes() == encode_part10_header(_meta(instance)) + dataset
        assert stat.S_IMODE(stored.path.stat().st_mode) == 0o600
    assert len(asked) == 1
    assert sorted(storage_files._NAMED_ONLY) == [str(tmp_path / ".incoming")]
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_a_refused_write_is_not_taken_for_a_refused_link(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """EPERM while the unnamed file is written (its fchmod, say) fails the store: only
    the link's refusal means the folder cannot take unnamed files."""

    # A fake: nothing here refuses the fchmod of a file this process just created.
    def refused(*_: Any) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "fchmod", refused)
    monkeypatch.setattr(storage_files, "_NAMED_ONLY", set())
    _, dataset = encoded
    with pytest.raises(PermissionError):
        store_instance(
            tmp_path, file_meta=_meta(INSTANCE), dataset_bytes=dataset, layout=Layout.FLAT
        )
    assert not storage_files._NAMED_ONLY
    assert _files(tmp_path) == []
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_a_link_failing_for_want_of_room_fails_the_store(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link refused for want of room (ENOSPC) is a store that failed, not a file
    system without unnamed files: the error reaches the caller, no file is named, and
    the next store tries an unnamed file again."""
    asked = _link_from_proc_refused(monkeypatch, errno.ENOSPC)
    _, dataset = encoded
    for instance in (f"{INSTANCE}.1", f"{INSTANCE}.2"):
        with pytest.raises(OSError) as refused:
            store_instance(
                tmp_path, file_meta=_meta(instance), dataset_bytes=dataset, layout=Layout.FLAT
            )
        assert refused.value.errno == errno.ENOSPC
    assert len(asked) == 2
    assert not storage_files._NAMED_ONLY
    assert _files(tmp_path) == []
    assert list((tmp_path / ".incoming").iterdir()) == []


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named"])
def test_two_stores_of_the_same_new_instance_keep_one_file(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], unnamed: bool
) -> None:
    """Two associations storing the same new instance at once, released together: one
    writes the file, the other finds it (identical), whichever links first; never two
    files, never an overwrite, nothing left in .incoming."""
    _, dataset = encoded
    for attempt in range(20):
        meta = _meta(f"{INSTANCE}.{attempt}")
        start = threading.Barrier(2)

        def store(meta: FileMetaDataset = meta, start: threading.Barrier = start) -> StoredInstance:
            start.wait(WAIT)
            return store_instance(
                tmp_path, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT, unnamed=unnamed
            )

        with ThreadPoolExecutor(2) as pool:
            results = [future.result(WAIT) for future in [pool.submit(store), pool.submit(store)]]
        assert sorted(str(result.duplicate) for result in results) == ["None", "identical"]
        name = f"{meta.MediaStorageSOPInstanceUID}.dcm"
        assert results[0].path == results[1].path == tmp_path / name
        assert results[0].path.read_bytes() == encode_part10_header(meta) + dataset
    assert len(_files(tmp_path)) == 20
    assert list((tmp_path / ".incoming").iterdir()) == []


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named"])
def test_a_full_disk_refuses_the_store_and_keeps_nothing_of_it(
    tmp_path: Path, encoded: tuple[FileMetaDataset, bytes], unnamed: bool
) -> None:
    """A real disk that is full: OSError (ENOSPC), no file and no temporary one left;
    once room returns, the same instance is stored."""
    meta, dataset = encoded
    with small_tmpfs(tmp_path / "small-disk", "1m") as disk:
        root = disk / "store"
        prepare_storage_root(root)
        filler = fill(disk)

        def store() -> StoredInstance:
            return store_instance(
                root, file_meta=meta, dataset_bytes=dataset, layout=Layout.FLAT, unnamed=unnamed
            )

        with pytest.raises(OSError) as refused:
            store()
        assert refused.value.errno == errno.ENOSPC
        assert _everything_under(root) == [Path(".incoming")]
        filler.unlink()
        assert store().path.read_bytes() == encode_part10_header(meta) + dataset
        assert list((root / ".incoming").iterdir()) == []
