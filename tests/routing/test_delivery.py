"""Delivery with real peers: an edge, a routing worker process, DCMTK and pynetdicom SCPs.

Each test stores instances on a dicombus edge, lets a ``dicombus worker`` route them by the
node's ``[routing]`` section, and checks what the destination holds and what the delivery
store says (docs/routing.md, "Delivery").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from delivery_support import (
    counting_scp,
    data_set_bytes,
    destination_toml,
    routing_worker,
    states,
    storescp,
    write_config,
)
from dicombus.metrics.families import ROUTING_DELIVERIES
from dicombus.metrics.snapshot import BREAKERS_KEY
from dicombus.routing.delivery_store import DeliveryStore, State
from helpers import free_port
from worker_support import embedded_redis, running_edge, store, wait_for

pytestmark = pytest.mark.interop


def delivery_metric(url: str, destination: str, outcome: str) -> int:
    """dicombus_routing_deliveries_total{destination, outcome}, as Redis holds it."""
    field = json.dumps([destination, outcome])
    return int(redis.Redis.from_url(url).hget(ROUTING_DELIVERIES.key, field) or 0)


def breaker_metric(url: str, destination: str) -> str | None:
    state = redis.Redis.from_url(url).hget(BREAKERS_KEY, destination)
    return None if state is None else state.decode()


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


def run_routes(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicombus.cli.main", "routes", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a900_is_a_dead_letter_at_once_and_retry_to_other_delivers_it(tmp_path: Path) -> None:
    with (
        counting_scp(status=0xA900) as refusing,
        storescp(tmp_path / "scp") as other,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as edge,
    ):
        config = write_config(
            tmp_path,
            destination_toml("strict", "PYSCP", refusing.port)
            + destination_toml("other", "STORESCP", other.port),
            ["strict"],
        )
        queues = ["dicombus.route.strict", "dicombus.route.other"]
        worker = routing_worker(url, tmp_path / "worker", config, queues)
        db_path = tmp_path / "worker" / "routing.sqlite3"
        db = DeliveryStore(db_path)
        try:
            uids = store(edge.address[1], 2)
            wait_for(lambda: states(db, "strict")[State.DEAD] == 2, "2 dead letters")
            # Refused once each, never retried: 0xA900 is permanent.
            assert refusing.received == {uid: 1 for uid in uids}
            assert all(d.attempts == 1 for d in db.deliveries(destination="strict"))
            wait_for(lambda: delivery_metric(url, "strict", "dead") == 2, "2 dead counted")
            assert delivery_metric(url, "strict", "acknowledged") == 0

            listed = run_routes("failed", "--config", str(config), "--store", str(db_path))
            assert listed.returncode == 0, listed.stderr
            for uid in uids:
                line = next(line for line in listed.stdout.splitlines() if uid in line)
                assert "strict" in line
                assert "0xA900 (error: data set does not match SOP class)" in line

            retried = run_routes(
                "retry", "--config", str(config), "--store", str(db_path), "--to", "other", "--all"
            )
            assert retried.returncode == 0, retried.stderr
            wait_for(lambda: states(db, "other")[State.ACKNOWLEDGED] == 2, "2 sent elsewhere")
            assert states(db, "strict") == {State.REPLAYED: 2}
            again = run_routes("failed", "--config", str(config), "--store", str(db_path))
            assert "0 dead letters" in again.stdout
        finally:
            worker.stop()
        for uid in uids:
            assert len([p for p in other.output_dir.iterdir() if uid in p.name]) == 1
        assert refusing.received == {uid: 1 for uid in uids}


def test_a_down_destination_is_retried_with_its_breaker_then_gets_each_instance_once(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there yet: connections are refused
    delivery = {"retry_first": 0.2, "retry_max": 0.5, "breaker_failures": 2, "breaker_probe": 0.2}
    with embedded_redis(tmp_path / "redis") as url, running_edge(url, tmp_path / "edge") as edge:
        config = write_config(
            tmp_path, destination_toml("late", "PYSCP", port, **delivery), ["late"]
        )
        worker = routing_worker(url, tmp_path / "worker", config, ["dicombus.route.late"])
        db = DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
        try:
            uids = store(edge.address[1], 3)
            # Two failed associations open the breaker; the deliveries wait, not fail.
            wait_for(lambda: db.breaker("late").is_open, "the breaker to open")
            assert states(db, "late") == {State.WAITING: 3}
            # The metrics say so too (docs/analytics.md): open, or half-open while probing
            # (written just after the store, so waited for).
            wait_for(lambda: breaker_metric(url, "late") in ("open", "half-open"), "open metric")
            wait_for(lambda: delivery_metric(url, "late", "retry") >= 3, "retries counted")
            address = f"dicom://PYSCP@127.0.0.1:{port}"
            for waiting in db.deliveries():  # the socket's own words, not "aborted"
                assert (waiting.reason or "").startswith(f"cannot connect to {address}: ")
                assert "refused" in (waiting.reason or "")
            with counting_scp(port) as late:
                # The C-ECHO probe closes the breaker; every instance goes, once.
                wait_for(lambda: states(db, "late")[State.ACKNOWLEDGED] == 3, "3 acknowledged")
                assert not db.breaker("late").is_open
                assert late.received == {uid: 1 for uid in uids}
                wait_for(lambda: delivery_metric(url, "late", "acknowledged") == 3, "3 counted")
                assert breaker_metric(url, "late") == "closed"
        finally:
            worker.stop()


def test_a_worker_killed_mid_batch_sends_again_only_what_was_not_acknowledged(
    tmp_path: Path,
) -> None:
    with (
        counting_scp() as destination,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as edge,
    ):
        destination.hold_at = 2  # two kept and acknowledged, the third in flight
        config = write_config(
            tmp_path, destination_toml("pacs", "PYSCP", destination.port), ["pacs"]
        )
        queues = ["dicombus.route.pacs"]
        worker = routing_worker(url, tmp_path / "worker", config, queues)
        db = DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
        uids = store(edge.address[1], 5)
        wait_for(destination.holding.is_set, "a C-STORE in flight")
        pid = worker.process.pid
        worker.kill()  # SIGKILL by process group: the worker and nothing else
        assert states(db, "pacs")[State.ACKNOWLEDGED] == 2
        restarted = routing_worker(url, tmp_path / "worker", config, queues)
        try:
            assert restarted.process.pid != pid
            wait_for(lambda: states(db, "pacs")[State.ACKNOWLEDGED] == 5, "5 acknowledged")
        finally:
            restarted.stop()
        assert destination.received == {uid: 1 for uid in uids}
