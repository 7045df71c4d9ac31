"""Reading the audit store: search by DICOM attributes, export a time range."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, Select, or_, select

from dicombus.audit.schema import events
from dicombus.bus.envelope import format_time

# Rows ``dicombus audit search`` shows unless told otherwise.
DEFAULT_LIMIT = 100
# Rows an export holds in memory at a time (a server-side cursor on PostgreSQL).
EXPORT_CHUNK = 1000

SEARCH_COLUMNS = (
    events.c.time,
    events.c.type,
    events.c.calling_ae_title,
    events.c.called_ae_title,
    events.c.patient_id,
    events.c.study_instance_uid,
    events.c.accession_number,
    events.c.status,
    events.c.id,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    """What to look for; every given field must match (None: any)."""

    patient_id: str | None = None
    study_instance_uid: str | None = None
    accession_number: str | None = None
    ae_title: str | None = None  # calling or called
    event_type: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def search(connection: Connection, wanted: AuditFilter, limit: int = DEFAULT_LIMIT) -> list[Row]:  # type: ignore[type-arg]
    """The newest ``limit`` matching events, oldest first (columns: :data:`SEARCH_COLUMNS`)."""
    return list(reversed(connection.execute(search_statement(wanted, limit)).all()))


def search_statement(wanted: AuditFilter, limit: int) -> Select:  # type: ignore[type-arg]
    """The SELECT of :func:`search`: the newest ``limit`` matches, newest first."""
    newest = _filtered(select(*SEARCH_COLUMNS), wanted).order_by(
        events.c.time.desc(), events.c.sequence.desc()
    )
    return newest.limit(limit)


def export(connection: Connection, wanted: AuditFilter) -> Iterator[str]:
    """The envelopes (JSON text, as recorded) of the matching events, oldest first."""
    ordered = _filtered(select(events.c.envelope), wanted).order_by(
        events.c.time, events.c.subject, events.c.sequence
    )
    result = connection.execution_options(yield_per=EXPORT_CHUNK).execute(ordered)
    for (envelope,) in result:
        yield envelope


def _filtered(statement: Select, wanted: AuditFilter) -> Select:  # type: ignore[type-arg]
    conditions = [
        column == value
        for column, value in (
            (events.c.patient_id, wanted.patient_id),
            (events.c.study_instance_uid, wanted.study_instance_uid),
            (events.c.accession_number, wanted.accession_number),
            (events.c.type, wanted.event_type),
        )
        if value is not None
    ]
    if wanted.ae_title is not None:
        title = wanted.ae_title
        conditions.append(
            or_(events.c.calling_ae_title == title, events.c.called_ae_title == title)
        )
    # Stored times are fixed-width RFC 3339 UTC text (schema.py): compare as text.
    if wanted.since is not None:
        conditions.append(events.c.time >= format_time(wanted.since))
    if wanted.until is not None:
        conditions.append(events.c.time < format_time(wanted.until))
    return statement.where(*conditions)
