"""Forwarding: a CT study through dicombus routing, beside direct storescu and Orthanc auto-routing.

Usage::

    python bench/route_run.py            # a 500-instance CT study
    python bench/route_run.py --quick    # 60 instances
    python bench/route_run.py --json route.json

Every row sends the same study with DCMTK ``storescu`` (TCP_NODELAY=1, one association) and
ends when the last instance is at a fresh DCMTK ``storescp`` (its ``-od`` folder holds every
file; polled every 10 ms). The rows:

- ``direct``: storescu -> storescp, the floor;
- ``dicombus``: storescu -> ``dicombus up --config`` with one rule sending every instance to
  storescp (``per = "instance"``): the edge stores and publishes, the router routes, the
  destination's sender sends batches on one association;
- ``dicombus per study``: the same rule with ``per = "study"``: held until STUDY_STABLE
  (``study_quiet_seconds``), then sent as one batch;
- ``orthanc``: storescu -> Orthanc whose Lua ``OnStoredInstance`` sends each instance on to
  storescp (``route_orthanc.lua``, written from Orthanc's documented Lua API).

Figures: ``throughput`` (instances / time from the start of the send to the last instance
at the destination), ``latency`` (the same time: first instance received -> last
acknowledged), and ``after last`` (time from storescu's end, when the edge has acknowledged
its last instance, to the last instance at the destination). Targets from the issue:
dicombus's throughput at least Orthanc's; ``after last`` at most 2 s (plus the quiet time
per study). Each process is stopped by its PID in a ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import data
import peers
from dicombus.lifeline import die_with_parent
from node_scps import UP_START_TIMEOUT, UpNode, wait_until
from peers import IMPLS

POLL = 0.01
SEND_TIMEOUT = 600.0
ARRIVAL_TIMEOUT = 600.0
QUIET_SECONDS = 1.0
LUA = Path(__file__).with_name("route_orthanc.lua")
ORTHANC_START_TIMEOUT = 60.0
AFTER_LAST_TARGET = 2.0


@dataclass(slots=True)
class Result:
    row: str
    instances: int
    latency: float | None = None  # send start -> last instance at the destination
    after_last: float | None = None  # send end -> last instance at the destination
    error: str | None = None

    @property
    def throughput(self) -> float | None:
        return None if self.latency is None else self.instances / self.latency


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"route_run: {name} is not installed (DCMTK / Debian's orthanc)")
    return found


@contextlib.contextmanager
def destination(work: Path) -> Iterator[tuple[int, Path]]:
    """A fresh storescp (TCP_NODELAY) writing into an empty folder: (port, folder)."""
    folder = Path(tempfile.mkdtemp(prefix="dest-", dir=work))
    received = folder / "received"
    received.mkdir()
    with (folder / "storescp.log").open("w+") as log:
        process, port = peers._start_dcmtk_scp(
            IMPLS["dcmtk+nodelay"], received, log, tool("storescp")
        )
        try:
            yield port, received
        finally:
            peers._stop(process, graceful=False)
            shutil.rmtree(folder, ignore_errors=True)


def send_and_wait(
    row: str, files: list[Path], port: int, called: str, received: Path, alive: Callable[[], None]
) -> Result:
    """storescu the files to ``port``; wait until ``received`` holds them all."""
    result = Result(row, len(files))
    command = [tool("storescu"), "-aec", called, "127.0.0.1", str(port), *map(str, files)]
    start = time.monotonic()
    sent = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=SEND_TIMEOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    sent_at = time.monotonic()
    if sent.returncode != 0:
        result.error = f"storescu exited {sent.returncode}: {sent.stderr[-300:]}"
        return result
    deadline = sent_at + ARRIVAL_TIMEOUT
    while sum(1 for _ in received.iterdir()) < len(files):
        alive()
        if time.monotonic() > deadline:
            result.error = f"{sum(1 for _ in received.iterdir())} of {len(files)} arrived"
            return result
        time.sleep(POLL)
    done = time.monotonic()
    result.latency, result.after_last = done - start, done - sent_at
    return result


def run_direct(files: list[Path], work: Path) -> Result:
    with destination(work) as (port, received):
        return send_and_wait("direct storescu", files, port, "STORESCP", received, lambda: None)


def routing_config(folder: Path, port: int, per: str) -> Path:
    config = folder / "node.toml"
    config.write_text(
        f'[edge]\nid = "bench"\n\n[routing]\nstudy_quiet_seconds = {QUIET_SECONDS}\n\n'
        '[[routing.destinations]]\nname = "dest"\ntype = "dimse"\nae_title = "STORESCP"\n'
        f'host = "127.0.0.1"\nport = {port}\n\n'
        f'[[routing.rules]]\nname = "all"\nper = "{per}"\ndestinations = ["dest"]\n'
    )
    return config


def run_dicombus(files: list[Path], work: Path, per: str) -> Result:
    row = "dicombus" + (" per study" if per == "study" else "")
    with destination(work) as (port, received):
        folder = Path(tempfile.mkdtemp(prefix="up-", dir=work))
        node = UpNode(folder, routing_config(folder, port, per))
        try:
            node.wait_ready()
            workers_ready(node)
            return send_and_wait(row, files, node.port, "DICOMBUS", received, node.alive)
        finally:
            node.stop()
            shutil.rmtree(folder, ignore_errors=True)


def workers_ready(node: UpNode) -> None:
    """Wait until every worker of ``node`` says it is ready: up's banner comes before its
    workers consume, and a study sent earlier would time the workers' start, not routing."""
    pids = node.record.get("worker_pids") or ()
    logs = [node.data / "logs" / f"worker-{n}.log" for n in range(1, len(pids) + 1)]
    wait_until(
        lambda: all(log.exists() and " ready." in log.read_text(errors="replace") for log in logs),
        "the workers of dicombus up",
        UP_START_TIMEOUT,
        node.alive,
    )


