"""Query/Retrieve benchmark: C-FIND, C-GET and C-MOVE, dicombus vs pynetdicom vs DCMTK.

    python bench/qr_run.py [--quick] [--rows find,get-small ...] [--json out.json]
    python bench/qr_run.py --profile find

Like bench/run.py (whose rows, ratios, targets and printing this reuses), every SCP
and SCU runs in a process of its own on 127.0.0.1; dicombus and pynetdicom run the
same code in this file, only the import differs. DCMTK's findscu/getscu/movescu
query a dicombus SCP. See bench/README.md ("Query/Retrieve") for what each row measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import data
import peers
import run
from peers import IMPLS, Impl
from run import Measurement, Row, Target

PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
PENDING = (0xFF00, 0xFF01)
MOVE_DESTINATION = "BENCHDEST"
# The SCP prebuilds this many C-FIND matches; a query asks for a prefix of them.
MAX_MATCHES = 10_000
# A retrieval has at most 65535 sub-operations (PS3.4 C.4.2.3.1).
MAX_SUB_OPERATIONS = 65_535


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    repeats: int
    find_matches: int
    find_warmup: int
    retrieve_seconds: float  # each C-GET/C-MOVE run's target length
    warmup_count: int  # sub-operations in the warm-up, which also measures the rate
    child_timeout: float


FULL = Budget(
    repeats=3,
    find_matches=MAX_MATCHES,
    find_warmup=1_000,
    retrieve_seconds=1.5,
    warmup_count=100,
    child_timeout=180.0,
)
QUICK = Budget(
    repeats=3,
    find_matches=2_000,
    find_warmup=200,
    retrieve_seconds=0.3,
    warmup_count=30,
    child_timeout=90.0,
)

PYTHON_PAIRS = (
    ("dicombus", "dicombus"),
    ("pynetdicom", "pynetdicom"),
    ("pynetdicom+nodelay", "pynetdicom+nodelay"),
    ("pynetdicom", "dicombus"),
    ("dicombus", "pynetdicom"),
)
DCMTK_PAIRS = (("dcmtk", "dicombus"), ("dcmtk+nodelay", "dicombus"))
THREE_X = (Target(peer="pynetdicom", factor=3.0),)

# The row key's first part names the service; the second the data set (data.specs()).
ROWS = {
    row.key: row
    for row in (
        Row(
            key="find",
            title="C-FIND: Pending responses/s, one query (small identifiers, prebuilt)",
            unit="rsp/s",
            pairs=(*PYTHON_PAIRS, *DCMTK_PAIRS),
            targets=THREE_X,
        ),
        Row(
            key="get-small",
            title="C-GET: instances/s as sub-operations on the same association, ~2 KB",
            unit="inst/s",
            pairs=(*PYTHON_PAIRS, DCMTK_PAIRS[0]),
            targets=THREE_X,
        ),
        Row(
            key="get-ct",
            title="C-GET: instances/s as sub-operations on the same association, CT ~0.5 MB",
            unit="inst/s",
            pairs=(*PYTHON_PAIRS, DCMTK_PAIRS[0]),
            targets=THREE_X,
        ),
        Row(
            key="move-small",
            title="C-MOVE: instances/s to a storage SCP of the SCP's stack, ~2 KB",
            unit="inst/s",
            pairs=(*PYTHON_PAIRS[:3], DCMTK_PAIRS[0]),
            targets=THREE_X,
        ),
        Row(
            key="move-ct",
            title="C-MOVE: instances/s to a storage SCP of the SCP's stack, CT ~0.5 MB",
            unit="inst/s",
            pairs=(*PYTHON_PAIRS[:3], DCMTK_PAIRS[0]),
            targets=THREE_X,
        ),
    )
}


def _service(row: Row) -> str:
    return row.key.split("-")[0]


def _dataset_name(row: Row) -> str | None:
    parts = row.key.split("-")
    return parts[1] if len(parts) > 1 else None


@dataclass(slots=True, kw_only=True)
class Context:
    budget: Budget
    tools: dict[str, str]
    work_dir: Path
    file_lists: dict[str, Path]


# -- the orchestrator ---------------------------------------------------------------------


@contextlib.contextmanager
def running_qr_scp(
    impl: Impl,
    work_dir: Path,
    *,
    files: Path | None,
    move_port: int | None,
    profile: Path | None = None,
    profile_clock: str = "cpu",
) -> Iterator[int]:
    """Start ``impl``'s Q/R SCP (a child of this file); yield its port; stop it."""
    command = [sys.executable, __file__, "serve", "--impl", impl.family]
    if impl.nodelay:
        command.append("--nodelay")
    if files is not None:
        command += ["--files", str(files)]
    if move_port is not None:
        command += ["--move-port", str(move_port)]
    if profile is not None:
        command += ["--profile", str(profile), "--profile-clock", profile_clock]
    with tempfile.TemporaryFile("w+", dir=work_dir) as log:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
        try:
            # Loading the CT set takes a moment: allow more than a storage SCP's start.
            line = peers._read_line(process, 2 * peers.SCP_START_TIMEOUT)
            if not line.startswith("READY "):
                log.seek(0)
                raise RuntimeError(f"{impl.key} Q/R SCP did not start: {line!r} {log.read()}")
            yield int(line.split()[1])
        finally:
            peers._stop(process, graceful=True)


