"""The store's schema brought to the newest revision (Alembic, run from code).

Workers call :func:`upgrade` when they start, and the writer once per process
before its first write, so a store is migrated before anything is written
with a newer schema. Several workers start at once (``dicombus up`` starts
one per core): the upgrade runs in one transaction behind a lock that the
others wait for (PostgreSQL: a transaction-level advisory lock; SQLite:
``BEGIN IMMEDIATE``, the database's write lock), and whoever gets it second
finds the store at the newest revision and does nothing. Both engines run
DDL inside the transaction, so a failed upgrade leaves the old schema.

A SQLite file written before the store had migrations (the ``events`` table,
no ``alembic_version``) is at revision ``0001``; it is stamped so and then
upgraded in place like any other.

The migration scripts are in ``migrations/`` beside this module, shipped as
package data. A new revision: ``alembic -c <a config whose script_location
is that folder> revision -m "..."``, then write its ``upgrade()`` by hand
with the operations that both engines run.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError

from dicombus.audit.engine import SQLITE_BEGIN, SQLITE_BUSY_TIMEOUT, writer_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision of the schema the store had before it had migrations.
BASELINE = "0001"
# Any constant shared by every upgrader; the advisory lock's key ("dcmbaudt").
_ADVISORY_LOCK_KEY = 0x64636D6261756474


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision of the schema."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:  # the package is broken: its migrations are missing
        raise RuntimeError(f"no audit store migrations in {MIGRATIONS}")
    return revision


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> str:
    """Bring the store at ``url`` to the newest revision (made if missing); return it."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    delay = 0.05
    while True:
        engine = writer_engine(url)
        try:
            return upgrade_engine(engine)
        except OperationalError as exc:
            # Workers starting together meet a SQLite store while one of them creates it
            # and switches it to WAL; SQLite then answers "database is locked" at once,
            # without waiting in its busy handler. Try again, within the busy timeout.
            if "database is locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        finally:
            engine.dispose()
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def upgrade_engine(engine: Engine) -> str:
    newest = head()
    with engine.connect() as connection:
        # The usual case, at head, reads without waiting for a writer's lock.
        if current_revision(connection.execution_options(**{SQLITE_BEGIN: "BEGIN"})) == newest:
            return newest
        connection.rollback()
        with connection.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"}).begin():
            _lock(connection)
            config = alembic_config(connection)
            if _before_migrations(connection):
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
    return newest


def _lock(connection: Connection) -> None:
    # SQLite's writer engine began with BEGIN IMMEDIATE: the write lock is held already.
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


def _before_migrations(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    return "events" in tables and "alembic_version" not in tables
