"""Setting up an SQLite store that several processes may first open at once.

Two `dicombus worker` processes starting together on a fresh data folder do this, and
SQLite refuses, at once and without its busy wait, two things they would both do:

- The switch to WAL (``PRAGMA journal_mode=WAL``) reads the database and then needs it
  alone. Two connections switching a new database at the same moment each hold their
  read while they wait for the other's to end, so SQLite answers one "database is
  locked" at once, since that wait could never end. Tried again, the switch finds the
  database in WAL already (the mode is kept in the file): :func:`switch_to_wal`.
- ``CREATE TABLE IF NOT EXISTS`` reads and then writes; in WAL, SQLite refuses that
  upgrade at once when another connection wrote in between. In a write transaction from
  the start, the write lock is waited for instead: :func:`create_schema`.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Final

# How long to let the other connection finish its switch before trying again.
RETRY_INTERVAL: Final = 0.01


def switch_to_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode=WAL`` on ``connection`` (outside a transaction), tried again
    for up to ``timeout`` seconds while another connection holds the database."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(RETRY_INTERVAL)


def create_schema(connection: sqlite3.Connection, script: str) -> None:
    """Run ``script`` (``CREATE ... IF NOT EXISTS`` statements) in one write transaction,
    taken before anything is read."""
    connection.executescript(f"BEGIN IMMEDIATE;{script}COMMIT;")
