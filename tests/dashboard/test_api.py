"""The dashboard's JSON API on a running node (real Redis, built-in workers, an edge that
receives instances from two AE titles): its numbers equal what the audit store holds."""

from __future__ import annotations

import json
from typing import Any

from dashboard_support import Node, dead_letter, stored_sizes
from dicombus.dashboard.edges import latency
from dicombus.metrics.snapshot import Histogram
from worker_support import store, wait_for


def edge_of(document: dict[str, Any]) -> dict[str, Any]:
    (edge,) = [e for e in document["edges"] if e["edge"] == "edge-test"]
    return edge


def totals(series: dict[str, list[float]]) -> dict[str, float]:
    return {name: sum(values) for name, values in series.items()}


def test_edges_queues_and_events_agree_with_the_audit_store(node: Node) -> None:
    uids = store(node.edge_port, 3, calling="CT1") + store(node.edge_port, 2, calling="MR1")
    wait_for(lambda: len(stored_sizes(node)) == len(uids), "the audit rows")
    sizes = stored_sizes(node)

    def counted() -> dict[str, Any] | None:
        edge = edge_of(node.get("api/edges"))
        done = sum(totals(edge["instances_per_minute"]).values()) >= len(uids)
        return edge if done and edge["cstore_latency_seconds"]["count"] >= len(uids) else None

    edge = wait_for(counted, "the counter task's per-minute counts")
    assert edge["up"] is True
    assert edge["outbox_messages"] == 0
    assert totals(edge["instances_per_minute"]) == {"CT": 5}
    assert totals(edge["associations_per_minute"]) == {"CT1 accepted": 1, "MR1 accepted": 1}
    megabytes = totals(edge["megabytes_per_minute"])["CT"]
    assert abs(megabytes - sum(sizes) / 1e6) < 1e-9
    latency_seconds = edge["cstore_latency_seconds"]
    assert latency_seconds["count"] == 5
    assert 0 < latency_seconds["p50"] <= latency_seconds["p95"] <= latency_seconds["p99"]

    queues = {q["name"]: q for q in node.get("api/queues")["queues"]}
    assert queues["events"]["messages"] == 0
    assert len(queues["events"]["workers"]) == 1  # the one worker consumes it

    found = node.get("api/events?type=EVT_C_STORE&ae=CT1&limit=10")["events"]
    assert len(found) == 3
    assert {e["cloudevent"]["data"]["sop_instance_uid"] for e in found} == set(uids[:3])
    assert all(e["cloudevent"]["specversion"] == "1.0" for e in found)
    study = found[0]["cloudevent"]["data"]["dataset"]["0020000D"]["Value"][0]
    by_study = node.get(f"api/events?study={study}")["events"]
    assert by_study and all(
        e["cloudevent"]["data"]["dataset"]["0020000D"]["Value"][0] == study for e in by_study
    )
    assert len(node.get("api/events?limit=2")["events"]) == 2


def test_a_bad_event_filter_is_an_error_naming_it(node: Node) -> None:
    import urllib.error

    try:
        node.get("api/events?limit=0")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
        assert "limit" in json.loads(exc.read())["error"]
    else:
        raise AssertionError("limit=0 was accepted")


def test_routing_lists_a_dead_letter_and_replays_it(node: Node) -> None:
    uid = "1.2.826.0.1.3680043.10.1.99"
    dead_letter(node.routing_db, uid)
    routing = node.get("api/routing")
    assert [d["sop_instance_uid"] for d in routing["dead_letters"]] == [uid]
    (pacs,) = routing["destinations"]
    assert pacs["name"] == "pacs" and pacs["breaker"] == "closed"
    assert pacs["deliveries"]["dead"] == 1

    assert node.post("api/routing/retry", {"uids": ["1.2.3"]}) == (
        200,
        {"replayed": [], "not_dead_letters": ["1.2.3"]},
    )
    status, answer = node.post("api/routing/retry", {"uids": [uid]})
    assert status == 200
    assert answer["replayed"] == [{"sop_instance_uid": uid, "destination": "pacs"}]
    routing = node.get("api/routing")
    assert routing["dead_letters"] == []
    assert routing["destinations"][0]["deliveries"]["waiting"] == 1


def test_a_replay_request_without_uids_is_refused(node: Node) -> None:
    status, answer = node.post("api/routing/retry", {"uids": []})
    assert status == 400
    assert "uids" in answer["error"]
    status, answer = node.post("api/routing/retry", ["1.2.3"])
    assert status == 400


def test_percentiles_interpolate_within_their_bucket() -> None:
    # 10 observations: 4 up to 1 ms, 6 between 1 and 5 ms.
    histogram = Histogram(buckets={"0.001": 4, "0.005": 6}, sum=0.02)
    result = latency(histogram)
    assert result["count"] == 10
    assert result["mean"] == 0.002
    assert abs(result["p50"] - (0.001 + 0.004 * 1 / 6)) < 1e-12
    assert latency(Histogram())["p95"] is None
