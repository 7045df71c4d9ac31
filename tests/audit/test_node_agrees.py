"""A node started with ``dicombus up --config node.toml`` receives a study from DCMTK's
``storescu`` and every view of it agrees with what was sent.

The peers are real: ``dicombus up`` (embedded Redis, a solo worker, the edge, and with
``--metrics-port`` / ``--dashboard-port`` the ``dicombus metrics`` and ``dicombus dashboard``
servers it supervises) whose ``[audit.syslog]`` names Debian's ``rsyslogd`` on loopback over
TLS; ``dicombus audit search`` and ``dicombus stats`` run to their end, finding the node
through its data folder as an operator runs them. The study: three CT instances sent by
``SCU1`` in two associations (two, then one).

What agrees: the audit store's rows for the study, ``dicombus stats``'s tables, the
Prometheus counters (instances by modality, associations by calling AE and result), the
dashboard's ``/api/edges`` per-minute series and ``/api/events`` for the study, and the ATNA
DICOM Instances Transferred messages rsyslog received (one per association and study,
PS3.15 A.5.3.7: the instances they count, the source and destination participants).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atna_support import (
    atna_registered,
    received_messages,
    rsyslog_folder,
    started_tls_rsyslog,
    syslog_node_toml,
)
from helpers import free_port, require_tool, small_dataset, wait_for_port, write_part10
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families
from up_support import UpProcess, run_dicombus
from worker_support import wait_for

EDGE_ID = "edge-agree"
EDGE_AE = "EDGE"
CALLING_AE = "SCU1"
# The instances of each association: two, then one, of one study.
ASSOCIATIONS = (2, 1)
INSTANCES = sum(ASSOCIATIONS)
AGREE_TIMEOUT = 60.0
INSTANCES_TRANSFERRED = "110104"  # PS3.15 A.5.3.7 EventID
ROLE_SOURCE, ROLE_DESTINATION = "110153", "110152"  # PS3.16 CID 402


@pytest.fixture
def rsyslog_dir() -> Iterator[Path]:
    with rsyslog_folder() as folder:
        yield folder


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def study_files(folder: Path) -> tuple[str, list[list[Path]]]:
    """The study's Study Instance UID and its Part 10 files, grouped by association."""
    folder.mkdir()
    first = small_dataset()
    groups, number = [], 0
    for size in ASSOCIATIONS:
        group = []
        for _ in range(size):
            ds = first if number == 0 else small_dataset()
            ds.StudyInstanceUID = first.StudyInstanceUID
            ds.PatientID, ds.PatientName = "P-AGREE", "Doe^Jane"
            group.append(write_part10(ds, folder / f"{number}.dcm"))
            number += 1
        groups.append(group)
    return str(first.StudyInstanceUID), groups


# -- each view, read as its user reads it ----------------------------------------------------


def audit_rows(data: Path, study: str) -> list[dict[str, Any]]:
    result = run_dicombus("audit", "search", "--data", str(data), "--study", study, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line]


def stats_rows(data: Path) -> list[list[str]]:
    result = run_dicombus("stats", "--data", str(data))
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.splitlines()]


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(fetch(url)):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def dashboard_edge(url: str) -> dict[str, Any]:
    edges = json.loads(fetch(url + "api/edges"))["edges"]
    return next((edge for edge in edges if edge["edge"] == EDGE_ID), {})


def counted_in(message: etree._Element, study: str) -> int:
    [study_object] = message.findall(
        f"ParticipantObjectIdentification[@ParticipantObjectID='{study}']"
    )
    return sum(
        int(sop_class.get("NumberOfInstances")) for sop_class in study_object.iter("SOPClass")
    )


def participants(message: etree._Element) -> dict[str, str]:
    """RoleIDCode -> UserID of the message's active participants."""
    return {
        element.find("RoleIDCode").get("csd-code"): element.get("UserID")
        for element in message.findall("ActiveParticipant")
    }


