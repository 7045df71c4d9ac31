"""prometheus-client custom collectors over the shared state in Redis.

Nothing is counted in this process: each scrape reads one
:class:`~dicombus.metrics.snapshot.Snapshot` and turns it into metric
families, so any number of ``dicombus metrics`` processes on any hosts serve
the same numbers, and a restart of one loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from dicombus.metrics.families import COUNTERS, HISTOGRAMS, Family
from dicombus.metrics.snapshot import BREAKER_STATES, Histogram, Snapshot, read_snapshot

if TYPE_CHECKING:
    import redis

# The edge heartbeat's figures published as gauges: figure -> (metric, help).
EDGE_GAUGES: dict[str, tuple[str, str]] = {
    "outbox_rows": ("dicombus_outbox_messages", "Messages waiting in the edge's outbox."),
    "outbox_bytes": ("dicombus_outbox_bytes", "Bytes of the messages in the edge's outbox."),
    "lag_seconds": (
        "dicombus_publisher_lag_seconds",
        "Age of the oldest event the edge has not yet handed to Redis.",
    ),
    "queued": ("dicombus_publisher_queued", "Events in the edge's in-memory publish queue."),
    "held": ("dicombus_publisher_held", "Events the edge holds in memory (outbox cannot store)."),
    "outbox_full": ("dicombus_outbox_full", "1 while the edge's outbox is full or cannot store."),
}


def to_families(snapshot: Snapshot) -> Iterator[Metric]:
    """Every metric family of a snapshot."""
    for family in COUNTERS:
        yield _counter(family, snapshot.counters[family.name])
    for family in HISTOGRAMS:
        yield _histogram(family, snapshot.histograms[family.name])
    yield from _edges(snapshot)
    yield from _queues(snapshot)
    dead = GaugeMetricFamily(
        "dicombus_dead_letters", "Dead letters waiting, by task.", labels=["task"]
    )
    for task, count in sorted(snapshot.dead_letters.items()):
        dead.add_metric([task], count)
    yield dead
    breaker = GaugeMetricFamily(
        "dicombus_routing_breaker_state",
        "1 for the current state of each routing destination's circuit breaker.",
        labels=["destination", "state"],
    )
    for destination, current in sorted(snapshot.breakers.items()):
        for state in BREAKER_STATES:
            breaker.add_metric([destination, state], float(state == current))
    yield breaker


def _counter(family: Family, series: dict[tuple[str, ...], float]) -> CounterMetricFamily:
    metric = CounterMetricFamily(family.name, family.help, labels=list(family.labels))
    for labels, value in sorted(series.items()):
        metric.add_metric(list(labels), value)
    return metric


def _histogram(family: Family, series: dict[tuple[str, ...], Histogram]) -> HistogramMetricFamily:
    metric = HistogramMetricFamily(family.name, family.help, labels=list(family.labels))
    bounds = [*family.bound_texts, "+Inf"]
    for labels, histogram in sorted(series.items()):
        cumulative, buckets = 0.0, []
        for bound in bounds:
            cumulative += histogram.buckets.get(bound, 0.0)
            buckets.append((bound, cumulative))
        metric.add_metric(list(labels), buckets, histogram.sum)
    return metric


def _edges(snapshot: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "dicombus_edge_up", "1 while the edge's heartbeat is fresh, else 0.", labels=["edge"]
    )
    age = GaugeMetricFamily(
        "dicombus_edge_heartbeat_age_seconds",
        "Seconds since the edge's last heartbeat.",
        labels=["edge"],
    )
    gauges = {
        figure: GaugeMetricFamily(name, text, labels=["edge"])
        for figure, (name, text) in EDGE_GAUGES.items()
    }
    for edge in snapshot.edges:
        up.add_metric([edge.edge_id], float(edge.up))
        if edge.beat_age is not None:
            age.add_metric([edge.edge_id], edge.beat_age)
        for figure, gauge in gauges.items():
            if figure in edge.figures:
                gauge.add_metric([edge.edge_id], edge.figures[figure])
    yield up
    yield age
    yield from gauges.values()


def _queues(snapshot: Snapshot) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "dicombus_queue_messages", "Messages waiting in a Celery queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "dicombus_queue_oldest_message_age_seconds",
        "Age of the event of the oldest message waiting in a queue (0 when empty).",
        labels=["queue"],
    )
    for queue in snapshot.queues:
        depth.add_metric([queue.name], queue.messages)
        oldest.add_metric([queue.name], queue.oldest_age or 0.0)
    yield depth
    yield oldest


class RedisCollector(Collector):
    """Reads a snapshot from Redis at every scrape (a Redis that does not answer
    fails the scrape, which Prometheus records as ``up == 0``)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def collect(self) -> Iterator[Metric]:
        yield from to_families(read_snapshot(self._client, datetime.now(UTC)))


def registry_for(client: redis.Redis) -> CollectorRegistry:
    """A registry with only the dicombus collector (no process metrics of this server)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client))
    return registry
