"""The audit store on SQLite and on a real PostgreSQL server (Debian's package).

Each test runs on both engines (``audit_url``): rows exactly once under
redelivery, the indexes, search and export, ``dicombus audit``, concurrent
upgrades; and, on SQLite, a file written by the store before it had
migrations, upgraded in place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dicombus.audit.engine import reader_engine, writer_engine
from dicombus.audit.location import store_url
from dicombus.audit.migrate import current_revision, head, upgrade
from dicombus.audit.query import DEFAULT_LIMIT, AuditFilter, export, search, search_statement
from dicombus.audit.schema import events
from dicombus.audit.store import AuditStore, UnsupportedEngineError
from dicombus.bus.envelope import format_time
from dicombus.cli.main import main
from sqlalchemy import func, inspect, select, text

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
INDEXES = {
    "events_by_time": ["time"],
    "events_by_type_time": ["type", "time"],
    "events_by_calling_ae_title": ["calling_ae_title", "time"],
    "events_by_called_ae_title": ["called_ae_title", "time"],
    "events_by_patient_id": ["patient_id", "time"],
    "events_by_study_instance_uid": ["study_instance_uid", "time"],
    "events_by_accession_number": ["accession_number", "time"],
    "events_by_association": ["subject", "sequence"],
}


def envelope(
    event_id: str,
    *,
    minute: int,
    event_type: str = "EVT_C_STORE",
    calling: str = "CT1",
    called: str = "EDGE",
    patient: str | None = "PAT-1",
    study: str | None = "1.2.3.1",
    accession: str | None = "ACC-1",
    field: str = "dataset",
) -> dict[str, Any]:
    """An event as an edge publishes it (docs/events.md), with its DICOM JSON."""
    model: dict[str, Any] = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}}
    for tag, vr, value in (
        ("00100020", "LO", patient),
        ("0020000D", "UI", study),
        ("00080050", "SH", accession),
    ):
        if value is not None:
            model[tag] = {"vr": vr, "Value": [value]}
    data: dict[str, Any] = {
        "association": {"calling_ae_title": calling, "called_ae_title": called},
        "status": 0,
    }
    if event_type in {"EVT_C_STORE", "EVT_C_FIND"}:
        data[field] = model
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": event_type,
        "source": "dicombus://edge-1/EDGE",
        "subject": "01ASSOCIATION0000000000000",
        "sequence": minute,
        "time": format_time(T0 + timedelta(minutes=minute)),
        "datacontenttype": "application/json",
        "data": data,
    }


def count_rows(url: str) -> int:
    engine = reader_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())
    finally:
        engine.dispose()


def test_each_event_is_one_row_however_often_it_is_delivered(audit_url: str) -> None:
    store = AuditStore(audit_url)
    batch = [envelope(f"01E{i:023d}", minute=i) for i in range(5)]
    assert store.write(batch) == 5
    assert store.write(batch) == 0  # the whole batch again (a worker died before its ack)
    later = [envelope(f"01E{i:023d}", minute=i) for i in range(3, 8)]
    assert store.write(later) == 3  # overlapping: only the new ones
    assert store.write([batch[0], batch[0]]) == 0  # the same event twice in one batch
    assert count_rows(audit_url) == 8
    # A second writer (another pool process or worker) sees the same rule.
    assert AuditStore(audit_url).write([*batch, envelope("01F", minute=9)]) == 1
    assert count_rows(audit_url) == 9


def test_a_redelivered_batch_with_a_duplicate_inside_keeps_one_row(audit_url: str) -> None:
    """ON CONFLICT DO NOTHING holds inside one statement too, on both engines."""
    store = AuditStore(audit_url)
    event = envelope("01DUP", minute=1)
    assert store.write([event, envelope("01OTHER", minute=2), event]) == 2
    assert count_rows(audit_url) == 2


def test_the_search_keys_are_indexed(audit_url: str) -> None:
    upgrade(audit_url)
    engine = writer_engine(audit_url)
    try:
        found = {
            index["name"]: index["column_names"] for index in inspect(engine).get_indexes("events")
        }
        with engine.connect() as connection:
            assert current_revision(connection) == head()
    finally:
        engine.dispose()
    assert {name: found.get(name) for name in INDEXES} == INDEXES


def test_the_dicom_attributes_come_from_the_dataset_or_the_identifier(audit_url: str) -> None:
    store = AuditStore(audit_url)
    store.write(
        [
            envelope("01STORE", minute=1, patient="P1", study="1.2.9", accession="A9"),
            envelope("01FIND", minute=2, event_type="EVT_C_FIND", patient="P1", field="identifier"),
            envelope("01ECHO", minute=3, event_type="EVT_C_ECHO"),
            envelope("01BARE", minute=4, patient=None, study=None, accession=None),
        ]
    )
    with reader_engine(audit_url).connect() as connection:
        rows = {row.id: row for row in search(connection, AuditFilter())}
    assert (rows["01STORE"].patient_id, rows["01STORE"].study_instance_uid) == ("P1", "1.2.9")
    assert rows["01STORE"].accession_number == "A9"
    assert rows["01FIND"].patient_id == "P1"
    assert (rows["01ECHO"].patient_id, rows["01BARE"].patient_id) == (None, None)


def test_a_url_of_another_database_is_refused_at_once() -> None:
    with pytest.raises(UnsupportedEngineError, match="SQLite or PostgreSQL, not mysql"):
        AuditStore("mysql://audit@db.example.org/dicombus")


@pytest.fixture
def recorded(audit_url: str) -> str:
    """Two patients, two modalities, a C-ECHO, over an hour."""
    AuditStore(audit_url).write(
        [
            envelope("01A", minute=0, calling="CT1", patient="P1", study="1.1", accession="X1"),
            envelope("01B", minute=10, calling="CT1", patient="P1", study="1.1", accession="X1"),
            envelope("01C", minute=20, calling="MR7", patient="P2", study="2.1", accession="X2"),
            envelope("01D", minute=30, calling="MR7", event_type="EVT_C_ECHO"),
            envelope("01E", minute=60, calling="CT1", called="ARCHIVE", patient="P1", study="1.2"),
        ]
    )
    return audit_url


def found(url: str, **wanted: Any) -> list[str]:
    with reader_engine(url).connect() as connection:
        return [row.id for row in search(connection, AuditFilter(**wanted))]


def test_search_filters_combine(recorded: str) -> None:
    assert found(recorded) == ["01A", "01B", "01C", "01D", "01E"]
    assert found(recorded, patient_id="P1") == ["01A", "01B", "01E"]
    assert found(recorded, study_instance_uid="1.1") == ["01A", "01B"]
    assert found(recorded, accession_number="X2") == ["01C"]
    assert found(recorded, ae_title="MR7") == ["01C", "01D"]
    assert found(recorded, ae_title="ARCHIVE") == ["01E"]  # the called title counts too
    assert found(recorded, event_type="EVT_C_ECHO") == ["01D"]
    assert found(recorded, patient_id="P1", ae_title="ARCHIVE") == ["01E"]
    assert found(recorded, since=T0 + timedelta(minutes=10)) == ["01B", "01C", "01D", "01E"]
    assert found(recorded, patient_id="nobody") == []
    with reader_engine(recorded).connect() as connection:
        newest = search(connection, AuditFilter(patient_id="P1"), limit=2)
    assert [row.id for row in newest] == ["01B", "01E"]  # the newest two, oldest first


def test_export_writes_a_time_range_of_whole_envelopes(recorded: str) -> None:
    with reader_engine(recorded).connect() as connection:
        lines = list(
            export(
                connection,
                AuditFilter(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=30)),
            )
        )
    # since inclusive, until exclusive, oldest first, the envelope as published
    assert [json.loads(line) for line in lines] == [
        envelope("01B", minute=10, calling="CT1", patient="P1", study="1.1", accession="X1"),
        envelope("01C", minute=20, calling="MR7", patient="P2", study="2.1", accession="X2"),
    ]


def test_upgrades_started_together_leave_one_schema(audit_url: str) -> None:
    """`dicombus up` starts several workers at once; each upgrades the store at start."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(audit_url)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert AuditStore(audit_url).write([envelope("01A", minute=0)]) == 1


