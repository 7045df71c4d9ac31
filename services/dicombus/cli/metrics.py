"""``dicombus metrics``: serve the node's metrics to Prometheus (``/metrics``).

Every scrape reads the shared state in the broker's Redis
(:mod:`dicombus.metrics.collector`): run it on any host that reaches that
Redis, as many times as you like; they all serve the same numbers.
"""

from __future__ import annotations

import argparse
import sys

from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_data_option,
    add_http_options,
    error,
)
from dicombus.data_folder import broker_url_for, redact

COMMAND = "metrics"
# Prometheus's registered default port range for exporters starts at 9100; 9464 is
# the port OpenTelemetry's Prometheus exporter made common for applications.
DEFAULT_PORT = 9464
# Seconds to connect to Redis or hear from it during a scrape (Prometheus's own
# default scrape timeout is 10 s).
REDIS_TIMEOUT = 5.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="serve Prometheus metrics with DICOM labels",
        description="Serve the node's metrics (associations, C-STORE, latencies, outboxes, "
        "queues, tasks, dead letters, routing) at http://BIND:PORT/metrics, read from the "
        "broker's Redis at every scrape.",
    )
    add_http_options(parser, default_port=DEFAULT_PORT)
    add_data_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from dicombus.bus.redis_server import broker_client
    from dicombus.metrics.collector import registry_for

    url = broker_url_for(args.data)
    client = broker_client(url, timeout=REDIS_TIMEOUT)
    with StopSignals() as signals:
        try:
            server, thread = start_http_server(args.port, args.bind, registry_for(client))
        except OSError as exc:
            error(COMMAND, f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}")
            return ExitCode.LOCAL_ERROR
        host, port = str(server.server_address[0]), int(server.server_address[1])
        print(
            f"dicombus metrics: serving http://{host}:{port}/metrics (Redis {redact(url)})",
            flush=True,
        )
        signals.wait()
        server.shutdown()
        thread.join()
    client.close()
    print("dicombus metrics: stopped", file=sys.stderr)
    return ExitCode.OK
