"""``dicombus edge --config edge.toml``: run one edge node until SIGINT or SIGTERM.

The node answers modalities (Storage and Verification SCP) and publishes
the events somebody subscribed to through Redis to Celery tasks. The TOML
file is described in :mod:`dicombus.bus.edge_config` and docs/workers.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_metrics_options,
    add_verbosity_options,
    configure_logging,
    error,
    owning_data_folder,
)
from dicombus.data_folder import DataFolder, NodeRecord, redact
from dicombus.heap import freeze_start_up_objects

if TYPE_CHECKING:
    from dicombus.bus.edge import EdgeNode
    from dicombus.bus.edge_config import EdgeConfig

COMMAND = "edge"
# How often the edge looks for an embedded Redis that died.
SUPERVISE_INTERVAL = 1.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="run an edge node from a TOML configuration until Ctrl-C",
        description="Run a dicombus edge node: a Storage and Verification SCP that stores "
        "what it receives and publishes subscribed events to Celery through Redis "
        "(an embedded redis-server unless the config or DICOMBUS_BROKER_URL names one).",
    )
    parser.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="the edge's TOML file"
    )
    add_metrics_options(parser)
    add_verbosity_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # The bus (Celery, kombu, redis) is imported by the commands that use it,
    # not by every ``dicombus`` command.
    from dicombus.bus.edge_config import EdgeConfigError, load_edge_config

    try:
        config = load_edge_config(args.config)
    except EdgeConfigError as exc:
        error(COMMAND, str(exc))
        return ExitCode.USAGE
    configure_logging(args, quiet_by_default=False)
    return owning_data_folder(COMMAND, config.data_dir, lambda folder: _serve(config, folder, args))


def _serve(config: EdgeConfig, folder: DataFolder, args: argparse.Namespace) -> int:
    from dicombus.bus.edge import EdgeNode
    from dicombus.cli.metrics import MetricsServeError, start_metrics_server

    node = EdgeNode(config, folder=folder)
    with StopSignals() as signals:
        try:
            node.start()
        except (OSError, RuntimeError) as exc:
            error(COMMAND, f"cannot start the edge node: {exc}")
            return ExitCode.LOCAL_ERROR
        # The process is the edge's: what it is made of stays out of the collector's scans.
        freeze_start_up_objects()
        host, port = node.address
        broker = redact(node.broker_url) if node.broker_url else "none (publishing off)"
        started = time.time()
        record(folder, node, started)
        print(
            f"dicombus edge: {config.edge_id} running\n"
            f"  AE title:  {config.ae_title}\n"
            f"  address:   {host}:{port}\n"
            f"  storage:   {config.storage.resolve()}\n"
            f"  broker:    {broker}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        try:
            metrics = start_metrics_server(COMMAND, node.broker_url, args)
        except MetricsServeError as exc:
            error(COMMAND, str(exc))
            node.stop()
            return ExitCode.LOCAL_ERROR
        received = supervise(signals, folder, node, started)
        if metrics is not None:
            metrics.stop()
        final = node.stop()
    if final:
        print(f"dicombus {COMMAND}: events {format_metrics(final)}", flush=True)
    print(f"dicombus {COMMAND}: {received} received, stopped", flush=True)
    return ExitCode.OK


def supervise(signals: StopSignals, folder: DataFolder, node: EdgeNode, started: float) -> str:
    """Until a stop signal (returned): start the embedded Redis again if it dies."""
    from dicombus.bus.redis_supervisor import RedisSupervisor

    redis = node.embedded_redis
    supervisor = RedisSupervisor(redis, _say) if redis is not None else None
    while (received := signals.wait(SUPERVISE_INTERVAL)) is None:
        if supervisor is not None and supervisor.check():
            try:
                record(folder, node, started)
            except OSError as exc:  # a full disk: the record is stale, the edge goes on
                _say(f"cannot update {folder.node_file} ({exc})")
    return received


def _say(message: str) -> None:
    print(f"dicombus {COMMAND}: {message}", file=sys.stderr, flush=True)


def record(folder: DataFolder, node: EdgeNode, started: float) -> None:
    """Write DATA/node.json: how commands on this machine reach the edge."""
    redis = node.embedded_redis
    folder.write_record(
        NodeRecord(
            command=COMMAND,
            pid=os.getpid(),
            broker_url=node.broker_url or "",
            embedded_redis=redis is not None,
            redis_pid=redis.pid if redis is not None else None,
            redis_port=redis.port if redis is not None else None,
            ae_title=node.config.ae_title,
            address=node.address,
            started=started,
        )
    )


def format_metrics(metrics: dict[str, float]) -> str:
    """``published 10, spooled 0, ...`` from the publisher's metrics."""
    return ", ".join(
        f"{name} {value:g}" for name, value in metrics.items() if isinstance(value, int | float)
    )
