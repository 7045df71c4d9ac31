"""``dicombus audit``: search the audit store, export a time range, upgrade its schema.

The store is the one the workers write (:mod:`dicombus.audit.location`):
``--url``, else ``DICOMBUS_AUDIT_URL`` / ``DICOMBUS_AUDIT_DB``, else the one the
node in ``--data`` recorded in its ``node.json``, else ``DATA/audit.sqlite3``.
``search`` and ``export`` only read (a SQLite file is opened read-only and
never created); ``upgrade`` migrates the schema as a starting worker does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dicombus.audit.location import NODE_AUDIT_DB, configured_url, redact, store_url
from dicombus.cli.common import ExitCode, add_data_option, error
from dicombus.data_folder import DEFAULT_DATA, DataFolder

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from dicombus.audit.query import AuditFilter

COMMAND = "audit"
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# The table ``search`` prints: (heading, width); the last column runs to the end.
COLUMNS = (
    ("time", 27),
    ("type", 18),
    ("calling", 16),
    ("called", 16),
    ("patient", 16),
    ("study", 30),
    ("status", 6),
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="search and export the audit store",
        description="The audit store holds every audited event (one row per event id). "
        "Search it by patient, study, accession, AE title, type and time, or export a "
        "time range as JSON lines.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    search = actions.add_parser(
        "search",
        help="the newest matching events, as a table or JSON lines",
        description="Print the newest matching events (oldest of them first); every "
        "given filter must match.",
    )
    search.add_argument("--patient", metavar="ID", help="Patient ID (0010,0020)")
    search.add_argument("--study", metavar="UID", help="Study Instance UID (0020,000D)")
    search.add_argument("--accession", metavar="NUMBER", help="Accession Number (0008,0050)")
    search.add_argument("--ae", metavar="TITLE", help="calling or called AE title")
    search.add_argument("--type", dest="event_type", metavar="EVT", help="e.g. EVT_C_STORE")
    _time_options(search)
    search.add_argument(
        "--limit", type=_positive, default=100, metavar="N", help="at most N events (100)"
    )
    search.add_argument(
        "--json", action="store_true", help="one JSON object per event (the row's columns)"
    )
    _store_options(search)
    search.set_defaults(run=run_search)
    export = actions.add_parser(
        "export",
        help="write a time range as JSON lines (the CloudEvents envelopes)",
        description="Write the events of a time range, oldest first, one CloudEvents "
        "envelope per line, as recorded. The file appears once complete.",
    )
    _time_options(export)
    export.add_argument("file", metavar="FILE", help="where to write ('-': standard output)")
    _store_options(export)
    export.set_defaults(run=run_export)
    upgrade = actions.add_parser(
        "upgrade",
        help="migrate the store's schema to the newest revision",
        description="What a worker does when it starts: creates the store if missing, "
        "and migrates an older one in place.",
    )
    _store_options(upgrade)
    upgrade.set_defaults(run=run_upgrade)


def _time_options(parser: argparse.ArgumentParser) -> None:
    when = "an age (30m, 2h, 7d) or a UTC time (2026-01-31, 2026-01-31T08:00:00Z)"
    parser.add_argument("--since", type=moment, metavar="WHEN", help=f"from {when}")
    parser.add_argument("--until", type=moment, metavar="WHEN", help=f"before {when}")


def _store_options(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    parser.add_argument(
        "--url",
        metavar="URL",
        help="the audit store's database URL (default: DICOMBUS_AUDIT_URL, else the "
        "store of the node in --data)",
    )


def moment(text: str) -> datetime:
    """``2h`` (that long ago) or an ISO 8601 date or time (UTC unless it has an offset)."""
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        return datetime.now(UTC) - timedelta(**{_AGE_UNITS[age[2]]: float(age[1])})
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an age such as 30m, 2h or 7d, or a time such as 2026-01-31T08:00:00Z, "
            f"got {text!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def audit_store_url(args: argparse.Namespace) -> str:
    """``--url``, the environment's store, the node's recorded store, or DATA/audit.sqlite3."""
    if args.url:
        return str(store_url(args.url))
    configured = configured_url()
    if configured:
        return configured
    folder = args.data if args.data is not None else DEFAULT_DATA
    record = DataFolder(folder).read_record()
    if record is not None and record.audit_db:
        return store_url(record.audit_db)
    return store_url(folder / NODE_AUDIT_DB)


def run_search(args: argparse.Namespace) -> int:
    from dicombus.audit.query import search

    def show(connection: Connection) -> int:
        rows = search(connection, _filter(args), args.limit)
        if args.json:
            for row in rows:
                print(json.dumps(dict(row._mapping)))
            return ExitCode.OK
        print(_line([heading for heading, _ in COLUMNS]))
        for row in rows:
            print(_line(_cells(row._mapping)))
        print(f"{len(rows)} events", file=sys.stderr)
        return ExitCode.OK

    return _reading("search", args, show)


def run_export(args: argparse.Namespace) -> int:
    from dicombus.audit.query import export

    def write(connection: Connection) -> int:
        with _output(args.file) as output:
            count = 0
            for envelope in export(connection, _filter(args)):
                output.write(envelope + "\n")
                count += 1
        print(f"{count} events exported", file=sys.stderr)
        return ExitCode.OK

    return _reading("export", args, write)


def run_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from dicombus.audit.migrate import upgrade

    url = audit_store_url(args)
    try:
        revision = upgrade(url)
    except (SQLAlchemyError, OSError) as exc:
        error(f"{COMMAND} upgrade", f"cannot upgrade the audit store {redact(url)}: {exc}")
        return ExitCode.LOCAL_ERROR
    print(f"audit store {redact(url)} at schema revision {revision}")
    return ExitCode.OK


def _filter(args: argparse.Namespace) -> AuditFilter:
    from dicombus.audit.query import AuditFilter

    return AuditFilter(
        patient_id=getattr(args, "patient", None),
        study_instance_uid=getattr(args, "study", None),
        accession_number=getattr(args, "accession", None),
        ae_title=getattr(args, "ae", None),
        event_type=getattr(args, "event_type", None),
        since=args.since,
        until=args.until,
    )


def _reading(action: str, args: argparse.Namespace, work: Callable[[Connection], int]) -> int:
    """Run ``work`` on a read-only connection; a store that is missing, away or older
    than this version is a clear error."""
    from sqlalchemy.exc import SQLAlchemyError

    from dicombus.audit.engine import reader_engine
    from dicombus.audit.migrate import current_revision, head

    url = audit_store_url(args)
    try:
        engine = reader_engine(url)
    except (FileNotFoundError, SQLAlchemyError) as exc:
        error(f"{COMMAND} {action}", f"cannot open the audit store {redact(url)}: {exc}")
        return ExitCode.LOCAL_ERROR
    try:
        with engine.connect() as connection:
            revision = current_revision(connection)
            if revision != head():
                error(
                    f"{COMMAND} {action}",
                    f"the audit store {redact(url)} is at schema revision {revision or 'none'}, "
                    f"this version reads {head()}: start a worker on it, or run "
                    f"'dicombus audit upgrade'",
                )
                return ExitCode.LOCAL_ERROR
            return work(connection)
    except SQLAlchemyError as exc:
        error(f"{COMMAND} {action}", f"cannot read the audit store {redact(url)}: {exc}")
        return ExitCode.LOCAL_ERROR
    except OSError as exc:
        error(f"{COMMAND} {action}", f"cannot write {args.file}: {exc}")
        return ExitCode.LOCAL_ERROR
    finally:
        engine.dispose()


@contextlib.contextmanager
def _output(name: str) -> Iterator[IO[str]]:
    """Standard output, or a file that appears under its name only once complete."""
    if name == "-":
        yield sys.stdout
        return
    target = Path(name)
    descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as output:
            yield output
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _cells(row: Any) -> list[str]:
    status = row["status"]
    return [
        row["time"],
        row["type"],
        row["calling_ae_title"] or "-",
        row["called_ae_title"] or "-",
        row["patient_id"] or "-",
        row["study_instance_uid"] or "-",
        f"0x{status:04X}" if status is not None else "-",
    ]


def _line(cells: list[str]) -> str:
    widths = [width for _, width in COLUMNS]
    fixed = "  ".join(cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=False))
    return f"{fixed}  {cells[-1]}".rstrip()
