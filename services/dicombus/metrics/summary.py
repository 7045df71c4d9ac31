"""The terminal summary of ``dicombus stats``: a snapshot as readable tables.

One table per edge (heartbeat, outbox, lag, associations, C-STORE by
modality) and one of queues; then tasks, dead letters and routing when they
hold anything. The numbers are the metrics' (:mod:`dicombus.metrics.snapshot`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from dicombus.metrics.families import (
    ASSOCIATIONS,
    CSTORE_BYTES,
    CSTORE_DURATION,
    CSTORE_INSTANCES,
    ROUTING_DELIVERIES,
    TASKS,
)
from dicombus.metrics.snapshot import EdgeState, Histogram, Snapshot

MEBIBYTE = 1024 * 1024


def render(snapshot: Snapshot) -> str:
    """The whole summary, lines joined."""
    lines: list[str] = []
    edge_ids = sorted({edge.edge_id for edge in snapshot.edges} | _edges_counted(snapshot))
    known = {edge.edge_id: edge for edge in snapshot.edges}
    for edge_id in edge_ids:
        lines += _edge(snapshot, edge_id, known.get(edge_id))
        lines.append("")
    if not edge_ids:
        lines += ["No edge has sent a heartbeat or an event yet.", ""]
    lines += ["Queues"]
    lines += _table(
        ("queue", "messages", "oldest"),
        [
            (queue.name, str(queue.messages), _seconds(queue.oldest_age))
            for queue in snapshot.queues
        ],
    )
    tasks = snapshot.counters[TASKS.name]
    if tasks:
        lines += ["", "Tasks"]
        lines += _table(
            ("task", "outcome", "events"),
            [(task, outcome, _int(value)) for (task, outcome), value in sorted(tasks.items())],
        )
    lines += ["", f"Dead letters: {sum(snapshot.dead_letters.values())}"]
    lines += [f"  {task}: {count}" for task, count in sorted(snapshot.dead_letters.items())]
    deliveries = snapshot.counters[ROUTING_DELIVERIES.name]
    if deliveries or snapshot.breakers:
        lines += ["", "Routing"]
        outcomes: dict[str, dict[str, float]] = defaultdict(dict)
        for (destination, outcome), value in deliveries.items():
            outcomes[destination][outcome] = value
        rows = [
            (
                destination,
                snapshot.breakers.get(destination, "-"),
                ", ".join(f"{k} {_int(v)}" for k, v in sorted(outcomes[destination].items())),
            )
            for destination in sorted(set(outcomes) | set(snapshot.breakers))
        ]
        lines += _table(("destination", "breaker", "deliveries"), rows)
    return "\n".join(lines)


def _edges_counted(snapshot: Snapshot) -> set[str]:
    return {labels[0] for labels in snapshot.counters[ASSOCIATIONS.name]} | {
        labels[0] for labels in snapshot.counters[CSTORE_INSTANCES.name]
    }


def _edge(snapshot: Snapshot, edge_id: str, state: EdgeState | None) -> list[str]:
    if state is None:
        head = f"Edge {edge_id}: no heartbeat"
    else:
        beat = f"last beat {_seconds(state.beat_age)} ago" if state.up else "no recent beat"
        status = "UP" if state.up else "DOWN"
        head = f"Edge {edge_id} ({state.ae_title} at {state.address}): {status}, {beat}"
    lines = [head]
    if state is not None:
        figures = state.figures
        lines.append(
            f"  outbox {_int(figures.get('outbox_rows', 0))} messages"
            f" ({_int(figures.get('outbox_bytes', 0))} bytes),"
            f" publisher lag {_seconds(figures.get('lag_seconds'))},"
            f" queued {_int(figures.get('queued', 0))}"
        )
    results: dict[str, dict[str, float]] = defaultdict(dict)
    for (edge, calling, result), value in snapshot.counters[ASSOCIATIONS.name].items():
        if edge == edge_id:
            results[calling][result] = value
    lines += ["  Associations"]
    lines += _table(
        ("calling AE", "accepted", "rejected", "aborted"),
        [
            (calling, *(_int(by.get(r, 0)) for r in ("accepted", "rejected", "aborted")))
            for calling, by in sorted(results.items())
        ],
        indent="    ",
    )
    stores: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    sizes = snapshot.counters[CSTORE_BYTES.name]
    for labels, value in snapshot.counters[CSTORE_INSTANCES.name].items():
        edge, _sop_class, modality, status = labels
        if edge == edge_id:
            totals = stores[(modality, status)]
            totals[0] += value
            totals[1] += sizes.get(labels, 0.0)
    lines += ["  C-STORE"]
    lines += _table(
        ("modality", "status", "instances", "MiB"),
        [
            (modality, status, _int(count), f"{size / MEBIBYTE:.1f}")
            for (modality, status), (count, size) in sorted(stores.items())
        ],
        indent="    ",
    )
    duration = snapshot.histograms[CSTORE_DURATION.name].get((edge_id,))
    if duration is not None and duration.count:
        lines.append(
            f"  C-STORE duration: mean {_seconds(duration.sum / duration.count)}, "
            f"p95 at most {_seconds(_quantile_bound(duration, 0.95))}"
        )
    return lines


def _quantile_bound(histogram: Histogram, quantile: float) -> float | None:
    """The upper bound of the bucket the quantile falls in (None: beyond the last)."""
    wanted, seen = quantile * histogram.count, 0.0
    for bound, count in sorted(
        histogram.buckets.items(), key=lambda item: float(item[0].replace("+Inf", "inf"))
    ):
        seen += count
        if seen >= wanted:
            return None if bound == "+Inf" else float(bound)
    return None


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "  ") -> list[str]:
    rows = list(rows)
    if not rows:
        return [f"{indent}(none)"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        indent + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]


def _int(value: float) -> str:
    return f"{int(value):,}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
