"""A routing send that fails as a whole gets its DICOM Instances Transferred, with a failure.

Real parts: Redis, a dicombus edge, a ``dicombus worker`` routing to a destination on a
loopback port nobody listens on (every association is refused), set to give up after two
tries. Each try publishes ``dicombus.route.begin`` and no ``sent`` (the destination
answered nothing); the event that ends it carries ``closes_send``: ``failed`` for the
first try (tried again), ``dead_letter`` for the second (given up). The routing events
reach a queue of the test's own; the ATNA task's code (:class:`AtnaAuditor`, its spool)
turns them into messages, each valid against the PS3.15 A.5.1.1 schema: one Begin
Transferring and one Instances Transferred per try, outcome 4 then 8 (A.5.1.1: minor
failure, the action restarted; serious failure, it ended), and nothing from the other
events.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from atna_support import validate
from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import Subscription, register_subscriptions
from dicombus.routing.delivery_store import DeliveryStore, State
from dicombus.routing.route_events import ROUTE_EVENT_TYPES
from dicombus_workers.atna.config import SyslogConfig, Transport
from dicombus_workers.atna.task import ATNA_EVENTS, AtnaAuditor
from dicombus_workers.records import EventRecord
from helpers import free_port
from lxml import etree
from publisher_support import consume, envelope_of, queue_length
from worker_support import Worker, embedded_redis, running_edge, store, wait_for

QUEUE = "route-audit"
BEGIN_TRANSFERRING, INSTANCES_TRANSFERRED = "110102", "110104"  # PS3.15 A.5.3.3, A.5.3.7


def node_toml(folder: Path, port: int) -> Path:
    path = folder / "node.toml"
    path.write_text(
        f'[edge]\ndata_dir = "{folder / "node"}"\n\n'
        "[[routing.destinations]]\n"
        'name = "down"\ntype = "dimse"\nae_title = "DOWN"\n'
        f'host = "127.0.0.1"\nport = {port}\n'
        "[routing.destinations.delivery]\n"
        "retry_first = 0.2\nretry_max = 0.5\nmax_attempts = 2\nbreaker_failures = 100\n\n"
        '[[routing.rules]]\nname = "all"\ndestinations = ["down"]\n'
    )
    return path


def audit_messages(auditor: AtnaAuditor) -> list[etree._Element]:
    """The spooled messages, in order, each validated (the XML after the syslog header)."""
    documents = []
    for _seq, body in auditor.spool.pending(1000):
        documents.append(validate(body[body.index(b"<?xml") :]))
    return documents


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound and never listening: every connection to it is refused, and
    no other process can take it meanwhile (as one free a moment ago could be)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_a_send_to_a_destination_that_is_down_ends_with_a_failed_instances_transferred(
    tmp_path: Path, refused_port: int
) -> None:
    assert {"dicombus.route.failed", "dicombus.route.dead_letter"} <= set(ATNA_EVENTS)
    down = refused_port
    config = node_toml(tmp_path, down)
    with embedded_redis(tmp_path / "redis") as url, running_edge(url, tmp_path / "edge") as edge:
        client = broker_client(url)
        register_subscriptions(
            client,
            [Subscription("tests.route_audit", QUEUE, frozenset(ROUTE_EVENT_TYPES))],
        )
        client.close()
        worker = Worker(
            url,
            tmp_path / "worker",
            include=("dicombus_workers.routing.task",),
            pool="solo",
            queues="dicombus.route,dicombus.route.down",
            env={
                "DICOMBUS_CONFIG": str(config),
                "DICOMBUS_ROUTING_DB": str(tmp_path / "worker" / "routing.sqlite3"),
            },
        )
        db = DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
        try:
            store(edge.address[1], 1)
            wait_for(
                lambda: [d.state for d in db.deliveries(destination="down")] == [State.DEAD],
                "the instance to become a dead letter after two refused tries",
            )
            # begin, failed; begin, dead_letter.
            wait_for(lambda: queue_length(url, QUEUE) >= 4, "the routing events")
            envelopes = [envelope_of(m) for m in consume(url, QUEUE, queue_length(url, QUEUE))]
        finally:
            worker.stop()

    types = [envelope["type"] for envelope in envelopes]
    assert types == [
        "dicombus.route.begin",
        "dicombus.route.failed",
        "dicombus.route.begin",
        "dicombus.route.dead_letter",
    ], types
    assert [envelope["data"]["closes_send"] for envelope in envelopes] == [
        False,
        True,
        False,
        True,
    ]

    # The ATNA task's own code; its repository away (a port nobody listens on), so every
    # message stays in the spool to be read here.
    auditor = AtnaAuditor(
        SyslogConfig(
            host="127.0.0.1",
            port=free_port(),
            transport=Transport.TLS,
            spool=tmp_path / "atna-spool.sqlite3",
            hostname="audit-host",
            max_backoff=60,
        )
    )
    try:
        for envelope in envelopes:
            auditor.handle(EventRecord(envelope))
        # Delivered twice by the bus: spooled once.
        auditor.handle(EventRecord(envelopes[1]))
        messages = audit_messages(auditor)
    finally:
        auditor.forwarder.stop()

    events = [message.find("EventIdentification") for message in messages]
    assert [event.find("EventID").get("csd-code") for event in events] == [
        BEGIN_TRANSFERRING,
        INSTANCES_TRANSFERRED,
        BEGIN_TRANSFERRING,
        INSTANCES_TRANSFERRED,
    ]
    assert [event.get("EventOutcomeIndicator") for event in events] == ["0", "4", "0", "8"]
    for event in events[1::2]:
        assert event.get("EventActionCode") == "R"
        assert f"127.0.0.1:{down}" in event.find("EventOutcomeDescription").text
    for message in messages:
        destination = message.xpath("ActiveParticipant[RoleIDCode/@csd-code='110152']")[0]
        assert destination.get("UserID") == "DOWN"
