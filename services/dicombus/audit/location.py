"""Which audit store: a database URL, or a SQLite file.

The store is named by, first match wins:

1. ``DICOMBUS_AUDIT_URL``: any SQLAlchemy URL, e.g.
   ``postgresql+psycopg://audit:secret@db.example.org/dicombus`` or
   ``sqlite:////srv/dicombus/audit.sqlite3``;
2. ``DICOMBUS_AUDIT_DB``: a SQLite file (or a URL, when it has a scheme);
3. for a command: the store the node in ``--data`` recorded in its
   ``node.json`` (``dicombus up`` records ``DATA/audit.sqlite3``), else
   ``DATA/audit.sqlite3``; for a worker started by hand: ``./dicombus-audit.sqlite3``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url

AUDIT_URL_ENV = "DICOMBUS_AUDIT_URL"
AUDIT_DB_ENV = "DICOMBUS_AUDIT_DB"
DEFAULT_AUDIT_DB = "dicombus-audit.sqlite3"  # a worker's, relative to its folder
NODE_AUDIT_DB = "audit.sqlite3"  # in a node's data folder


def store_url(location: str | Path) -> str:
    """A SQLAlchemy URL for ``location``: a URL as it is, a path as a SQLite file."""
    text = str(location)
    if "://" in text:
        return text
    return URL.create("sqlite", database=str(Path(text).resolve())).render_as_string()


def configured_url() -> str | None:
    """The store the environment names (``DICOMBUS_AUDIT_URL``, ``DICOMBUS_AUDIT_DB``)."""
    for variable in (AUDIT_URL_ENV, AUDIT_DB_ENV):
        value = os.environ.get(variable, "").strip()
        if value:
            return store_url(value)
    return None


def worker_url() -> str:
    """The store a worker writes to."""
    return configured_url() or store_url(DEFAULT_AUDIT_DB)


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def describe(where: str) -> str:
    """A store for people to read: a file's path as it is, a URL without its password."""
    return redact(where) if "://" in where else where


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, else None (another engine, or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)
