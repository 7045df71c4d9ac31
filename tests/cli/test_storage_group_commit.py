"""Group commit of the storage folder's fsync: concurrent stores share it, none is early.

The fsyncs are counted through ``FolderSync(sync_one=...)``, a wrapper around
the real :func:`fsync_folder` of a real folder: Linux keeps no per-process
count of fsync calls (``/proc/PID/io`` counts bytes and read/write calls only,
``/proc/fs/jbd2/*/info`` counts the whole file system's commits, shared with
every other process on the machine), so the count is taken where the call is
made.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from dicombus.dataset_codec import read_part10_header
from dicombus.storage_files import FolderSync, Layout, store_instance
from helpers import small_dataset

THREADS = 16
WAIT = 30.0


class CountingSync:
    """The real folder fsync, counted; the first call holds until ``release`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, int]] = []  # folder, submissions seen when it began
        self.release = threading.Event()
        self.submitted = 0
        self.lock = threading.Lock()

    def __call__(self, folder: Path) -> None:
        from dicombus.storage_files import fsync_folder

        with self.lock:
            self.calls.append((folder, self.submitted))
            first = len(self.calls) == 1
        if first:
            assert self.release.wait(WAIT), "the other stores never queued"
        fsync_folder(folder)


def _wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_concurrent_syncs_of_one_folder_share_fsyncs(tmp_path: Path) -> None:
    counting = CountingSync()
    sync = FolderSync(sync_one=counting)
    returned: list[int] = []

    def one() -> None:
        with counting.lock:
            counting.submitted += 1
        sync.sync(tmp_path)
        returned.append(1)

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    # The first caller leads and holds in its fsync; the others queue behind it.
    _wait_until(lambda: sync.waiting == THREADS - 1, "the followers to queue")
    counting.release.set()
    for thread in threads:
        thread.join(WAIT)
    assert len(returned) == THREADS
    # One fsync for the leader, one for every follower together: 2, not 16.
    assert [folder for folder, _ in counting.calls] == [tmp_path, tmp_path]
    # The followers' fsync began after all of them had submitted (none returned on
    # an fsync that started before its entry existed).
    assert counting.calls[1][1] == THREADS


def test_ungrouped_sync_fsyncs_once_per_store(tmp_path: Path) -> None:
    counting = CountingSync()
    counting.release.set()
    sync = FolderSync(grouped=False, sync_one=counting)
    for _ in range(3):
        sync.sync(tmp_path)
    assert len(counting.calls) == 3


def test_a_failed_fsync_fails_every_store_of_its_group(tmp_path: Path) -> None:
    def refuse(folder: Path) -> None:
        raise OSError(5, "Input/output error", str(folder))

    sync = FolderSync(sync_one=refuse)
    with pytest.raises(OSError, match="Input/output error"):
        sync.sync(tmp_path)
    ds = small_dataset()
    with pytest.raises(OSError, match="Input/output error"):
        store_instance(
            tmp_path,
            file_meta=ds.file_meta,
            dataset_bytes=b"\x08\x00\x16\x00",
            layout=Layout.FLAT,
            folder_sync=sync,
        )


def test_concurrent_stores_are_all_complete_on_disk(tmp_path: Path) -> None:
    """Stores from many threads into one folder through one group commit."""
    datasets = [small_dataset() for _ in range(THREADS * 4)]
    encoded = {}
    for ds in datasets:
        path = tmp_path / "source" / f"{ds.SOPInstanceUID}.dcm"
        path.parent.mkdir(exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        header = read_part10_header(path)
        encoded[str(ds.SOPInstanceUID)] = (ds.file_meta, path.read_bytes()[header.dataset_offset :])
    root = tmp_path / "storage"
    grouped = FolderSync()
    errors: list[BaseException] = []

    def store(uids: list[str]) -> None:
        try:
            for uid in uids:
                meta, data = encoded[uid]
                store_instance(
                    root,
                    file_meta=meta,
                    dataset_bytes=data,
                    layout=Layout.FLAT,
                    folder_sync=grouped,
                )
        except BaseException as exc:
            errors.append(exc)

    uids = sorted(encoded)
    threads = [threading.Thread(target=store, args=(uids[k::THREADS],)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    for uid, (_meta, data) in encoded.items():
        stored = root / f"{uid}.dcm"
        assert stored.read_bytes()[read_part10_header(stored).dataset_offset :] == data
