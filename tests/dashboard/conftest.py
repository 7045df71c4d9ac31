"""The module's node (tests/dashboard_support.py): an embedded Redis, the built-in workers,
an edge, a routing delivery store and ``dicombus dashboard`` on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from dashboard_support import STOP_TIMEOUT, Node
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.routing.delivery_store import DeliveryStore
from worker_support import running_edge, running_worker


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    # The built-in tasks on their default subscriptions (the latency from the outcomes).
    tmp = tmp_path_factory.mktemp("node")
    audit_db = tmp / "worker" / "audit.sqlite3"
    routing_db = tmp / "routing.sqlite3"
    DeliveryStore(routing_db).close()  # the file a routing worker would have made
    with (
        EmbeddedRedis(tmp / "redis") as redis_server,
        running_worker(
            redis_server.url,
            tmp / "worker",
            builtin=True,
            include=(),
        ),
        running_edge(redis_server.url, tmp / "edge") as edge,
    ):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dicombus.cli.main",
                "dashboard",
                "--port=0",
                f"--data={tmp / 'data'}",
                f"--audit-db={audit_db}",
                f"--routing-db={routing_db}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "DICOMBUS_BROKER_URL": redis_server.url},
        )
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()  # printed once it listens
            assert "serving http://" in banner, banner
            yield Node(edge, banner.split()[3], audit_db, routing_db)
        finally:
            process.terminate()
            process.wait(STOP_TIMEOUT)
