"""What one event adds to the metrics: a list of additions for :mod:`dicombus.metrics.store`.

Works on the event's CloudEvents envelope (docs/events.md), so it needs
nothing of the worker but the envelope, the task's name and the time:

- every event: ``dicombus_events_total{edge, type}``, the event-to-task
  histogram, and the counter hashes the workers have always kept
  (``dicombus:counts:type``, ``dicombus:counts:ae``, ``dicombus:counts:ae:<title>``);
- EVT_ACCEPTED / EVT_REJECTED / EVT_ABORTED: ``dicombus_associations_total``;
- EVT_C_STORE: instances and bytes by SOP class, modality and status class;
- associations, instances and bytes also per minute of the event's time
  (:data:`~dicombus.metrics.families.PER_MINUTE`), for the dashboard's charts;
- EVT_C_STORE / EVT_C_FIND: the duration histograms observe the outcome's
  ``service_seconds``, measured by the edge on its own clock from taking the
  request to the outcome, so the default subscriptions fill them (no
  EVT_DIMSE_RECV needed, no clocks of two hosts compared).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dicombus.bus.envelope import parse_time
from dicombus.metrics.families import (
    ASSOCIATIONS,
    CFIND_DURATION,
    CSTORE_BYTES,
    CSTORE_DURATION,
    CSTORE_INSTANCES,
    EVENT_TO_TASK,
    EVENTS,
    MINUTE_SECONDS,
    MINUTE_TTL,
    TASKS,
    UNKNOWN,
    Family,
    minute_key,
)

# The counter hashes the built-in counter task has always kept (docs/workers.md).
COUNTS_BY_TYPE = "dicombus:counts:type"
COUNTS_BY_AE = "dicombus:counts:ae"

ASSOCIATION_RESULTS = {
    "EVT_ACCEPTED": "accepted",
    "EVT_REJECTED": "rejected",
    "EVT_ABORTED": "aborted",
}
# The outcomes whose ``service_seconds`` a duration histogram observes.
DURATIONS: dict[str, Family] = {
    "EVT_C_STORE": CSTORE_DURATION,
    "EVT_C_FIND": CFIND_DURATION,
}
MODALITY_TAG = "00080060"  # (0008,0060) Modality, PS3.3 C.7.3.1


@dataclass(slots=True)
class EventOps:
    """One event's claim marker, its capped label values and its additions."""

    marker: str
    values: list[list[str]] = field(default_factory=list)  # [label, value], resolved in Lua
    ops: list[list[Any]] = field(default_factory=list)

    def label(self, name: str, value: str) -> int:
        """A capped label value, referred to by the index this returns (1-based, as Lua)."""
        self.values.append([name, value])
        return len(self.values)

    def incr(self, key: str, parts: list[Any], amount: int = 1) -> None:
        self.ops.append(["incr", key, parts, amount])

    def incr_with_minute(
        self, family: Family, parts: list[Any], minute: int, amount: int = 1
    ) -> None:
        """Add to a counter family and to its hash of ``minute`` (kept :data:`MINUTE_TTL`)."""
        key = minute_key(family, minute)
        self.incr(family.key, parts, amount)
        self.incr(key, parts, amount)
        self.ops.append(["expire", key, MINUTE_TTL])

    def observe(self, family: Family, parts: list[Any], seconds: float) -> None:
        """One observation of a histogram whose bucket is known here: the first bound
        ``seconds`` is at or under (Prometheus' ``le``), or ``+Inf`` (NaN too)."""
        # The bounds ascend: bisection finds the first at or over ``seconds``. NaN is
        # at or under none of them.
        index = bisect_left(family.buckets, seconds) if seconds == seconds else -1
        bucket = family.bound_texts[index] if 0 <= index < len(family.buckets) else "+Inf"
        self.incr(family.buckets_key, [*parts, bucket])
        self.ops.append(["incrf", family.sum_key, parts, seconds])


def event_ops(envelope: Mapping[str, Any], *, marker: str, task: str, now: datetime) -> EventOps:
    """The additions of one event (``envelope``), counted by ``task`` at ``now``."""
    data: dict[str, Any] = envelope.get("data") or {}
    event_type = str(envelope.get("type"))
    edge = edge_of(envelope)
    calling = str((data.get("association") or {}).get("calling_ae_title") or "-")
    ops = EventOps(marker)
    # The counters of old, kept as they were (uncapped: they predate the caps).
    # Their fields are plain text, not the JSON arrays of the metric families.
    ops.ops += [
        ["hincr", COUNTS_BY_TYPE, event_type],
        ["hincr", COUNTS_BY_AE, calling],
        ["hincr", f"{COUNTS_BY_AE}:{calling}", event_type],
    ]
    ops.incr(EVENTS.key, [edge, event_type])
    # Counted after the task's own work (the audit row) succeeded: its success.
    ops.incr(TASKS.key, [task, "succeeded"])
    happened = parse_time(str(envelope["time"]))
    ops.observe(EVENT_TO_TASK, [task], max(0.0, (now - happened).total_seconds()))
    minute = int(happened.timestamp() // MINUTE_SECONDS)
    result = ASSOCIATION_RESULTS.get(event_type)
    if result is not None:
        ops.incr_with_minute(ASSOCIATIONS, [edge, ops.label("calling_ae", calling), result], minute)
    if event_type == "EVT_C_STORE":
        _c_store(ops, edge, data, minute)
    family = DURATIONS.get(event_type)
    seconds = data.get("service_seconds")
    if family is not None and isinstance(seconds, int | float):
        ops.observe(family, [edge], max(0.0, float(seconds)))
    return ops


def edge_of(envelope: Mapping[str, Any]) -> str:
    """The edge id, from ``source`` = ``dicombus://<edge id>/<AE title>``."""
    source = str(envelope.get("source") or "")
    return source.removeprefix("dicombus://").split("/", 1)[0] or UNKNOWN


def _c_store(ops: EventOps, edge: str, data: dict[str, Any], minute: int) -> None:
    parts = [
        edge,
        ops.label("sop_class", str(data.get("sop_class_uid") or UNKNOWN)),
        ops.label("modality", _modality(data.get("dataset"))),
        str(data.get("status_category") or UNKNOWN).lower(),
    ]
    ops.incr_with_minute(CSTORE_INSTANCES, parts, minute)
    ops.incr_with_minute(CSTORE_BYTES, parts, minute, int(data.get("dataset_size") or 0))


def _modality(dataset: Any) -> str:
    """(0008,0060) from the DICOM JSON of the stored header, or ``unknown``."""
    element = dataset.get(MODALITY_TAG) if isinstance(dataset, dict) else None
    values = element.get("Value") if isinstance(element, dict) else None
    return str(values[0]) if values else UNKNOWN
