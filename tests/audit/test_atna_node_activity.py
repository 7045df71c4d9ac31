"""The node's start and stop reach the audit record repository as Application Activity.

The peers are real: ``dicombus up --config node.toml`` with ``[audit.syslog]`` naming
Debian's ``rsyslogd`` on loopback over TLS. The edge publishes ``dicombus.node.started``
once it listens and, after SIGINT, ``dicombus.node.stopped`` before its publisher stops;
``up`` lets its workers run it before their warm shutdown. rsyslog receives, for each,
an Application Activity (PS3.15 A.5.3.1: EventID 110100, EventTypeCode 110120 / 110121)
valid against the PS3.15 A.5.1.1 schema, naming the edge (its id, AE title, listening
address and version; RoleIDCode 110150) and who started it (110151), beside the audit
worker's own start and stop, which name the worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from atna_support import (
    atna_registered,
    received_messages,
    rsyslog_folder,
    started_tls_rsyslog,
    syslog_node_toml,
)
from dicombus import __version__
from lxml import etree
from up_support import UpProcess
from worker_support import wait_for

EDGE_ID, EDGE_AE = "edge-activity", "ACTIVITY"
TIMEOUT = 60.0
APPLICATION_ACTIVITY, START, STOP = "110100", "110120", "110121"  # PS3.15 A.5.3.1
APPLICATION, LAUNCHER = "110150", "110151"  # PS3.16 CID 402


@pytest.fixture
def rsyslog_dir() -> Iterator[Path]:
    with rsyslog_folder() as folder:
        yield folder


def participant(message: etree._Element, role: str) -> etree._Element | None:
    found = message.xpath(f"ActiveParticipant[RoleIDCode/@csd-code='{role}']")
    return found[0] if found else None


def application(message: etree._Element) -> etree._Element:
    found = participant(message, APPLICATION)
    assert found is not None, etree.tostring(message)
    return found


def of_edge(messages: list[etree._Element], event_type: str) -> list[etree._Element]:
    return [
        message
        for message in messages
        if message.find("EventIdentification/EventTypeCode").get("csd-code") == event_type
        and application(message).get("UserID") == EDGE_ID
    ]


def test_the_edge_start_and_stop_are_application_activity(
    tmp_path: Path, rsyslog_dir: Path
) -> None:
    rsyslog, ca, _cert, _key = started_tls_rsyslog(tmp_path, rsyslog_dir)
    node = UpProcess(
        tmp_path / "node",
        *[
            "--config",
            str(syslog_node_toml(tmp_path, rsyslog.port, ca, edge_id=EDGE_ID, ae_title=EDGE_AE)),
            "--workers",
            "1",
        ],
    )
    try:
        node.wait_ready()
        wait_for(lambda: atna_registered(node), "the worker's ATNA subscription", TIMEOUT)
        started = wait_for(
            lambda: of_edge(received_messages(rsyslog, APPLICATION_ACTIVITY), START),
            "the edge's Application Start",
            TIMEOUT,
        )
        stopped = node.stop()
        assert stopped == 0, node.text
        # Sent by the worker as it stops: no restart is needed for it to arrive.
        ended = wait_for(
            lambda: of_edge(received_messages(rsyslog, APPLICATION_ACTIVITY), STOP),
            "the edge's Application Stop",
            TIMEOUT,
        )
        received = received_messages(rsyslog, APPLICATION_ACTIVITY)
    finally:
        node.kill()
        rsyslog.stop()
    assert len(started) == 1 and len(of_edge(received, START)) == 1
    assert len(ended) == 1, "one stop, once"
    for message in (started[0], ended[0]):
        event = message.find("EventIdentification")
        assert event.get("EventActionCode") == "E"
        assert event.get("EventOutcomeIndicator") == "0"
        edge = application(message)
        assert edge.get("UserIsRequestor") == "false"
        assert edge.get("AlternativeUserID") == f"AETITLES={EDGE_AE}"
        assert edge.get("UserName") == f"dicombus {__version__}"
        # Listening on 127.0.0.1 (up's default bind): the address, an IP address (2).
        assert edge.get("NetworkAccessPointID") == "127.0.0.1"
        assert edge.get("NetworkAccessPointTypeCode") == "2"
        launcher = participant(message, LAUNCHER)
        assert launcher is not None and launcher.get("UserIsRequestor") == "true"
        assert launcher.get("UserID")
        assert message.find("AuditSourceIdentification").get("AuditSourceID") == EDGE_ID
    # The audit worker's own start and stop name the worker, not the edge.
    workers = [
        application(message).get("UserID")
        for message in received
        if application(message).get("UserID") != EDGE_ID
    ]
    assert workers and all(name.startswith("dicombus-worker@") for name in workers), workers
    types = [
        message.find("EventIdentification/EventTypeCode").get("csd-code")
        for message in of_edge(received, START) + of_edge(received, STOP)
    ]
    assert types == [START, STOP]
