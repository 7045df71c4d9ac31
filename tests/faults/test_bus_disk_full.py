"""The edge's data folder on a disk that fills up: nothing answered Success unaccounted, no
event lost, associations refused while events cannot be stored, and recovery once space returns.

A real full disk: a small tmpfs mounted by the test holds the edge's data
folder (journal, outbox, subscription cache) and the embedded Redis's AOF; the
DICOM files go to the ordinary disk, so stores themselves succeed and it is the
journal that cannot account for them. Filling the tmpfs makes:

- C-STOREs answer 0xA700 (Out of Resources) while their event cannot be
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
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, evt
from dicombus.bus.disk_reserve import DiskReserve
from dicombus.bus.held_file import HELD_FILE
from dicombus.bus.publisher import PublisherSaturated
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.subscriptions import Subscription
from dicombus.outcomes import OutcomeReport
from dicombus.protocol import status
from disk_support import fill, small_tmpfs
from helpers import CT_IMAGE_STORAGE, VERIFICATION, free_port, small_dataset
from worker_support import client_for, running_edge, wait_for

TMPFS_SIZE = "8m"
# The disk reserve, released when the outbox meets the full disk (within the tmpfs).
RESERVE_BYTES = 1 << 20
QUEUE = "events"
# Associations tried on the full disk before the edge must have refused one: the
# first events that reach the dead Redis and the failing outbox turn it away.
MAX_ASSOCIATIONS_WHILE_FULL = 40
# Stores a full disk may still journal: the room left in the last page (4 KiB) of the
# journal's segment, at about 1.3 KB per C-STORE record.
MAX_RECORDS_IN_ROOM_LEFT = 16


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small-disk", TMPFS_SIZE) as mount_point:
        yield mount_point


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
            # 0xA700 while the journal cannot write; Success again once the released
            # reserve gave it room (its event is journaled: checked at the end).
            assert set(stored_while_full) <= {status.OUT_OF_RESOURCES, status.SUCCESS}

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


# -- the disk reserve, the hold's limit, the last-resort file, a refused Success ------------


def test_the_disk_reserve_is_allocated_released_and_taken_again_when_room_returns(
    small_disk: Path,
) -> None:
    reserve = DiskReserve(small_disk / "reserve", 2 << 20)
    assert not reserve.in_place
    assert reserve.take()
    # Allocated blocks, not a sparse file: the tmpfs counts them as used.
    assert os.stat(reserve.path).st_blocks * 512 >= 2 << 20
    assert os.statvfs(small_disk).f_bfree * os.statvfs(small_disk).f_frsize < 7 << 20
    filler = fill(small_disk)
    assert reserve.release()
    assert not reserve.path.exists() and not reserve.in_place
    assert not reserve.release()  # nothing more to free
    # Filled again: no room for the reserve, and no partial file left behind.
    second = fill(small_disk, "more")
    assert not reserve.take()
    assert not reserve.path.exists()
    second.unlink()
    filler.unlink()
    assert reserve.take() and reserve.in_place


def test_a_success_that_cannot_be_journaled_is_answered_reported_and_stored_as_a_failure(
    tmp_path: Path, small_disk: Path
) -> None:
    """The journal on a full disk, the instances on another: the C-STORE is answered
    0xA700, an observer hears that one status (not a Success first), and the file the
    request wrote is gone, while an identical copy stored before stays."""
    redis_server = EmbeddedRedis(tmp_path / "redis")
    url = redis_server.start()
    events = Subscription("tests.events", QUEUE, frozenset({"EVT_C_STORE"}))
    heard: dict[str, list[int | None]] = {}

    def observer(report: OutcomeReport) -> None:
        if report.event is evt.EVT_C_STORE:
            uid = str(report.request.command.AffectedSOPInstanceUID)
            heard.setdefault(uid, []).append(report.status)

    try:
        with running_edge(
            url,
            small_disk / "data",
            storage_root=tmp_path / "storage",
            subscriptions=(events,),
            publisher_process=False,
            reserve_bytes=0,
        ) as node:
            assert node.server is not None
            # A user's observer, registered after the bus attached its own.
            node.server.outcome_observers = [*node.server.outcome_observers, observer]
            assoc = _associate(node.address[1])
            kept = small_dataset()
            assert assoc.send_c_store(kept).Status == status.SUCCESS
            [kept_file] = (tmp_path / "storage").rglob(f"{kept.SOPInstanceUID}.dcm")
            fill(small_disk)
            # The journal's segment may have room left in its last page: a record that
            # fits is on disk and its Success stands; the first that needs room fails.
            stored_in_room_left: list[str] = []
            for _ in range(MAX_RECORDS_IN_ROOM_LEFT):
                new = small_dataset()
                refused = assoc.send_c_store(new)
                if refused.Status != status.SUCCESS:
                    break
                stored_in_room_left.append(str(new.SOPInstanceUID))
            fill(small_disk, "more")  # what the journal may have freed since
            again = assoc.send_c_store(kept)  # the same bytes: found stored already
            assoc.release()
            events = 3 + len(stored_in_room_left)
            wait_for(lambda: len(_envelopes(url)) == events, "every C-STORE event")
        assert refused.Status == again.Status == status.OUT_OF_RESOURCES
        assert not list((tmp_path / "storage").rglob(f"{new.SOPInstanceUID}.dcm"))
        assert kept_file.exists()
        assert heard[str(new.SOPInstanceUID)] == [status.OUT_OF_RESOURCES]
        assert heard[str(kept.SOPInstanceUID)] == [status.SUCCESS, status.OUT_OF_RESOURCES]
        published = [(e["data"]["sop_instance_uid"], e["data"]["status"]) for e in _envelopes(url)]
        assert sorted(published) == sorted(
            [
                (str(kept.SOPInstanceUID), status.SUCCESS),
                (str(new.SOPInstanceUID), status.OUT_OF_RESOURCES),
                (str(kept.SOPInstanceUID), status.OUT_OF_RESOURCES),
                *((uid, status.SUCCESS) for uid in stored_in_room_left),
            ]
        )
    finally:
        redis_server.kill()


def _unreachable_broker() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_at_the_hold_limit_associations_are_aborted_and_nothing_is_dropped(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No Redis and the outbox on a full disk (no reserve): events are held in memory.
    At the limit (2 x queue_size) the running association is aborted and no Success is
    promised; every held event reaches the outbox once space returns."""
    caplog.set_level(logging.WARNING)
    events = Subscription("tests.events", QUEUE, frozenset({"EVT_C_STORE", "EVT_C_ECHO"}))
    with running_edge(
        _unreachable_broker(),
        tmp_path / "data",
        storage_root=tmp_path / "storage",
        outbox_path=small_disk / "outbox.sqlite3",
        subscriptions=(events,),
        publisher_process=False,
        queue_size=2,
        reserve_bytes=0,
    ) as node:
        publisher = node.publisher
        assert publisher is not None
        filler = fill(small_disk)
        assoc = _associate(node.address[1])
        assert assoc.send_c_store(small_dataset()).Status == status.SUCCESS
        for _ in range(20):
            if not assoc.is_established:
                break
            assoc.send_c_echo()
            wait_for(lambda: node.metrics()["queued"] == 0, "the queue to be taken")
        wait_for(lambda: assoc.is_aborted, "the running association to be aborted")
        assert publisher.saturated
        held = node.metrics()["held"]
        assert held >= 4  # the limit: 2 x queue_size
        with pytest.raises(PublisherSaturated):  # what a C-STORE Success would need
            publisher.submit_durable(node.journal.leftovers()[0])  # type: ignore[union-attr]
        assert _associate(node.address[1]).is_rejected

        filler.unlink()
        wait_for(lambda: not publisher.congested, "the held events in the outbox")
        final = node.metrics()
        assert final["held"] == 0
        assert final["outbox_rows"] == final["submitted"] >= held
        assert final["failed"] == 0
    assert "EVENTS LOST" not in caplog.text