def test_a_study_sent_to_dicombus_up_shows_the_same_in_every_view(
    tmp_path: Path, rsyslog_dir: Path
) -> None:
    storescu = require_tool("storescu")
    rsyslog, ca, _cert, _key = started_tls_rsyslog(tmp_path, rsyslog_dir)
    data = tmp_path / "node"
    metrics_port, dashboard_port = free_port(), free_port()
    node = UpProcess(
        data,
        *[
            "--config",
            str(syslog_node_toml(tmp_path, rsyslog.port, ca, edge_id=EDGE_ID, ae_title=EDGE_AE)),
            "--workers",
            "1",
        ],
        *["--metrics-port", str(metrics_port), "--dashboard-port", str(dashboard_port)],
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    dashboard = f"http://127.0.0.1:{dashboard_port}/"
    try:
        node.wait_ready()
        assert f"  metrics:   {metrics_url}, pid" in node.text
        assert f"  dashboard: {dashboard}, pid" in node.text
        wait_for(lambda: atna_registered(node), "the worker's ATNA subscription", AGREE_TIMEOUT)
        wait_for_port(metrics_port)
        wait_for_port(dashboard_port)
        study, groups = study_files(tmp_path / "study")
        for files in groups:
            sent = subprocess.run(
                [storescu, "-aet", CALLING_AE, "-aec", EDGE_AE, "127.0.0.1", str(node.port)]
                + [str(path) for path in files],
                capture_output=True,
                text=True,
                timeout=AGREE_TIMEOUT,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
        associations = len(ASSOCIATIONS)

        # The audit store: one row per instance, each naming both AE titles.
        rows = wait_for(
            lambda: len(found := audit_rows(data, study)) >= INSTANCES and found,
            "the study's audit rows",
            AGREE_TIMEOUT,
        )
        assert len(rows) == INSTANCES
        assert {(r["type"], r["calling_ae_title"], r["called_ae_title"]) for r in rows} == {
            ("EVT_C_STORE", CALLING_AE, EDGE_AE)
        }

        # dicombus stats: associations by calling AE, instances by modality.
        wait_for(
            lambda: [CALLING_AE, str(associations), "0", "0"] in stats_rows(data),
            f"stats: {associations} associations accepted from {CALLING_AE}",
            AGREE_TIMEOUT,
        )
        assert any(row[:3] == ["CT", "success", str(INSTANCES)] for row in stats_rows(data))

        # The metrics endpoint.
        wait_for(
            lambda: (
                metric(
                    metrics_url,
                    "dicombus_associations_total",
                    calling_ae=CALLING_AE,
                    edge=EDGE_ID,
                )
                == associations
            ),
            "the associations counter",
            AGREE_TIMEOUT,
        )
        assert (
            metric(
                metrics_url,
                "dicombus_associations_total",
                calling_ae=CALLING_AE,
                result="accepted",
            )
            == associations
        )
        assert (
            metric(
                metrics_url,
                "dicombus_cstore_instances_total",
                edge=EDGE_ID,
                modality="CT",
                status_class="success",
            )
            == INSTANCES
        )
        # The C-STORE latency histogram, on the node's default subscriptions: each outcome
        # carries the service time the edge measured.
        assert (
            metric(metrics_url, "dicombus_cstore_duration_seconds_count", edge=EDGE_ID) == INSTANCES
        )

        # The dashboard's API: the per-minute series sum to the same, the explorer
        # finds the study's instances.
        edge = wait_for(
            lambda: sum((found := dashboard_edge(dashboard)).get("instances_per_minute", {})
                        .get("CT", [])) == INSTANCES and found,
            "the dashboard's instances per minute",
            AGREE_TIMEOUT,
        )  # fmt: skip
        assert sum(edge["associations_per_minute"][f"{CALLING_AE} accepted"]) == associations
        assert edge["up"] is True
        assert edge["cstore_latency_seconds"]["count"] == INSTANCES
        events = json.loads(fetch(f"{dashboard}api/events?type=EVT_C_STORE&study={study}"))
        assert len(events["events"]) == INSTANCES

        # The audit record repository: one Instances Transferred per association.
        messages = wait_for(
            lambda: (
                len(found := received_messages(rsyslog, INSTANCES_TRANSFERRED)) >= associations
                and found
            ),
            "the Instances Transferred messages",
            AGREE_TIMEOUT,
        )
    finally:
        stopped = node.stop()
        rsyslog.stop()
    assert stopped == 0, node.text
    assert sorted(counted_in(message, study) for message in messages) == sorted(ASSOCIATIONS)
    for message in messages:
        assert participants(message) == {ROLE_SOURCE: CALLING_AE, ROLE_DESTINATION: EDGE_AE}
