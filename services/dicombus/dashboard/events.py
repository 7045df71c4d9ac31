"""``/api/events``: the last events of the audit store, each with its CloudEvents JSON.

The audit store is the built-in audit task's SQLite file (table ``events``,
docs/workers.md), opened read-only: the dashboard never writes to it nor creates it.
The newest rows are read backwards by ``rowid`` (the order they were recorded in, the
table's own b-tree, no sort), so the last N cost N rows whatever the store's size; a
filter that matches rarely reads further back, up to :data:`SCAN_LIMIT` rows.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicombus.protocol.errors import DicombusError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Rows read at most per request when filtering: a filter that matches nothing in the
# newest 200,000 events answers "none" rather than reading the whole store.
SCAN_LIMIT = 200_000
# (0020,000D) Study Instance UID in the DICOM JSON of the event's data set (PS3.18 F.2).
STUDY_PATH = '$.data.dataset."0020000D".Value[0]'


class EventFilterError(DicombusError, ValueError):
    """A filter the API cannot use (a limit that is not a number in range)."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    type: str | None = None
    ae: str | None = None  # calling or called AE title
    study: str | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_query(cls, query: dict[str, str]) -> EventFilter:
        text = query.get("limit") or str(DEFAULT_LIMIT)
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise EventFilterError(f"limit: expected a number from 1 to {MAX_LIMIT}, got {text!r}")
        return cls(
            type=query.get("type") or None,
            ae=query.get("ae") or None,
            study=query.get("study") or None,
            limit=int(text),
        )


def recent_events(path: Path, wanted: EventFilter) -> dict[str, Any]:
    """The ``/api/events`` document (docs/analytics.md#dashboard): newest first."""
    if not path.is_file():
        return {"store": None, "note": f"no audit store at {path}", "events": []}
    clauses, values = [], []
    if wanted.type:
        clauses.append("type = ?")
        values.append(wanted.type)
    if wanted.ae:
        clauses.append("(calling_ae_title = ? OR called_ae_title = ?)")
        values += [wanted.ae, wanted.ae]
    if wanted.study:
        clauses.append("json_extract(envelope, ?) = ?")
        values += [STUDY_PATH, wanted.study]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT type, time, edge, calling_ae_title, called_ae_title, status, envelope "
            "FROM (SELECT rowid AS recorded, * FROM events ORDER BY rowid DESC LIMIT ?) "
            f"{where} ORDER BY recorded DESC LIMIT ?",
            (SCAN_LIMIT, *values, wanted.limit),
        ).fetchall()
    finally:
        connection.close()
    return {
        "store": str(path),
        "events": [
            {
                "type": row[0],
                "time": row[1],
                "edge": row[2],
                "calling_ae_title": row[3],
                "called_ae_title": row[4],
                "status": row[5],
                "cloudevent": json.loads(row[6]),
            }
            for row in rows
        ],
    }
