"""``dicombus metrics``: serve the node's metrics to Prometheus (``/metrics``).

Every scrape reads the shared state in the broker's Redis
(:mod:`dicombus.metrics.collector`): run it on any host that reaches that
Redis, as many times as you like; they all serve the same numbers.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_data_option,
    add_http_options,
    error,
)
from dicombus.data_folder import broker_url_for, redact
from dicombus.protocol.errors import DicombusError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from redis import Redis

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
    url = broker_url_for(args.data)
    with StopSignals() as signals:
        try:
            server = MetricsServer.start(url, args.port, args.bind)
        except OSError as exc:
            error(COMMAND, f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}")
            return ExitCode.LOCAL_ERROR
        print(f"dicombus metrics: serving {server.url} (Redis {redact(url)})", flush=True)
        signals.wait()
        server.stop()
    print("dicombus metrics: stopped", file=sys.stderr)
    return ExitCode.OK


class MetricsServer:
    """The node's metrics served at ``/metrics`` by a thread of this process: by
    ``dicombus metrics``, and by an edge or a worker given ``--metrics-port``. Each
    scrape reads the shared state in the broker's Redis, so every server of a node
    answers the same numbers."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, client: Redis) -> None:
        self._server = server
        self._thread = thread
        self._client = client

    @classmethod
    def start(cls, broker_url: str, port: int, bind: str) -> MetricsServer:
        """Listen on ``bind``:``port`` (0: any free one); OSError if it cannot."""
        from prometheus_client import start_http_server

        from dicombus.bus.redis_server import broker_client
        from dicombus.metrics.collector import registry_for

        client = broker_client(broker_url, timeout=REDIS_TIMEOUT)
        try:
            server, thread = start_http_server(port, bind, registry_for(client))
        except OSError:
            client.close()
            raise
        return cls(server, thread, client)

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._client.close()


class MetricsServeError(DicombusError):
    """``--metrics-port`` cannot be served: its address is taken, or there is no bus."""


def start_metrics_server(
    command: str, broker_url: str | None, args: argparse.Namespace
) -> MetricsServer | None:
    """The server ``--metrics-port`` asks ``command`` for (None if not asked), its URL
    printed; MetricsServeError says why it cannot be."""
    if args.metrics_port is None:
        return None
    if not broker_url:
        raise MetricsServeError(
            "--metrics-port: the metrics live in the broker's Redis, and this process has no broker"
        )
    try:
        server = MetricsServer.start(broker_url, args.metrics_port, args.metrics_bind)
    except OSError as exc:
        raise MetricsServeError(
            f"cannot serve metrics on {args.metrics_bind}:{args.metrics_port}: "
            f"{exc.strerror or exc}"
        ) from exc
    print(f"dicombus {command}: metrics at {server.url}", flush=True)
    return server
