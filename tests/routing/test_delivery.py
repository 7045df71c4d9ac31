"""Delivery with real peers: an edge, a routing worker process, DCMTK and pynetdicom SCPs.

Each test stores instances on a dicombus edge, lets a ``dicombus worker`` route them by the
node's ``[routing]`` section, and checks what the destination holds and what the delivery
store says (docs/routing.md, "Delivery").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dicombus.routing.delivery_store import DeliveryStore, State
from delivery_support import (
    counting_scp,
    data_set_bytes,
    destination_toml,
    routing_worker,
    states,
    storescp,
    write_config,
)
from helpers import free_port
from worker_support import embedded_redis, running_edge, store, wait_for

pytestmark = pytest.mark.interop


def stored_file(edge_root: Path, uid: str) -> Path:
    return next(edge_root.rglob(f"{uid}.dcm"))


def test_instances_reach_storescp_once_byte_for_byte(tmp_path: Path) -> None:
    with (
        storescp(tmp_path / "scp") as scp,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as edge,
    ):
        config = write_config(
            tmp_path, destination_toml("archive", "STORESCP", scp.port), ["archive"]
        )
        worker = routing_worker(url, tmp_path / "worker", config, ["dicombus.route.archive"])
        try:
            uids = store(edge.address[1], 5)
            db = DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
            wait_for(
                lambda: states(db, "archive")[State.ACKNOWLEDGED] == 5, "5 acknowledged deliveries"
            )
        finally:
            worker.stop()
        for uid in uids:
            received = [p for p in scp.output_dir.iterdir() if uid in p.name]
            assert len(received) == 1, (uid, received)
            original = stored_file(tmp_path / "edge" / "storage", uid)
            assert data_set_bytes(received[0]) == data_set_bytes(original)
        assert all(d.status == 0 for d in db.deliveries(destination="archive"))
