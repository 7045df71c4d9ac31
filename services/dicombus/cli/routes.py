"""``dicombus routes``: check the rules, replay recorded traffic, list and replay dead letters.

``check`` loads the node's file as the edge and the routing workers do and prints its
destinations and rules; a mistake is reported as ``file:line: [table] key: what`` with exit
status 2. ``dry-run`` reads the C-STORE events the audit store recorded (the built-in
``dicombus.audit`` task's SQLite file) and prints where the rules would have sent each
stored instance, without sending anything. ``failed`` lists the dead letters of the
routing workers' delivery store, ``retry`` sends them again (to another destination with
``--to``); run them on the host of the routing workers, whose store it is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dicombus.bus.edge_config import EdgeConfigError, load_edge_config
from dicombus.cli.common import ExitCode, error
from dicombus.routing import RoutingConfig, load_routing_config
from dicombus.routing.delivery_store import DeliveryStore, State, store_path
from dicombus.routing.rules import Rule

COMMAND = "routes"
DEFAULT_CONFIG = Path("dicombus.toml")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="check the routing rules; replay recorded events through them",
        description="The [routing] section of the node's TOML file: its destinations and "
        "rules (docs/routing.md).",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate the file and print its destinations and rules",
        description="Load the node's file as the edge and the routing workers do; print "
        "the destinations and rules, or the first mistake (file:line: [table] key) and "
        "exit with status 2.",
    )
    _config_option(check)
    check.set_defaults(run=run_check)
    dry_run = actions.add_parser(
        "dry-run",
        help="print where recorded C-STOREs would have been sent, sending nothing",
        description="Replay the C-STORE events of the audit store through the rules and "
        "print each (instance, destination) they would have sent, without sending.",
    )
    _config_option(dry_run)
    dry_run.add_argument(
        "--since",
        type=_duration,
        default=timedelta(hours=1),
        metavar="AGE",
        help="events of the last AGE: 30m, 2h, 1d (default 1h)",
    )
    dry_run.add_argument(
        "--audit-db",
        type=Path,
        metavar="FILE",
        help="the audit store (default: DICOMBUS_AUDIT_DB, else audit.sqlite3 in the "
        "config's data_dir, where dicombus up keeps it)",
    )
    dry_run.add_argument("--json", action="store_true", help="one JSON object per route")
    dry_run.set_defaults(run=run_dry_run)
    failed = actions.add_parser(
        "failed",
        help="list the dead letters: instances a destination refused for good, with reasons",
        description="List the deliveries of the routing store that are dead letters.",
    )
    _config_option(failed)
    _store_option(failed)
    failed.add_argument("--destination", metavar="NAME", help="only those of this destination")
    failed.add_argument("--json", action="store_true", help="one JSON object per dead letter")
    failed.set_defaults(run=run_failed)
    retry = actions.add_parser(
        "retry",
        help="send dead letters again, to their destination or another",
        description="Replay dead letters: the routing workers send them again at once.",
    )
    _config_option(retry)
    _store_option(retry)
    retry.add_argument("uids", nargs="*", metavar="UID", help="SOP Instance UIDs to replay")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    retry.add_argument("--destination", metavar="NAME", help="only dead letters of this one")
    retry.add_argument("--to", metavar="OTHER", help="send them to this destination instead")
    retry.set_defaults(run=run_retry)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the node's TOML file (default ./{DEFAULT_CONFIG})",
    )


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        metavar="FILE",
        help="the routing workers' delivery store (default: DICOMBUS_ROUTING_DB, else "
        "routing.sqlite3 in the config's data_dir)",
    )


def _duration(text: str) -> timedelta:
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"expected an age such as 30m, 2h or 1d, got {text!r}")
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


def _load(path: Path) -> RoutingConfig:
    # The edge's sections too: a misspelt [routing] is an unknown section to the edge.
    load_edge_config(path)
    return load_routing_config(path)


def run_check(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except EdgeConfigError as exc:
        error(COMMAND, str(exc))
        return ExitCode.USAGE
    print(f"{args.config}: {len(config.destinations)} destinations, {len(config.rules)} rules")
    print()
    print_table(
        ("destination", "type", "address", "queue", "concurrency", "transform"),
        [
            (d.name, d.kind, d.address, d.queue, str(d.concurrency), d.transform.describe())
            for d in config.destinations.values()
        ],
    )
    print()
    print_table(
        ("rule", "per", "destinations", "match"),
        [(r.name, _per(r), ", ".join(r.destinations), r.summary) for r in config.rules],
    )
    return ExitCode.OK


def _per(rule: Rule) -> str:
    """The rule's unit, and its own quiet time if it has one."""
    if rule.quiet_seconds is None:
        return rule.per.value
    return f"{rule.per.value} (quiet {rule.quiet_seconds:g} s)"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest cell; the last one runs to the end of the line."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def run_dry_run(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
        audit_db = args.audit_db or _default_audit_db(args.config)
    except EdgeConfigError as exc:
        error(COMMAND, str(exc))
        return ExitCode.USAGE
    since = datetime.now(UTC) - args.since
    sent: Counter[str] = Counter()
    events = unrouted = 0
    try:
        for envelope in recorded_stores(audit_db, since):
            events += 1
            found = config.routes(envelope)
            unrouted += not found
            for route in found:
                sent[route.destination] += 1
                _print_route(envelope, {**asdict(route), "per": route.per.value}, args)
    except sqlite3.Error as exc:
        error(COMMAND, f"cannot read the audit store {audit_db}: {exc}")
        return ExitCode.LOCAL_ERROR
    if not args.json:
        totals = ", ".join(f"{name} {count}" for name, count in sent.items()) or "nothing"
        print(
            f"{events} C-STORE events since {since:%Y-%m-%d %H:%M:%S} UTC; "
            f"would send: {totals}; matched no rule: {unrouted}"
        )
    return ExitCode.OK


