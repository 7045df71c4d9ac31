"""The edge process's start-up objects are frozen out of the cyclic collector's scans.

Without it, a full collection walks every object pydicom, the dictionaries and the node
are made of (about 90 ms on the benchmark machine) on whichever association thread
allocated last, every thousand or so small C-STOREs. Checked in a fresh interpreter
running ``dicombus edge --config`` (the test process's heap is pytest's, and freezing it
would keep its garbage): a thread of the probe reads the freeze count once the node is up,
then stops it with SIGINT, as a user does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import gc, os, signal, sys, threading, time
from pathlib import Path
from dicombus.cli.main import main

node_file = Path(sys.argv[2]) / "node.json"


def report_then_stop() -> None:
    deadline = time.monotonic() + 60
    while not node_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("frozen", gc.get_freeze_count(), flush=True)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=report_then_stop, daemon=True).start()
sys.exit(main(["edge", "--config", sys.argv[1]]))
"""


def test_a_started_edge_leaves_its_start_up_objects_out_of_collections(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "edge.toml"
    config.write_text(f'[edge]\nport = 0\ndata_dir = "{data}"\n\n[bus]\nenabled = false\n')
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    frozen = [line for line in done.stdout.splitlines() if line.startswith("frozen ")]
    assert frozen, done.stdout
    # pydicom's dictionaries and the node: many thousands of objects.
    assert int(frozen[0].split()[1]) > 10_000
