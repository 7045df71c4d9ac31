"""Concurrent stores sharing folder fsyncs, then SIGKILL: every Success is on disk whole.

Every part real: a ``dicombus storescp`` process (fsync of file and folder,
the folder fsyncs shared by its associations through group commit), eight
dicombus SCU associations storing CT instances at once from threads, and a
SIGKILL by PID the moment the last response has arrived. Then every instance
answered Success must be in the storage folder under its name, its data set
byte for byte as sent, and nothing else but the hidden ``.incoming`` folder.
A SIGKILL does not drop the page cache, so this proves the store's ordering
(link, then Success; no response before the shared fsync returns to its
store), not the disk's flush: that is the fsync's, counted in
tests/cli/test_storage_group_commit.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from dicombus import AE
from dicombus.dataset_codec import read_part10_header
from helpers import CT_IMAGE_STORAGE, ct_dataset, free_port, wait_for_port
from pydicom.uid import ExplicitVRLittleEndian

ASSOCIATIONS = 8
PER_ASSOCIATION = 4
TIMEOUT = 30.0


def _send(port: int, folder: Path, answered: dict[str, bytes], errors: list[str]) -> None:
    ae = AE("MODALITY")
    # The files' own transfer syntax only: the bytes travel, and are stored, as they are.
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    files = []
    for _ in range(PER_ASSOCIATION):
        ds = ct_dataset()
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append((str(ds.SOPInstanceUID), path))
    assoc = ae.associate("127.0.0.1", port, ae_title="STORESCP")
    if not assoc.is_established:
        errors.append("association refused")
        return
    try:
        for uid, path in files:
            reply = assoc.send_c_store(path)
            if reply.get("Status") == 0:
                answered[uid] = path.read_bytes()[read_part10_header(path).dataset_offset :]
            else:
                errors.append(f"{uid}: status {reply.get('Status')!r}")
    finally:
        assoc.release()


def test_every_success_is_whole_on_disk_after_a_kill(tmp_path: Path) -> None:
    storage, sources = tmp_path / "storage", tmp_path / "sources"
    sources.mkdir()
    port = free_port()
    command = ["storescp", "--layout", "flat", "-od", str(storage), str(port)]
    log = (tmp_path / "storescp.log").open("wb")
    with log:
        scp = subprocess.Popen(
            [sys.executable, "-m", "dicombus.cli.main", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=TIMEOUT)
        answered: dict[str, bytes] = {}
        errors: list[str] = []
        threads = [
            threading.Thread(target=_send, args=(port, sources, answered, errors))
            for _ in range(ASSOCIATIONS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 4)
        os.kill(scp.pid, signal.SIGKILL)
    finally:
        if scp.poll() is None:
            os.kill(scp.pid, signal.SIGKILL)
        scp.wait(TIMEOUT)
    assert errors == []
    assert len(answered) == ASSOCIATIONS * PER_ASSOCIATION
    on_disk = {entry.name for entry in storage.iterdir()}
    assert on_disk == {f"{uid}.dcm" for uid in answered} | {".incoming"}
    for uid, data in answered.items():
        stored = storage / f"{uid}.dcm"
        assert stored.read_bytes()[read_part10_header(stored).dataset_offset :] == data