def _print_route(envelope: dict[str, Any], route: dict[str, Any], args: argparse.Namespace) -> None:
    data = envelope.get("data")
    association = data.get("association", {}) if isinstance(data, dict) else {}
    calling = association.get("calling_ae_title") or "-"
    if args.json:
        print(
            json.dumps(
                {
                    "event_id": envelope.get("id"),
                    "time": envelope.get("time"),
                    "calling_ae_title": calling,
                    **route,
                }
            )
        )
        return
    print(
        f"{envelope.get('time')}  {calling:<16}  {route['sop_instance_uid']}  "
        f"-> {route['destination']}  (rule {route['rule']}, per {route['per']} {route['uid']})"
    )


def _default_audit_db(config_path: Path) -> Path:
    named = os.environ.get("DICOMBUS_AUDIT_DB")
    if named:
        return Path(named)
    return load_edge_config(config_path).data_dir / "audit.sqlite3"


def recorded_stores(path: Path, since: datetime) -> Iterator[dict[str, Any]]:
    """The EVT_C_STORE envelopes the audit store holds from ``since`` on, oldest first."""
    if not path.is_file():
        raise sqlite3.OperationalError("no such file")
    # Read-only: a dry run never writes, and never creates a missing store.
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        # The envelope's time is RFC 3339 UTC with a Z, so text order is time order.
        cursor = connection.execute(
            "SELECT envelope FROM events WHERE type = 'EVT_C_STORE' AND time >= ? "
            "ORDER BY time, sequence",
            (since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),),
        )
        for (text,) in cursor:
            yield json.loads(text)
    finally:
        connection.close()


def _delivery_store(args: argparse.Namespace) -> DeliveryStore:
    """The store ``--store`` names, else the workers' (must exist: never made here)."""
    named = args.store or os.environ.get("DICOMBUS_ROUTING_DB")
    path = Path(named) if named else store_path(load_edge_config(args.config).data_dir)
    if not path.is_file():
        raise EdgeConfigError(f"no delivery store at {path} (no routing worker has run there)")
    return DeliveryStore(path)


def run_failed(args: argparse.Namespace) -> int:
    try:
        store = _delivery_store(args)
        dead = store.deliveries(state=State.DEAD, destination=args.destination)
    except (EdgeConfigError, sqlite3.Error) as exc:
        error(COMMAND, str(exc))
        return ExitCode.USAGE if isinstance(exc, EdgeConfigError) else ExitCode.LOCAL_ERROR
    if args.json:
        for d in dead:
            print(json.dumps(d.dead_letter_json()))
        return ExitCode.OK
    print_table(
        ("updated", "destination", "sop_instance_uid", "attempts", "reason"),
        [
            (
                datetime.fromtimestamp(d.updated, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                d.destination,
                d.sop_instance_uid,
                str(d.attempts),
                d.reason or "-",
            )
            for d in dead
        ],
    )
    print(f"{len(dead)} dead letter{'s' if len(dead) != 1 else ''}")
    return ExitCode.OK


def run_retry(args: argparse.Namespace) -> int:
    if bool(args.all) == bool(args.uids):
        error(COMMAND, "name the SOP Instance UIDs to replay, or --all")
        return ExitCode.USAGE
    try:
        if args.to is not None and args.to not in _load(args.config).destinations:
            raise EdgeConfigError(f"--to: no destination named {args.to!r} in {args.config}")
        store = _delivery_store(args)
        replayed = store.replay(
            None if args.all else args.uids, to=args.to, destination=args.destination
        )
    except (EdgeConfigError, sqlite3.Error) as exc:
        error(COMMAND, str(exc))
        return ExitCode.USAGE if isinstance(exc, EdgeConfigError) else ExitCode.LOCAL_ERROR
    missing = set(args.uids) - {d.sop_instance_uid for d in replayed}
    for d in replayed:
        print(f"{d.sop_instance_uid}  {d.destination} -> {args.to or d.destination}")
    print(f"replayed {len(replayed)} dead letter{'s' if len(replayed) != 1 else ''}")
    if missing:
        error(COMMAND, f"not dead letters: {', '.join(sorted(missing))}")
        return ExitCode.FAILED
    return ExitCode.OK
