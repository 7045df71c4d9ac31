"""A running node for the dashboard tests: an embedded Redis, the built-in workers (which
also time each C-STORE from its EVT_DIMSE_RECV), an edge, a routing delivery store, and
``dicombus dashboard`` itself as a subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dicombus.bus.edge import EdgeNode
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.routing.delivery_store import DeliveryRequest, DeliveryStore
from worker_support import running_edge, running_worker

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@dataclass
class Node:
    edge: EdgeNode
    dashboard: str  # http://127.0.0.1:PORT/
    audit_db: Path
    routing_db: Path

    @property
    def edge_port(self) -> int:
        return int(self.edge.address[1])

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.dashboard + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.dashboard + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def dead_letter(store_path: Path, uid: str, destination: str = "pacs") -> None:
    """A dead letter, made as a routing sender makes one: recorded, claimed, refused."""
    store = DeliveryStore(store_path)
    store.add(
        [
            DeliveryRequest(
                sop_instance_uid=uid,
                destination=destination,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                transfer_syntax="1.2.840.10008.1.2.1",
                stored_path="/nonexistent",
                event_id=f"01EVENT{uid[-10:]}",
            )
        ]
    )
    (claimed,) = store.claim(destination, 1)
    store.dead_letter(claimed, status=0xA900, reason="0xA900 data set does not match SOP class")
    store.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    from dicombus_workers.builtin import DEFAULT_EVENTS

    tmp = tmp_path_factory.mktemp("node")
    events = ",".join([*DEFAULT_EVENTS, "EVT_DIMSE_RECV"])
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
            env={"DICOMBUS_AUDIT_EVENTS": events},
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
