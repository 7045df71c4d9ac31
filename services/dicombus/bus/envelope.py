"""The envelope every published event travels in: CloudEvents 1.0, JSON format.

An event is made in two steps. On the association's thread, capture builds a
:class:`PendingEvent`: the envelope attributes (id, source, time, sequence)
and a ``build_data`` callable, and nothing else -- no JSON, no dataset
decoding. The publisher (its child process, see :mod:`dicombus.bus.sender`)
later calls :meth:`PendingEvent.to_envelope`, which runs ``build_data`` and
returns the structure to serialize.

Attributes (CloudEvents 1.0 "JSON Event Format"):

- ``specversion`` "1.0"; ``id`` a ULID, unique per event and stable across
  retries and replays, so consumers deduplicate on it;
- ``source`` ``dicombus://<edge id>/<AE title>`` (both percent-encoded);
- ``type`` the event name (``EVT_C_STORE``); ``time`` UTC, RFC 3339 with
  microseconds; ``subject`` the association id (a ULID);
- ``datacontenttype`` ``application/json``; ``data`` the event's body
  (see :mod:`dicombus.bus.event_data` and docs/events.md);
- extensions: ``sequence`` (1, 2, 3 ... per association, the order to restore)
  and ``schemaversion`` (the version of the ``data`` schema, "1"); and, from an
  edge that serves C-GET, ``retrieveuri``: ``dicom://<AE title>@<host>:<port>``
  (``dicom-tls://`` when its listener speaks DICOM over TLS), where the instances
  it stored can be retrieved (routing workers that cannot read its storage fetch
  them from there, docs/routing.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

SPEC_VERSION = "1.0"
SCHEMA_VERSION = "1"
DATA_CONTENT_TYPE = "application/json"
SOURCE_SCHEME = "dicombus"
# The schemes of a DICOM network address, dicom://<AE title>@<host>:<port>: the plain one,
# and DICOM over TLS (PS3.15 B.1, the Basic TLS Secure Transport Connection Profile).
DICOM_SCHEME = "dicom"
DICOM_TLS_SCHEME = "dicom-tls"

# CloudEvents 1.0 "Attribute Naming Convention": extension names are lower-case
# ASCII letters and digits only, so every binding (HTTP headers, AMQP, Kafka)
# can carry them unchanged.
EXTENSION_ATTRIBUTES = ("sequence", "schemaversion", "retrieveuri")
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingEvent:
    """An event captured on an association thread; its ``data`` is built later, elsewhere."""

    event_type: str
    id: str
    subject: str
    sequence: int
    time: datetime
    source: str
    # Runs where the publisher builds messages (its child process by default): may read
    # the stored file and decode datasets. Picklable: see dicombus.bus.event_data.
    build_data: Callable[[], dict[str, Any]]
    # Where the edge serves C-GET for what it stored (None: it does not).
    retrieve_uri: str | None = None

    def to_envelope(self) -> dict[str, Any]:
        """The CloudEvents structure, ``data`` built now (each call builds it again)."""
        return to_envelope(self)

    # The pickled state is the dataclass default's, the field values in order, made
    # and read from a table instead of fields() per event (the journal and the
    # publisher child pickle every event).
    def __getstate__(self) -> list[Any]:
        return [getattr(self, name) for name, _ in _PENDING_FIELDS]

    def __setstate__(self, state: list[Any]) -> None:
        # The journal keeps events pickled across an upgrade: a row written by an edge
        # of an earlier version holds only the fields it had. Fields are only ever
        # added at the end, with a default, so the missing ones take theirs.
        for position, (name, default) in enumerate(_PENDING_FIELDS):
            object.__setattr__(self, name, state[position] if position < len(state) else default)


_PENDING_FIELDS = tuple((field.name, field.default) for field in fields(PendingEvent))


def to_envelope(pending: PendingEvent) -> dict[str, Any]:
    """``pending`` as a CloudEvents 1.0 JSON-format structure, ready for json.dumps."""
    envelope: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": pending.id,
        "source": pending.source,
        "type": pending.event_type,
        "time": format_time(pending.time),
        "subject": pending.subject,
        "datacontenttype": DATA_CONTENT_TYPE,
        "sequence": pending.sequence,
        "schemaversion": SCHEMA_VERSION,
        "data": pending.build_data(),
    }
    if pending.retrieve_uri is not None:
        envelope["retrieveuri"] = pending.retrieve_uri
    return envelope


def source_uri(edge_id: str, ae_title: str) -> str:
    """``dicombus://<edge id>/<AE title>``; an AE title may hold spaces, so both are quoted."""
    return f"{SOURCE_SCHEME}://{quote(edge_id, safe='')}/{quote(ae_title.strip(), safe='')}"


class RetrieveAddress(NamedTuple):
    """Where an edge serves C-GET: a :func:`retrieve_uri` read back."""

    ae_title: str
    host: str
    port: int
    tls: bool = False  # the listener speaks DICOM over TLS only


def dicom_scheme(tls: bool) -> str:
    """``dicom-tls`` for an association over TLS, else ``dicom``."""
    return DICOM_TLS_SCHEME if tls else DICOM_SCHEME


def retrieve_uri(ae_title: str, host: str, port: int, *, tls: bool = False) -> str:
    """``dicom://<AE title>@<host>:<port>`` (``dicom-tls://`` with ``tls``): an AE title may
    hold spaces, so it is quoted; an IPv6 address is bracketed (RFC 3986 3.2.2)."""
    shown = f"[{host}]" if ":" in host else host
    return f"{dicom_scheme(tls)}://{quote(ae_title.strip(), safe='')}@{shown}:{port}"


def parse_retrieve_uri(text: str) -> RetrieveAddress:
    """The address of a :func:`retrieve_uri`; ValueError naming what is wrong."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    schemes = (DICOM_SCHEME, DICOM_TLS_SCHEME)
    if parts.scheme not in schemes or not parts.username or not parts.hostname or not port:
        raise ValueError(
            f"{text!r} is not a {DICOM_SCHEME}:// or {DICOM_TLS_SCHEME}://"
            "<AE title>@<host>:<port> address"
        )
    return RetrieveAddress(
        unquote(parts.username), parts.hostname, port, parts.scheme == DICOM_TLS_SCHEME
    )


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds: ``2026-11-22T21:00:00.123456Z``."""
    if moment.tzinfo is None:
        raise ValueError("event times are timezone-aware (UTC); got a naive datetime")
    # Formatted by hand: strftime costs half as much again. Captured times are UTC already.
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time` (also accepts any RFC 3339 offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def is_extension_name(name: str) -> bool:
    """Whether ``name`` is a valid CloudEvents 1.0 attribute name."""
    return _EXTENSION_NAME.fullmatch(name) is not None
