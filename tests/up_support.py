"""``dicombus up`` started as a real process for tests: its banner, its node record, its stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from worker_support import wait_for

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def environment_without_broker(**extra: str) -> dict[str, str]:
    """The test's environment minus DICOMBUS_BROKER_URL: commands must find the node alone."""
    env = {key: value for key, value in os.environ.items() if key != "DICOMBUS_BROKER_URL"}
    env.update(extra)
    return env


def dicombus(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "dicombus.cli.main", *arguments]


def run_dicombus(*arguments: str) -> subprocess.CompletedProcess[str]:
    """A ``dicombus`` command run to its end, with no broker in its environment."""
    return subprocess.run(
        dicombus(*arguments),
        capture_output=True,
        text=True,
        env=environment_without_broker(),
        timeout=STARTUP_TIMEOUT,
    )


class UpProcess:
    """``dicombus up --port 0 --data DATA ...`` with its output in a file."""

    def __init__(
        self, data: Path, *arguments: str, cwd: Path | None = None, output_dir: Path | None = None
    ) -> None:
        """``output_dir``: where the output file goes (default: beside the data folder)."""
        self.data = data
        folder = output_dir if output_dir is not None else data.parent
        self.output = folder / f"{data.name}-up-{os.urandom(3).hex()}.out"
        with self.output.open("wb") as sink:
            self.process = subprocess.Popen(
                dicombus("up", "--port", "0", "--data", str(data), *arguments),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=environment_without_broker(),
                cwd=cwd,
            )

    @property
    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_ready(self) -> dict[str, Any]:
        """Wait for the banner; return the node record it wrote."""
        wait_for(
            lambda: "Press Ctrl-C" in self.text or self.process.poll() is not None,
            "the banner of dicombus up",
            STARTUP_TIMEOUT,
        )
        assert self.process.poll() is None, self.text
        record: dict[str, Any] = json.loads((self.data / "node.json").read_text())
        return record

    @property
    def record(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.data / "node.json").read_text())
        return loaded

    @property
    def port(self) -> int:
        return int(self.record["address"][1])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)


def audited(db: Path, event_type: str | None = None) -> list[tuple[str, str | None]]:
    """(type, SOP Instance UID) of every audit row, or of one type's."""
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(db)) as connection:
            rows = connection.execute(
                "SELECT type, json_extract(envelope, '$.data.sop_instance_uid') FROM events"
            ).fetchall()
    except sqlite3.OperationalError:  # the worker is creating the table right now
        return []
    return [(kind, uid) for kind, uid in rows if event_type is None or kind == event_type]


def stored_uids(db: Path) -> set[str]:
    return {uid for _kind, uid in audited(db, "EVT_C_STORE") if uid}