@contextlib.contextmanager
def move_destination(row: Row, scp: Impl, ctx: Context) -> Iterator[int | None]:
    """For C-MOVE rows, a storage SCP (bench/peers.py) of the Q/R SCP's stack."""
    if _service(row) != "move":
        yield None
        return
    with peers.running_scp(scp, ctx.work_dir, tools=ctx.tools) as destination:
        yield destination.port


def measure(row: Row, scu: Impl, scp: Impl, ctx: Context) -> Measurement:
    """One pair; a failed attempt is retried once and the failure noted (as bench/run.py)."""
    first = _attempt(row, scu, scp, ctx)
    if not first.error:
        return first
    second = _attempt(row, scu, scp, ctx)
    second.note = f"retried after: {first.error}" + (f"; {second.note}" if second.note else "")
    return second


def _attempt(row: Row, scu: Impl, scp: Impl, ctx: Context) -> Measurement:
    result = Measurement(scu=scu.key, scp=scp.key)
    name = _dataset_name(row)
    try:
        with (
            move_destination(row, scp, ctx) as move_port,
            running_qr_scp(
                scp, ctx.work_dir, files=ctx.file_lists.get(name or ""), move_port=move_port
            ) as port,
        ):
            if scu.is_python:
                report = peers.python_client(
                    scu, port, task_args(row, ctx.budget), ctx.budget.child_timeout, script=__file__
                )
                result.runs = report["runs"]
            else:
                _dcmtk_runs(row, result, scu, port, ctx)
    except run.FAILURES as exc:
        result.error = run._last_line(str(exc)) or repr(exc)
        result.runs = []
    return result


def task_args(row: Row, budget: Budget, *, scale: float = 1.0) -> list[str]:
    service = _service(row)
    args = ["--task", service, "--repeats", str(budget.repeats)]
    if service == "find":
        return [*args, "--count", str(budget.find_matches), "--warmup", str(budget.find_warmup)]
    seconds = budget.retrieve_seconds * scale
    return [*args, "--seconds", str(seconds), "--warmup", str(budget.warmup_count)]


def _dcmtk_command(row: Row, ctx: Context, port: int, count: int) -> list[str]:
    service = _service(row)
    tool = {"find": "findscu", "get": "getscu", "move": "movescu"}[service]
    command = [ctx.tools[tool], "-P", "-aec", "ANY-SCP"]
    command += ["-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={count}"]
    if service == "find":
        # findscu logs every response (at INFO) unless told not to.
        command.append("--hide-responses")
    if service == "get":
        # Receive the sub-operations' data sets but write nothing, as the Python SCUs
        # (whose EVT_C_STORE handler only counts).
        command.append("--ignore")
    if service == "move":
        command += ["-aem", MOVE_DESTINATION]
    return [*command, "127.0.0.1", str(port)]


