"""The audit store's PostgreSQL server away longer than the retries: nothing is lost.

Real parts throughout: a PostgreSQL cluster of this test's own (stopped and
started again by its PID), an embedded Redis, a ``dicombus worker`` process
running the built-in audit task, an edge, and the ``dicombus dead-letters``
command. With ``DICOMBUS_TASK_MAX_RETRIES=1`` the task gives up on an event
while the server is down; the event waits as a dead letter, and once the
server is back a replay writes it, exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicombus.audit.engine import reader_engine
from dicombus.bus import dead_letters
from dicombus.cli.main import main
from postgres_support import PostgresServer, running_postgres
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from worker_support import client_for, echo, embedded_redis, running_edge, running_worker, wait_for

AUDIT = "dicombus.audit_count"  # the combined built-in batch task


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own: the test stops it."""
    with running_postgres() as server:
        yield server


def audited(url: str) -> list[str]:
    """The ids of the audited events, oldest first; [] while the server is away."""
    engine = reader_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT id FROM events ORDER BY time")).scalars())
    except OperationalError:
        return []
    finally:
        engine.dispose()


def test_an_event_recorded_while_postgresql_was_down_is_kept_and_replayed_once(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = postgres.create_database()
    settings = {
        "DICOMBUS_AUDIT_URL": url,
        "DICOMBUS_AUDIT_EVENTS": "EVT_C_ECHO",
        "DICOMBUS_TASK_MAX_RETRIES": "1",
    }
    with embedded_redis(tmp_path / "redis") as redis_url:
        monkeypatch.setenv("DICOMBUS_BROKER_URL", redis_url)
        client = client_for(redis_url)
        with (
            running_worker(redis_url, tmp_path / "worker", builtin=True, include=(), env=settings),
            running_edge(redis_url, tmp_path / "edge") as node,
        ):
            wait_for(lambda: node.view.wants("EVT_C_ECHO"), "the edge to see the subscription")
            echo(node.address[1])
            first = wait_for(lambda: audited(url), "the first event in PostgreSQL")

            postgres.stop()
            echo(node.address[1])
            wait_for(lambda: dead_letters.count(client, AUDIT) == 1, "the audit task to give up")
            capsys.readouterr()
            assert main(["dead-letters", "list", "--json"]) == 0
            (letter,) = map(json.loads, capsys.readouterr().out.splitlines())
            assert (letter["task"], letter["attempts"]) == (AUDIT, 2)
            assert letter["error"].startswith("OperationalError")
            kept = letter["envelope"]["id"]
            assert kept not in first

            postgres.start()
            assert audited(url) == first  # back, without the event
            assert main(["dead-letters", "replay", "--task", AUDIT]) == 0
            wait_for(lambda: kept in audited(url), "the replayed event in PostgreSQL")
            assert dead_letters.count(client, AUDIT) == 0
            # Events after the outage are audited as before.
            echo(node.address[1])
            wait_for(lambda: len(audited(url)) == 3, "the next event after the outage")
    assert audited(url)[:2] == [*first, kept]
    assert len(set(audited(url))) == 3
