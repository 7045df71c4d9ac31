"""``dicombus events tail``: a live copy of the events, without taking them from the tasks.

Real pieces: an embedded redis-server, an edge node, a ``dicombus worker``
process running worker_tasks.record, and the tail as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicombus.bus.subscriptions import REGISTRY_KEY
from worker_support import (
    client_for,
    embedded_redis,
    running_edge,
    running_worker,
    store,
    wait_for,
)
from worker_tasks import DELIVERIES

TAIL_TIMEOUT = 20.0


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


def _tails(client: object) -> list[str]:
    return [name for name in client.hkeys(REGISTRY_KEY) if name.startswith("dicombus.tail.")]


def test_tail_prints_filtered_events_and_tasks_still_get_theirs(
    redis_url: str, tmp_path: Path
) -> None:
    client = client_for(redis_url)
    with (
        running_worker(redis_url, tmp_path / "worker"),
        running_edge(redis_url, tmp_path / "edge") as node,
    ):
        tail = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dicombus.cli.main",
                "events",
                "tail",
                "--type",
                "EVT_C_STORE",
                "--ae",
                "CT1",
                "--json",
                "--count",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "DICOMBUS_BROKER_URL": redis_url},
        )
        try:
            wait_for(lambda: _tails(client), "the tail's subscription")
            wait_for(lambda: node.capture.wanted >= {"EVT_C_STORE"}, "the edge to see it")
            store(node.address[1], 3, calling="OTHER")  # filtered out by --ae
            sent = store(node.address[1], 2, calling="CT1")
            out, err = tail.communicate(timeout=TAIL_TIMEOUT)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait(TAIL_TIMEOUT)
        assert tail.returncode == 0, err
        envelopes = [json.loads(line) for line in out.splitlines()]
        assert [e["data"]["sop_instance_uid"] for e in envelopes] == sent
        assert {e["data"]["association"]["calling_ae_title"] for e in envelopes} == {"CT1"}
        # The task got every one of its events: 2 associations x (accepted + stores + released).
        wait_for(lambda: client.llen(DELIVERIES) >= 3 + 2 + 4, "the task's deliveries")
        assert client.llen(DELIVERIES) == 9
    assert _tails(client) == []
    assert not [key for key in client.keys("dicombus.tail.*")]
