"""Fixtures of the audit store tests: the store on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dicombus.audit.location import store_url
from postgres_support import PostgresServer, running_postgres

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One cluster for the session; each test takes a database of its own."""
    with running_postgres() as server:
        yield server


@pytest.fixture(params=ENGINES)
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty audit store: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return store_url(tmp_path / "audit.sqlite3")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
