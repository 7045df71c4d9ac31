"""The ``events`` table: one row per audited event, keyed by the event's id.

The first ten columns are the table as the audit store had it before
migrations (revision ``0001``, which ``dicombus routes dry-run`` still reads);
revision ``0002`` added the DICOM attributes an operator searches by and the
indexes. ``time`` is the envelope's time as RFC 3339 UTC text with
microseconds (``2026-11-22T21:00:00.123456Z``): fixed width, so text order is
time order on both engines, and a range is a comparison of strings.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, Table, Text, text

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("id", Text, primary_key=True),  # the event's ULID: exactly once per event
    Column("type", Text, nullable=False),
    Column("time", Text, nullable=False),
    Column("edge", Text, nullable=False),
    Column("subject", Text, nullable=False),  # the association id
    Column("sequence", Integer, nullable=False),
    Column("calling_ae_title", Text),
    Column("called_ae_title", Text),
    Column("status", Integer),
    Column("envelope", Text, nullable=False),  # the whole CloudEvents envelope, JSON
    Column("patient_id", Text),  # (0010,0020)
    Column("study_instance_uid", Text),  # (0020,000D)
    Column("accession_number", Text),  # (0008,0050)
    Index("events_by_association", "subject", "sequence"),
    Index("events_by_type_time", "type", "time"),
    Index("events_by_time", "time"),
    # Each search key with time, so "this patient, newest first" reads one index range.
    Index("events_by_calling_ae_title", "calling_ae_title", "time"),
    Index("events_by_called_ae_title", "called_ae_title", "time"),
    *(
        # Partial: most events (the association's lifecycle) carry no data set, and a
        # row the index leaves out costs no index write. "column = value" implies
        # the condition, so both engines use the index for it.
        Index(
            f"events_by_{column}",
            column,
            "time",
            sqlite_where=text(f"{column} IS NOT NULL"),
            postgresql_where=text(f"{column} IS NOT NULL"),
        )
        for column in ("patient_id", "study_instance_uid", "accession_number")
    ),
)
