"""Patient ID, Study Instance UID and Accession Number, and an index per search key.

Revision ID: 0002
Revises: 0001
Create Date: the store searchable by patient, study, accession, AE title and time

Rows written before this revision get the three attributes from their
envelopes, a batch of rows at a time.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from dicombus.audit.rows import dicom_attributes

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Rows read and updated per round trip while filling the new columns.
BACKFILL_BATCH = 1000
COLUMNS = ("patient_id", "study_instance_uid", "accession_number")
INDEXES = {
    "events_by_time": ["time"],
    "events_by_calling_ae_title": ["calling_ae_title", "time"],
    "events_by_called_ae_title": ["called_ae_title", "time"],
}


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("events", sa.Column(column, sa.Text))
    _backfill()
    for name, columns in INDEXES.items():
        op.create_index(name, "events", columns)
    for column in COLUMNS:  # partial: rows without the attribute cost no index write
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"events_by_{column}",
            "events",
            [column, "time"],
            sqlite_where=where,
            postgresql_where=where,
        )


def _backfill() -> None:
    connection = op.get_bind()
    events = sa.table(
        "events", sa.column("id"), sa.column("envelope"), *(sa.column(name) for name in COLUMNS)
    )
    # Bound names differ from the columns': SQLAlchemy keeps those for SET.
    update = (
        sa.update(events)
        .where(events.c.id == sa.bindparam("row_id"))
        .values({name: sa.bindparam(f"new_{name}") for name in COLUMNS})
    )
    last = ""
    while True:
        batch = connection.execute(
            sa.select(events.c.id, events.c.envelope)
            .where(events.c.id > last)
            .order_by(events.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not batch:
            return
        values = []
        for row_id, text in batch:
            data = json.loads(text).get("data") or {}
            found = dicom_attributes(data)
            if any(found.values()):
                values.append({"row_id": row_id, **{f"new_{k}": v for k, v in found.items()}})
        if values:
            connection.execute(update, values)
        last = batch[-1][0]
