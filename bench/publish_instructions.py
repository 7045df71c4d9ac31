"""Instructions per event of building the publisher's data, counted by callgrind.

    python bench/publish_instructions.py [--associations N]

On a shared VM the CPU time of a piece of Python swings by 20-50 % from run to
run; the number of instructions it executes moves by about 1 %. This counts,
under valgrind's callgrind, the user-space instructions of what the publisher
child does first with each event, ``PendingEvent.to_envelope`` (for a C-STORE:
read the stored file's header and build its DICOM JSON), for the events of real
associations: the mix of bus_run.py's publish row (lifecycle + C-STORE, 16
events per association, instances stored by the edge's own handler). Each
figure is the difference between a run of three rounds and a run of one, so
the interpreter's start-up and the imports cancel out; a warm-up round runs
first in both, and the garbage collector is off (its full collections would
land in one run and not the other). System calls are the kernel's work and are not counted: compare
their number with strace when a change moves them.

Needs valgrind (``apt-get install valgrind``). Run it on two trees to compare them
(``PYTHONPATH=<tree>/services python bench/publish_instructions.py``).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
EVENTS_FILE = "events.pickle"
C_STORE = "EVT_C_STORE"
_COLLECTED = re.compile(r"Collected : (\d+)")


def capture(folder: Path, associations: int) -> int:
    """Capture the events of ``associations`` associations into ``folder``; how many."""
    sys.path.insert(0, str(BENCH.parent))
    from dicombus.bus.redis_server import EmbeddedRedis

    from bench.bus_run import STORE_MIX, _capture, scu_associations

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as scus:
        server = EmbeddedRedis(folder / "redis")
        url = server.start()
        try:
            events = _capture(
                url, folder / "edge", scus, STORE_MIX, (scu_associations, associations, 0, 10)
            )
        finally:
            server.stop()
    (folder / EVENTS_FILE).write_bytes(pickle.dumps(events))
    return len(events)


def count(folder: Path, rounds: int, only_stores: bool) -> None:
    """Build every event's envelope, a warm-up round and then ``rounds`` rounds."""
    events = pickle.loads((folder / EVENTS_FILE).read_bytes())
    if only_stores:
        events = [pending for pending in events if pending.event_type == C_STORE]
    # A collection of the oldest generation walks every object of the imports: one in
    # the longer run and not in the shorter would add its cost to each event's figure.
    gc.disable()
    for _ in range(rounds + 1):
        for pending in events:
            pending.to_envelope()


def instructions(folder: Path, rounds: int, only_stores: bool) -> int:
    """User-space instructions of a ``count`` run, all of it, as callgrind counts them."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--count",
        str(folder),
        "--rounds",
        str(rounds),
    ]
    if only_stores:
        command.append("--only-stores")
    # The same string hashes in every run: dict and set probes do not vary between them.
    # NumPy (which pydicom imports when it is there) starts OpenBLAS threads that spin
    # while idle, as many instructions as the run lasts: one thread, none spinning.
    environment = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=1800, env=environment
    )
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind reported no count: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_event(folder: Path, events: int, only_stores: bool) -> float:
    one, three = (instructions(folder, rounds, only_stores) for rounds in (1, 3))
    return (three - one) / 2 / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--associations", type=int, default=30)
    parser.add_argument("--count", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--only-stores", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count is not None:
        count(args.count, args.rounds, args.only_stores)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="dicombus-bench-instructions-") as scratch:
        folder = Path(scratch)
        total = capture(folder, args.associations)
        events = pickle.loads((folder / EVENTS_FILE).read_bytes())
        stores = sum(1 for pending in events if pending.event_type == C_STORE)
        import dicombus

        print(f"dicombus from {os.path.dirname(dicombus.__file__)}")
        print(f"{total} events ({stores} C-STORE) from {args.associations} associations")
        print(f"  to_envelope, every event:  {per_event(folder, total, False):>9,.0f} instructions")
        print(f"  to_envelope, C-STORE only: {per_event(folder, stores, True):>9,.0f} instructions")


if __name__ == "__main__":
    main()