def _dcmtk_runs(row: Row, result: Measurement, scu: Impl, port: int, ctx: Context) -> None:
    # The tool's wall time includes process start-up and the association: subtract
    # the time of a 1-match (1-sub-operation) run, as bench/run.py does for storescu.
    budget = ctx.budget

    def wall(count: int) -> float:
        command = _dcmtk_command(row, ctx, port, count)
        return peers.dcmtk_run(scu, command, budget.child_timeout)

    one = statistics.median(wall(1) for _ in range(3))
    if _service(row) == "find":
        wall(budget.find_warmup)
        count = budget.find_matches
    else:
        warmup = budget.warmup_count
        rate = (warmup - 1) / max(wall(warmup) - one, 1e-3)
        count = min(MAX_SUB_OPERATIONS, max(warmup, int(rate * budget.retrieve_seconds)))
    for _ in range(budget.repeats):
        result.runs.append({"count": count - 1, "seconds": max(wall(count) - one, 1e-6)})
    result.note = f"wall time minus a 1-match run ({one * 1000:.0f} ms)"


def find_tools() -> dict[str, str]:
    tools = {}
    for name in ("findscu", "getscu", "movescu", "storescp"):
        path = peers.find_dcmtk_tool(name)
        if path is not None:
            tools[name] = path
    return tools


def run_rows(rows: list[Row], ctx: Context) -> list[dict[str, Any]]:
    results = []
    for index, row in enumerate(rows, start=1):
        started = time.perf_counter()
        measurements = []
        for scu_key, scp_key in row.pairs:
            scu, scp = IMPLS[scu_key], IMPLS[scp_key]
            tool = {"find": "findscu", "get": "getscu", "move": "movescu"}[_service(row)]
            if scu.family == "dcmtk" and tool not in ctx.tools:
                measurements.append(
                    Measurement(scu=scu_key, scp=scp_key, error=f"DCMTK {tool} not installed")
                )
                continue
            measurements.append(measure(row, scu, scp, ctx))
        run.print_row(index, row, measurements, None)
        print(f"  ({time.perf_counter() - started:.0f} s, load average {run._load_average()})")
        row_ratios = run.ratios(measurements)
        results.append(
            {
                "row": row.key,
                "title": row.title,
                "unit": row.unit,
                "measurements": [m.as_json() for m in measurements],
                "ratios": row_ratios,
                "targets": run.verdicts(row, row_ratios),
            }
        )
    return results


def profile(row_key: str, clock: str, ctx: Context, top: int = 15) -> None:
    """The row's dicombus SCU against a cProfile'd dicombus Q/R SCP; print its hot spots."""
    row = ROWS[row_key]
    stats_path = ctx.work_dir / "scp.pstats"
    dicombus = IMPLS["dicombus"]
    name = _dataset_name(row)
    with (
        move_destination(row, dicombus, ctx) as move_port,
        running_qr_scp(
            dicombus,
            ctx.work_dir,
            files=ctx.file_lists.get(name or ""),
            move_port=move_port,
            profile=stats_path,
            profile_clock=clock,
        ) as port,
    ):
        args = task_args(row, ctx.budget, scale=3.0)
        runs = peers.python_client(dicombus, port, args, ctx.budget.child_timeout, script=__file__)[
            "runs"
        ]
    rates = ", ".join(f"{r['count'] / r['seconds']:.1f}" for r in runs)
    print(f"dicombus -> dicombus, {row.title}: {rates} {row.unit} with the SCP under cProfile")
    print(f"(clock: {clock} time of the SCP's association threads, merged)")
    import pstats

    stats = pstats.Stats(str(stats_path))
    for order, title in (("cumulative", "cumulative time"), ("tottime", "self time")):
        print(f"\nTop {top} functions by {title}:")
        run.print_stats(stats, order, top)


# -- child process: Q/R SCP ---------------------------------------------------------------


def _requested_count(identifier: Any, limit: int) -> int:
    """The benchmark's convention: the query's PatientID is the number of matches or
    sub-operations wanted (the same handler code then serves every stack's SCU)."""
    text = str(identifier.get("PatientID", "") or "")
    return min(int(text), limit) if text.isdigit() else limit