def test_a_stop_that_cannot_store_writes_the_held_events_for_the_next_start(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Held events at stop, the outbox still on a full disk: they go to the last-resort
    file (0600), and the next start moves them into the outbox and on to Redis."""
    caplog.set_level(logging.WARNING)
    events = Subscription("tests.events", QUEUE, frozenset({"EVT_C_STORE", "EVT_C_ECHO"}))
    settings: dict[str, Any] = {
        "storage_root": tmp_path / "storage",
        "outbox_path": small_disk / "outbox.sqlite3",
        "subscriptions": (events,),
        "publisher_process": False,
        "reserve_bytes": 0,
    }
    answers: dict[str, int] = {}
    with running_edge(_unreachable_broker(), tmp_path / "data", **settings) as node:
        filler = fill(small_disk)
        _store_and_echo(_associate(node.address[1]), answers)
        wait_for(lambda: node.metrics()["held"] >= 2, "the events to be held")
        submitted = node.metrics()["submitted"]
    held_file = tmp_path / "data" / HELD_FILE
    assert len(held_file.read_text().splitlines()) == submitted
    assert held_file.stat().st_mode & 0o777 == 0o600
    assert list(answers.values()) == [status.SUCCESS]
    assert "EVENTS LOST" not in caplog.text

    filler.unlink()
    redis_server = EmbeddedRedis(tmp_path / "redis")
    url = redis_server.start()
    try:
        with running_edge(url, tmp_path / "data", **settings):
            assert not held_file.exists()
            wait_for(lambda: len(_envelopes(url)) >= submitted, "the held events in Redis")
        published = {
            e["data"]["sop_instance_uid"]: e["data"]["status"]
            for e in _envelopes(url)
            if e["type"] == "EVT_C_STORE"
        }
        assert published == answers
    finally:
        redis_server.kill()
