"""``dicombus worker``: a Celery worker running the dicombus app with its safe defaults.

The same as ``celery -A dicombus_workers.app worker`` with the modules of
your ``@on_event`` tasks imported first (``--include``), the built-in audit
and counter subscriptions unless ``--no-builtin``, and, unless ``--queues``
says otherwise, every queue those subscriptions use. When the worker is
ready it writes its subscriptions to the registry in Redis; edge nodes then
publish the subscribed event types to it.

The broker is ``DICOMBUS_BROKER_URL`` if set, else the one the node in
``--data`` (default ``./dicombus-data``) recorded in its ``node.json``; the
audit store is that node's too, so a worker started beside ``dicombus up``
joins it with no environment variable. With ``DICOMBUS_CONFIG`` naming the
node's file (a routing worker), its ``[bus] broker_url`` comes before the
record, and its ``[edge] data_dir`` is the default ``--data``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from dicombus.bus.edge_config import EdgeConfigError, load_edge_config
from dicombus.cli.common import (
    ExitCode,
    add_data_option,
    add_include_option,
    add_metrics_options,
    error,
    positive_int,
)
from dicombus.data_folder import (
    BROKER_URL_ENV,
    DEFAULT_DATA,
    DataFolder,
    DataFolderError,
    broker_url_for,
    node_not_running,
)

COMMAND = "worker"
# The node's TOML file, for routing workers (docs/routing.md).
CONFIG_ENV = "DICOMBUS_CONFIG"
POOLS = ("prefork", "solo", "threads")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="run a Celery worker for event tasks (the built-in ones and yours)",
        description="Run a Celery worker of the dicombus app: acks late, JSON only, "
        "redelivery after a lost worker (docs/workers.md). The broker is "
        "DICOMBUS_BROKER_URL if set, else the node's in --data (the one 'dicombus up' runs).",
    )
    add_data_option(parser)
    add_include_option(parser, where="before starting")
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
    add_metrics_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        join_node(args.data)
    except (DataFolderError, EdgeConfigError) as exc:
        error(COMMAND, str(exc))
        return ExitCode.LOCAL_ERROR
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

    from dicombus.cli.metrics import MetricsServeError, start_metrics_server

    try:
        # Served by the worker's main process, beside Celery's consumer.
        metrics = start_metrics_server(COMMAND, os.environ[BROKER_URL_ENV], args)
    except MetricsServeError as exc:
        error(COMMAND, str(exc))
        return ExitCode.LOCAL_ERROR
    try:
        app.worker_main(celery_argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAILED
    finally:
        if metrics is not None:
            metrics.stop()
    return ExitCode.OK


def join_node(data: Path | None) -> None:
    """Point the Celery app (configured from the environment) at the node in ``data``:
    its broker and its audit store, unless the environment already names them. The
    node's file in ``DICOMBUS_CONFIG`` gives its broker, and ``data`` if not given."""
    config = os.environ.get(CONFIG_ENV, "").strip()
    if config:
        edge = load_edge_config(Path(config))
        if edge.broker_url and not os.environ.get(BROKER_URL_ENV, "").strip():
            os.environ[BROKER_URL_ENV] = edge.broker_url
        data = edge.data_dir if data is None else data
    warning = node_not_running(data)
    if warning:
        print(f"dicombus {COMMAND}: warning: {warning}", file=sys.stderr, flush=True)
    os.environ["DICOMBUS_BROKER_URL"] = broker_url_for(data)
    record = DataFolder(data if data is not None else DEFAULT_DATA).read_record()
    if record is not None and record.audit_db and not os.environ.get("DICOMBUS_AUDIT_DB"):
        os.environ["DICOMBUS_AUDIT_DB"] = record.audit_db


def import_task_modules(includes: Sequence[str], *, builtin: bool) -> list[str]:
    """Import the built-in tasks (if ``builtin``) and the ``includes``, found from the
    current folder as ``celery -A`` finds them; return the module names."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = (["dicombus_workers.builtin"] if builtin else []) + list(includes)
    for module in modules:
        importlib.import_module(module)
    return modules


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
    from dicombus_workers import app
    from dicombus_workers.app import DEFAULT_QUEUE
    from dicombus_workers.on_event import subscriptions

    modules = import_task_modules(includes, builtin=builtin)
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
