"""The edge's index writer: rows are written off the C-STORE path, and nothing is lost.

Real edges (publishing off: this is about the index) on 127.0.0.1, stored to and
queried by dicombus' own SCU over real associations; the index checked in its SQLite
file directly. Where a test needs the writer thread to hold its rows back, it lingers
longer (a setting, not a fake): every row is then still queued when the C-FIND comes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bus.test_edge_storage import edge
from dicombus import AE
from dicombus.qr import index, index_writer
from dicombus.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind
from helpers import small_dataset
from pydicom.dataset import Dataset

WAIT = 10.0
EDGE = "EDGE"
SUCCESS = 0x0000
PENDING = (0xFF00, 0xFF01)
BURST = 40


@contextlib.contextmanager
def association(port: int, *contexts: str) -> Iterator[Any]:
    ae = AE("MODALITY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, ae_title=EDGE)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def store_burst(port: int, count: int) -> set[str]:
    """Store ``count`` new instances of one series on one association; their UIDs."""
    first = small_dataset()
    uids = set()
    with association(port, CTImageStorage) as assoc:
        for number in range(count):
            dataset = small_dataset()
            dataset.StudyInstanceUID = first.StudyInstanceUID
            dataset.SeriesInstanceUID = first.SeriesInstanceUID
            dataset.InstanceNumber = number + 1
            assert assoc.send_c_store(dataset).Status == SUCCESS
            uids.add(str(dataset.SOPInstanceUID))
    return uids


def find_instances(port: int) -> set[str]:
    """The SOP Instance UIDs a Study Root C-FIND at IMAGE level matches, on an association
    of its own."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.SOPInstanceUID = ""
    found = set()
    model = StudyRootQueryRetrieveInformationModelFind
    with association(port, model) as assoc:
        for reply, match in assoc.send_c_find(identifier, model):
            if reply.Status in PENDING:
                assert match is not None
                found.add(str(match.SOPInstanceUID))
            else:
                assert reply.Status == SUCCESS
    return found


def indexed_instances(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return {uid for (uid,) in db.execute("SELECT sop_instance_uid FROM instances")}


def start_report(records: list[logging.LogRecord]) -> tuple[int, int]:
    """(instances, newly indexed) from the edge's start-up line about its index."""
    (record,) = [r for r in records if r.getMessage().startswith("index ")]
    assert isinstance(record.args, tuple)
    return int(record.args[1]), int(record.args[2])


@pytest.fixture
def lingering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread waits an hour (or until close) before it writes a row."""
    monkeypatch.setattr(index_writer, "LINGER", 3600.0)
    monkeypatch.setattr(index_writer, "BATCH", 10_000)


@pytest.mark.usefixtures("lingering")
def test_a_find_right_after_a_burst_of_stores_finds_them_all(tmp_path: Path) -> None:
    """Every stored instance is still queued when the C-FIND comes, on another
    association: the read writes the queue before it reads."""
    with edge(tmp_path) as node:
        port = node.address[1]
        stored = store_burst(port, BURST)
        assert node.archive is not None
        assert node.archive.writer.backlog == BURST
        assert find_instances(port) == stored
        assert node.archive.writer.backlog == 0


@pytest.mark.usefixtures("lingering")
def test_stop_writes_every_queued_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rows still queued at stop are in the index file when the edge has stopped, so the
    next start has nothing to repair."""
    with edge(tmp_path) as node:
        stored = store_burst(node.address[1], BURST)
        assert node.archive is not None
        assert node.archive.writer.backlog == BURST
    assert indexed_instances(node.config.index) == stored
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dicombus.bus.edge"), edge(tmp_path) as node:
        assert start_report(caplog.records) == (BURST, 0)
        assert find_instances(node.address[1]) == stored


def test_rows_the_index_refuses_are_reported_and_indexed_at_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds the index's write lock (as an operator's sqlite3 shell
    or a backup would): the stores are answered, the writer's batch fails and is
    logged, and the next start's scan indexes the files it finds unindexed."""
    monkeypatch.setattr(index, "BUSY_TIMEOUT", 0.2)
    with edge(tmp_path) as node:
        database = node.config.index
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # the write lock, until the ROLLBACK
            with caplog.at_level(logging.ERROR, logger="dicombus.qr"):
                stored = store_burst(node.address[1], 3)
                deadline = time.monotonic() + WAIT
                while not refusals(caplog) and time.monotonic() < deadline:
                    time.sleep(0.05)
            other.execute("ROLLBACK")
        assert refusals(caplog), "the refused batch was not reported"
        assert "database is locked" in refusals(caplog)[0]
        assert "the next start indexes them" in refusals(caplog)[0]
        assert indexed_instances(database) == set()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dicombus.bus.edge"), edge(tmp_path) as node:
        assert start_report(caplog.records) == (3, 3)
        assert find_instances(node.address[1]) == stored


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "could not index" in r.getMessage()]
