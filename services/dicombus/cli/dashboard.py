"""``dicombus dashboard``: the node's live dashboard in a browser, and its JSON API.

A small Starlette app served by uvicorn (:mod:`dicombus.dashboard.app`). It reads the
broker's Redis (edges, queues, counters: any host that reaches it), the audit store and
the routing workers' delivery store (SQLite files: run it where they are, as
``dicombus routes retry``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from pathlib import Path

from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_data_option,
    add_http_options,
    error,
)
from dicombus.data_folder import DEFAULT_DATA, DataFolder, broker_url_for, redact

COMMAND = "dashboard"
DEFAULT_PORT = 8765
# Seconds to connect to Redis or hear from it while answering a request.
REDIS_TIMEOUT = 5.0
# Seconds the server is given to finish the requests in flight when it stops.
SHUTDOWN_TIMEOUT = 5


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="serve the live dashboard (charts, queues, routing, events) and its JSON API",
        description="Serve a web page with the node's edges, queues, routing destinations, "
        "dead letters and recent events at http://BIND:PORT/, and the JSON API it reads "
        "(/api/edges, /api/queues, /api/routing, /api/events).",
    )
    add_http_options(
        parser,
        default_port=DEFAULT_PORT,
        exposure="The page replays dead letters and shows PHI: "
        "expose it only behind authentication",
    )
    add_data_option(parser)
    parser.add_argument(
        "--audit-db",
        type=Path,
        metavar="FILE",
        help="the audit store (default: DICOMBUS_AUDIT_DB, else the node's, else "
        "audit.sqlite3 in the data folder)",
    )
    parser.add_argument(
        "--routing-db",
        type=Path,
        metavar="FILE",
        help="the routing workers' delivery store (default: DICOMBUS_ROUTING_DB, else "
        "routing.sqlite3 in the data folder)",
    )
    parser.set_defaults(run=run)


def audit_db_for(args: argparse.Namespace) -> Path:
    folder = args.data if args.data is not None else DEFAULT_DATA
    record = DataFolder(folder).read_record()
    named = args.audit_db or os.environ.get("DICOMBUS_AUDIT_DB") or (record and record.audit_db)
    return Path(named) if named else folder / "audit.sqlite3"


def routing_db_for(args: argparse.Namespace) -> Path:
    folder = args.data if args.data is not None else DEFAULT_DATA
    named = args.routing_db or os.environ.get("DICOMBUS_ROUTING_DB")
    return Path(named) if named else folder / "routing.sqlite3"


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from dicombus.bus.redis_server import broker_client
    from dicombus.dashboard.app import Sources, create_app
    from dicombus.dashboard.queues import WorkerDirectory
    from dicombus.dashboard.routing import RoutingView

    try:
        listener = socket.create_server((args.bind, args.port))
    except OSError as exc:
        error(COMMAND, f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}")
        return ExitCode.LOCAL_ERROR
    url = broker_url_for(args.data)
    sources = Sources(
        client=broker_client(url, timeout=REDIS_TIMEOUT),
        workers=WorkerDirectory(url),
        audit_db=audit_db_for(args),
        routing=RoutingView(routing_db_for(args)),
    )
    config = uvicorn.Config(
        create_app(sources),
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
    )
    server = uvicorn.Server(config)
    # In a thread of its own uvicorn installs no signal handlers: StopSignals owns them.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    with StopSignals() as signals:
        thread.start()
        host, port = listener.getsockname()[:2]
        print(
            f"dicombus dashboard: serving http://{host}:{port}/ (Redis {redact(url)})", flush=True
        )
        signals.wait()
        server.should_exit = True
        thread.join()
    sources.routing.close()
    sources.workers.close()
    sources.client.close()
    listener.close()
    print("dicombus dashboard: stopped", file=sys.stderr)
    return ExitCode.OK
