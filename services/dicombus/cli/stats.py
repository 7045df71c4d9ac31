"""``dicombus stats``: the metrics as a terminal summary, once or refreshed live.

The same numbers ``dicombus metrics`` serves, read from the broker's Redis
(:mod:`dicombus.metrics.summary`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from dicombus.cli.common import ExitCode, StopSignals, add_data_option, error, positive_int
from dicombus.data_folder import broker_url_for, redact

COMMAND = "stats"
REDIS_TIMEOUT = 5.0
DEFAULT_INTERVAL = 2.0
# ANSI: cursor home, then clear the screen, so each refresh replaces the last.
CLEAR = "\x1b[H\x1b[2J"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="print the node's metrics as tables (per edge, per queue)",
        description="Print what the metrics say: a table per edge and per queue, tasks, "
        "dead letters and routing; --watch refreshes it until Ctrl-C.",
    )
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between refreshes with --watch (default {DEFAULT_INTERVAL})",
    )
    parser.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="with --watch: stop after N refreshes (default: until Ctrl-C)",
    )
    add_data_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import redis

    from dicombus.bus.redis_server import broker_client
    from dicombus.metrics.snapshot import read_snapshot
    from dicombus.metrics.summary import render

    if args.interval <= 0:
        error(COMMAND, f"--interval: expected seconds > 0, got {args.interval}")
        return ExitCode.USAGE
    url = broker_url_for(args.data)
    client = broker_client(url, timeout=REDIS_TIMEOUT)
    refreshes = 0
    try:
        with StopSignals() as signals:
            while True:
                text = render(read_snapshot(client, datetime.now(UTC)))
                stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                prefix = CLEAR if args.watch and sys.stdout.isatty() else ""
                print(f"{prefix}dicombus stats, {stamp}\n\n{text}", flush=True)
                refreshes += 1
                if not args.watch or (args.count is not None and refreshes >= args.count):
                    return ExitCode.OK
                if signals.wait(args.interval) is not None:
                    return ExitCode.OK  # Ctrl-C or SIGTERM: a watch ends so
    except redis.exceptions.RedisError as exc:
        error(COMMAND, f"cannot read the metrics from Redis at {redact(url)}: {exc}")
        return ExitCode.LOCAL_ERROR
    finally:
        client.close()
