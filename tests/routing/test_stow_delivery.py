"""STOW-RS delivery with a real origin server: Orthanc and its DICOMweb plugin.

An edge stores, a ``dicombus worker`` routes to Orthanc's ``/dicom-web/studies`` with HTTP
basic authentication, and each instance is checked in what Orthanc stores, tag for tag
against the edge's file (docs/routing.md, "STOW-RS destinations").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from delivery_support import (
    routing_worker,
    states,
    store_datasets,
    stow_destination_toml,
    write_config,
)
from dicombus.bus.edge import EdgeNode
from dicombus.routing.delivery_store import DeliveryStore, State
from helpers import small_dataset
from orthanc_support import Orthanc, orthanc
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from worker_support import Worker, embedded_redis, running_edge, wait_for

pytestmark = pytest.mark.interop

PASSWORD_ENV = "ORTHANC_PASSWORD"
PASSWORD = "s3cret-for-the-test"


def study(uid: str, count: int) -> list[Dataset]:
    datasets = []
    for number in range(count):
        ds = small_dataset()
        ds.StudyInstanceUID = uid
        ds.InstanceNumber = number + 1
        datasets.append(ds)
    return datasets


def assert_same_tags(received: bytes, original: Path) -> None:
    ours, theirs = dcmread(original), dcmread(BytesIO(received))
    assert [e.tag for e in theirs] == [e.tag for e in ours]
    for element in ours:
        assert theirs[element.tag].value == element.value, element.tag


@contextmanager
def routed_to_orthanc(
    tmp_path: Path, *, under: str = "", password: str = PASSWORD, **delivery: Any
) -> Iterator[tuple[Orthanc, EdgeNode, Worker, DeliveryStore]]:
    """Orthanc, Redis, an edge and a routing worker sending everything to Orthanc's
    STOW-RS (``under``: a path below /studies) with ``password``; the worker is stopped
    when the block ends."""
    with (
        orthanc(tmp_path / "orthanc", PASSWORD) as server,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as edge,
    ):
        destination = stow_destination_toml(
            "orthanc", server.stow_url + under, PASSWORD_ENV, **delivery
        )
        config = write_config(tmp_path, destination, ["orthanc"])
        worker = routing_worker(
            url,
            tmp_path / "worker",
            config,
            ["dicombus.route.orthanc"],
            env={PASSWORD_ENV: password},
        )
        try:
            yield server, edge, worker, DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
        finally:
            worker.stop()


def test_instances_reach_orthanc_once_each_tag_for_tag(tmp_path: Path) -> None:
    datasets = study(generate_uid(), 4)
    with routed_to_orthanc(tmp_path) as (server, edge, worker, db):
        store_datasets(edge.address[1], datasets)
        try:
            wait_for(lambda: states(db, "orthanc")[State.ACKNOWLEDGED] == 4, "4 acknowledged")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; deliveries {dict(states(db, 'orthanc'))}; worker log:\n"
                f"{worker.log()}\nOrthanc log:\n{server.log.read_text(errors='replace')}"
            ) from None
        assert server.instance_count() == 4
        for ds in datasets:
            uid = str(ds.SOPInstanceUID)
            received = server.instance_file(uid)
            assert received is not None, uid
            assert_same_tags(received, next((tmp_path / "edge").rglob(f"{uid}.dcm")))
        assert {d.status for d in db.deliveries(destination="orthanc")} == {0x0000}
        assert all(d.attempts == 0 for d in db.deliveries(destination="orthanc"))


def test_an_instance_orthanc_refuses_is_a_dead_letter_with_its_reason(tmp_path: Path) -> None:
    # PS3.18 10.5.1: a request to /studies/{study} stores only instances of that study. Orthanc
    # answers 409 with the other study's instance in FailedSOPSequence, FailureReason 0x0110.
    kept_uid = generate_uid()
    kept = study(kept_uid, 2)
    other = study(generate_uid(), 1)
    with routed_to_orthanc(tmp_path, under=f"/{kept_uid}", batch_size=10) as (
        server,
        edge,
        _,
        db,
    ):
        store_datasets(edge.address[1], [*kept, *other])
        wait_for(
            lambda: states(db, "orthanc") == {State.ACKNOWLEDGED: 2, State.DEAD: 1},
            "2 acknowledged and 1 dead letter",
        )
        refused = str(other[0].SOPInstanceUID)
        (dead,) = db.deliveries(state=State.DEAD)
        assert dead.sop_instance_uid == refused
        assert dead.status == 0x0110
        assert dead.reason == "orthanc answered 0x0110 (failure)"
        assert dead.attempts == 1
        assert server.instance_file(refused) is None
        assert all(server.instance_file(str(ds.SOPInstanceUID)) for ds in kept)


def test_a_wrong_password_is_a_dead_letter_not_a_retry_loop(tmp_path: Path) -> None:
    datasets = study(generate_uid(), 2)
    with routed_to_orthanc(tmp_path, password="not-the-password") as (server, edge, _, db):
        store_datasets(edge.address[1], datasets)
        wait_for(lambda: states(db, "orthanc")[State.DEAD] == 2, "2 dead letters")
        assert server.instance_count() == 0
        for dead in db.deliveries(destination="orthanc"):
            assert f"{server.stow_url} answered HTTP 401 Unauthorized" in (dead.reason or "")
            assert dead.attempts == 1
