"""The audit store's backup and restore, as docs/operations.md tells an operator to do them.

Real engines and tools: the ``sqlite3`` shell's online ``.backup`` of a store that another
writer keeps writing to, and PostgreSQL's ``pg_dump --format=custom`` / ``pg_restore`` into
a new database of a real server (tests/audit/postgres_support.py). Each restored store is
then read by ``dicombus audit search`` with every row and its schema revision kept.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from dicombus.audit.engine import reader_engine
from dicombus.audit.location import store_url
from dicombus.audit.migrate import current_revision, head
from dicombus.audit.store import AuditStore
from helpers import require_tool
from postgres_support import PostgresServer
from test_store import count_rows, envelope
from up_support import run_dicombus
from worker_support import wait_for

BATCH = 20  # events per transaction: a consistent backup holds whole batches only
TIMEOUT = 60.0


def searched(url: str) -> list[dict[str, str]]:
    result = run_dicombus("audit", "search", "--url", url, "--json", "--limit", "100000")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line]


def revision(url: str) -> str | None:
    engine = reader_engine(url)
    try:
        with engine.connect() as connection:
            return current_revision(connection)
    finally:
        engine.dispose()


def test_an_online_sqlite_backup_restores_a_consistent_store(tmp_path: Path) -> None:
    sqlite3_shell = require_tool("sqlite3")
    live = tmp_path / "node" / "audit.sqlite3"
    live.parent.mkdir()
    store = AuditStore(store_url(live))
    stop = threading.Event()
    written = [0]

    def writer() -> None:  # the workers, going on while the backup runs
        while not stop.is_set():
            first = written[0]
            store.write([envelope(f"01E{first + i:023d}", minute=first + i) for i in range(BATCH)])
            written[0] += BATCH

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_for(lambda: written[0] >= 5 * BATCH, "rows before the backup", TIMEOUT)
        backup = tmp_path / "audit-backup.sqlite3"
        shell = subprocess.run(
            [sqlite3_shell, str(live), f".backup {backup}"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert shell.returncode == 0, shell.stderr
        backed_up = count_rows(store_url(backup))
        wait_for(lambda: written[0] > backed_up + BATCH, "rows after the backup", TIMEOUT)
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert backed_up > 0 and backed_up % BATCH == 0, "whole transactions only"
    assert count_rows(store_url(live)) > backed_up

    # The restore: the store and its WAL files aside, the backup in its place.
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in live.parent.glob("audit.sqlite3*"):
        path.rename(aside / path.name)
    live.write_bytes(backup.read_bytes())
    rows = searched(store_url(live))
    assert len(rows) == backed_up
    assert {row["id"] for row in rows} == {f"01E{i:023d}" for i in range(backed_up)}
    assert revision(store_url(live)) == head()


def test_pg_dump_and_pg_restore_round_trip_into_a_new_database(
    postgres_server: PostgresServer,
) -> None:
    source = postgres_server.create_database()
    events = [envelope(f"01E{i:023d}", minute=i) for i in range(3 * BATCH)]
    assert AuditStore(source).write(events) == len(events)
    dump = postgres_server.folder / "audit.dump"
    libpq = source.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run(
        [str(postgres_server.bin / "pg_dump"), "--format=custom", f"--file={dump}", libpq],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    target = postgres_server.create_database()  # empty, as after dropdb / createdb
    subprocess.run(
        [
            str(postgres_server.bin / "pg_restore"),
            "--no-owner",
            f"--dbname={target.replace('postgresql+psycopg://', 'postgresql://')}",
            str(dump),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    rows = searched(target)
    assert len(rows) == len(events)
    assert {row["id"] for row in rows} == {event["id"] for event in events}
    assert revision(target) == head()
    # The indexes came back with the table: a restored store is as fast to search.
    engine = reader_engine(target)
    try:
        with engine.connect() as connection:
            indexes = connection.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'events'"
            ).scalars()
            assert "events_by_study_instance_uid" in set(indexes)
    finally:
        engine.dispose()
