"""``dicombus up`` as a process: Redis, an edge node and Celery workers, up and down cleanly.

Real pieces throughout: the command starts the embedded redis-server and a
``dicombus worker`` process; a real association echoes and stores through
the edge; the built-in audit task writes both to the SQLite audit file.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from worker_support import echo, store, wait_for

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))


def _audited(db: Path) -> set[str]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db) as connection:
            return {row[0] for row in connection.execute("SELECT type FROM events")}
    except sqlite3.OperationalError:  # the worker is creating the table right now
        return set()


# About 6 s: Redis, a Celery worker and the edge start, then stop in order.
def test_up_runs_the_bus_and_stops_everything_it_started(tmp_path: Path) -> None:
    data = tmp_path / "node"
    output = tmp_path / "up.out"
    env = {key: value for key, value in os.environ.items() if key != "DICOMBUS_BROKER_URL"}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dicombus.cli.main",
                "up",
                "--port",
                "0",
                "--data",
                str(data),
                "--workers",
                "1",
                "-aet",
                "EDGE",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        banner = wait_for(
            lambda: "Press Ctrl-C" in output.read_text() and output.read_text(),
            "the banner",
            STARTUP_TIMEOUT,
        )
        port = int(re.search(r"address:\s+127\.0\.0\.1:(\d+)", banner).group(1))
        redis_pid = int(re.search(r"redis:.*embedded, pid (\d+)", banner).group(1))
        worker_pid = int(re.search(r"Celery worker pid (\d+)", banner).group(1))
        audit_db = Path(re.search(r"audit DB:\s+(\S+)", banner).group(1))
        assert audit_db == (data / "audit.sqlite3").resolve()

        echo(port)
        [uid] = store(port, 1)
        wanted = {"EVT_ACCEPTED", "EVT_C_ECHO", "EVT_C_STORE", "EVT_RELEASED"}
        wait_for(lambda: wanted <= _audited(audit_db), "the audit rows", STARTUP_TIMEOUT)
        with sqlite3.connect(audit_db) as connection:
            [(stored,)] = connection.execute(
                "SELECT json_extract(envelope, '$.data.sop_instance_uid') FROM events "
                "WHERE type = 'EVT_C_STORE'"
            ).fetchall()
        assert stored == uid

        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(STOP_TIMEOUT) == 0
        assert time.monotonic() - started < STOP_TIMEOUT
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
    text = output.read_text()
    assert "SIGINT received, stopped" in text
    assert not _pid_alive(worker_pid) and not _pid_alive(redis_pid)
