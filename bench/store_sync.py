"""What the durable store costs on a disk, and what group commit of the folder fsync buys.

N threads (the edge's associations) store instances at once through
``dicombus.storage_files.store_instance``: each file is written and fsynced,
linked into place, and its folder fsynced, before the call returns (what
precedes a C-STORE Success). Each configuration runs with the folder fsyncs
grouped across threads (``FolderSync()``) and without
(``FolderSync(grouped=False)``, the default: one per store). Run from the repository root::

    python bench/store_sync.py [--folder DIR] [--count 256] [--size 2048]

``--folder`` must be on the disk to measure (default: a temporary folder in the
current one; not a tmpfs, whose fsync does nothing). ``--layout flat`` puts
every instance in one folder; ``study`` (the default) gives each thread its own
series folder, as modalities sending different series do. Prints, per thread
count and mode: instances/s, CPU per instance (this process: user + system)
and the folder fsyncs made (counted where they are called: Linux keeps no
per-process count).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from dicombus.instance_uids import InstanceUIDs
from dicombus.storage_files import FolderSync, Layout, fsync_folder, store_instance
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _meta(uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def run(root: Path, threads: int, count: int, data: bytes, layout: Layout, grouped: bool) -> str:
    fsyncs = [0]
    lock = threading.Lock()

    def counted(folder: Path) -> None:
        with lock:
            fsyncs[0] += 1
        fsync_folder(folder)

    sync = FolderSync(grouped=grouped, sync_one=counted)
    study = generate_uid()
    work = []
    for _ in range(threads):
        series = generate_uid()
        uids = [generate_uid() for _ in range(count // threads)]
        work.append(
            [
                (
                    _meta(uid),
                    InstanceUIDs(
                        sop_class_uid=CT_IMAGE_STORAGE,
                        sop_instance_uid=uid,
                        study_instance_uid=study,
                        series_instance_uid=series,
                    ),
                )
                for uid in uids
            ]
        )
    start = threading.Barrier(threads + 1)

    def store(items: list[tuple[FileMetaDataset, InstanceUIDs]]) -> None:
        start.wait()
        for meta, uids in items:
            store_instance(
                root, file_meta=meta, dataset_bytes=data, layout=layout, uids=uids, folder_sync=sync
            )

    workers = [threading.Thread(target=store, args=(items,)) for items in work]
    for worker in workers:
        worker.start()
    cpu, wall = time.process_time(), time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = sum(len(items) for items in work)
    mode = "grouped" if grouped else "one per store"
    return (
        f"{threads:3} associations, {mode:13}: {stored / wall:7.0f} inst/s, "
        f"CPU {cpu / stored * 1e6:5.0f} us/inst, folder fsyncs {fsyncs[0]:4} for {stored}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path.cwd())
    parser.add_argument("--count", type=int, default=256, help="instances per run")
    parser.add_argument("--size", type=int, default=2048, help="bytes per instance")
    parser.add_argument("--threads", default="1,8,32")
    parser.add_argument("--layout", choices=["study", "flat"], default="study")
    options = parser.parse_args()
    data = os.urandom(options.size)
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {options.size} bytes per instance")
    for threads in [int(n) for n in options.threads.split(",")]:
        for grouped in (False, True):
            with tempfile.TemporaryDirectory(dir=options.folder, prefix="store-sync-") as where:
                print(
                    run(Path(where), threads, options.count, data, Layout(options.layout), grouped)
                )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
