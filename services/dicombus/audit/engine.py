"""Engines for the audit store, with the connection settings each engine needs.

SQLite: WAL, so that readers never block the writer; ``synchronous=NORMAL``:
a commit is durable against a process crash, and a power cut may lose the
last commits, which the edge's at-least-once delivery does not cover anyway;
a writer waits up to :data:`SQLITE_BUSY_TIMEOUT` for the lock (several pool
processes write one file). Its transactions begin with ``BEGIN IMMEDIATE``
(SQLAlchemy's recipe for pysqlite: the driver's own transaction handling is
switched off): a writer takes the lock when it begins, never half-way, and
DDL is transactional, which the migrations' lock relies on.

PostgreSQL: ``pool_pre_ping``, so a connection the server dropped while it
was away (a restart) is replaced before use instead of failing a batch.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from dicombus.audit.location import sqlite_path
from dicombus.sqlite_setup import switch_to_wal

# Seconds a SQLite writer waits for another's lock before failing (then retried).
SQLITE_BUSY_TIMEOUT = 30.0
# Seconds to reach a database server: a store that is away fails fast, and the
# task's retries (with back-off) do the waiting.
CONNECT_TIMEOUT = 10
READ_ONLY = {"mode": "ro", "uri": "true"}
# The execution option naming the statement that begins a SQLite transaction on a
# writer engine (default BEGIN IMMEDIATE); "BEGIN" for a connection that only reads.
SQLITE_BEGIN = "sqlite_begin"


def writer_engine(url: str) -> Engine:
    """An engine that writes (and migrates) the store; makes a SQLite file's folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
        _sqlite_transactions(engine, begin="BEGIN IMMEDIATE", wal=True)
        return engine
    return create_engine(parsed, pool_pre_ping=True, connect_args=_server_arguments(parsed))


def reader_engine(url: str) -> Engine:
    """An engine that only reads: a SQLite file opened read-only, never created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is None:
            return writer_engine(url)
        if not path.is_file():
            raise FileNotFoundError(f"no audit store at {path}")
        # pysqlite's URI form: mode=ro travels in the file: URI (SQLAlchemy's SQLite docs).
        engine = create_engine(
            URL.create("sqlite", database=f"file:{path.resolve()}", query=READ_ONLY),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT},
        )
        _sqlite_transactions(engine, begin="BEGIN", wal=False)
        return engine
    return create_engine(parsed, connect_args=_server_arguments(parsed))


def _server_arguments(url: URL) -> dict[str, Any]:
    # libpq's connect_timeout (psycopg, psycopg2); other drivers take their defaults.
    return {"connect_timeout": CONNECT_TIMEOUT} if url.get_backend_name() == "postgresql" else {}


def _sqlite_transactions(engine: Engine, *, begin: str, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver leaves transactions to us (autocommit mode); "begin" below opens them.
        dbapi_connection.isolation_level = None
        if wal:
            switch_to_wal(dbapi_connection, SQLITE_BUSY_TIMEOUT)
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(SQLITE_BEGIN, begin))
