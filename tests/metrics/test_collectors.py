"""The metrics collectors against a real Redis (EmbeddedRedis): what the counter task's
script adds, what the edge heartbeat writes, what queues and dead letters hold, read back
through prometheus-client's exposition as Prometheus would scrape it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from dicombus.bus.dead_letters import DeadLetter, push
from dicombus.bus.envelope import format_time
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.sender import Broker, TaskMessageBuilder
from dicombus.bus.subscriptions import Subscription, register_subscriptions
from dicombus.metrics.collector import registry_for
from dicombus.metrics.families import (
    CSTORE_DURATION,
    EVENT_TO_TASK,
    LABEL_CAPS,
    ROUTING_DELIVERIES,
    Family,
    bound_text,
)
from dicombus.metrics.heartbeat import EdgeHeartbeat
from dicombus.metrics.recorder import EventOps, event_ops
from dicombus.metrics.snapshot import BREAKERS_KEY, read_snapshot
from dicombus.metrics.store import apply, increment
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

NOW = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MARKER_TTL = 600


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


_ids = iter(range(1, 1_000_000))


def envelope(event_type: str, data: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    """An envelope as docs/events.md describes it (only what the metrics read)."""
    calling = attributes.pop("calling", "CT1")
    return {
        "id": f"01EVENT{next(_ids):019d}",
        "type": event_type,
        "source": "dicombus://edge-1/EDGE",
        "time": format_time(attributes.pop("time", NOW)),
        "subject": attributes.pop("subject", "01ASSOCIATION0000000000000"),
        "sequence": attributes.pop("sequence", 1),
        "data": {"association": {"calling_ae_title": calling}, **data},
    }


def c_store(modality: str = "CT", status: str = "Success", size: int = 1000, **kw: Any) -> Any:
    return envelope(
        "EVT_C_STORE",
        {
            "message_id": kw.pop("message_id", 1),
            "sop_class_uid": CT_IMAGE,
            "status_category": status,
            "dataset_size": size,
            "dataset": {"00080060": {"vr": "CS", "Value": [modality]}},
        },
        **kw,
    )


def count(client: redis.Redis, envelopes: list[dict[str, Any]], task: str = "t") -> int:
    batch = [event_ops(e, marker=f"test:marker:{e['id']}", task=task, now=NOW) for e in envelopes]
    return apply(client, batch, marker_ttl=MARKER_TTL)


def scrape(client: redis.Redis) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}, parsed from the text exposition."""
    text = generate_latest(registry_for(client)).decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_c_store_and_associations_are_counted_with_their_dicom_labels_once_per_event(
    client: redis.Redis,
) -> None:
    accepted = envelope("EVT_ACCEPTED", {})
    stores = [c_store(), c_store(size=500), c_store("MR", status="Failure", size=7)]
    events = [accepted, *stores, envelope("EVT_REJECTED", {}, calling="US1")]
    assert count(client, events) == 5
    # Redelivered and replayed: the same event ids count nothing more.
    assert count(client, [accepted, stores[0]]) == 0

    samples = scrape(client)
    instances = samples["dicombus_cstore_instances_total"]
    ct = (("edge", "edge-1"), ("modality", "CT"), ("sop_class", CT_IMAGE))
    assert instances[(*ct[:2], *ct[2:], ("status_class", "success"))] == 2
    mr = (("edge", "edge-1"), ("modality", "MR"), ("sop_class", CT_IMAGE))
    assert instances[(*mr, ("status_class", "failure"))] == 1
    assert samples["dicombus_cstore_bytes_total"][(*ct, ("status_class", "success"))] == 1500
    associations = samples["dicombus_associations_total"]
    assert associations[(("calling_ae", "CT1"), ("edge", "edge-1"), ("result", "accepted"))] == 1
    assert associations[(("calling_ae", "US1"), ("edge", "edge-1"), ("result", "rejected"))] == 1
    assert sum(samples["dicombus_events_total"].values()) == 5
    assert samples["dicombus_tasks_total"][(("outcome", "succeeded"), ("task", "t"))] == 5
    # The counter hashes of old are kept as they were.
    assert client.hgetall("dicombus:counts:type") == {
        "EVT_ACCEPTED": "1",
        "EVT_C_STORE": "3",
        "EVT_REJECTED": "1",
    }
    assert client.hget("dicombus:counts:ae:CT1", "EVT_C_STORE") == "3"


