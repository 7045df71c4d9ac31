"""``dicombus up`` with its whole data folder on a disk that fills up, then gets room again.

Every part real and on one small tmpfs: the stored instances, the outbox, the
journal, the embedded Redis's AOF, the audit store and the logs. The test
stores, fills the disk (keeping the filler, to free it later), and stores on:
each C-STORE is answered Success or 0xA700, or the association is refused with
a transient reject, and nothing logs "EVENTS LOST". Then it frees the space and
touches nothing else: up's supervisor brings Redis back (after a delay doubling
up to 30 s, hence the generous waits), new stores succeed, and every C-STORE
ever answered Success has its EVT_C_STORE row in the audit store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE
from dicombus.protocol import status
from disk_support import fill, small_tmpfs
from helpers import CT_IMAGE_STORAGE, small_dataset
from up_support import UpProcess, stored_uids
from worker_support import wait_for

TMPFS_SIZE = "128m"
RESERVE_BYTES = 4 << 20
# Associations tried on the full disk before the node must have refused one.
MAX_TRIES_WHILE_FULL = 40
# Redis comes back after up's retry delay (1 s doubling, up to 30 s), and audit
# tasks that met the full disk retry with a back-off of their own.
RECOVERY_TIMEOUT = 180.0
RETRY_PAUSE = 1.0


def _try_store(port: int, answers: dict[str, int]) -> Any:
    """One association with one C-STORE; the association (rejected or released)."""
    ae = AE("MODALITY")
    ae.add_requested_context(CT_IMAGE_STORAGE)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMBUS")
    if assoc.is_established:
        ds = small_dataset()
        answer = assoc.send_c_store(ds)
        if "Status" in answer:
            answers[str(ds.SOPInstanceUID)] = answer.Status
        assoc.release()
    return assoc


def _store_until_success(port: int, answers: dict[str, int]) -> None:
    """Try a store every RETRY_PAUSE, as a modality retries, until one is answered Success.
    (Every refused association is events too: a tighter loop would fill the disk again.)"""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        before = len(answers)
        _try_store(port, answers)
        if len(answers) > before and list(answers.values())[-1] == status.SUCCESS:
            return
        assert time.monotonic() < deadline, "no store succeeded after the space returned"
        time.sleep(RETRY_PAUSE)


@pytest.mark.timeout(3 * RECOVERY_TIMEOUT)
def test_up_on_a_full_disk_refuses_loses_nothing_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f"[bus]\nreserve_bytes = {RESERVE_BYTES}\n")
    answers: dict[str, int] = {}  # SOP Instance UID -> the Status the SCU was given
    with small_tmpfs(tmp_path / "disk", TMPFS_SIZE) as disk:
        # Its output outside the disk that fills: that is the test's view of it.
        node = UpProcess(disk / "node", "--config", str(config), output_dir=tmp_path)
        try:
            record = node.wait_ready()
            port = node.port
            audit_db = Path(record["audit_db"])
            for _ in range(3):
                assert not _try_store(port, answers).is_rejected
            assert set(answers.values()) == {status.SUCCESS}
            wait_for(lambda: stored_uids(audit_db) >= set(answers), "the first audit rows")

            filler = fill(disk)
            refused = None
            for _ in range(MAX_TRIES_WHILE_FULL):
                assoc = _try_store(port, answers)
                if assoc.is_rejected:
                    refused = assoc.rejection
                    break
            assert refused is not None, "up kept accepting associations on a full disk"
            # PS3.8 9.3.4: rejected-transient, UL service-provider (presentation), congestion.
            assert (refused.result, refused.source, refused.reason) == (2, 3, 1)
            assert set(answers.values()) <= {status.SUCCESS, status.OUT_OF_RESOURCES}

            filler.unlink()
            # Nothing restarted by hand: the node takes its reserve again and accepts.
            _store_until_success(port, answers)
            succeeded = {uid for uid, code in answers.items() if code == status.SUCCESS}
            wait_for(
                lambda: stored_uids(audit_db) >= succeeded,
                "every Success audited",
                RECOVERY_TIMEOUT,
            )
            if "embedded Redis (pid" in node.text:  # it died on its AOF write error
                assert "embedded Redis restarted as pid" in node.text
        finally:
            code = node.stop()
            logs = [node.text, *(p.read_text(errors="replace") for p in node.data.rglob("*.log"))]
        assert code == 0
        assert not any("EVENTS LOST" in text for text in logs)
