"""What the worker tests share: an embedded Redis, ``dicombus worker`` processes, an edge.

Workers are real ``dicombus worker`` subprocesses (Celery prefork or solo
pool) in a session of their own, so a test can SIGKILL one with everything it
started, by process group, and nothing else. Their redelivery settings are
shortened for tests (:data:`TEST_VISIBILITY_TIMEOUT`); every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from dicombus import AE
from dicombus.bus.edge import EdgeNode
from dicombus.bus.edge_config import EdgeConfig
from dicombus.bus.redis_server import EmbeddedRedis
from helpers import CT_IMAGE_STORAGE, VERIFICATION, small_dataset

TESTS = Path(__file__).resolve().parent
# A SIGKILLed worker's message is handed out again after this many seconds
# (plus one restore sweep): short, so the kill tests take seconds, not an hour.
TEST_VISIBILITY_TIMEOUT = 2.0
TEST_RESTORE_INTERVAL = 0.5
WORKER_START_TIMEOUT = 20.0
WORKER_STOP_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DELIVERY_TIMEOUT) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@contextmanager
def embedded_redis(folder: Path) -> Iterator[str]:
    server = EmbeddedRedis(folder)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


class Worker:
    """One ``dicombus worker`` process (and its pool processes) in its own session."""

    def __init__(
        self,
        url: str,
        folder: Path,
        *,
        include: Sequence[str] = ("worker_tasks",),
        tasks_folder: Path = TESTS / "bus",
        concurrency: int = 1,
        pool: str = "prefork",
        builtin: bool = False,
        queues: str | None = None,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        arguments: Sequence[str] = (),
    ) -> None:
        """``prefix``: a command the worker runs under (it must exec the rest);
        ``arguments``: more options of ``dicombus worker``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"worker-{time.monotonic_ns()}.log"
        command = [
            *prefix,
            sys.executable,
            "-m",
            "dicombus.cli.main",
            "worker",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            *(f"--include={module}" for module in include),
            *arguments,
        ]
        if not builtin:
            command.append("--no-builtin")
        if queues is not None:
            command.append(f"--queues={queues}")
        environment = {
            **os.environ,
            "DICOMBUS_BROKER_URL": url,
            "DICOMBUS_AUDIT_DB": str(folder / "audit.sqlite3"),
            "DICOMBUS_VISIBILITY_TIMEOUT": str(TEST_VISIBILITY_TIMEOUT),
            "DICOMBUS_RESTORE_INTERVAL": str(TEST_RESTORE_INTERVAL),
            "PYTHONPATH": os.pathsep.join([str(tasks_folder), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        wait_for(self._ready, "the worker to be ready", WORKER_START_TIMEOUT)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the worker exited: {self.log()}")
        # Celery logs "<node> ready." once it consumes; subscriptions are registered then.
        return " ready." in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes (its whole session)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(WORKER_STOP_TIMEOUT)

    def stop(self) -> float:
        """SIGTERM (warm shutdown); return the seconds it took. Killed if it hangs."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("the worker ignored SIGTERM") from None
        return time.monotonic() - started


@contextmanager
def running_worker(url: str, folder: Path, **options: Any) -> Iterator[Worker]:
    worker = Worker(url, folder, **options)
    try:
        yield worker
    finally:
        if worker.process.poll() is None:
            worker.kill()


@contextmanager
def running_edge(url: str, folder: Path, **settings: Any) -> Iterator[EdgeNode]:
    """An edge node on a free loopback port, publishing to ``url``."""
    config = EdgeConfig(
        edge_id="edge-test",
        ae_title="EDGE",
        port=settings.pop("port", 0),
        data_dir=folder,
        broker_url=url,
        **settings,
    )
    node = EdgeNode(config)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def store(port: int, count: int, *, calling: str = "SCU") -> list[str]:
    """One association that stores ``count`` small instances; their SOP Instance UIDs."""
    ae = AE(calling)
    ae.add_requested_context(CT_IMAGE_STORAGE)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    uids = []
    try:
        for _ in range(count):
            ds = small_dataset()
            assert assoc.send_c_store(ds).Status == 0
            uids.append(str(ds.SOPInstanceUID))
    finally:
        assoc.release()
    return uids


def echo(port: int, *, calling: str = "SCU") -> None:
    ae = AE(calling)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()


# `dicombus edge` as an operator runs it: its file names the broker, none from the environment.
EDGE_ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "DICOMBUS_BROKER_URL"}
EDGE_STOP_TIMEOUT = 30.0


def edge_command(config: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "dicombus.cli.main", "edge", "--config", str(config), *arguments]


@contextmanager
def dicombus_edge(
    config: Path,
    output: Path,
    *arguments: str,
    ready: str = "Press Ctrl-C",
    stop_signal: int = signal.SIGTERM,
    stop_timeout: float = EDGE_STOP_TIMEOUT,
) -> Iterator[int]:
    """``dicombus edge --config`` (and ``arguments``), its output in ``output``; yields its
    port once it printed ``ready``. On leaving, ``stop_signal``: it must exit 0 within
    ``stop_timeout``."""
    with output.open("wb") as sink:
        process = subprocess.Popen(
            edge_command(config, *arguments),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=EDGE_ENVIRONMENT,
        )
    try:
        banner = wait_for(lambda: ready in output.read_text() and output.read_text(), ready)
        yield int(banner.split("address:")[1].split()[0].rsplit(":", 1)[1])
        process.send_signal(stop_signal)
        assert process.wait(stop_timeout) == 0, output.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(stop_timeout)
