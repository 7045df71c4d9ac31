"""Dead letters end to end: real Redis, a real ``dicombus worker``, an edge, the CLI.

The audit store is away for real: ``DICOMBUS_AUDIT_DB`` names a folder, so
SQLite raises ``OperationalError`` ("unable to open database file") on every
try. With ``DICOMBUS_TASK_MAX_RETRIES=1`` the built-in audit task gives up
after two attempts; before dead letters the event was then recorded nowhere.
Now it waits in ``dicombus:dead:dicombus.audit_count``, ``dicombus dead-letters``
lists it, and once the store is back a replay puts it in the audit store
exactly once. A task that fails at once (no retry) is dead-lettered too; one
made with ``dead_letter=False`` is not.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dicombus.bus import dead_letters
from dicombus.cli.main import main
from worker_support import (
    client_for,
    echo,
    embedded_redis,
    running_edge,
    running_worker,
    wait_for,
)

AUDIT = "dicombus.audit_count"  # the combined built-in batch task


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def dead_letters_command(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Outcome]:
    """``dicombus dead-letters ARGS`` through the command's main, on the test's Redis.

    In this process: the command is the code under test; a subprocess per call
    would add only interpreter start-ups.
    """
    monkeypatch.setenv("DICOMBUS_BROKER_URL", redis_url)

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        returncode = main(["dead-letters", *args])
        captured = capsys.readouterr()
        return Outcome(returncode, captured.out, captured.err)

    return run


def audited(db: Path, event_id: str) -> int:
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db) as connection:
            (found,) = connection.execute(
                "SELECT count(*) FROM events WHERE id = ?", (event_id,)
            ).fetchone()
    except sqlite3.OperationalError:  # the worker is creating the table right now
        return 0
    return int(found)


def test_an_event_the_audit_store_cannot_take_is_kept_listed_and_replayed_once(
    redis_url: str, tmp_path: Path, dead_letters_command: Callable[..., Outcome]
) -> None:
    audit_db = tmp_path / "audit" / "audit.sqlite3"
    audit_db.mkdir(parents=True)  # a folder where the SQLite file should be: unusable
    client = client_for(redis_url)
    settings = {
        "DICOMBUS_AUDIT_DB": str(audit_db),
        "DICOMBUS_AUDIT_EVENTS": "EVT_C_ECHO",
        "DICOMBUS_TASK_MAX_RETRIES": "1",
    }
    with (
        running_worker(
            redis_url,
            tmp_path / "worker",
            builtin=True,
            include=("dead_letter_tasks",),
            env=settings,
        ) as worker,
        running_edge(redis_url, tmp_path / "edge") as node,
    ):
        wait_for(lambda: node.view.wants("EVT_C_ECHO"), "the edge to see the subscriptions")
        echo(node.address[1])
        wait_for(
            lambda: dead_letters.tasks(client) == [AUDIT, "test.refuses"],
            "the audit task and test.refuses to give up",
        )
        wait_for(
            lambda: "test.refuses_quietly[" in worker.log() and "raised unexpected" in worker.log(),
            "test.refuses_quietly to fail",
        )

        listed = dead_letters_command("list", "--json")
        assert listed.returncode == 0, listed.stderr
        letters = {entry["task"]: entry for entry in map(json.loads, listed.stdout.splitlines())}
        assert set(letters) == {AUDIT, "test.refuses"}  # not test.refuses_quietly
        audit = letters[AUDIT]
        assert (audit["queue"], audit["attempts"]) == (AUDIT, 2)
        # SQLAlchemy's OperationalError, wrapping the driver's.
        assert audit["error"].startswith("OperationalError: (sqlite3.OperationalError) unable")
        assert audit["envelope"]["type"] == "EVT_C_ECHO"
        event_id = audit["envelope"]["id"]
        refused = letters["test.refuses"]
        assert (refused["attempts"], refused["envelope"]["id"]) == (1, event_id)
        assert refused["error"] == "ValueError: EVT_C_ECHO is not wanted here"

        table = dead_letters_command("list", "--task", AUDIT)
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()
        assert header.split()[:6] == ["time", "task", "event", "type", "event", "id"]
        assert row.split()[1:4] == [AUDIT, "EVT_C_ECHO", event_id]
        assert "OperationalError" in row
        assert audited(audit_db, event_id) == 0

        missing = dead_letters_command("replay", "--id", "01NOTANEVENTID0000000000000")
        assert missing.returncode == 1 and "no dead letter has event id" in missing.stderr

        audit_db.rmdir()  # the store is back
        replayed = dead_letters_command("replay", "--task", AUDIT, "--id", event_id)
        assert replayed.returncode == 0, replayed.stderr
        assert dead_letters.count(client, AUDIT) == 0
        wait_for(lambda: audited(audit_db, event_id), "the replayed event in the audit store")
        assert audited(audit_db, event_id) == 1

        counted = dead_letters_command("count")
        assert counted.stdout.splitlines() == ["test.refuses\t1"]
        purged = dead_letters_command("purge", "--task", "test.refuses")
        assert purged.returncode == 0, purged.stderr
        assert dead_letters.tasks(client) == []
