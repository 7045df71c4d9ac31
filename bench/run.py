"""dicombus vs pynetdicom vs DCMTK, side by side in one run, on the same generated data.

    python bench/run.py [--quick] [--rows echo,store-ct ...] [--json out.json]
    python bench/run.py --profile store-ct

Every SCP and every SCU runs in a process of its own on 127.0.0.1 (see peers.py).
Each figure is the median of a few timed runs after an untimed warm-up. See
bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import data
import peers
from peers import IMPLS, Impl

DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "dicombus-bench-data"
# Where the SCPs write what they receive. A tmpfs by default: the rows compare
# network stacks, and on a disk every run's rewrite of the same files costs
# block frees (and, with the "discard" mount option, TRIMs) that swamp them.
DEFAULT_SCP_DIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """How long each timed run lasts, and how many there are."""

    repeats: int
    echo_seconds: float
    warmup_seconds: float
    store_seconds: float
    warmup_count: int
    child_timeout: float


FULL = Budget(
    repeats=3,
    echo_seconds=2.0,
    warmup_seconds=0.5,
    store_seconds=3.0,
    warmup_count=10,
    child_timeout=180.0,
)
QUICK = Budget(
    repeats=3,
    echo_seconds=0.4,
    warmup_seconds=0.1,
    store_seconds=0.5,
    warmup_count=5,
    child_timeout=90.0,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A goal from the issue: dicombus's figure at least ``factor`` times the peer's."""

    peer: str  # "pynetdicom" | "dcmtk"
    factor: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    key: str
    title: str
    unit: str
    pairs: tuple[tuple[str, str], ...]  # (SCU impl key, SCP impl key)
    targets: tuple[Target, ...] = ()
    dataset: str | None = None  # a data.specs() name for C-STORE rows


SAME_PAIRS = (
    ("dicombus", "dicombus"),
    ("pynetdicom", "pynetdicom"),
    ("pynetdicom+nodelay", "pynetdicom+nodelay"),
    ("dcmtk", "dcmtk"),
    ("dcmtk+nodelay", "dcmtk+nodelay"),
)
ECHO_PAIRS = (
    *SAME_PAIRS,
    ("pynetdicom", "dicombus"),
    ("dicombus", "pynetdicom"),
    ("dcmtk", "dicombus"),
)
STORE_PAIRS = (*ECHO_PAIRS, ("dicombus", "dcmtk"))


def _store_row(name: str, targets: tuple[Target, ...]) -> Row:
    return Row(
        key=f"store-{name}",
        title=f"C-STORE over one association: {name}",
        unit="inst/s",
        pairs=STORE_PAIRS,
        targets=targets,
        dataset=name,
    )


ROWS = {
    row.key: row
    for row in (
        Row(
            key="echo",
            title="C-ECHO: full associations/s (associate + C-ECHO + release, sequential)",
            unit="assoc/s",
            pairs=ECHO_PAIRS,
            targets=(Target(peer="pynetdicom", factor=10.0),),
        ),
        Row(
            key="echo-one",
            title="C-ECHO: echoes/s within one association (set-up not counted)",
            unit="echo/s",
            pairs=SAME_PAIRS,
        ),
        _store_row("small", (Target(peer="pynetdicom", factor=3.0),)),
        _store_row("ct", (Target(peer="pynetdicom", factor=3.0), Target(peer="dcmtk", factor=0.5))),
        _store_row(
            "multiframe",
            (Target(peer="pynetdicom", factor=3.0), Target(peer="dcmtk", factor=0.5)),
        ),
    )
}


