"""A real PostgreSQL server for the audit store tests: Debian's ``postgresql`` package.

Each :class:`PostgresServer` is a cluster of its own: ``initdb`` into a fresh
temporary folder, ``postgres`` listening on a free loopback port (no Unix
socket), trust authentication for a user named after the cluster. PostgreSQL
refuses to run as root, so under root (CI) the cluster belongs to the
package's ``postgres`` user and runs as it. It is stopped by its PID (SIGINT:
PostgreSQL's "fast" shutdown, which rolls back open transactions and ends).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from helpers import STARTUP_TIMEOUT, free_port, peer_missing
from worker_support import wait_for

# Debian installs the server binaries off PATH, one folder per major version.
BINARIES = "/usr/lib/postgresql/*/bin"
USER = "dicombus"
# The account a cluster runs as when the tests run as root (the package creates it).
SERVICE_ACCOUNT = "postgres"
STOP_TIMEOUT = 20.0


def server_binaries() -> Path:
    """The newest installed PostgreSQL's ``bin`` folder, or ``peer_missing``."""
    found = sorted(
        (Path(folder) for folder in glob.glob(BINARIES) if (Path(folder) / "initdb").is_file()),
        key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
    )
    if not found:
        peer_missing(f"PostgreSQL's server binaries ({BINARIES}/initdb, Debian's postgresql)")
    return found[-1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; :meth:`start` / :meth:`stop` it."""

    def __init__(self) -> None:
        self.bin = server_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="dicombus-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._account: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVICE_ACCOUNT)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self._run(
            str(self.bin / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",  # a throw-away cluster: no fsync of its files
        )

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            command, capture_output=True, timeout=60, check=False, **self._account
        )
        if result.returncode:
            raise AssertionError(f"{command[0]} failed: {result.stderr.decode(errors='replace')}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            os.chown(self.log, *self._owner())
            self.process = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "fsync=off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._account,
            )
        wait_for(self._accepts, "PostgreSQL to accept connections", STARTUP_TIMEOUT)

    def _owner(self) -> tuple[int, int]:
        if not self._account:
            return os.getuid(), os.getgid()
        return self._account["user"], self._account["group"]

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"postgres exited: {self.log.read_text(errors='replace')}")
        try:
            with psycopg.connect(self._libpq(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _libpq(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def create_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"audit_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._libpq(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown by PID; waits until the server has exited."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of its own, started, and removed (stopped by its PID) after."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()
