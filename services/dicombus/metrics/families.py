"""The metric families kept in Redis: names, labels, buckets and label caps, as data.

A counter family is one Redis hash, ``dicombus:metrics:<name>``: each field is
the JSON array of its label values (in the family's label order), each value
a count. A histogram family has two hashes: ``...:<name>:buckets`` (field: the
label values plus the bucket's upper bound, value: how many observations fell
in that bucket alone, not cumulated) and ``...:<name>:sum`` (field: the label
values, value: the sum of the observations). Workers add to them in Lua
(:mod:`dicombus.metrics.store`); ``dicombus metrics`` reads them back.

Label values that come from peers (AE titles, SOP classes, modalities) are
capped: the first :data:`LABEL_CAPS` distinct values of a label are kept, in
the Redis set ``dicombus:metrics:values:<label>``, and any later one is
counted under ``other``. Prometheus keeps one time series per label set, so
an unbounded label (a misconfigured modality sending a new AE title per
association) would grow its memory without end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

KEY_PREFIX = "dicombus:metrics:"
VALUES_PREFIX = KEY_PREFIX + "values:"
# What a capped label's value becomes once its label holds LABEL_CAPS values.
OTHER = "other"
# A label's value when the event does not carry it.
UNKNOWN = "unknown"

# Distinct values kept per capped label. About 50 to 100 is what Prometheus's
# guidance allows a label on a family with a few others (each combination is a
# series); a site with more modalities than this sees the busiest first ones.
LABEL_CAPS: dict[str, int] = {
    "calling_ae": 100,
    "sop_class": 60,
    "modality": 40,
}

# Seconds. DICOM operations on a LAN take milliseconds (a small C-STORE about
# 1 ms here, a CT slice a few); a C-FIND on a large index or a store to a slow
# disk takes seconds; 30 s and beyond is a peer or a disk in trouble.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# Event to task: a healthy bus is tens of milliseconds (docs/bus.md's benchmark:
# p99 16 ms at 1,000 events/s); minutes mean the workers are away or behind.
EVENT_TO_TASK_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


def bound_text(bound: float) -> str:
    """A bucket's upper bound as it is stored and served as ``le`` (``0.005``, ``1.0``)."""
    return json.dumps(bound)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its Prometheus name (without ``_total``), help and labels."""

    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # a histogram's upper bounds; () for a counter
    # Each bound as :func:`bound_text` writes it, made once: an observation per event
    # looks its bucket's text up here.
    bound_texts: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bound_texts", tuple(map(bound_text, self.buckets)))

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    @property
    def buckets_key(self) -> str:
        return self.key + ":buckets"

    @property
    def sum_key(self) -> str:
        return self.key + ":sum"


EVENTS = Family(
    "dicombus_events",
    "Events counted by the workers, by edge and event type.",
    ("edge", "type"),
)
ASSOCIATIONS = Family(
    "dicombus_associations",
    "Associations by calling AE title and result (accepted, rejected, aborted).",
    ("edge", "calling_ae", "result"),
)
CSTORE_INSTANCES = Family(
    "dicombus_cstore_instances",
    "C-STORE requests answered, by SOP class, modality and status class.",
    ("edge", "sop_class", "modality", "status_class"),
)
CSTORE_BYTES = Family(
    "dicombus_cstore_bytes",
    "Bytes of the C-STORE data sets received, by SOP class, modality and status class.",
    ("edge", "sop_class", "modality", "status_class"),
)
CSTORE_DURATION = Family(
    "dicombus_cstore_duration_seconds",
    "From a C-STORE request received whole (EVT_DIMSE_RECV) to its outcome (EVT_C_STORE).",
    ("edge",),
    DURATION_BUCKETS,
)
CFIND_DURATION = Family(
    "dicombus_cfind_duration_seconds",
    "From a C-FIND request received (EVT_DIMSE_RECV) to its final response (EVT_C_FIND).",
    ("edge",),
    DURATION_BUCKETS,
)
EVENT_TO_TASK = Family(
    "dicombus_event_to_task_seconds",
    "From an event on the edge (its envelope's time) to the counter task running on it.",
    ("task",),
    EVENT_TO_TASK_BUCKETS,
)
TASKS = Family(
    "dicombus_tasks",
    "Runs of event tasks, by task name and outcome (succeeded, retried, dead_letter, failed).",
    ("task", "outcome"),
)
# Written by routing delivery (another part of the system) through
# dicombus.metrics.store.increment; read here when present.
ROUTING_DELIVERIES = Family(
    "dicombus_routing_deliveries",
    "Routing deliveries by destination and outcome.",
    ("destination", "outcome"),
)

# Per-minute series of a few counter families, for the dashboard's charts: the same
# fields as the family's hash, in one hash per minute of the event's time,
# ``<key>:minute:<minutes since the epoch>``. Kept two hours after their last
# addition, so reading the last hour is a pipeline of 60 HGETALLs per family
# and Redis holds at most 120 small hashes each.
MINUTE_SECONDS = 60
MINUTE_TTL = 7200
PER_MINUTE: tuple[Family, ...] = (ASSOCIATIONS, CSTORE_INSTANCES, CSTORE_BYTES)


def minute_key(family: Family, minute: int) -> str:
    """The hash of ``family``'s additions in ``minute`` (minutes since the epoch, UTC)."""
    return f"{family.key}:minute:{minute}"


COUNTERS: tuple[Family, ...] = (
    EVENTS,
    ASSOCIATIONS,
    CSTORE_INSTANCES,
    CSTORE_BYTES,
    TASKS,
    ROUTING_DELIVERIES,
)
HISTOGRAMS: tuple[Family, ...] = (CSTORE_DURATION, CFIND_DURATION, EVENT_TO_TASK)
