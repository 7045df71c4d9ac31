"""The CPU of the edge's association thread per C-STORE under ``dicombus up``, and where it
goes, for one or more source trees, runs interleaved.

    python bench/edge_cpu.py --trees BEFORE,AFTER --data small-1500x24x24x1 --rounds 3

Each run starts ``dicombus up`` (its defaults: fsync, the journal, the Q/R index, the
built-in audit and counter workers) from one tree, with the functions named in
``MEASURED`` wrapped to add up the thread CPU time (``time.thread_time``) spent inside
them, outermost call only; DCMTK ``storescu`` (TCP_NODELAY=1) sends the data set's files
over one association; ``up`` then stops (SIGINT) and writes the sums. Figures are per
instance; the thread's own total is measured around ``AssociationSession.run``. The
wrappers cost well under a microsecond per call. ``--data`` names a folder under
bench/data.py's data directory (``python bench/node_run.py --quick`` makes them).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DATA = Path(tempfile.gettempdir()) / "dicombus-bench-data"
# The node's data folder on a tmpfs, as bench/run.py's SCPs write: the figures are CPU.
WORK = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
# pynetdicom installs a console script of the same name: DCMTK's, where apt puts it.
STORESCU = "/usr/bin/storescu"
START_TIMEOUT = 90.0
# (module, function or Class.method): the parts of a C-STORE on the association thread.
MEASURED = [
    ("dicombus.runtime.transport", "PduChannel.read_pdu"),
    ("dicombus.protocol.connection", "DimseConnection.receive_pdu"),
    ("dicombus.protocol.commands", "decode_command_set"),
    ("dicombus.qr.archive", "IndexedStorage.handle_store"),
    ("dicombus.storage_handler", "store_received"),
    ("dicombus.instance_uids", "read_instance_header"),
    ("dicombus.storage_files", "store_instance"),
    ("dicombus.storage_files", "_Content.write"),
    ("dicombus.association", "Association.report_outcome"),
    ("dicombus.bus.journal", "Journal.record"),
    ("dicombus.bus.journal", "Journal._commit"),
    ("dicombus.association", "Association.send_message"),
    # Not on the association thread: the Q/R index writer's (dicombus-index) batches.
    ("dicombus.qr.index", "Index.write_queued"),
]


def _wrap(name: str, function: Callable[..., Any], sums: dict[str, float]) -> Any:
    inside = threading.local()

    def measured(*args: Any, **kwargs: Any) -> Any:
        if getattr(inside, "depth", 0):
            return function(*args, **kwargs)
        inside.depth = 1
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            sums[name] = sums.get(name, 0.0) + time.thread_time() - started
            inside.depth = 0

    return measured


def edge(data: Path, report: Path) -> int:
    """In the child: ``dicombus up`` with the wrappers; the sums to ``report`` at exit."""
    sums: dict[str, float] = {}
    for module_name, name in MEASURED:
        module = importlib.import_module(module_name)
        owner_name, _, attribute = name.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        original = getattr(owner, attribute)
        setattr(owner, attribute, _wrap(name, original, sums))
        if not owner_name:  # imported by name elsewhere: rebind there too
            for other in list(sys.modules.values()):
                if getattr(other, attribute, None) is original:
                    setattr(other, attribute, getattr(owner, attribute))
    session = importlib.import_module("dicombus.session").AssociationSession
    session.run = _wrap("association thread", session.run, sums)
    from dicombus.cli.main import main

    status = main(["up", "--port", "0", "--data", str(data)])
    report.write_text(json.dumps(sums))
    return status


def run_once(tree: Path, files: Sequence[Path]) -> dict[str, float]:
    """One ``up`` from ``tree``, fed ``files``; µs per instance by part."""
    work = Path(tempfile.mkdtemp(prefix="edge-cpu-", dir=WORK))
    data, report, log = work / "data", work / "sums.json", work / "up.out"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DICOMBUS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "services"), str(tree / "workers")])
    command = [sys.executable, __file__, "--edge", str(data), str(report)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while b"Press Ctrl-C" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dicombus up did not start: {log.read_text()[-1500:]}")
            time.sleep(0.1)
        port = json.loads((data / "node.json").read_text())["address"][1]
        storescu = [STORESCU, "-aec", "DICOMBUS", "127.0.0.1", str(port), *map(str, files)]
        subprocess.run(storescu, check=True, env={**os.environ, "TCP_NODELAY": "1"})
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    sums = json.loads(report.read_text())
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return {name: seconds / len(files) * 1e6 for name, seconds in sums.items()}


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--edge"]:
        return edge(Path(argv[1]), Path(argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", required=True, help="source trees, comma-separated")
    parser.add_argument("--data", required=True, help="a data set folder under " + str(DATA))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    trees = [Path(tree).resolve() for tree in args.trees.split(",")]
    files = sorted((DATA / args.data).glob("*.dcm"))
    runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            runs[tree].append(run_once(tree, files))
    for tree in trees:
        print(f"{tree}: µs per instance, median of {args.rounds} (each run)")
        for name in ["association thread", *(name for _, name in MEASURED)]:
            values = [run.get(name, 0.0) for run in runs[tree]]
            each = " ".join(f"{value:.0f}" for value in values)
            print(f"  {statistics.median(values):7.0f}  ({each})  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
