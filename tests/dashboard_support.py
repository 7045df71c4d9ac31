"""What the dashboard tests share (tests/dashboard): the node their fixture runs (an edge,
the built-in workers, which also time each C-STORE from its EVT_DIMSE_RECV, a routing
delivery store and ``dicombus dashboard``), how to ask its API, how to make a dead letter
and what the audit store holds."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicombus.bus.edge import EdgeNode
from dicombus.routing.delivery_store import DeliveryRequest, DeliveryStore

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


def stored_sizes(node: Node) -> list[int]:
    """``dataset_size`` of every EVT_C_STORE row of the audit store."""
    if not node.audit_db.exists():
        return []
    with contextlib.closing(sqlite3.connect(node.audit_db)) as connection:
        try:
            rows = connection.execute(
                "SELECT json_extract(envelope, '$.data.dataset_size') FROM events "
                "WHERE type = 'EVT_C_STORE'"
            ).fetchall()
        except sqlite3.OperationalError:  # the worker is creating the table right now
            return []
    return [int(size) for (size,) in rows]
