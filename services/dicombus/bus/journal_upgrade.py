"""The SQLite event journal of earlier versions, read once at an upgrade.

Edges before the segmented journal kept their events in ``journal.sqlite3`` (WAL,
``PRAGMA user_version`` 1)::

    CREATE TABLE journal (event_id TEXT PRIMARY KEY, pending BLOB NOT NULL) WITHOUT ROWID;

:class:`~dicombus.bus.journal.Journal` reads its rows at open, appends them
to the segments (fdatasynced) and only then removes the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from dicombus.bus.journal_records import JournalError, Record

SCHEMA_VERSION = 1
# Seconds to wait for SQLite's file lock (its WAL recovery after a crash).
BUSY_TIMEOUT = 5.0
# The files SQLite keeps beside the database in WAL mode.
SIDE_FILES = ("-wal", "-shm")


def read_sqlite_journal(path: Path) -> list[Record]:
    """The rows of the SQLite journal at ``path``; JournalError naming what is wrong."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT)) as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version not in (0, SCHEMA_VERSION):
                raise JournalError(
                    f"{path} is an event journal of schema version {version}; "
                    f"this dicombus reads version {SCHEMA_VERSION}"
                )
            tables = db.execute("SELECT name FROM sqlite_master WHERE name = 'journal'")
            if tables.fetchone() is None:
                return []  # created, never written
            rows = db.execute("SELECT event_id, pending FROM journal").fetchall()
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the event journal {path}: {exc}") from exc
    return [Record(str(event_id), bytes(blob)) for event_id, blob in rows]


def remove_sqlite_journal(path: Path) -> None:
    """Remove the database and its WAL files (their events are in the segments now)."""
    for name in (path.name, *(path.name + side for side in SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.with_name(name))
