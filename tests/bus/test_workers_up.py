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

from helpers import pid_alive
from worker_support import echo, store, wait_for

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def _audited(db: Path) -> set[str]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db) as connection:
            return {row[0] for row in connection.execute("SELECT type FROM events")}
    except sqlite3.OperationalError:  # the worker is creating the table right now
        return set()


def _stored_uids(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT json_extract(envelope, '$.data.sop_instance_uid') FROM events "
            "WHERE type = 'EVT_C_STORE'"
        ).fetchall()
    return {uid for (uid,) in rows}


# About 15 s: Redis, two Celery workers and the edge start; one worker is
# killed and restarted (up waits 5 s between two starts of a worker); all stop in order.
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
        workers = re.search(r"2 Celery workers \(solo pool\), pids (\d+), (\d+)", banner)
        worker_pids = [int(workers.group(1)), int(workers.group(2))]
        audit_db = Path(re.search(r"audit DB:\s+(\S+)", banner).group(1))
        assert audit_db == (data / "audit.sqlite3").resolve()

        echo(port)
        [uid] = store(port, 1)
        wanted = {"EVT_ACCEPTED", "EVT_C_ECHO", "EVT_C_STORE", "EVT_RELEASED"}
        wait_for(lambda: wanted <= _audited(audit_db), "the audit rows", STARTUP_TIMEOUT)
        assert _stored_uids(audit_db) == {uid}

        # A worker that dies is started again, and the node goes on.
        os.kill(worker_pids[0], signal.SIGKILL)
        restarted = wait_for(
            lambda: re.search(
                r"worker 1 \(pid \d+\) exited with code -9; restarted as pid "
                r"(\d+)",
                output.read_text(),
            ),
            "the restart",
            STARTUP_TIMEOUT,
        )
        worker_pids.append(int(restarted.group(1)))
        [second] = store(port, 1)
        wait_for(lambda: _stored_uids(audit_db) == {uid, second}, "the audit row", STARTUP_TIMEOUT)

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
    assert not any(pid_alive(pid) for pid in (*worker_pids, redis_pid))