# The store before migrations, word for word (workers/dicombus_workers/builtin.py at
# ab36cf9): what a node upgraded from that version has on disk.
PRE_MIGRATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    edge TEXT NOT NULL,
    subject TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    calling_ae_title TEXT,
    called_ae_title TEXT,
    status INTEGER,
    envelope TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_association ON events (subject, sequence);
CREATE INDEX IF NOT EXISTS events_by_type_time ON events (type, time);
"""


def write_pre_migration_file(path: Path, envelopes: list[dict[str, Any]]) -> None:
    """The file as the old AuditStore wrote it: WAL, its schema, INSERT OR IGNORE rows."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(PRE_MIGRATION_SCHEMA)
    with connection:
        connection.executemany(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e["id"],
                    e["type"],
                    e["time"],
                    "edge-1",
                    e["subject"],
                    e["sequence"],
                    e["data"]["association"]["calling_ae_title"],
                    e["data"]["association"]["called_ae_title"],
                    e["data"].get("status"),
                    json.dumps(e, separators=(",", ":")),
                )
                for e in envelopes
            ],
        )
    connection.close()


def test_a_store_written_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    old = [
        envelope("01OLD1", minute=1, patient="P1", study="1.1", accession="X1"),
        envelope("01OLD2", minute=2, event_type="EVT_C_ECHO"),
    ]
    write_pre_migration_file(path, old)
    url = store_url(path)

    store = AuditStore(url)  # as a worker does: migrates before its first write
    assert store.write([*old, envelope("01NEW", minute=3, patient="P2")]) == 1
    assert found(url) == ["01OLD1", "01OLD2", "01NEW"]
    assert found(url, patient_id="P1") == ["01OLD1"]  # filled from the old row's envelope
    assert found(url, accession_number="X1") == ["01OLD1"]
    engine = writer_engine(url)
    try:
        with engine.connect() as connection:
            assert current_revision(connection) == head()
            assert (
                connection.execute(select(func.count()).select_from(text("events"))).scalar() == 3
            )
        indexes = {index["name"] for index in inspect(engine).get_indexes("events")}
    finally:
        engine.dispose()
    assert set(INDEXES) <= indexes


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def audit_command(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """``dicombus audit ARGS`` through the command's main, in this process."""

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        returncode = main(["audit", *args])
        captured = capsys.readouterr()
        return Outcome(returncode, captured.out, captured.err)

    return run


def test_audit_search_prints_a_table_or_json_lines(
    recorded: str, audit_command: Callable[..., Outcome]
) -> None:
    table = audit_command("search", "--url", recorded, "--patient", "P1", "--ae", "CT1")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["time", "type", "calling", "called", "patient", "study", "status"]
    assert [row.split() for row in rows] == [
        [format_time(T0), "EVT_C_STORE", "CT1", "EDGE", "P1", "1.1", "0x0000"],
        [
            format_time(T0 + timedelta(minutes=10)),
            "EVT_C_STORE",
            "CT1",
            "EDGE",
            "P1",
            "1.1",
            "0x0000",
        ],
        [
            format_time(T0 + timedelta(minutes=60)),
            "EVT_C_STORE",
            "CT1",
            "ARCHIVE",
            "P1",
            "1.2",
            "0x0000",
        ],
    ]
    assert "3 events" in table.stderr

    lines = audit_command("search", "--url", recorded, "--type", "EVT_C_ECHO", "--json")
    assert lines.returncode == 0, lines.stderr
    (only,) = map(json.loads, lines.stdout.splitlines())
    assert (only["id"], only["calling_ae_title"], only["patient_id"]) == ("01D", "MR7", None)


def test_audit_export_writes_the_range_to_a_file(
    recorded: str, audit_command: Callable[..., Outcome], tmp_path: Path
) -> None:
    target = tmp_path / "exports" / "march.jsonl"
    target.parent.mkdir()
    since, until = format_time(T0 + timedelta(minutes=20)), format_time(T0 + timedelta(hours=2))
    result = audit_command(
        "export", "--url", recorded, "--since", since, "--until", until, str(target)
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [
        "01C",
        "01D",
        "01E",
    ]
    assert "3 events exported" in result.stderr
    assert list(target.parent.iterdir()) == [target]  # no partial file left beside it


def test_audit_search_finds_the_store_of_the_data_folder(
    tmp_path: Path, audit_command: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("DICOMBUS_AUDIT_URL", "DICOMBUS_AUDIT_DB"):
        monkeypatch.delenv(variable, raising=False)
    data = tmp_path / "node"
    AuditStore(store_url(data / "audit.sqlite3")).write([envelope("01A", minute=0)])
    result = audit_command("search", "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["01A"]


def test_audit_search_names_what_is_wrong(
    tmp_path: Path, audit_command: Callable[..., Outcome], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = audit_command("search", "--url", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == 4 and "no audit store at" in missing.stderr
    assert not (tmp_path / "none.sqlite3").exists()  # a search never creates a store

    old = tmp_path / "old.sqlite3"
    write_pre_migration_file(old, [envelope("01A", minute=0)])
    outdated = audit_command("search", "--url", str(old))
    assert outdated.returncode == 4
    assert "schema revision none" in outdated.stderr and "dicombus audit upgrade" in outdated.stderr
    upgraded = audit_command("upgrade", "--url", str(old))
    assert upgraded.returncode == 0 and f"revision {head()}" in upgraded.stdout
    assert audit_command("search", "--url", str(old)).returncode == 0

    with pytest.raises(SystemExit):
        main(["audit", "search", "--since", "yesterday-ish"])
    assert "expected an age such as 30m, 2h or 7d" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("wanted", "index"),
    [
        (AuditFilter(patient_id="P1"), "events_by_patient_id"),
        (AuditFilter(study_instance_uid="1.1"), "events_by_study_instance_uid"),
        (AuditFilter(accession_number="X1"), "events_by_accession_number"),
        (AuditFilter(ae_title="CT1"), "events_by_called_ae_title"),
        (AuditFilter(ae_title="CT1"), "events_by_calling_ae_title"),
        (AuditFilter(event_type="EVT_C_ECHO"), "events_by_type_time"),
        (AuditFilter(since=T0), "events_by_time"),
    ],
)
def test_each_search_reads_its_index(tmp_path: Path, wanted: AuditFilter, index: str) -> None:
    """SQLite's plan for each filter (partial indexes included: "column = value" implies
    the index's condition). PostgreSQL's planner scans tables this small whole."""
    url = store_url(tmp_path / "audit.sqlite3")
    AuditStore(url).write([envelope("01A", minute=0)])
    statement = search_statement(wanted, DEFAULT_LIMIT)
    with reader_engine(url).connect() as connection:
        compiled = statement.compile(connection, compile_kwargs={"literal_binds": True})
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    assert any(f"USING INDEX {index} " in row[-1] for row in plan), plan


def test_a_row_keeps_every_column_and_the_envelope_as_json(audit_url: str) -> None:
    """The SQLite store inserts through the driver with the row as a tuple: each value
    lands in its own column, and the envelope text (written by orjson, UTF-8) reads back
    as the same JSON value, non-ASCII names included."""
    event = envelope("01ROW", minute=4, calling="CT1", patient="PAT-Ü")
    event["data"]["dataset"]["00100010"]["Value"] = [{"Alphabetic": "Müller^Zoë"}]
    assert AuditStore(audit_url).write([event]) == 1
    engine = reader_engine(audit_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(select(events)).one()._asdict()
    finally:
        engine.dispose()
    assert json.loads(row.pop("envelope")) == event
    assert row == {
        "id": "01ROW",
        "type": "EVT_C_STORE",
        "time": event["time"],
        "edge": "edge-1",
        "subject": event["subject"],
        "sequence": 4,
        "calling_ae_title": "CT1",
        "called_ae_title": "EDGE",
        "status": 0,
        "patient_id": "PAT-Ü",
        "study_instance_uid": "1.2.3.1",
        "accession_number": "ACC-1",
    }
