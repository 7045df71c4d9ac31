"""bench/node_run.py end to end, with a handful of files: it runs, prints every row, and
leaves nothing running.

The script runs as a user runs it (a subprocess) against its real peers: ``dicombus up``
(embedded Redis, edge, publisher child, workers), DCMTK's storescu and storescp, a
pynetdicom SCP with Celery workers. The test checks what the script reports and that every
event was audited once, never the figures (they depend on the machine and its load).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import import_peer, require_tool

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "node_run.py"
RUN_TIMEOUT = 220.0  # two runs of every row
SCPS = ("dicombus up", "DCMTK storescp", "user-built (pynetdicom + Celery)")


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment names ``text`` (a folder of this test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for name in ("cmdline", "environ"):
            try:
                if text.encode() in (entry / name).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:  # gone, or not ours to read
                continue
    return found


def test_node_run_quick_prints_every_row_and_stops_everything(tmp_path: Path) -> None:
    for tool in ("storescu", "storescp"):
        require_tool(tool)
    import_peer("pynetdicom")
    scp_dir = tmp_path / "scp"
    scp_dir.mkdir()
    report = tmp_path / "node.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--ct", "6", "--small", "6"]
    command += ["--associations", "3", "--data-dir", str(tmp_path / "data")]
    command += ["--scp-dir", str(scp_dir), "--json", str(report), "--repeats", "2"]

    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for title in (
        "[1] C-STORE over one association",
        "[2] C-STORE over one association",
        "[3] C-STORE over 3 associations at once",
        "Targets (issue 10):",
    ):
        assert title in result.stdout, output[-4000:]
    for scp in (*SCPS, "DCMTK storescp --fork"):
        # The SCP's line: its rate (or n/a when too short to subtract start-up), its drain
        # (or "-"), its audited/s (or "-"), its CPU per instance and the per-process breakdown.
        line = rf"^  {re.escape(scp)} +\S+ +\S+ +\S+ +\d+\.\d\d   \S"
        assert re.search(line, result.stdout, re.M), result.stdout
        # The median's runs, each SCP started afresh per run.
        assert re.search(rf"^  {re.escape(scp)} .*\n {{36}}runs: inst/s", result.stdout, re.M)
    assert re.search(r"^  store-ct: up >= 600 inst/s +\S+  (PASS|MISS|n/a)$", result.stdout, re.M)

    rows = json.loads(report.read_text())["rows"]
    assert [row["row"] for row in rows] == ["store-ct", "store-small", "store-ct-3"]
    for row in rows:
        for measured in row["measurements"]:
            assert measured["error"] == "", measured
            assert len(measured["runs"]) == 2
            for run in measured["runs"]:
                assert run["error"] == "", run
                if run["audited"] is not None:
                    # Every C-STORE sent so far audited and counted, each once.
                    assert run["audited"]["EVT_C_STORE"] == run["sent"], run
    assert {m["scp"] for row in rows for m in row["measurements"]} >= set(SCPS)
    assert {"edge (up)", "redis-server"} <= set(rows[0]["measurements"][0]["cpu_ms_by_process"])
    assert _processes_mentioning(str(scp_dir)) == []
