"""The events table as the audit store had it before migrations.

Revision ID: 0001
Revises:
Create Date: the audit store's first schema
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("time", sa.Text, nullable=False),
        sa.Column("edge", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("calling_ae_title", sa.Text),
        sa.Column("called_ae_title", sa.Text),
        sa.Column("status", sa.Integer),
        sa.Column("envelope", sa.Text, nullable=False),
    )
    op.create_index("events_by_association", "events", ["subject", "sequence"])
    op.create_index("events_by_type_time", "events", ["type", "time"])
