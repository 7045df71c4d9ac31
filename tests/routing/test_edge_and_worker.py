"""``dicombus edge --config`` and ``dicombus worker`` processes, not ``dicombus up``, route a
study (docs/routing.md, "How an instance travels"): DCMTK's ``storescu`` sends it to the
edge; a router worker (``-Q dicombus.route``) and a destination worker (``-Q
dicombus.route.pacs``), both given only ``DICOMBUS_CONFIG`` naming the edge's file (its
broker, its data folder and delivery store), send it per study to DCMTK's ``storescp``.
Checked: the files there byte for byte, the delivery store's rows and the route events.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis
from delivery_support import data_set_bytes, storescp
from dicombus.routing.delivery_store import DeliveryStore, State
from dicombus.routing.route_events import STUDY_STABLE
from helpers import require_tool, small_dataset, write_part10
from pydicom import dcmread
from pydicom.uid import generate_uid
from route_tasks import SENT
from study_tasks import STUDIES
from worker_support import Worker, dicombus_edge, embedded_redis, wait_for

pytestmark = pytest.mark.interop

TASKS = Path(__file__).parent
STOP_TIMEOUT = 30.0


def listed(url: str, key: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(url)
    try:
        return [json.loads(line) for line in client.lrange(key, 0, -1)]
    finally:
        client.close()


def test_edge_and_worker_processes_route_a_study_to_storescp(tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    sent = tmp_path / "sent"
    sent.mkdir()
    files = []
    for number in range(1, 4):
        ds = small_dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, number
        ds.Modality = "CT"
        files.append(write_part10(ds, sent / f"{number}.dcm"))
    data = tmp_path / "edge-data"
    with embedded_redis(tmp_path / "redis") as url, storescp(tmp_path / "received") as pacs:
        config = tmp_path / "node.toml"
        config.write_text(
            f'[edge]\nid = "edge-1"\nae_title = "EDGE"\nport = 0\ndata_dir = "{data}"\n\n'
            f'[bus]\nbroker_url = "{url}"\n\n'
            "[routing]\nstudy_quiet_seconds = 1\n"
            'destinations = [{ name = "pacs", type = "dimse", ae_title = "STORESCP", '
            f'host = "127.0.0.1", port = {pacs.port} }}]\n'
            'rules = [{ name = "ct", per = "study", destinations = ["pacs"], '
            'match = { Modality = "CT" } }]\n'
        )
        # As an operator starts them: the node's file names the broker and the data folder.
        env = {"DICOMBUS_CONFIG": str(config), "DICOMBUS_BROKER_URL": ""}
        router = Worker(
            url,
            tmp_path / "router",
            include=("route_tasks", "study_tasks"),
            tasks_folder=TASKS,
            pool="solo",
            builtin=True,
            queues="dicombus.route,test.route,test.study",
            env=env,
        )
        sender = Worker(
            url,
            tmp_path / "sender",
            include=(),
            tasks_folder=TASKS,
            pool="solo",
            builtin=True,
            queues="dicombus.route.pacs",
            env=env,
        )
        try:
            with dicombus_edge(config, tmp_path / "edge.out") as port:
                storescu = [require_tool("storescu"), "-aet", "CT1", "-aec", "EDGE"]
                subprocess.run(
                    [*storescu, "127.0.0.1", str(port), *map(str, files)],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
                wait_for(lambda: len(list(pacs.output_dir.iterdir())) == 3, "3 files at storescp")
                wait_for(lambda: listed(url, SENT), "dicombus.route.sent")
        finally:
            router.stop()
            sender.stop()
        stable, sent_events = listed(url, STUDIES), listed(url, SENT)

    # At the destination byte for byte as storescu sent them, each once.
    received = {str(dcmread(p).SOPInstanceUID): p for p in pacs.output_dir.iterdir()}
    originals = {str(dcmread(p).SOPInstanceUID): p for p in files}
    assert set(received) == set(originals)
    for uid, path in received.items():
        assert data_set_bytes(path) == data_set_bytes(originals[uid])
    # The store (the edge's data_dir) says each was acknowledged with Success.
    rows = DeliveryStore(data / "routing.sqlite3").deliveries()
    assert {(d.sop_instance_uid, d.destination, d.state, d.status) for d in rows} == {
        (uid, "pacs", State.ACKNOWLEDGED, 0x0000) for uid in originals
    }
    # The study fired once; one route event reports the three acknowledged, on one association.
    assert [(e["type"], e["update"], e["instances"]) for e in stable] == [(STUDY_STABLE, False, 3)]
    (event,) = sent_events
    assert event["study_instance_uid"] == study
    assert {(i["sop_instance_uid"], i["outcome"], i["status"]) for i in event["instances"]} == {
        (uid, "acknowledged", 0) for uid in originals
    }