def serve(args: argparse.Namespace) -> None:
    from pydicom import dcmread
    from pydicom.dataset import Dataset

    lib = peers._library(args.impl, nodelay=args.nodelay)
    profiler = peers._ThreadProfiler(args.profile_clock) if args.profile else None
    if profiler is not None:
        profiler.install(lib)
    matches = []
    for index in range(MAX_MATCHES):
        match = Dataset()
        match.QueryRetrieveLevel = "PATIENT"
        match.PatientName = f"BENCH^{index:05d}"
        match.PatientID = f"BENCH-{index:05d}"
        matches.append(match)
    paths = Path(args.files).read_text().splitlines() if args.files else []
    instances = [dcmread(path) for path in paths if path]
    for instance in instances:
        instance.PixelData  # noqa: B018 - load lazily read values before timing

    def on_find(event: Any) -> Iterator[tuple[int, Any]]:
        for match in matches[: _requested_count(event.identifier, MAX_MATCHES)]:
            yield 0xFF00, match

    def retrieve(event: Any) -> Iterator[Any]:
        count = _requested_count(event.identifier, MAX_SUB_OPERATIONS)
        yield count
        for index in range(count):
            yield 0xFF00, instances[index % len(instances)]

    def on_move(event: Any) -> Iterator[Any]:
        yield "127.0.0.1", args.move_port
        yield from retrieve(event)

    ae = lib.AE(ae_title="ANY-SCP")
    syntaxes = [peers.EXPLICIT_VR_LITTLE_ENDIAN, peers.IMPLICIT_VR_LITTLE_ENDIAN]
    for model in (PATIENT_FIND, PATIENT_GET, PATIENT_MOVE):
        ae.add_supported_context(model, syntaxes)
    # C-GET: accept the SCU's proposal to act as Storage SCP on this association.
    ae.add_supported_context(data.CT_IMAGE_STORAGE, syntaxes, scu_role=False, scp_role=True)
    # C-MOVE: the sub-association to the destination proposes the AE's requested contexts.
    ae.add_requested_context(data.CT_IMAGE_STORAGE, [peers.EXPLICIT_VR_LITTLE_ENDIAN])
    handlers = [
        (lib.evt.EVT_C_FIND, on_find),
        (lib.evt.EVT_C_GET, retrieve),
        (lib.evt.EVT_C_MOVE, on_move),
    ]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the orchestrator closes our stdin (or dies)
    server.shutdown()
    if profiler is not None:
        profiler.dump(Path(args.profile))


# -- child process: Q/R SCU ---------------------------------------------------------------


