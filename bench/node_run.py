"""The whole node as users run it (issue 10), side by side in one run, on the same data.

    python bench/node_run.py [--quick] [--repeats N] [--json out.json] [--ct N] [--small N]
        [--associations N]

DCMTK's ``storescu`` (TCP_NODELAY=1) feeds over one association, bench/node_client.py
(a dicombus SCU) over ``--associations`` concurrent ones:

- ``dicombus up``, started as a user starts it (``--port 0 --data DIR``): its
  embedded Redis, edge, publisher child and two workers running the built-in
  audit and counter subscriptions; the drain is over when the audit store and
  the counters in Redis hold every C-STORE and every association's end;
- DCMTK ``storescp`` (writes, no fsync; ``--fork`` for concurrent associations);
- what a user would build instead (bench/node_user_app.py): a pynetdicom SCP
  calling Celery ``apply_async`` for an audit and a counter task, two solo
  workers, the same kind of Redis.

For each: instances/s over the sends, the drain after the last send, and the
CPU per C-STORE of each process (from /proc, bench/process_cpu.py) from the
first send to the end of the drain; every row ``--repeats`` times, reported (and its
targets marked) on the medians. bench/node_scps.py starts and stops the
SCPs. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import data
import peers
import process_cpu
from dicombus.lifeline import die_with_parent
from node_scps import (
    Scp,
    UpNode,
    UserBuilt,
    dcmtk_scp,
    up_node,
    user_built,
    wait_until,
)
from peers import IMPLS
from run import DEFAULT_DATA_DIR, DEFAULT_SCP_DIR, FAILURES, _last_line, _load_average

CLIENT = Path(__file__).resolve().parent / "node_client.py"
SEND_TIMEOUT = 600.0  # one storescu or node_client.py process
DRAIN_TIMEOUT = 600.0
ONE_FILE_RUNS = 3
# Runs of every row: a single run on a shared machine swings by 2-3x in rate
# (docs/performance.md); three keep --quick at about a minute and a half here.
DEFAULT_REPEATS = 3
WARM_UP_FILES = 5

# The targets.
UP_RATE = {"ct": 600.0, "small": 900.0}  # inst/s over one association
UP_CPU_MS = 1.2  # total CPU per C-STORE, all processes
USER_RATE_FACTOR = 6.0  # up's rate at least this times the user-built one's
USER_CPU_SHARE = 0.1  # up's CPU per instance at most this share of the user-built one's


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    ct: int
    small: int
    associations: int


FULL = Budget(ct=500, small=1500, associations=32)
QUICK = Budget(ct=120, small=300, associations=32)


# -- one measurement ----------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Measurement:
    scp: str
    associations: int
    instances: int = 0  # sent in the timed run
    counted: int = 0  # the instances the rate counts (see measure)
    seconds: float = 0.0  # the time the rate counts (see measure)
    base_seconds: float = 0.0  # what was taken from the timed run's wall time
    drain_seconds: float | None = None  # from the end of the sends until all audited
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per process, the whole window
    audited: dict[str, int] | None = None  # by type, at the end of the drain
    sent: int = 0  # C-STOREs sent to this SCP since it started, warm-up included
    client_cpu_seconds: float | None = None  # node_client.py's, over the timed sends
    error: str = ""

    @property
    def rate(self) -> float | None:
        """Instances/s; None when the timed run was not longer than the one-file run."""
        return self.counted / self.seconds if self.seconds > 0 else None

    @property
    def end_to_end_rate(self) -> float | None:
        """Instances/s until every event was audited: the sends and the drain after them."""
        if self.drain_seconds is None or self.seconds <= 0:
            return None
        return self.counted / (self.seconds + self.drain_seconds)

    @property
    def cpu_ms(self) -> float:
        return 1000 * sum(self.cpu_seconds.values()) / self.instances

    def as_json(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        if not self.error:
            found["rate"] = self.rate
            found["end_to_end_rate"] = self.end_to_end_rate
            found["cpu_ms_per_instance"] = self.cpu_ms
        return found


@dataclass(frozen=True, slots=True)
class Measured:
    """One SCP's measurements of a row over the repeats; its figures are the medians of
    the runs that succeeded, so one run disturbed by the machine's load does not decide
    a target."""

    runs: tuple[Measurement, ...]

    @property
    def scp(self) -> str:
        return self.runs[0].scp

    @property
    def ok(self) -> tuple[Measurement, ...]:
        return tuple(m for m in self.runs if not m.error)

    @property
    def error(self) -> str:
        """Why every run failed ('' when one succeeded)."""
        return "" if self.ok else self.runs[0].error

    @property
    def instances(self) -> int:
        return self.runs[0].instances

    @property
    def rate(self) -> float | None:
        return _median([m.rate for m in self.ok])

    @property
    def end_to_end_rate(self) -> float | None:
        return _median([m.end_to_end_rate for m in self.ok])

    @property
    def drain_seconds(self) -> float | None:
        return _median([m.drain_seconds for m in self.ok])

    @property
    def cpu_ms(self) -> float | None:
        return _median([m.cpu_ms for m in self.ok])

    @property
    def cpu_ms_by_process(self) -> dict[str, float]:
        labels = sorted({label for m in self.ok for label in m.cpu_seconds})
        found = {
            label: _median([1000 * m.cpu_seconds.get(label, 0.0) / m.instances for m in self.ok])
            for label in labels
        }
        return {label: value for label, value in found.items() if value is not None}

    @property
    def base_seconds(self) -> float | None:
        return _median([m.base_seconds for m in self.ok])

    @property
    def client_cpu_ms(self) -> float | None:
        return _median(
            [
                None if m.client_cpu_seconds is None else 1000 * m.client_cpu_seconds / m.instances
                for m in self.ok
            ]
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "scp": self.scp,
            "error": self.error,
            "rate": self.rate,
            "end_to_end_rate": self.end_to_end_rate,
            "drain_seconds": self.drain_seconds,
            "cpu_ms_per_instance": self.cpu_ms,
            "cpu_ms_by_process": self.cpu_ms_by_process,
            "runs": [m.as_json() for m in self.runs],
        }


def _median(values: Sequence[float | None]) -> float | None:
    """The median of the known values; None when there is none."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _finish(process: subprocess.Popen[str], what: str) -> str:
    """Wait (bounded) for ``process``; its output, or RuntimeError saying why it failed."""
    try:
        output, _ = process.communicate(timeout=SEND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    failed = process.returncode != 0 or any(
        line.startswith(("E:", "F:")) for line in output.splitlines()
    )
    if failed:
        raise RuntimeError(f"{what} exited {process.returncode}: {_last_line(output)}")
    return output


def _run(command: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=die_with_parent(),
    )


class Sender:
    """Sends to one SCP, and waits until it has audited everything sent to it so far."""

    def __init__(self, tool: str, scp: Scp, work: Path) -> None:
        self.tool = tool
        self.scp = scp
        self.work = work
        self.instances = 0
        self.associations = 0
        self.client_cpu_seconds: float | None = None  # node_client.py's, its last run

    def send(self, files: Sequence[Path]) -> float:
        """``storescu`` (TCP_NODELAY=1) sends ``files`` over one association; its wall time."""
        self._count(files)
        command = [self.tool, "-aec", self.scp.called_ae, "127.0.0.1", str(self.scp.port)]
        started = time.perf_counter()
        _finish(
            _run([*command, *map(str, files)], peers.dcmtk_env(IMPLS["dcmtk+nodelay"])), "storescu"
        )
        return time.perf_counter() - started

    def send_concurrently(self, groups: Sequence[Sequence[Path]]) -> float:
        """bench/node_client.py sends each group over an association of its own, all at
        once; the time from the start of the sends to the last response."""
        lists: list[Path] = []
        for files in groups:
            self._count(files)
            lists.append(self.work / f"association-{len(lists)}-{time.monotonic_ns()}.txt")
            lists[-1].write_text("\n".join(map(str, files)))
        command = [sys.executable, str(CLIENT), "--port", str(self.scp.port)]
        command += ["--called-ae", self.scp.called_ae, *map(str, lists)]
        report = json.loads(_finish(_run(command), "node_client.py").strip().splitlines()[-1])
        self.client_cpu_seconds = float(report["cpu_seconds"])
        return float(report["seconds"])

    def _count(self, files: Sequence[Path]) -> None:
        self.instances += len(files)
        self.associations += 1

    def drain(self) -> None:
        wait_until(
            lambda: self.scp.drained(self.instances, self.associations),
            f"{self.scp.label} to audit every event",
            DRAIN_TIMEOUT,
            lambda: None,
        )


def measure(sender: Sender, files: list[Path], warm: list[Path], associations: int) -> Measurement:
    """Warm up, time the sends of ``files`` over ``associations`` associations, then the
    drain; CPU over both.

    One association: ``storescu``; the rate is (N - 1) / (its wall time - that of a
    one-file run), as bench/run.py does: process start-up and association set-up left
    out. More: bench/node_client.py, timed inside from the start of the sends (the
    associations already established) to the last response; the rate is N / that time.
    Every file is sent once (a node answers an instance it already has without writing it
    again), so ``warm`` holds WARM_UP_FILES + max(ONE_FILE_RUNS, ``associations``) files.
    """
    scp = sender.scp
    result = Measurement(scp=scp.label, associations=associations)
    try:
        # The warm-up first: a fresh node's publisher child starts with the first events.
        sender.send(warm[:WARM_UP_FILES])
        sender.drain()
        singles = warm[WARM_UP_FILES:]
        if associations == 1:
            bases = []
            for path in singles[:ONE_FILE_RUNS]:
                bases.append(sender.send([path]))
                sender.drain()
            # The shortest: what else runs on the machine only ever adds to a run's time.
            base = min(bases)
        else:
            # And a warm-up of as many associations at once: their threads, the pool.
            sender.send_concurrently([[path] for path in singles[:associations]])
            sender.drain()
            base = 0.0
        before = scp.cpu()
        if associations == 1:
            elapsed = sender.send(files)
        else:
            groups = [files[index::associations] for index in range(associations)]
            elapsed = sender.send_concurrently(groups)
            result.client_cpu_seconds = sender.client_cpu_seconds
        sent = time.perf_counter()
        sender.drain()
        drained = time.perf_counter()
        after = scp.cpu()
        result.instances = len(files)
        result.counted = len(files) - 1 if associations == 1 else len(files)
        result.seconds = elapsed - base
        result.base_seconds = base
        result.cpu_seconds = process_cpu.spent(before, after)
        result.audited = scp.audited()
        result.sent = sender.instances
        if result.audited is not None:
            result.drain_seconds = drained - sent
    except (*FAILURES, TimeoutError) as exc:
        result.error = _last_line(str(exc)) or repr(exc)
    return result


# -- rows, targets, printing --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    key: str
    dataset: str
    associations: int
    measurements: tuple[Measured, ...]  # ours first, then the baselines

    def title(self, spec: data.DataSetSpec) -> str:
        where = (
            "one association, storescu (TCP_NODELAY=1)"
            if self.associations == 1
            else f"{self.associations} associations at once, node_client.py (dicombus SCU)"
        )
        files = self.measurements[0].instances
        return f"C-STORE over {where} -> SCP: {spec.title}, {files} files"


def _ok(value: float | None, passed: Callable[[float], bool]) -> str:
    return "n/a" if value is None else "PASS" if passed(value) else "MISS"


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def targets(row: Row) -> list[dict[str, Any]]:
    """The issue's targets for this row: what, the figure, PASS/MISS."""
    ours, *baselines = row.measurements
    found: list[dict[str, Any]] = []

    def target(what: str, value: float | None, passed: Callable[[float], bool]) -> None:
        found.append(
            {"row": row.key, "target": what, "value": value, "verdict": _ok(value, passed)}
        )

    if row.associations == 1:
        goal, user = UP_RATE[row.dataset], baselines[-1]
        target(f"up >= {goal:.0f} inst/s", ours.rate, lambda v: v >= goal)
        target(f"up CPU per C-STORE <= {UP_CPU_MS} ms", ours.cpu_ms, lambda v: v <= UP_CPU_MS)
        target(
            f"up >= {USER_RATE_FACTOR:g}x user-built inst/s",
            _ratio(ours.rate, user.rate),
            lambda v: v >= USER_RATE_FACTOR,
        )
        target(
            f"up CPU per instance <= {USER_CPU_SHARE:g} of user-built's",
            _ratio(ours.cpu_ms, user.cpu_ms),
            lambda v: v <= USER_CPU_SHARE,
        )
    else:
        target(
            "up >= storescp --fork inst/s",
            _ratio(ours.rate, baselines[0].rate),
            lambda v: v >= 1.0,
        )
    return found


def _figure(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _runs(values: Sequence[float | None]) -> str:
    """The individual runs' figures, in brackets after a median (none for a single run)."""
    if len(values) < 2:
        return ""
    return " [" + " ".join(_figure(value) for value in values) + "]"


def print_row(index: int, row: Row, spec: data.DataSetSpec) -> None:
    print(f"\n[{index}] {row.title(spec)}")
    print(
        f"  {'SCP':<34}{'inst/s':>9}{'drain s':>9}{'audited/s':>11}{'CPU ms/inst':>13}"
        "   CPU ms/inst by process"
    )
    for m in row.measurements:
        line = f"  {m.scp:<34}"
        if m.error:
            print(f"{line}{'failed':>9}   {m.error}")
            continue
        drain = "-" if m.drain_seconds is None else f"{m.drain_seconds:.2f}"
        parts = ", ".join(f"{label} {ms:.2f}" for label, ms in m.cpu_ms_by_process.items())
        audited = "-" if m.drain_seconds is None else _figure(m.end_to_end_rate)
        print(f"{line}{_figure(m.rate):>9}{drain:>9}{audited:>11}{m.cpu_ms or 0:>13.2f}   {parts}")
        if len(m.runs) > 1:
            errors = [r.error for r in m.runs if r.error]
            note = f", {len(errors)} failed: {errors[0]}" if errors else ""
            print(
                f"  {'':<34}runs: inst/s{_runs([r.rate for r in m.ok])}, "
                f"CPU ms/inst{_runs([r.cpu_ms for r in m.ok])}{note}"
            )
    ours, *baselines = row.measurements
    shown = [
        f"/{other.scp}: inst/s {_times(_ratio(ours.rate, other.rate))}, "
        f"CPU per instance {_times(_ratio(ours.cpu_ms, other.cpu_ms))}"
        for other in baselines
    ]
    print(f"  ratio {ours.scp} " + "; ".join(shown))
    for found in targets(row):
        print(f"  target {found['target']}: {_figure(found['value'])} -> {found['verdict']}")
    if row.associations == 1:
        bases = ", ".join(
            f"{m.scp} {1000 * (m.base_seconds or 0):.0f} ms"
            for m in row.measurements
            if not m.error
        )
        print(f"  (storescu's wall time minus that of the shortest one-file run: {bases})")
    else:
        clients = ", ".join(
            f"{m.scp} {m.client_cpu_ms:.2f} ms"
            for m in row.measurements
            if m.client_cpu_ms is not None
        )
        print("  (timed in the client from the start of the sends, associations established)")
        print(f"  (the client's CPU per instance, on the same two CPUs: {clients})")
    print(f"  (load average {_load_average()})")


def print_summary(rows: list[Row]) -> None:
    print("\nTargets (issue 10):")
    for row in rows:
        for found in targets(row):
            label = f"{row.key}: {found['target']}"
            print(f"  {label:<58}{_figure(found['value']):>9}  {found['verdict']}")


# -- the run ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    tools: dict[str, str]
    work: Path
    files: dict[str, list[Path]]
    warm: dict[str, list[Path]]
    specs: dict[str, data.DataSetSpec]


def prepare(budget: Budget, quick: bool, data_dir: Path, work: Path) -> Context:
    tools = {name: peers.find_dcmtk_tool(name) for name in ("storescu", "storescp")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise SystemExit(f"DCMTK's {' and '.join(missing)} not found: apt-get install dcmtk")
    base = data.specs(quick=quick)
    warm_count = WARM_UP_FILES + max(ONE_FILE_RUNS, budget.associations)
    specs, files, warm = {}, {}, {}
    for name, count in (("ct", budget.ct), ("small", budget.small)):
        specs[name] = dataclasses.replace(base[name], count=count)
        files[name] = data.ensure_files(specs[name], data_dir)
        warm_spec = dataclasses.replace(base[name], name=f"{name}-warm", count=warm_count)
        warm[name] = data.ensure_files(warm_spec, data_dir)
    found = {name: path for name, path in tools.items() if path is not None}
    return Context(tools=found, work=work, files=files, warm=warm, specs=specs)


@contextlib.contextmanager
def _started(factory: Callable[[], contextlib.AbstractContextManager[Any]]) -> Iterator[Any]:
    """The SCP, or the error that kept it from starting (its measurements report it)."""
    try:
        scp = factory()
        running = scp.__enter__()
    except (*FAILURES, TimeoutError) as exc:
        yield _last_line(str(exc)) or repr(exc)
        return
    try:
        yield running
    finally:
        scp.__exit__(None, None, None)


def _measure_all(
    ctx: Context, label: str, factory: Callable[[], Any], datasets: Sequence[str], associations: int
) -> dict[str, Measurement]:
    print(f"{label}, {associations} association(s) ...", flush=True)
    with _started(factory) as scp:
        if isinstance(scp, str):
            return {
                name: Measurement(scp=label, associations=associations, error=scp)
                for name in datasets
            }
        # One sender per SCP: the drain waits for everything sent to it, in every data set.
        sender = Sender(ctx.tools["storescu"], scp, ctx.work)
        return {
            name: measure(sender, ctx.files[name], ctx.warm[name], associations)
            for name in datasets
        }


def run_rows(ctx: Context, budget: Budget, repeats: int) -> list[Row]:
    """Every row ``repeats`` times (fresh SCPs each time, in the same order), its
    figures the medians over the repeats."""
    runs = []
    for repeat in range(1, repeats + 1):
        if repeats > 1:
            print(f"run {repeat} of {repeats}", flush=True)
        runs.append(_run_rows_once(ctx, budget))
    return [
        dataclasses.replace(
            rows[0],
            measurements=tuple(
                Measured(tuple(row.measurements[index].runs[0] for row in rows))
                for index in range(len(rows[0].measurements))
            ),
        )
        for rows in zip(*runs, strict=True)
    ]


def _run_rows_once(ctx: Context, budget: Budget) -> list[Row]:
    single = ("ct", "small")
    storescp = ctx.tools["storescp"]
    up = _measure_all(ctx, UpNode.label, lambda: up_node(ctx.work, 1), single, 1)
    dcmtk = _measure_all(
        ctx, "DCMTK storescp", lambda: dcmtk_scp(ctx.work, storescp, fork=False), single, 1
    )
    user = _measure_all(ctx, UserBuilt.label, lambda: user_built(ctx.work), single, 1)
    many = budget.associations
    up_many = _measure_all(ctx, UpNode.label, lambda: up_node(ctx.work, many), ["ct"], many)
    fork = _measure_all(
        ctx, "DCMTK storescp --fork", lambda: dcmtk_scp(ctx.work, storescp, fork=True), ["ct"], many
    )
    rows = [
        Row(
            key=f"store-{name}",
            dataset=name,
            associations=1,
            measurements=(Measured((up[name],)), Measured((dcmtk[name],)), Measured((user[name],))),
        )
        for name in single
    ]
    rows.append(
        Row(
            key=f"store-ct-{many}",
            dataset="ct",
            associations=many,
            measurements=(Measured((up_many["ct"],)), Measured((fork["ct"],))),
        )
    )
    return rows


def environment(ctx: Context, budget: Budget, repeats: int, scp_dir: Path) -> dict[str, Any]:
    import dicombus
    import pynetdicom

    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "budget": dataclasses.asdict(budget),
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "dicombus": dicombus.__version__,
        "pynetdicom": pynetdicom.__version__,
        "storescp": ctx.tools["storescp"],
        "scp_dir": str(scp_dir),
        "load_average_at_start": _load_average(),
    }


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer files (about a minute and a half)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--ct", type=int, help="CT instances per timed send (default 500; quick 120)"
    )
    parser.add_argument(
        "--small", type=int, help="small instances per timed send (1500; quick 300)"
    )
    parser.add_argument(
        "--associations", type=int, help="concurrent associations of the last row (default 32)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"runs of every row, fresh SCPs each; figures and targets on their medians "
        f"(default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="generated data sets (cached)"
    )
    parser.add_argument(
        "--scp-dir",
        type=Path,
        default=DEFAULT_SCP_DIR,
        help="where the SCPs and up's data folder live (default: a tmpfs when there is one)",
    )
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    changes = {
        name: value
        for name in ("ct", "small", "associations")
        if (value := getattr(args, name)) is not None
    }
    args.budget = dataclasses.replace(budget, **changes)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.budget.associations < 2:
        parser.error("--associations must be at least 2")
    if min(args.budget.ct, args.budget.small) <= args.budget.associations:
        parser.error("--ct and --small must each be more than --associations")
    return args


def _stop_on_sigterm(signum: int, _frame: Any) -> None:
    # SIGTERM (a CI job's timeout, kill PID) unwinds like Ctrl-C: every finally runs and
    # stops what this run started.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="dicombus-node-bench-", dir=args.scp_dir))
    try:
        ctx = prepare(args.budget, args.quick, args.data_dir, work)
        env = environment(ctx, args.budget, args.repeats, args.scp_dir)
        print("dicombus node benchmark: " + ", ".join(f"{k} {v}" for k, v in env.items()))
        rows = run_rows(ctx, args.budget, args.repeats)
        for index, row in enumerate(rows, start=1):
            print_row(index, row, ctx.specs[row.dataset])
        print_summary(rows)
        print(f"\ntotal time {time.perf_counter() - started:.0f} s")
        if args.json:
            results = [
                {
                    "row": row.key,
                    "dataset": dataclasses.asdict(ctx.specs[row.dataset]),
                    "associations": row.associations,
                    "measurements": [m.as_json() for m in row.measurements],
                    "targets": targets(row),
                }
                for row in rows
            ]
            args.json.write_text(json.dumps({"environment": env, "rows": results}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = any(r.error for row in rows for m in row.measurements for r in m.runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