def test_a_capped_label_folds_new_values_into_other(client: redis.Redis) -> None:
    cap = LABEL_CAPS["calling_ae"]
    titles = [f"AE{n}" for n in range(cap + 5)]
    assert count(client, [envelope("EVT_ACCEPTED", {}, calling=t) for t in titles]) == cap + 5
    # Already admitted values stay themselves after the cap is reached.
    assert count(client, [envelope("EVT_ACCEPTED", {}, calling="AE0")]) == 1

    series = scrape(client)["dicombus_associations_total"]
    by_ae = {dict(labels)["calling_ae"]: value for labels, value in series.items()}
    assert len(by_ae) == cap + 1
    assert by_ae["other"] == 5
    assert by_ae["AE0"] == 2
    assert sum(by_ae.values()) == cap + 6


def commands(client: redis.Redis) -> dict[str, int]:
    """Redis's own count of each command run so far (scripts' commands included)."""
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in client.info("commandstats").items()
    }


def test_a_batch_adds_once_per_key_and_field_and_counts_only_its_new_events(
    client: redis.Redis,
) -> None:
    stores = [c_store(size=100 + n) for n in range(40)]
    assert count(client, stores[:10]) == 10
    client.config_resetstat()
    # Redelivered (the first ten, and one twice in the batch) beside thirty new ones.
    assert count(client, [*stores, stores[20]]) == 30
    calls = commands(client)
    # One claim per event; the additions summed per key and field: the thirty
    # C-STOREs of one stream share every one of them (old: ~7 HINCRBY per event).
    assert calls["set"] == 41
    assert calls["hincrby"] < 30
    assert calls["evalsha"] == 1 and "eval" not in calls

    samples = scrape(client)
    ct = (("edge", "edge-1"), ("modality", "CT"), ("sop_class", CT_IMAGE))
    assert samples["dicombus_cstore_instances_total"][(*ct, ("status_class", "success"))] == 40
    total_bytes = sum(100 + n for n in range(40))
    assert samples["dicombus_cstore_bytes_total"][(*ct, ("status_class", "success"))] == (
        total_bytes
    )
    assert client.hget("dicombus:counts:type", "EVT_C_STORE") == "40"
    assert client.hget("dicombus:counts:ae:CT1", "EVT_C_STORE") == "40"
    minute_keys = client.keys("dicombus:metrics:*:minute:*")
    assert minute_keys and all(client.ttl(key) > 0 for key in minute_keys)


def test_the_script_is_loaded_again_after_redis_forgot_it(client: redis.Redis) -> None:
    assert count(client, [c_store()]) == 1
    client.script_flush()  # as a restarted Redis: it answers NOSCRIPT to EVALSHA
    assert count(client, [c_store()]) == 1
    assert client.hget("dicombus:counts:type", "EVT_C_STORE") == "2"


def test_c_store_and_c_find_durations_are_the_service_seconds_their_outcomes_carry(
    client: redis.Redis,
) -> None:
    # The edge measures each request's service time; no EVT_DIMSE_RECV is needed.
    store = c_store()
    store["data"]["service_seconds"] = 0.040
    find = envelope("EVT_C_FIND", {"message_id": 2, "service_seconds": 1.5})
    assert count(client, [store, find]) == 2
    assert count(client, [store]) == 0  # redelivered: observed once

    samples = scrape(client)
    edge = (("edge", "edge-1"),)
    assert samples["dicombus_cstore_duration_seconds_count"][edge] == 1
    assert samples["dicombus_cstore_duration_seconds_sum"][edge] == pytest.approx(0.040)
    buckets = samples["dicombus_cstore_duration_seconds_bucket"]
    assert buckets[(*edge, ("le", "0.025"))] == 0
    assert buckets[(*edge, ("le", "0.05"))] == 1
    assert buckets[(*edge, ("le", "+Inf"))] == 1
    assert samples["dicombus_cfind_duration_seconds_count"][edge] == 1
    assert samples["dicombus_cfind_duration_seconds_sum"][edge] == pytest.approx(1.5)


def test_event_to_task_latency_is_observed_per_counting_task(client: redis.Redis) -> None:
    late = envelope("EVT_ACCEPTED", {}, time=NOW - timedelta(seconds=2))
    count(client, [late], task="dicombus.audit_count")
    samples = scrape(client)
    task = (("task", "dicombus.audit_count"),)
    assert samples["dicombus_event_to_task_seconds_sum"][task] == pytest.approx(2.0)
    assert samples["dicombus_event_to_task_seconds_bucket"][(("le", "1.0"), *task)] == 0
    assert samples["dicombus_event_to_task_seconds_bucket"][(("le", "2.5"), *task)] == 1


_BOUNDS = sorted({*CSTORE_DURATION.buckets, *EVENT_TO_TASK.buckets})


