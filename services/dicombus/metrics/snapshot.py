"""Everything the metrics say, read from Redis in one pass: what the collector and
``dicombus stats`` both show.

Counters and histograms are the hashes the workers add to
(:mod:`dicombus.metrics.families`); edges are their heartbeats
(:mod:`dicombus.metrics.heartbeat`); queues are the Redis lists of the
Celery queues in the subscription registry, read now; dead letters are the
lists of :mod:`dicombus.bus.dead_letters`; routing breakers are the hash
:data:`BREAKERS_KEY` that routing delivery keeps.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dicombus.bus import dead_letters
from dicombus.bus.envelope import parse_time
from dicombus.bus.subscriptions import load_registry
from dicombus.metrics.families import COUNTERS, HISTOGRAMS, Family
from dicombus.metrics.heartbeat import ALIVE_TTL, EDGES_KEY, alive_key, edge_key

if TYPE_CHECKING:
    import redis

# Routing delivery's circuit breakers: destination -> "closed", "open" or "half-open".
BREAKERS_KEY = "dicombus:routing:breakers"
BREAKER_STATES = ("closed", "open", "half-open")
# Celery's default queue, read even before a subscription names it.
DEFAULT_QUEUE = "events"

Labels = tuple[str, ...]


@dataclass(slots=True)
class Histogram:
    buckets: dict[str, float] = field(default_factory=dict)  # upper bound -> count in it alone
    sum: float = 0.0

    @property
    def count(self) -> float:
        return sum(self.buckets.values())


@dataclass(frozen=True, slots=True)
class EdgeState:
    edge_id: str
    up: bool
    beat_age: float | None  # seconds since the last beat (None: expired)
    ae_title: str
    address: str
    figures: dict[str, float]


@dataclass(frozen=True, slots=True)
class QueueState:
    name: str
    messages: int
    oldest_age: float | None  # seconds since the oldest message's event (None: empty)


@dataclass(slots=True)
class Snapshot:
    counters: dict[str, dict[Labels, float]]
    histograms: dict[str, dict[Labels, Histogram]]
    edges: list[EdgeState]
    queues: list[QueueState]
    dead_letters: dict[str, int]
    breakers: dict[str, str]


def read_snapshot(client: redis.Redis, now: datetime) -> Snapshot:
    """Everything, as Redis holds it now; ``now`` (aware) dates the queues' oldest messages."""
    return Snapshot(
        counters={family.name: _counter(client, family) for family in COUNTERS},
        histograms={family.name: _histogram(client, family) for family in HISTOGRAMS},
        edges=_edges(client),
        queues=_queues(client, now),
        dead_letters={
            name: dead_letters.count(client, name) for name in dead_letters.tasks(client)
        },
        breakers={
            _text(name): _text(state) for name, state in client.hgetall(BREAKERS_KEY).items()
        },
    )


def _dead_letters(client: redis.Redis) -> dict[str, int]:
    return {task: dead_letters.count(client, task) for task in dead_letters.tasks(client)}


def _labels(field_text: Any) -> Labels:
    return tuple(str(value) for value in json.loads(_text(field_text)))


def _counter(client: redis.Redis, family: Family) -> dict[Labels, float]:
    # Summed by decoded labels: the Lua encoder and Python's json may spell one label
    # set differently (cjson escapes "/"), and both may have written to the hash.
    series: dict[Labels, float] = defaultdict(float)
    for name, value in client.hgetall(family.key).items():
        series[_labels(name)] += float(value)
    return dict(series)


def _histogram(client: redis.Redis, family: Family) -> dict[Labels, Histogram]:
    series: dict[Labels, Histogram] = defaultdict(Histogram)
    for name, value in client.hgetall(family.buckets_key).items():
        *labels, bound = _labels(name)
        histogram = series[tuple(labels)]
        histogram.buckets[bound] = histogram.buckets.get(bound, 0.0) + float(value)
    for name, value in client.hgetall(family.sum_key).items():
        series[_labels(name)].sum += float(value)
    return dict(series)


def _edges(client: redis.Redis) -> list[EdgeState]:
    edges = []
    for edge_id in sorted(_text(name) for name in client.smembers(EDGES_KEY)):
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(edge_key(edge_id))
        pipe.pttl(alive_key(edge_id))
        fields, remaining_ms = pipe.execute()
        values = {_text(key): _text(value) for key, value in fields.items()}
        alive = remaining_ms is not None and remaining_ms >= 0
        edges.append(
            EdgeState(
                edge_id=edge_id,
                up=alive,
                beat_age=max(0.0, ALIVE_TTL - remaining_ms / 1000) if alive else None,
                ae_title=values.pop("ae_title", ""),
                address=values.pop("address", ""),
                figures={key: float(value) for key, value in values.items()},
            )
        )
    return edges


def _queues(client: redis.Redis, now: datetime) -> list[QueueState]:
    names = {sub.queue for sub in load_registry(client).values()} | {DEFAULT_QUEUE}
    queues = []
    for name in sorted(names):
        pipe = client.pipeline(transaction=False)
        pipe.llen(name)
        # kombu's Redis transport LPUSHes and BRPOPs: the oldest message is the last.
        pipe.lindex(name, -1)
        length, oldest = pipe.execute()
        happened = _event_time(oldest) if oldest is not None else None
        age = max(0.0, (now - happened).total_seconds()) if happened is not None else None
        queues.append(QueueState(name, int(length), age))
    return queues


def _event_time(message: Any) -> datetime | None:
    """The event time of a queued Celery message whose argument is an envelope."""
    try:
        payload = json.loads(_text(message))
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return parse_time(str(args[0]["time"]))
    except (ValueError, KeyError, IndexError, TypeError):
        return None  # not a message of ours: its age is unknown, its count still counts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
