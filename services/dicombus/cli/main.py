"""``dicombus``: the command-line entry point; one subcommand per module of this package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dicombus import __version__
from dicombus.cli import (
    audit,
    dashboard,
    dead_letters,
    echo,
    edge,
    events,
    find,
    get,
    metrics,
    move,
    qrscp,
    routes,
    stats,
    store,
    storescp,
    up,
    worker,
)

COMMANDS = (
    echo,
    store,
    storescp,
    up,
    find,
    get,
    move,
    qrscp,
    edge,
    worker,
    events,
    dead_letters,
    routes,
    metrics,
    stats,
    dashboard,
    audit,
)

# The shell's convention for a process ended by SIGINT: 128 + 2.
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicombus",
        description="dicombus: DICOM edge node and event bus.",
        epilog="Run 'dicombus COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"dicombus {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (see dicombus.cli.common.ExitCode)."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        # Ctrl-C in a client command; the servers catch SIGINT themselves and stop in order.
        print("dicombus: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


if __name__ == "__main__":
    sys.exit(main())