def client(args: argparse.Namespace) -> None:
    from pydicom.dataset import Dataset

    lib = peers._library(args.impl, nodelay=args.nodelay)
    ae = lib.AE(ae_title="BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peers.ASSOCIATION_TIMEOUT
    received = [0]

    def on_store(event: Any) -> int:
        received[0] += 1
        return peers.SUCCESS

    model = {"find": PATIENT_FIND, "get": PATIENT_GET, "move": PATIENT_MOVE}[args.task]
    ae.add_requested_context(model, [peers.EXPLICIT_VR_LITTLE_ENDIAN])
    roles = []
    if args.task == "get":
        ae.add_requested_context(data.CT_IMAGE_STORAGE, [peers.EXPLICIT_VR_LITTLE_ENDIAN])
        roles = [lib.build_role(data.CT_IMAGE_STORAGE, scp_role=True)]
    assoc = ae.associate(
        "127.0.0.1",
        args.port,
        ae_title="ANY-SCP",
        ext_neg=roles or None,
        evt_handlers=[(lib.evt.EVT_C_STORE, on_store)],
    )
    if not assoc.is_established:
        raise SystemExit(f"association with 127.0.0.1:{args.port} was not accepted")

    def one_run(count: int) -> dict[str, float]:
        """One query on the established association, timed from the request to the
        final response; the count is what arrived (responses or instances)."""
        query = Dataset()
        query.QueryRetrieveLevel = "PATIENT"
        query.PatientID = str(count)
        received[0] = 0
        start = time.perf_counter()
        if args.task == "find":
            responses = assoc.send_c_find(query, model)
        elif args.task == "get":
            responses = assoc.send_c_get(query, model)
        else:
            responses = assoc.send_c_move(query, MOVE_DESTINATION, model)
        pending = 0
        final: Any = None
        for status, _identifier in responses:
            if getattr(status, "Status", None) in PENDING:
                pending += 1
            else:
                final = status
        elapsed = time.perf_counter() - start
        if getattr(final, "Status", None) != peers.SUCCESS:
            raise SystemExit(f"C-{args.task.upper()} ended with {final!r}")
        done = {
            "find": pending,
            "get": received[0],
            "move": int(getattr(final, "NumberOfCompletedSuboperations", 0) or 0),
        }[args.task]
        if done != count:
            raise SystemExit(f"C-{args.task.upper()}: {done} of {count} arrived")
        return {"count": done, "seconds": elapsed}

    try:
        warmup = one_run(args.warmup)
        if args.task == "find":
            count = args.count
        else:
            rate = warmup["count"] / warmup["seconds"]
            count = min(MAX_SUB_OPERATIONS, max(args.warmup, int(rate * args.seconds)))
        report = {"runs": [one_run(count) for _ in range(args.repeats)]}
    finally:
        assoc.release()
    print(json.dumps(report), flush=True)


# -- entry points -------------------------------------------------------------------------


def _parse_child(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="a Q/R benchmark child process")
    commands = parser.add_subparsers(dest="command", required=True)
    scp = commands.add_parser("serve")
    scp.add_argument("--impl", choices=["dicombus", "pynetdicom"], required=True)
    scp.add_argument("--nodelay", action="store_true")
    scp.add_argument("--files")
    scp.add_argument("--move-port", type=int)
    scp.add_argument("--profile")
    scp.add_argument("--profile-clock", choices=["cpu", "wall"], default="cpu")
    scu = commands.add_parser("client")
    scu.add_argument("--impl", choices=["dicombus", "pynetdicom"], required=True)
    scu.add_argument("--port", type=int, required=True)
    scu.add_argument("--nodelay", action="store_true")
    scu.add_argument("--task", choices=["find", "get", "move"], required=True)
    scu.add_argument("--count", type=int, default=MAX_MATCHES)
    scu.add_argument("--seconds", type=float, default=1.0)
    scu.add_argument("--warmup", type=int, default=100)
    scu.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer matches, shorter runs")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated: {', '.join(ROWS)}"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--profile", choices=list(ROWS), help="profile the dicombus SCP instead")
    parser.add_argument("--profile-clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--profile-top", type=int, default=15, help="functions listed")
    parser.add_argument("--data-dir", type=Path, default=run.DEFAULT_DATA_DIR)
    parser.add_argument("--scp-dir", type=Path, default=run.DEFAULT_SCP_DIR)
    args = parser.parse_args(argv)
    unknown = set(args.rows.split(",")) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] in ("serve", "client"):
        child = _parse_child(argv)
        (serve if child.command == "serve" else client)(child)
        return 0
    args = _parse(argv)
    rows = [ROWS[key] for key in ([args.profile] if args.profile else args.rows.split(","))]
    work_dir = Path(tempfile.mkdtemp(prefix="dicombus-qr-bench-", dir=args.scp_dir))
    started = time.perf_counter()
    try:
        specs = data.specs(quick=args.quick)
        lists = {}
        for name in {_dataset_name(row) for row in rows} - {None}:
            assert name is not None
            lists[name] = work_dir / f"{name}.txt"
            files = data.ensure_files(specs[name], args.data_dir)
            lists[name].write_text("\n".join(map(str, files)))
        ctx = Context(
            budget=QUICK if args.quick else FULL,
            tools=find_tools(),
            work_dir=work_dir,
            file_lists=lists,
        )
        if args.profile:
            profile(args.profile, args.profile_clock, ctx, args.profile_top)
            return 0
        print(
            f"dicombus Q/R benchmark: quick {args.quick}, budget {ctx.budget}, "
            f"DCMTK tools {sorted(ctx.tools)}, load average {run._load_average()}"
        )
        results = run_rows(rows, ctx)
        run.print_summary(results)
        print(f"\ntotal time {time.perf_counter() - started:.0f} s")
        if args.json:
            args.json.write_text(json.dumps({"rows": results}, indent=2))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
