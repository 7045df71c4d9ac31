"""The durable spool of audit messages, and of C-STOREs waiting for their association's end.

One SQLite file in the node's data folder, committed with ``synchronous=FULL``
(each commit is fsynced) before anything is sent: a message spooled is kept
until the repository took it, across worker restarts and repository outages,
and leaves in the order it was spooled (``seq``). Each message has a key
(the event id it came from, and a suffix), so a redelivered event spools
nothing twice.

Instances Transferred is one message per association and study (PS3.15
A.5.3.7), so each C-STORE is kept in ``transfers`` until its association's
EVT_CONN_CLOSE. A C-STORE that a concurrent worker process handles after
that close (events of one association may run out of order across
processes) makes a message of its own at once: counted, never held forever.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dicombus.sqlite_setup import create_schema, switch_to_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    event_id TEXT PRIMARY KEY,
    association TEXT NOT NULL,
    instance TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_by_association ON transfers (association);
CREATE TABLE IF NOT EXISTS closed (
    association TEXT PRIMARY KEY,
    time TEXT NOT NULL
);
"""
# Several pool processes write the file; a writer waits this long for the lock.
BUSY_TIMEOUT = 30.0

Render = Callable[[list[Mapping[str, Any]]], list[bytes]]


class Spool:
    """Messages waiting for the audit record repository, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        # One connection per process and thread: a connection must not cross a fork.
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "pid", None) != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            switch_to_wal(connection, BUSY_TIMEOUT)
            # FULL: every commit is fsynced, so a spooled message survives a power cut.
            connection.execute("PRAGMA synchronous=FULL")
            create_schema(connection, _SCHEMA)
            self._local.connection, self._local.pid = connection, os.getpid()
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def add(self, key: str, bodies: Sequence[bytes]) -> None:
        """Spool ``bodies`` under ``key`` (``key/0``, ``key/1`` ...); repeats are ignored."""
        with self._transaction() as connection:
            _insert(connection, key, bodies)

    def add_transfer(
        self, event_id: str, association: str, instance: Mapping[str, Any], render: Render
    ) -> None:
        """Keep a C-STORE until its association ends; after the end, spool it at once."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO transfers VALUES (?, ?, ?)",
                (event_id, association, json.dumps(instance)),
            )
            late = connection.execute(
                "SELECT 1 FROM closed WHERE association = ?", (association,)
            ).fetchone()
            if late:
                _release(connection, association, event_id, render)

    def close_association(self, event_id: str, association: str, time: str, render: Render) -> None:
        """The association ended: spool its Instances Transferred messages."""
        with self._transaction() as connection:
            connection.execute("INSERT OR IGNORE INTO closed VALUES (?, ?)", (association, time))
            _release(connection, association, event_id, render)

    def pending(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest ``limit`` messages not yet delivered, in order."""
        rows = self._connection().execute(
            "SELECT seq, body FROM messages ORDER BY seq LIMIT ?", (limit,)
        )
        return [(seq, bytes(body)) for seq, body in rows]

    def delivered(self, last_seq: int) -> None:
        """Everything up to ``last_seq`` reached the repository."""
        with self._transaction() as connection:
            connection.execute("DELETE FROM messages WHERE seq <= ?", (last_seq,))

    def count(self) -> int:
        row = self._connection().execute("SELECT count(*) FROM messages").fetchone()
        return int(row[0])


def _insert(connection: sqlite3.Connection, key: str, bodies: Sequence[bytes]) -> None:
    connection.executemany(
        "INSERT OR IGNORE INTO messages (key, body) VALUES (?, ?)",
        [(f"{key}/{index}", body) for index, body in enumerate(bodies)],
    )


def _release(connection: sqlite3.Connection, association: str, key: str, render: Render) -> None:
    rows = connection.execute(
        "SELECT instance FROM transfers WHERE association = ? ORDER BY rowid", (association,)
    ).fetchall()
    if not rows:
        return
    _insert(connection, key, render([json.loads(row[0]) for row in rows]))
    connection.execute("DELETE FROM transfers WHERE association = ?", (association,))
