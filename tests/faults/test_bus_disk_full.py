"""The edge's data folder on a disk that fills up: nothing answered Success unaccounted, no
event lost, associations refused while events cannot be stored, and recovery once space returns.

A real full disk: a small tmpfs mounted by the test holds the edge's data
folder (journal, outbox, subscription cache) and the embedded Redis's AOF; the
DICOM files go to the ordinary disk, so stores themselves succeed and it is the
journal that cannot account for them. Filling the tmpfs makes:

- every C-STORE answer 0xA700 (Out of Resources), since its event cannot be
  journaled, rather than Success;
- Redis exit on its AOF write error, and the outbox fail: the publisher
  releases the disk reserve, the outbox stores into that room, and the edge
  refuses new associations (transient reject) until the reserve is back; it
  never logs "EVENTS LOST".

Freeing the space and starting Redis again (the test plays the supervisor that
``dicombus up`` is) must deliver every event submitted and let associations in
again. Needs ``mount -t tmpfs`` (root); without it the test skips, or fails
when CI is set.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.subscriptions import Subscription
from dicombus.protocol import status
from helpers import CT_IMAGE_STORAGE, VERIFICATION, peer_missing, small_dataset
from worker_support import client_for, running_edge, wait_for

TMPFS_SIZE = "8m"
# The disk reserve, released when the outbox meets the full disk (within the tmpfs).
RESERVE_BYTES = 1 << 20
QUEUE = "events"
# Associations tried on the full disk before the edge must have refused one: the
# first events that reach the dead Redis and the failing outbox turn it away.
MAX_ASSOCIATIONS_WHILE_FULL = 40


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        peer_missing(f"cannot mount a tmpfs to fill up: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk says ENOSPC, in smaller and smaller pieces."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 14, 1 << 10, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(descriptor, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(descriptor)
    return filler


def _envelopes(url: str) -> list[dict[str, Any]]:
    found = []
    for raw in client_for(url).lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        (envelope,), _kwargs, _embed = json.loads(body)
        found.append(envelope)
    return found


def _associate(port: int) -> Any:
    ae = AE("MODALITY")
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.add_requested_context(VERIFICATION)
    return ae.associate("127.0.0.1", port, ae_title="EDGE")


def _store_and_echo(assoc: Any, answers: dict[str, int]) -> None:
    ds = small_dataset()
    answers[str(ds.SOPInstanceUID)] = assoc.send_c_store(ds).Status
    assert assoc.send_c_echo().Status == status.SUCCESS
    assoc.release()


def test_a_full_data_folder_refuses_associations_loses_nothing_and_recovers(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    redis_server = EmbeddedRedis(small_disk / "redis")
    url = redis_server.start()
    events = Subscription("tests.events", QUEUE, frozenset({"EVT_C_STORE", "EVT_C_ECHO"}))
    answers: dict[str, int] = {}  # SOP Instance UID -> the Status the SCU was given
    try:
        with running_edge(
            url,
            small_disk / "data",
            storage_root=tmp_path / "storage",
            subscriptions=(events,),
            publisher_process=False,
            reserve_bytes=RESERVE_BYTES,
        ) as node:
            port = node.address[1]
            _store_and_echo(_associate(port), answers)
            filler = fill(small_disk)

            refused = None
            for _ in range(MAX_ASSOCIATIONS_WHILE_FULL):
                assoc = _associate(port)
                if assoc.is_rejected:
                    refused = assoc.rejection
                    break
                _store_and_echo(assoc, answers)
                # Give the publisher the time to meet the full disk before the next try.
                wait_for(lambda: node.metrics()["queued"] == 0, "the queue to be taken")
            assert refused is not None, "the edge kept accepting associations on a full disk"
            # PS3.8 9.3.4: rejected-transient, UL service-provider (presentation), congestion.
            assert (refused.result, refused.source, refused.reason) == (2, 3, 1)
            # The outbox met the full disk, released the reserve and stored into it:
            # nothing stays in memory, and associations are refused until space returns.
            assert node.reserve is not None and not node.reserve.in_place
            assert node.metrics()["held"] == 0
            assert node.metrics()["outbox_rows"] > 0
            stored_while_full = list(answers.values())[1:]
            assert stored_while_full, "no C-STORE was tried on the full disk"
            assert set(stored_while_full) == {status.OUT_OF_RESOURCES}

            filler.unlink()
            # Redis exited on its AOF write error; here the test restarts it, as the
            # supervisor (dicombus up) would.
            redis_server.kill()
            redis_server.start()
            wait_for(lambda: not node.publisher.congested, "the edge to store events again")
            _store_and_echo(_associate(port), answers)
            submitted = node.metrics()["submitted"]
            wait_for(
                lambda: len({e["id"] for e in _envelopes(url)}) >= submitted,
                "every event in Redis",
            )
            final = node.metrics()
        delivered = _envelopes(url)
        assert len({e["id"] for e in delivered}) == final["submitted"]
        assert final["failed"] == 0
        published = {
            e["data"]["sop_instance_uid"]: e["data"]["status"]
            for e in delivered
            if e["type"] == "EVT_C_STORE"
        }
        assert published == answers
        assert list(answers.values())[-1] == status.SUCCESS
    finally:
        redis_server.kill()
    assert "EVENTS LOST" not in caplog.text
