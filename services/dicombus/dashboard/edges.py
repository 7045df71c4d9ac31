"""``/api/edges``: each edge's heartbeat, its per-minute series and its C-STORE latency.

Read from the broker's Redis only, so the dashboard runs on any host that reaches it:
heartbeats and histograms through :func:`dicombus.metrics.snapshot.read_snapshot`, the
series from the per-minute hashes the counter task writes
(:data:`dicombus.metrics.families.PER_MINUTE`): one pipeline of ``minutes`` HGETALLs
per family, whatever the traffic.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dicombus.metrics.families import (
    ASSOCIATIONS,
    CSTORE_BYTES,
    CSTORE_DURATION,
    CSTORE_INSTANCES,
    MINUTE_SECONDS,
    Family,
    minute_key,
)
from dicombus.metrics.snapshot import Histogram, Snapshot

if TYPE_CHECKING:
    import redis

# The charts' window: an hour of minutes, as the per-minute hashes keep two.
WINDOW_MINUTES = 60
PERCENTILES = (0.5, 0.95, 0.99)
MEGABYTE = 1_000_000
# The heartbeat's figures the page shows, under the API's names.
HEARTBEAT_FIGURES = {
    "outbox_rows": "outbox_messages",
    "outbox_bytes": "outbox_bytes",
    "lag_seconds": "publisher_lag_seconds",
    "queued": "publisher_queued",
}

# edge -> series name -> one value per minute of the window
Series = dict[str, dict[str, list[float]]]


def edges_view(
    client: redis.Redis, snapshot: Snapshot, now: datetime, minutes: int = WINDOW_MINUTES
) -> dict[str, Any]:
    """The ``/api/edges`` document (docs/analytics.md#dashboard)."""
    last = int(now.timestamp() // MINUTE_SECONDS)
    window = list(range(last - minutes + 1, last + 1))
    associations = _per_minute(client, ASSOCIATIONS, window, ("calling_ae", "result"))
    instances = _per_minute(client, CSTORE_INSTANCES, window, ("modality",))
    volume = _per_minute(client, CSTORE_BYTES, window, ("modality",), scale=MEGABYTE)
    heartbeats = {edge.edge_id: edge for edge in snapshot.edges}
    latencies = snapshot.histograms.get(CSTORE_DURATION.name, {})
    names = sorted(
        set(heartbeats) | set(associations) | set(instances) | {labels[0] for labels in latencies}
    )
    edges = []
    for name in names:
        beat = heartbeats.get(name)
        figures = beat.figures if beat is not None else {}
        edges.append(
            {
                "edge": name,
                "ae_title": beat.ae_title if beat is not None else "",
                "address": beat.address if beat is not None else "",
                "up": beat is not None and beat.up,
                "heartbeat_age_seconds": beat.beat_age if beat is not None else None,
                **{key: figures.get(figure) for figure, key in HEARTBEAT_FIGURES.items()},
                "associations_per_minute": associations.get(name, {}),
                "instances_per_minute": instances.get(name, {}),
                "megabytes_per_minute": volume.get(name, {}),
                "cstore_latency_seconds": latency(latencies.get((name,), Histogram())),
            }
        )
    return {
        "minutes": [minute * MINUTE_SECONDS for minute in window],
        "edges": edges,
    }


def _per_minute(
    client: redis.Redis,
    family: Family,
    window: list[int],
    by: Iterable[str],
    *,
    scale: float = 1.0,
) -> Series:
    """Per edge, one series per value of the labels ``by`` (joined by a space), summed over
    the family's other labels; a minute with nothing is 0."""
    positions = [family.labels.index(label) for label in by]
    pipe = client.pipeline(transaction=False)
    for minute in window:
        pipe.hgetall(minute_key(family, minute))
    series: Series = defaultdict(dict)
    for index, found in enumerate(pipe.execute()):
        for field, value in found.items():
            labels = [str(part) for part in json.loads(_text(field))]
            name = " ".join(labels[p] for p in positions)
            values = series[labels[0]].setdefault(name, [0.0] * len(window))
            values[index] += float(value) / scale
    return dict(series)


def latency(histogram: Histogram) -> dict[str, float | None]:
    """Count, mean and percentiles of a histogram, interpolated within the bucket each falls
    in, as Prometheus's ``histogram_quantile`` does; one past the last bound is that bound."""
    count = histogram.count
    result: dict[str, float | None] = {"count": count, "mean": None}
    result.update({f"p{round(q * 100)}": None for q in PERCENTILES})
    if count == 0:
        return result
    result["mean"] = histogram.sum / count
    bounds = sorted((float(bound), n) for bound, n in histogram.buckets.items() if bound != "+Inf")
    for q in PERCENTILES:
        rank, below, lower = q * count, 0.0, 0.0
        value = bounds[-1][0] if bounds else None
        for bound, n in bounds:
            if below + n >= rank and n > 0:
                value = lower + (bound - lower) * (rank - below) / n
                break
            below, lower = below + n, bound
        result[f"p{round(q * 100)}"] = value
    return result


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
