"""Alembic's environment for the audit store: run on the connection dicombus hands over.

:func:`dicombus.audit.migrate.upgrade` opens the connection, begins the
transaction and takes the lock; this runs the revisions inside it (Alembic
joins a transaction already begun instead of committing on its own).
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the audit store migrations run through dicombus.audit.migrate.upgrade")
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
