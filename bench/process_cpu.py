"""CPU time of process trees, read from /proc (Linux), for per-process cost figures.

``/proc/PID/stat`` gives each process's own user and system time (all its
threads, finished ones included) and the time of its children that it has
reaped (``cutime``, ``cstime``: proc(5)). A tree's total is the sum of both
over its live processes, so a child that exits between two snapshots (a
``storescp --fork`` child, a restarted worker) still counts, in its parent's
reaped time. A snapshot keys each process by (pid, start time), so a reused
pid is a new process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStat:
    pid: int
    parent: int
    started: int  # clock ticks after boot: with the pid, names one process
    name: str  # the executable's name (comm), at most 15 characters
    seconds: float  # own user + system time, plus that of the reaped children


def read_stat(pid: int) -> ProcessStat | None:
    """One process's times, or None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # proc(5): "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17, starttime 22.
    ticks = sum(int(value) for value in fields[11:15])
    return ProcessStat(
        pid=pid,
        parent=int(fields[1]),
        started=int(fields[19]),
        name=name,
        seconds=ticks / CLOCK_TICKS,
    )


def command_line(pid: int) -> str:
    try:
        return (
            (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except (FileNotFoundError, ProcessLookupError):
        return ""


def trees(roots: set[int]) -> list[ProcessStat]:
    """The live processes of ``roots`` and of every process below them, parents first."""
    stats = [
        stat
        for entry in PROC.iterdir()
        if entry.name.isdigit()
        if (stat := read_stat(int(entry.name)))
    ]
    children: dict[int, list[ProcessStat]] = {}
    for stat in stats:
        children.setdefault(stat.parent, []).append(stat)
    found = [stat for stat in stats if stat.pid in roots]
    index = 0
    while index < len(found):
        found.extend(
            child for child in children.get(found[index].pid, []) if child.pid not in roots
        )
        index += 1
    return found


# (pid, start time) -> (label, CPU seconds)
Snapshot = dict[tuple[int, int], tuple[str, float]]
# Names a process below a root from its stat and its parent's label; None: the parent's label.
ChildNamer = Callable[[ProcessStat, str], "str | None"]


def snapshot(roots: Mapping[str, int], name_child: ChildNamer | None = None) -> Snapshot:
    """The CPU time of the trees of ``roots`` (label -> root pid), process by process.

    A process below a root takes its parent's label, unless ``name_child`` names it
    (a process that is itself a root keeps its own label).
    """
    labels = {pid: label for label, pid in roots.items()}
    taken: Snapshot = {}
    for stat in trees(set(labels)):
        if stat.pid not in labels:
            parent = labels[stat.parent]
            labels[stat.pid] = (name_child(stat, parent) if name_child else None) or parent
        taken[(stat.pid, stat.started)] = (labels[stat.pid], stat.seconds)
    return taken


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per label between two snapshots (processes born since count from zero)."""
    by_label: dict[str, float] = {}
    for key, (label, seconds) in after.items():
        by_label[label] = by_label.get(label, 0.0) + seconds - before.get(key, (label, 0.0))[1]
    for key, (label, seconds) in before.items():
        if key not in after:  # exited: its time is in its parent's reaped time now
            by_label[label] = by_label.get(label, 0.0) - seconds
    return by_label


def stop_left_over(snap: Snapshot, signal_number: int) -> list[int]:
    """Signal each process of ``snap`` that still runs as the same process; their pids."""
    signalled = []
    for pid, started in snap:
        stat = read_stat(pid)
        if stat is not None and stat.started == started:
            try:
                os.kill(pid, signal_number)
            except ProcessLookupError:
                continue
            signalled.append(pid)
    return signalled