@given(
    seconds=st.one_of(
        st.sampled_from(_BOUNDS),
        st.sampled_from(_BOUNDS).map(lambda bound: math.nextafter(bound, math.inf)),
        st.sampled_from(_BOUNDS).map(lambda bound: math.nextafter(bound, 0.0)),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    family=st.sampled_from([CSTORE_DURATION, EVENT_TO_TASK]),
)
def test_an_observation_counts_in_the_first_bucket_whose_bound_it_does_not_exceed(
    seconds: float, family: Family
) -> None:
    """Prometheus' ``le``: the bucket of the smallest bound at or over the value, a value on a
    bound in that bound's bucket, a value over them all (or NaN) in ``+Inf``."""
    ops = EventOps("marker")
    ops.observe(family, ["edge-1"], seconds)
    (kind, key, parts, amount), (sum_kind, sum_key, _, observed) = ops.ops
    at_or_over = [bound for bound in family.buckets if seconds <= bound]
    assert parts[-1] == (bound_text(at_or_over[0]) if at_or_over else "+Inf")
    assert (kind, key, amount) == ("incr", family.buckets_key, 1)
    assert (sum_kind, sum_key) == ("incrf", family.sum_key)
    assert observed is seconds


def test_queue_depth_and_oldest_age_come_from_the_queue_lists(
    client: redis.Redis, redis_url: str
) -> None:
    register_subscriptions(client, [Subscription("my.task", "routing", frozenset({"EVT_C_STORE"}))])
    # Real Celery messages, as the edge sends them, the oldest event first.
    builder = TaskMessageBuilder(origin="test")
    target = Subscription("my.task", "routing", frozenset())
    broker = Broker(redis_url, timeout=5)
    try:
        for age in (90, 30):
            message = envelope("EVT_C_STORE", {}, time=datetime.now(UTC) - timedelta(seconds=age))
            broker.publish([builder.build(message, target, order=0, created=time.time())])
    finally:
        broker.close()

    samples = scrape(client)
    assert samples["dicombus_queue_messages"][(("queue", "routing"),)] == 2
    assert samples["dicombus_queue_messages"][(("queue", "events"),)] == 0
    oldest = samples["dicombus_queue_oldest_message_age_seconds"][(("queue", "routing"),)]
    assert 90 <= oldest < 90 + 60  # read a moment later; generous for a loaded machine


def test_the_edge_heartbeat_publishes_outbox_depth_and_lag_and_marks_a_stop(
    client: redis.Redis, redis_url: str
) -> None:
    figures = {"outbox_rows": 12.0, "outbox_bytes": 3400.0, "lag_seconds": 4.5, "queued": 1.0}
    heartbeat = EdgeHeartbeat(redis_url, "edge-9", lambda: figures, {"ae_title": "EDGE9"})
    heartbeat.beat()
    samples = scrape(client)
    edge = (("edge", "edge-9"),)
    assert samples["dicombus_edge_up"][edge] == 1
    assert samples["dicombus_outbox_messages"][edge] == 12
    assert samples["dicombus_outbox_bytes"][edge] == 3400
    assert samples["dicombus_publisher_lag_seconds"][edge] == 4.5
    assert samples["dicombus_edge_heartbeat_age_seconds"][edge] >= 0

    heartbeat.stop()  # never started: stop only marks it down
    assert scrape(client)["dicombus_edge_up"][edge] == 0


def test_dead_letters_and_routing_state_are_read_when_present(client: redis.Redis) -> None:
    letter = DeadLetter(
        task="my.task",
        queue="routing",
        envelope=envelope("EVT_C_STORE", {}),
        error="OSError: gone",
        attempts=3,
        time=format_time(NOW),
    )
    push(client, letter)
    push(client, letter)
    client.hset(BREAKERS_KEY, mapping={"pacs": "open", "ai": "closed"})
    increment(client, ROUTING_DELIVERIES, ["pacs", "failed"], 2)
    increment(client, ROUTING_DELIVERIES, ["ai", "delivered"])

    samples = scrape(client)
    assert samples["dicombus_dead_letters"][(("task", "my.task"),)] == 2
    breaker = samples["dicombus_routing_breaker_state"]
    assert breaker[(("destination", "pacs"), ("state", "open"))] == 1
    assert breaker[(("destination", "pacs"), ("state", "closed"))] == 0
    assert breaker[(("destination", "ai"), ("state", "closed"))] == 1
    deliveries = samples["dicombus_routing_deliveries_total"]
    assert deliveries[(("destination", "pacs"), ("outcome", "failed"))] == 2
    assert deliveries[(("destination", "ai"), ("outcome", "delivered"))] == 1


def test_increment_names_the_labels_it_expected(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="expected the labels destination, outcome"):
        increment(client, ROUTING_DELIVERIES, ["pacs"])


def test_the_snapshot_of_an_empty_redis_is_empty(client: redis.Redis) -> None:
    snapshot = read_snapshot(client, NOW)
    assert not any(snapshot.counters.values())
    assert snapshot.edges == [] and snapshot.dead_letters == {}
