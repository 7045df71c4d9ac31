"""The audit store: every audited event as one row of an SQL table, on SQLite or PostgreSQL.

The built-in audit task (``dicombus_workers.builtin``) writes it; ``dicombus
audit search`` and ``dicombus audit export`` read it. One database layer
serves both engines: SQLAlchemy Core for the statements, Alembic for the
schema's migrations, which run when a worker starts (:mod:`.migrate`).

- :mod:`.schema`: the ``events`` table and its indexes.
- :mod:`.rows`: an event's envelope -> its row (the indexed DICOM attributes).
- :mod:`.location`: which store (``DICOMBUS_AUDIT_URL``, a SQLite file, a node's data folder).
- :mod:`.engine`: connections, with the SQLite settings the store relies on.
- :mod:`.migrate`: the schema brought to the newest revision, pre-migration files included.
- :mod:`.store`: the writer, exactly once per event id.
- :mod:`.query`: search and export.
"""