@contextlib.contextmanager
def orthanc(work: Path, dest_port: int) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Orthanc (DICOM on a free port, storage in ``work``) running route_orthanc.lua."""
    binary = tool("Orthanc")
    folder = Path(tempfile.mkdtemp(prefix="orthanc-", dir=work))
    http_port, dicom_port = peers.free_port(), peers.free_port()
    config = {
        "Name": "route-bench",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "DicomModalities": {"dest": ["STORESCP", "127.0.0.1", dest_port]},
        "LuaScripts": [str(LUA)],
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    with (folder / "orthanc.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, str(folder / "orthanc.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
    try:
        deadline = time.monotonic() + ORTHANC_START_TIMEOUT
        while not _listens(dicom_port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "Orthanc did not start: " + (folder / "orthanc.log").read_text()[-500:]
                )
            time.sleep(0.05)  # start-up only
        yield process, dicom_port
    finally:
        process.terminate()  # by its PID
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def run_orthanc(files: list[Path], work: Path) -> Result:
    with destination(work) as (port, received), orthanc(work, port) as (process, dicom_port):

        def alive() -> None:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({process.returncode})")

        return send_and_wait("orthanc lua", files, dicom_port, "ORTHANC", received, alive)


def measured(run: Callable[[], Result], row: str, count: int) -> Result:
    try:
        return run()
    except (RuntimeError, TimeoutError, subprocess.TimeoutExpired, OSError) as exc:
        return Result(row, count, error=str(exc))


def _f(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


def report(results: list[Result], quiet: float) -> list[dict[str, Any]]:
    by_row = {r.row: r for r in results}
    print(f"{'row':<20} {'instances':>9} {'inst/s':>9} {'latency s':>10} {'after last s':>13}")
    for r in results:
        line = f"{r.row:<20} {r.instances:>9} {_f(r.throughput):>9} {_f(r.latency):>10}"
        print(line + f" {_f(r.after_last):>13}" + (f"  FAILED: {r.error}" if r.error else ""))
    ours, orthanc_row = by_row["dicombus"], by_row["orthanc lua"]
    for other in ("direct storescu", "orthanc lua"):
        theirs = by_row[other].throughput
        ratio = None if ours.throughput is None or not theirs else ours.throughput / theirs
        print(f"dicombus / {other}: {_f(ratio, 'x')}")
    targets: list[tuple[str, float | None, float | None, Callable[[float, float], bool]]] = [
        (
            "dicombus throughput >= Orthanc's",
            ours.throughput,
            orthanc_row.throughput,
            lambda a, b: a >= b,
        ),
        (
            f"dicombus: at the destination <= {AFTER_LAST_TARGET:.0f} s after the last at the edge",
            ours.after_last,
            AFTER_LAST_TARGET,
            lambda a, b: a <= b,
        ),
        (
            f"per study: <= {AFTER_LAST_TARGET:.0f} s + quiet {quiet:g} s after the last",
            by_row["dicombus per study"].after_last,
            AFTER_LAST_TARGET + quiet,
            lambda a, b: a <= b,
        ),
    ]
    found = []
    for name, value, bound, holds in targets:
        verdict = "MISS" if value is None or bound is None else holds(value, bound)
        shown = verdict if isinstance(verdict, str) else ("PASS" if verdict else "MISS")
        print(f"{shown}  {name} ({_f(value)} vs {_f(bound)})")
        found.append({"target": name, "value": value, "bound": bound, "result": shown})
    return found


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 instances instead of 500")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "dicombus-bench-data"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    spec = data.DataSetSpec(
        name="route-ct",
        title="a 512x512x16-bit CT study",
        count=60 if args.quick else 500,
        sop_class=data.CT_IMAGE_STORAGE,
        rows=512,
        columns=512,
        frames=1,
    )
    files = data.ensure_files(spec, args.data_dir)
    print(f"route_run: {len(files)} CT instances of one study (~0.5 MB each)")
    work = Path(tempfile.mkdtemp(prefix="dicombus-route-bench-"))
    try:
        count = len(files)
        results = [
            measured(lambda: run_direct(files, work), "direct storescu", count),
            measured(lambda: run_dicombus(files, work, "instance"), "dicombus", count),
            measured(lambda: run_dicombus(files, work, "study"), "dicombus per study", count),
            measured(lambda: run_orthanc(files, work), "orthanc lua", count),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    targets = report(results, QUIET_SECONDS)
    if args.json is not None:
        figures = [{**asdict(r), "throughput": r.throughput} for r in results]
        args.json.write_text(json.dumps({"results": figures, "targets": targets}, indent=2))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
