"""The edge publishes its start and stop (dicombus.node.started / stopped), durably.

Real parts: an EmbeddedRedis and an EdgeNode on loopback. The start reaches the subscribed
queue with the edge's id, AE title, listening address and version; with Redis SIGKILLed
before the stop, the stop is kept in the edge's outbox (published at the next start, as
every event), never lost.
"""

from __future__ import annotations

import json
from pathlib import Path

from dicombus import __version__
from dicombus.bus.edge import EdgeNode
from dicombus.bus.edge_config import EdgeConfig
from dicombus.bus.node_events import NODE_EVENT_TYPES, NODE_STARTED, NODE_STOPPED
from dicombus.bus.outbox import Outbox
from dicombus.bus.redis_server import EmbeddedRedis, broker_client
from dicombus.bus.subscriptions import Subscription, register_subscriptions
from publisher_support import consume, envelope_of, queue_length
from worker_support import wait_for

QUEUE = "node-audit"


def test_start_published_and_stop_kept_in_the_outbox_while_redis_is_away(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = broker_client(server.url)
        register_subscriptions(
            client, [Subscription("tests.node_audit", QUEUE, frozenset(NODE_EVENT_TYPES))]
        )
        client.close()
        config = EdgeConfig(
            edge_id="edge-nodes",
            ae_title="NODES",
            port=0,
            data_dir=tmp_path / "edge",
            broker_url=server.url,
        )
        edge = EdgeNode(config)
        edge.start()
        try:
            host, port = edge.address
            wait_for(lambda: queue_length(server.url, QUEUE) == 1, "dicombus.node.started")
            [started] = [envelope_of(m) for m in consume(server.url, QUEUE, 1)]
            server.kill()  # Redis away: the stop must wait in the outbox
        finally:
            edge.stop()
    assert started["type"] == NODE_STARTED
    assert started["source"] == "dicombus://edge-nodes/NODES"
    data = started["data"]
    assert (data["edge"], data["ae_title"], data["host"], data["port"]) == (
        "edge-nodes",
        "NODES",
        host,
        port,
    )
    assert data["version"] == __version__
    outbox = Outbox(config.outbox)
    try:
        kept = [stored.message for stored in outbox.oldest(100)]
    finally:
        outbox.close()
    assert [message.queue for message in kept] == [QUEUE]
    stopped = json.loads(kept[0].body)[0][0]  # protocol 2: [args, kwargs, embed]
    assert stopped["type"] == NODE_STOPPED
    assert (stopped["data"]["edge"], stopped["data"]["port"]) == ("edge-nodes", port)
