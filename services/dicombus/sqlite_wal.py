"""Switching an SQLite database to WAL when several processes may first open it at once.

The switch (``PRAGMA journal_mode=WAL``) reads the database and then needs it alone.
Two connections that switch a new database at the same moment each hold their read
while they wait for the other's to end: SQLite answers one of them "database is
locked" at once, not after its busy timeout, since that wait could never end. Tried
again, the switch finds the database in WAL already (the mode is kept in the file).
Two `dicombus worker` processes starting together on a fresh data folder do this.
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