@dataclass(slots=True, kw_only=True)
class Measurement:
    scu: str
    scp: str
    runs: list[dict[str, float]] = field(default_factory=list)
    note: str = ""
    error: str = ""

    @property
    def rate(self) -> float | None:
        return _median([run["count"] / run["seconds"] for run in self.runs])

    @property
    def megabytes_per_second(self) -> float | None:
        """None for rows that move no data sets (C-ECHO)."""
        return _median([run["bytes"] / 1e6 / run["seconds"] for run in self.runs if "bytes" in run])

    def as_json(self) -> dict[str, Any]:
        return {
            "scu": self.scu,
            "scp": self.scp,
            "rate": self.rate,
            "mb_per_s": self.megabytes_per_second,
            "runs": self.runs,
            "note": self.note,
            "error": self.error,
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(slots=True, kw_only=True)
class Context:
    budget: Budget
    tools: dict[str, str]
    work_dir: Path
    file_lists: dict[str, Path]
    files: dict[str, list[Path]]


# -- measuring one pair -------------------------------------------------------------------


def measure(row: Row, scu: Impl, scp: Impl, ctx: Context) -> Measurement:
    """Measure one pair; a failed attempt is retried once, and the failure noted."""
    first = _attempt(row, scu, scp, ctx)
    if not first.error:
        return first
    second = _attempt(row, scu, scp, ctx)
    second.note = f"retried after: {first.error}" + (f"; {second.note}" if second.note else "")
    return second


def _attempt(row: Row, scu: Impl, scp: Impl, ctx: Context) -> Measurement:
    result = Measurement(scu=scu.key, scp=scp.key)
    try:
        with peers.running_scp(scp, ctx.work_dir, tools=ctx.tools) as server:
            try:
                _measure_pair(row, result, scu, server.port, ctx)
            except FAILURES as exc:
                scp_log = _last_line(server.log_tail())
                why = _last_line(str(exc)) + (f" | SCP: {scp_log}" if scp_log else "")
                raise RuntimeError(why) from exc
    except FAILURES as exc:
        result.error = _last_line(str(exc)) or repr(exc)
        result.runs = []
    return result


FAILURES = (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError, KeyError)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else ""


def _measure_pair(row: Row, result: Measurement, scu: Impl, port: int, ctx: Context) -> None:
    if scu.is_python:
        args = python_task_args(row, ctx.budget, ctx.file_lists)
        result.runs = peers.python_client(scu, port, args, ctx.budget.child_timeout)["runs"]
    elif row.key == "echo":
        _dcmtk_echo_associations(result, scu, port, ctx)
    elif row.key == "echo-one":
        _dcmtk_echo_one(result, scu, port, ctx)
    else:
        assert row.dataset is not None
        _dcmtk_store(result, scu, port, ctx.files[row.dataset], ctx)


def python_task_args(
    row: Row, budget: Budget, file_lists: dict[str, Path], *, scale: float = 1.0
) -> list[str]:
    """The command line of a Python SCU child (peers.py client) for ``row``."""
    common = ["--repeats", str(budget.repeats)]
    if row.dataset is None:
        task = "echo-assoc" if row.key == "echo" else "echo-one"
        return [
            "--task",
            task,
            "--seconds",
            str(budget.echo_seconds * scale),
            "--warmup-seconds",
            str(budget.warmup_seconds),
            *common,
        ]
    return [
        "--task",
        "store",
        "--files",
        str(file_lists[row.dataset]),
        "--seconds",
        str(budget.store_seconds * scale),
        "--warmup-count",
        str(budget.warmup_count),
        *common,
    ]


def _dcmtk_echo_associations(result: Measurement, scu: Impl, port: int, ctx: Context) -> None:
    budget = ctx.budget
    command = [ctx.tools["echoscu"], "-aec", "ANY-SCP", "127.0.0.1", str(port)]
    _run_for(lambda: peers.dcmtk_run(scu, command, 30.0), budget.warmup_seconds)
    for _ in range(budget.repeats):
        count, seconds = _run_for(lambda: peers.dcmtk_run(scu, command, 30.0), budget.echo_seconds)
        result.runs.append({"count": count, "seconds": seconds})
    result.note = "one echoscu process per association: includes process start-up"


def _run_for(action: Callable[[], float], seconds: float) -> tuple[int, float]:
    """Call ``action`` back to back for ``seconds``; return (calls, elapsed)."""
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        action()
        count += 1
    return count, time.perf_counter() - start


def _dcmtk_echo_one(result: Measurement, scu: Impl, port: int, ctx: Context) -> None:
    # echoscu --repeat N sends N C-ECHOs on one association. Its wall time
    # includes process start-up and the association, so subtract the time of
    # a --repeat 1 run (the median of a few) to count the echoes alone.
    budget = ctx.budget
    base = [ctx.tools["echoscu"], "-aec", "ANY-SCP", "127.0.0.1", str(port), "--repeat"]
    one = statistics.median(peers.dcmtk_run(scu, [*base, "1"], 30.0) for _ in range(5))
    probe = 10
    probe_rate = (probe - 1) / max(peers.dcmtk_run(scu, [*base, str(probe)], 60.0) - one, 1e-3)
    repeat = max(probe, int(probe_rate * budget.echo_seconds))
    for _ in range(budget.repeats):
        elapsed = peers.dcmtk_run(scu, [*base, str(repeat)], budget.child_timeout)
        result.runs.append({"count": repeat - 1, "seconds": max(elapsed - one, 1e-6)})
    result.note = (
        f"echoscu --repeat {repeat} minus a --repeat 1 run ({one * 1000:.0f} ms: process "
        "start-up + association + release)"
    )


def _dcmtk_store(
    result: Measurement, scu: Impl, port: int, files: list[Path], ctx: Context
) -> None:
    # storescu's wall time includes process start-up and the association, so
    # subtract the time of a one-file run: what is left is the other files
    # alone (the Python SCUs' figures include their association set-up).
    # storescu sends what it is given, so the warm-up also measures the rate,
    # and the timed runs send as many instances as fill the time budget:
    # a prefix of the files, or each file several times (--repeat).
    budget = ctx.budget
    one = statistics.median(_storescu(scu, port, files[:1], 1, ctx) for _ in range(3))
    warmup = files[: max(2, budget.warmup_count)]
    rate = (len(warmup) - 1) / max(_storescu(scu, port, warmup, 1, ctx) - one, 1e-3)
    wanted = max(2, int(rate * budget.store_seconds))
    chosen = files[: min(wanted, len(files))]
    repeat = max(1, round(wanted / len(files)))
    sizes = sum(path.stat().st_size for path in chosen)
    count = len(chosen) * repeat - 1
    size = sizes * repeat - chosen[0].stat().st_size
    for _ in range(budget.repeats):
        elapsed = _storescu(scu, port, chosen, repeat, ctx) - one
        result.runs.append({"count": count, "bytes": size, "seconds": max(elapsed, 1e-6)})
    result.note = f"storescu wall time minus a 1-file run ({one * 1000:.0f} ms)"
    if repeat > 1:
        result.note += f"; --repeat {repeat}"


def _storescu(scu: Impl, port: int, files: Sequence[Path], repeat: int, ctx: Context) -> float:
    """storescu's --repeat sends each file ``repeat`` times in a row, on one association."""
    command = [ctx.tools["storescu"], "-aec", "ANY-SCP", "127.0.0.1", str(port)]
    command += ["--repeat", str(repeat), *map(str, files)]
    return peers.dcmtk_run(scu, command, ctx.budget.child_timeout)


# -- ratios, targets, printing ------------------------------------------------------------


def _figure(measurements: list[Measurement], impl: str) -> float | None:
    for m in measurements:
        if m.scu == impl and m.scp == impl:
            return m.rate
    return None


def ratios(measurements: list[Measurement]) -> dict[str, float | None]:
    ours = _figure(measurements, "dicombus")
    result: dict[str, float | None] = {}
    for peer in ("pynetdicom", "pynetdicom+nodelay", "dcmtk", "dcmtk+nodelay"):
        theirs = _figure(measurements, peer)
        result[peer] = ours / theirs if ours and theirs else None
    return result


def verdicts(row: Row, row_ratios: dict[str, float | None]) -> list[dict[str, Any]]:
    """PASS/MISS per target, against the peer's default and its TCP_NODELAY=1 figure."""
    found = []
    for target in row.targets:
        for variant in (target.peer, f"{target.peer}+nodelay"):
            ratio = row_ratios.get(variant)
            verdict = "n/a" if ratio is None else "PASS" if ratio >= target.factor else "MISS"
            found.append(
                {"peer": variant, "factor": target.factor, "ratio": ratio, "verdict": verdict}
            )
    return found


def print_row(index: int, row: Row, measurements: list[Measurement], spec: Any) -> None:
    title = row.title if spec is None else f"{row.title} ({spec.title}, {spec.count} files)"
    print(f"\n[{index}] {title}")
    store = row.dataset is not None
    header = f"  {'SCU -> SCP':<42}{row.unit:>10}"
    header += f"{'MB/s':>9}{'n/run':>10}" if store else ""
    print(header + "   runs")
    for m in measurements:
        line = f"  {m.scu + ' -> ' + m.scp:<42}"
        if m.error:
            print(f"{line}{'failed':>10}   {m.error}")
            continue
        line += f"{m.rate:>10.1f}"
        if store:
            counts = [int(run["count"]) for run in m.runs]
            spread = f"{min(counts)}-{max(counts)}" if min(counts) != max(counts) else counts[0]
            line += f"{m.megabytes_per_second or 0.0:>9.1f}{spread:>10}"
        runs = " ".join(f"{run['count'] / run['seconds']:.1f}" for run in m.runs)
        print(f"{line}   [{runs}]" + (f"  ({m.note})" if m.note else ""))
    row_ratios = ratios(measurements)
    shown = "  ".join(
        f"/{peer} {value:.2f}x" if value is not None else f"/{peer} n/a"
        for peer, value in row_ratios.items()
    )
    print(f"  ratio dicombus{shown}")
    for v in verdicts(row, row_ratios):
        ratio = "n/a" if v["ratio"] is None else f"{v['ratio']:.2f}x"
        print(f"  target dicombus >= {v['factor']:g}x {v['peer']}: {ratio} -> {v['verdict']}")


# -- the run ------------------------------------------------------------------------------


def find_tools() -> dict[str, str]:
    tools = {}
    for name in ("echoscu", "storescu", "storescp"):
        path = peers.find_dcmtk_tool(name)
        if path is not None:
            tools[name] = path
    return tools


def prepare_data(rows: list[Row], quick: bool, data_dir: Path, work_dir: Path) -> Context:
    specs = data.specs(quick=quick)
    files: dict[str, list[Path]] = {}
    lists: dict[str, Path] = {}
    for row in rows:
        if row.dataset is None:
            continue
        files[row.dataset] = data.ensure_files(specs[row.dataset], data_dir)
        lists[row.dataset] = work_dir / f"{row.dataset}.txt"
        lists[row.dataset].write_text("\n".join(map(str, files[row.dataset])))
    return Context(
        budget=QUICK if quick else FULL,
        tools=find_tools(),
        work_dir=work_dir,
        file_lists=lists,
        files=files,
    )


def run_rows(rows: list[Row], ctx: Context, quick: bool) -> list[dict[str, Any]]:
    specs = data.specs(quick=quick)
    results = []
    for index, row in enumerate(rows, start=1):
        row_started = time.perf_counter()
        measurements = []
        for scu_key, scp_key in row.pairs:
            scu, scp = IMPLS[scu_key], IMPLS[scp_key]
            if "dcmtk" in (scu.family, scp.family) and len(ctx.tools) < 3:
                measurements.append(
                    Measurement(scu=scu_key, scp=scp_key, error="DCMTK is not installed")
                )
                continue
            measurements.append(measure(row, scu, scp, ctx))
        spec = specs[row.dataset] if row.dataset else None
        print_row(index, row, measurements, spec)
        print(f"  ({time.perf_counter() - row_started:.0f} s, load average {_load_average()})")
        row_ratios = ratios(measurements)
        results.append(
            {
                "row": row.key,
                "title": row.title,
                "unit": row.unit,
                "dataset": None if spec is None else {"title": spec.title, "count": spec.count},
                "measurements": [m.as_json() for m in measurements],
                "ratios": row_ratios,
                "targets": verdicts(row, row_ratios),
            }
        )
    return results


def environment(ctx: Context, quick: bool) -> dict[str, Any]:
    import dicombus
    import pydicom
    import pynetdicom

    dcmtk = "not installed"
    if "storescp" in ctx.tools:
        out = subprocess.run(
            [ctx.tools["storescp"], "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        dcmtk = out.splitlines()[0].strip("$ ") if out else "unknown"
    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "quick": quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "dicombus": dicombus.__version__,
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
        "dcmtk": dcmtk,
        "budget": ctx.budget.__repr__(),
        "scp_dir": str(ctx.work_dir.parent),
        "load_average_at_start": _load_average(),
    }


def _load_average() -> str:
    # Other work on the machine skews every figure; the load says how much there was.
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def print_summary(results: list[dict[str, Any]]) -> None:
    print("\nTargets (from the issue; each against the peer's default and its TCP_NODELAY=1 run):")
    for result in results:
        for v in result["targets"]:
            ratio = "n/a" if v["ratio"] is None else f"{v['ratio']:.2f}x"
            print(
                f"  {result['row']:<17} dicombus >= {v['factor']:g}x {v['peer']:<19}"
                f"{ratio:>8}  {v['verdict']}"
            )


# -- profile ------------------------------------------------------------------------------


def profile(row_key: str, clock: str, ctx: Context, top: int = 25) -> None:
    """Run the row's dicombus SCU against a cProfile'd dicombus SCP; print the SCP's hot spots."""
    row = ROWS[row_key]
    stats_path = ctx.work_dir / "scp.pstats"
    dicombus = IMPLS["dicombus"]
    # Longer runs than the table's: the profile needs samples, not a rate.
    args = python_task_args(row, ctx.budget, ctx.file_lists, scale=3.0)
    with peers.running_scp(
        dicombus, ctx.work_dir, tools=ctx.tools, profile=stats_path, profile_clock=clock
    ) as scp:
        runs = peers.python_client(dicombus, scp.port, args, ctx.budget.child_timeout)["runs"]
    rates = ", ".join(f"{run['count'] / run['seconds']:.1f}" for run in runs)
    print(f"dicombus -> dicombus, {row.title}: {rates} {row.unit} with the SCP under cProfile")
    print(
        f"(clock: {clock} time of the SCP's association threads, merged; cProfile's "
        "per-call overhead inflates functions that are called very often)"
    )
    stats = pstats.Stats(str(stats_path))
    for order, title in (("cumulative", "cumulative time"), ("tottime", "self time")):
        print(f"\nTop {top} functions by {title}:")
        print_stats(stats, order, top)


def print_stats(stats: pstats.Stats, order: str, top: int) -> None:
    entries = stats.stats  # type: ignore[attr-defined]
    index = 3 if order == "cumulative" else 2
    ranked = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)[:top]
    print(f"  {'cumtime':>8} {'tottime':>8} {'calls':>9}  function")
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in ranked:
        where = _short_path(filename)
        print(f"  {cumtime:8.3f} {tottime:8.3f} {calls:9d}  {where}:{line}({name})")


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "services/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# -- entry point --------------------------------------------------------------------------


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, smaller data")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated rows: {', '.join(ROWS)}"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--profile",
        choices=list(ROWS),
        help="instead of the table, profile the dicombus SCP serving this row's dicombus SCU",
    )
    parser.add_argument(
        "--profile-clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="cpu: the SCP threads' CPU time (default); wall: elapsed time, waits included",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="generated data sets (cached)"
    )
    parser.add_argument(
        "--scp-dir",
        type=Path,
        default=DEFAULT_SCP_DIR,
        help="where the SCPs write received instances (default: a tmpfs when there is one)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.rows.split(",")) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    keys = [args.profile] if args.profile else args.rows.split(",")
    rows = [ROWS[key] for key in keys]
    work_dir = Path(tempfile.mkdtemp(prefix="dicombus-bench-", dir=args.scp_dir))
    started = time.perf_counter()
    try:
        ctx = prepare_data(rows, args.quick, args.data_dir, work_dir)
        if args.profile:
            profile(args.profile, args.profile_clock, ctx)
            return 0
        env = environment(ctx, args.quick)
        print("dicombus benchmark: " + ", ".join(f"{k} {v}" for k, v in env.items()))
        if len(ctx.tools) < 3:
            print("DCMTK's echoscu/storescu/storescp not found: DCMTK pairs are skipped")
        results = run_rows(rows, ctx, args.quick)
        print_summary(results)
        print(f"\ntotal time {time.perf_counter() - started:.0f} s")
        if args.json:
            args.json.write_text(json.dumps({"environment": env, "rows": results}, indent=2))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
