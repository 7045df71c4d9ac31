"""``dicombus worker``: a Celery worker running the dicombus app with its safe defaults.

The same as ``celery -A dicombus_workers.app worker`` with the modules of
your ``@on_event`` tasks imported first (``--include``), the built-in audit
and counter subscriptions unless ``--no-builtin``, and, unless ``--queues``
says otherwise, every queue those subscriptions use. When the worker is
ready it writes its subscriptions to the registry in Redis; edge nodes then
publish the subscribed event types to it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
from collections.abc import Sequence

from dicombus.cli.common import ExitCode, error, positive_int

COMMAND = "worker"
POOLS = ("prefork", "solo", "threads")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="run a Celery worker for event tasks (the built-in ones and yours)",
        description="Run a Celery worker of the dicombus app: acks late, JSON only, "
        "redelivery after a lost worker (docs/workers.md). The broker is "
        "DICOMBUS_BROKER_URL (default redis://127.0.0.1:6379/0).",
    )
    parser.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (your @on_event tasks) before starting; repeatable",
    )
    parser.add_argument(
        "-Q",
        "--queues",
        metavar="Q1,Q2",
        help="queues to consume (default: every queue of the loaded subscriptions)",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="pool processes (default: the number of CPUs)",
    )
    parser.add_argument(
        "--pool", choices=POOLS, default="prefork", help="Celery execution pool (default prefork)"
    )
    parser.add_argument(
        "--no-builtin",
        dest="builtin",
        action="store_false",
        help="leave out the built-in audit and counter tasks",
    )
    parser.add_argument(
        "-n", "--hostname", metavar="NAME", help="node name (default dicombus-PID@HOST)"
    )
    parser.add_argument("-l", "--loglevel", default="INFO", help="Celery log level (default INFO)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        celery_argv = prepare(
            includes=args.include,
            builtin=args.builtin,
            queues=args.queues,
            concurrency=args.concurrency,
            pool=args.pool,
            hostname=args.hostname,
            loglevel=args.loglevel,
        )
    except ImportError as exc:
        error(COMMAND, f"cannot import {exc.name or exc}: {exc}")
        return ExitCode.LOCAL_ERROR
    from dicombus_workers import app

    try:
        app.worker_main(celery_argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAILED
    return ExitCode.OK


def prepare(
    *,
    includes: Sequence[str],
    builtin: bool,
    queues: str | None,
    concurrency: int,
    pool: str,
    hostname: str | None,
    loglevel: str,
) -> list[str]:
    """Import the task modules; return the ``celery worker`` arguments."""
    # User modules are found from the current folder, as ``celery -A`` finds them.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from dicombus_workers import app
    from dicombus_workers.app import DEFAULT_QUEUE
    from dicombus_workers.on_event import subscriptions

    modules = (["dicombus_workers.builtin"] if builtin else []) + list(includes)
    for module in modules:
        importlib.import_module(module)
    # Celery imports them too, in every pool process it may start by spawning.
    app.conf.include = modules
    consumed = queues or ",".join(sorted({DEFAULT_QUEUE} | {sub.queue for sub in subscriptions()}))
    return [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--queues={consumed}",
        f"--hostname={hostname or f'dicombus-{os.getpid()}@{socket.gethostname()}'}",
        # Gossip and mingle sync revoked-task lists between workers; event tasks
        # are never revoked, and mingle alone costs a second at every start.
        "--without-gossip",
        "--without-mingle",
    ]
