"""Worker processes that first use an SQLite store that does not exist yet, at the same
moment, as `dicombus up`'s two workers do on a fresh data folder: each switches it to WAL
and creates its schema, and every one must get a working store, none "database is
locked" (SQLite answers one of two simultaneous switches to WAL at once, without its busy
wait: dicombus.sqlite_setup). Threads of one process are covered in
tests/routing/test_study_stable.py.
"""

from __future__ import annotations

import multiprocessing
import queue
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dicombus.audit.engine import writer_engine
from dicombus.audit.migrate import upgrade_engine
from dicombus.routing.delivery_store import DeliveryStore
from dicombus_workers.atna.spool import Spool

FRESH_STORES = 25
PROCESSES = 4
BARRIER_TIMEOUT = 60.0
JOIN_TIMEOUT = 180.0


def _routing_store(path: Path) -> None:
    db = DeliveryStore(path)
    try:
        db.claim("pacs", 7)
    finally:
        db.close()


def _atna_spool(path: Path) -> None:
    Spool(path).count()


def _audit_store(path: Path) -> None:
    engine = writer_engine(f"sqlite:///{path}")
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()


FIRST_USES: dict[str, Callable[[Path], None]] = {
    "routing store": _routing_store,
    "ATNA spool": _atna_spool,
    "audit store": _audit_store,
}


def _first_use_in_step(kind: str, folder: str, start: Any, failures: Any) -> None:
    """Use each fresh store when every process is ready to use it too."""
    for number in range(FRESH_STORES):
        path = Path(folder) / f"store-{number}" / "store.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        start.wait(BARRIER_TIMEOUT)
        try:
            FIRST_USES[kind](path)
        except Exception as exc:
            failures.put(f"store {number}: {exc!r}")


@pytest.mark.parametrize("kind", list(FIRST_USES))
def test_processes_that_first_use_a_new_store_together_all_get_it(
    tmp_path: Path, kind: str
) -> None:
    # spawn: fresh interpreters, as separate worker processes are (no state forked over).
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    failures = context.Queue()
    processes = [
        context.Process(target=_first_use_in_step, args=(kind, str(tmp_path), start, failures))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(JOIN_TIMEOUT)
        assert [process.exitcode for process in processes] == [0] * PROCESSES
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(10)
    reported = []
    while True:
        try:
            reported.append(failures.get(timeout=0.5))
        except queue.Empty:
            break
    assert reported == []
    for number in range(FRESH_STORES):
        path = tmp_path / f"store-{number}" / "store.sqlite3"
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
