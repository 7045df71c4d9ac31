"""The writer of the audit store: a batch of events in one transaction, each once.

The event id is the primary key and every insert is ``INSERT ... ON CONFLICT
(id) DO NOTHING`` (SQLite and PostgreSQL alike), so a redelivered event, or
a batch that runs twice, leaves one row per event. The engine is made in the
process that writes, on first use (a connection must not cross a fork: the
prefork pool forks after the worker imported this), and that first use brings
the schema to the newest revision (:mod:`dicombus.audit.migrate`).
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from dicombus.audit.engine import writer_engine
from dicombus.audit.migrate import upgrade_engine
from dicombus.audit.rows import audit_row
from dicombus.audit.schema import events
from dicombus.protocol.errors import DicombusError


class UnsupportedEngineError(DicombusError, ValueError):
    """The URL names a database the store does not run on."""


class AuditStore:
    """The audit store at ``url`` (see :mod:`dicombus.audit.location`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = 0
        # Checked here: a URL naming another database fails at once, not at the first event.
        dialect = make_url(url).get_backend_name()
        self._insert = insert_once(dialect)
        self._sqlite = dialect == "sqlite"

    def write(self, envelopes: Sequence[Mapping[str, Any]]) -> int:
        """Insert the events in one transaction; how many were not there before."""
        if not envelopes:
            return 0
        rows = [audit_row(envelope) for envelope in envelopes]
        engine, insert = self._writer()
        with engine.begin() as connection:
            if self._sqlite:
                # The driver's executemany with the rows as tuples: SQLAlchemy's statement
                # path (compiled statement, per-row parameter processing) cost more CPU per
                # row than SQLite's own insert. The same statement, so the same rows.
                values = [_sqlite_values(row) for row in rows]
                return int(connection.exec_driver_sql(_SQLITE_INSERT, values).rowcount)
            result = connection.execute(insert, rows)
            return len(result.all()) if result.returns_rows else result.rowcount

    def _writer(self) -> tuple[Engine, Insert]:
        with self._lock:
            if self._engine is None or self._pid != os.getpid():
                if self._engine is not None:
                    # Made before a fork: leave its connections to the parent (SQLAlchemy's
                    # pooling docs, "Using Connection Pools with Multiprocessing").
                    self._engine.dispose(close=False)
                engine = writer_engine(self.url)
                try:
                    upgrade_engine(engine)  # raises while the store is away: the task retries
                except Exception:
                    engine.dispose()
                    raise
                self._engine, self._pid = engine, os.getpid()
            return self._engine, self._insert


def insert_once(dialect: str) -> Insert:
    """``INSERT INTO events ... ON CONFLICT (id) DO NOTHING`` for ``dialect``."""
    if dialect == "sqlite":
        # pysqlite's executemany counts the rows it inserted, exactly; RETURNING would
        # cost a fifth more CPU per event.
        return sqlite.insert(events).on_conflict_do_nothing(index_elements=[events.c.id])
    if dialect == "postgresql":
        # psycopg's executemany reports no row count (-1): the inserted rows name themselves.
        statement = postgresql.insert(events).on_conflict_do_nothing(index_elements=[events.c.id])
        return statement.returning(events.c.id)
    raise UnsupportedEngineError(f"the audit store runs on SQLite or PostgreSQL, not {dialect}")


# insert_once's statement for SQLite compiled once to the driver's text, and a row's
# values in the order of its parameters.
_SQLITE_COMPILED = insert_once("sqlite").compile(dialect=sqlite.dialect())
_SQLITE_INSERT = _SQLITE_COMPILED.string
_sqlite_values = operator.itemgetter(*(_SQLITE_COMPILED.positiontup or ()))
