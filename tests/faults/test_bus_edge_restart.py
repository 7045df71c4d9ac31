"""The edge process SIGKILLed with events in its outbox, then restarted: all of them replayed.

The edge side runs in a child process (``tests/publisher_support.py``: a
Publisher with two static subscriptions and its SQLite outbox) while Redis is
down, so everything it submits goes to the outbox. The test SIGKILLs it, starts
Redis (EmbeddedRedis) on the port the child was given, and runs the child again
on the same folder: the second run must replay what the first one stored, in
order, each message once. Each test takes about 2 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dicombus.bus.redis_server import EmbeddedRedis, free_port
from publisher_support import STORE, WAIT, consume, envelope_of, queue_length

CHILD = Path(__file__).resolve().parent.parent / "publisher_support.py"
QUEUES = ("audit", "count")


class Edge:
    """The child edge process; its metrics lines are collected as they come."""

    def __init__(self, mode: str, broker: str, folder: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), mode, "--broker", broker, "--folder", str(folder), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.reports: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.append(json.loads(line))

    def wait_for_report(self, accept: Any, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reports and accept(self.reports[-1]):
                return self.reports[-1]
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.005)
        raise AssertionError(f"no matching report in {timeout} s: {self.reports[-1:]}")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=WAIT)
        self._reader.join(timeout=WAIT)

    def finish(self) -> dict[str, Any]:
        assert self.process.wait(timeout=WAIT * 2) == 0
        self._reader.join(timeout=WAIT)
        return self.reports[-1]


def replay(folder: Path, port: int) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Start Redis on ``port``, run the edge again, and read back both queues."""
    with EmbeddedRedis(folder / "redis", port=port) as server:
        final = Edge("replay", server.url, folder).finish()
        received = {
            queue: consume(server.url, queue, queue_length(server.url, queue)) for queue in QUEUES
        }
    return final, received


def test_an_edge_killed_with_a_full_outbox_replays_all_of_it_after_restart(
    tmp_path: Path,
) -> None:
    port = free_port()  # where Redis will be; nothing listens there yet
    events = 2000
    edge = Edge(
        "spool",
        f"redis://127.0.0.1:{port}/0",
        tmp_path,
        "--events",
        str(events),
        "--subject",
        "01J00000000000000000SUBJCT",
    )
    try:
        stored = edge.wait_for_report(
            lambda report: report["spooled"] == 2 * events and report["queued"] == 0
        )
    finally:
        edge.kill()
    assert stored["outbox_rows"] == 2 * events

    final, received = replay(tmp_path, port)
    assert final["replayed"] == 2 * events
    assert final["outbox_rows"] == 0
    for queue in QUEUES:
        envelopes = [envelope_of(message) for message in received[queue]]
        assert [e["sequence"] for e in envelopes] == list(range(1, events + 1)), queue
        assert {e["subject"] for e in envelopes} == {"01J00000000000000000SUBJCT"}
        assert {e["type"] for e in envelopes} == {STORE}
        assert len({m.headers["id"] for m in received[queue]}) == events


def test_an_edge_killed_while_writing_its_outbox_replays_everything_it_stored(
    tmp_path: Path,
) -> None:
    """Killed mid-stream: the outbox opens cleanly (WAL recovery), and every event
    reported stored comes back, in order, each once, to both tasks. (Events still in
    the edge's memory queue at the kill are the documented loss window.)"""
    port = free_port()
    edge = Edge("spool", f"redis://127.0.0.1:{port}/0", tmp_path, "--events", "100000")
    try:
        stored = edge.wait_for_report(lambda report: report["spooled"] >= 4000)
    finally:
        edge.kill()

    final, received = replay(tmp_path, port)
    assert final["outbox_rows"] == 0
    per_queue = {queue: [envelope_of(m) for m in received[queue]] for queue in QUEUES}
    audit, count = per_queue["audit"], per_queue["count"]
    assert len(audit) * 2 >= stored["spooled"]
    # Both messages of an event are stored in one transaction: both or neither.
    assert [e["id"] for e in audit] == [e["id"] for e in count]
    sequences = [e["sequence"] for e in audit]
    assert sequences == sorted(set(sequences))
