"""Smoke check of the README's first command: ``dicombus up`` serves, audits and stops.

Run it with the Python of an environment where ``pip install -e .`` (no test extras) installed
dicombus, with that environment's ``bin`` on PATH (CI: .ci/run, in a fresh virtualenv)::

    python scripts/smoke_up.py

It starts the ``dicombus`` command found on PATH as ``dicombus up --data DIR --port 0`` in a
folder of its own, reads the edge's AE title, address and audit DB from the lines ``up``
prints (``AE title:``, ``address:``, ``audit DB:``), sends one C-ECHO and one C-STORE with
``dicombus echo`` and ``dicombus store``, waits until the built-in audit task has written the
C-STORE event of that instance, then stops ``up`` with SIGINT (by PID) and expects exit code 0.
Every wait is bounded.

Exit 0 when all of that happened; otherwise 1, with what went wrong, ``up``'s output and its
worker logs on stderr. It needs only dicombus's own dependencies (pydicom writes the instance).
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
# Generous, for a loaded CI machine: each bounds one step, and a healthy node takes seconds.
STARTUP_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0
AUDIT_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
POLL_INTERVAL = 0.2
# The banner lines this script reads ("  address:   127.0.0.1:11112").
BANNER_KEYS = frozenset({"AE title", "address", "audit DB"})


class SmokeFailure(Exception):
    """One step of the smoke check did not happen; the message says which."""


@dataclass(frozen=True)
class Banner:
    """What ``up`` printed about the node it started."""

    ae_title: str
    host: str
    port: str
    audit_db: Path


class UpProcess:
    """``dicombus up`` started by this script, its output going to a file."""

    def __init__(self, command: list[str], output: Path) -> None:
        self.output = output
        with output.open("wb") as sink:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )

    def printed(self) -> str:
        return self.output.read_text(errors="replace")

    def banner(self) -> Banner:
        """Wait for the ``AE title:``, ``address:`` and ``audit DB:`` lines of the banner."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (found := banner_lines(self.printed())).keys() >= BANNER_KEYS:
            if (code := self.process.poll()) is not None:
                raise SmokeFailure(f"'dicombus up' exited (code {code}) at start")
            if time.monotonic() > deadline:
                raise SmokeFailure(f"no banner from 'dicombus up' in {STARTUP_TIMEOUT} s")
            time.sleep(POLL_INTERVAL)
        host, _, port = found["address"].rpartition(":")
        return Banner(found["AE title"], host, port, Path(found["audit DB"]))

    def interrupt(self) -> int:
        """SIGINT, as Ctrl-C sends it; the exit code once ``up`` stopped."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise SmokeFailure(f"'dicombus up' still runs {STOP_TIMEOUT} s after SIGINT") from None

    def kill_if_running(self) -> None:
        """After a failed step: SIGTERM (``up`` stops its children), then SIGKILL."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)


def banner_lines(text: str) -> dict[str, str]:
    """``key: value`` of the banner lines named in BANNER_KEYS (whole lines only)."""
    complete, _, _ = text.rpartition("\n")
    found: dict[str, str] = {}
    for line in complete.splitlines():
        key, _, value = line.strip().partition(":")
        if key in BANNER_KEYS:
            found[key] = value.strip()
    return found


def write_instance(path: Path) -> str:
    """A small Secondary Capture instance as a Part 10 file; its SOP Instance UID."""
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "DICOMBUS-SMOKE"
    ds.Modality = "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def run_scu(command: list[str]) -> None:
    """Run ``dicombus echo`` or ``dicombus store``; it must exit 0."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise SmokeFailure(f"{' '.join(command)} did not finish in {COMMAND_TIMEOUT} s") from None
    if result.returncode != 0:
        raise SmokeFailure(
            f"{' '.join(command)} exited with code {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    print(result.stdout.strip() or f"{command[1]}: ok", flush=True)


def audited_store_status(audit_db: Path, sop_instance_uid: str) -> int | None:
    """The status of the audited C-STORE event of that instance, None if not (yet) there."""
    if not audit_db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{audit_db}?mode=ro", uri=True) as connection:
            rows = connection.execute(
                "SELECT envelope FROM events WHERE type = 'EVT_C_STORE'"
            ).fetchall()
    except sqlite3.OperationalError:  # the worker is creating the file or its table
        return None
    for (envelope,) in rows:
        data = json.loads(envelope)["data"]
        if data["sop_instance_uid"] == sop_instance_uid:
            return int(data["status"])
    return None


def wait_for_audit(audit_db: Path, sop_instance_uid: str) -> None:
    deadline = time.monotonic() + AUDIT_TIMEOUT
    while (status := audited_store_status(audit_db, sop_instance_uid)) is None:
        if time.monotonic() > deadline:
            raise SmokeFailure(
                f"no C-STORE event of {sop_instance_uid} in {audit_db} after {AUDIT_TIMEOUT} s"
            )
        time.sleep(POLL_INTERVAL)
    if status != 0:
        raise SmokeFailure(f"the audited C-STORE of {sop_instance_uid} has status {status:#06x}")
    print(f"audit DB: the C-STORE event of {sop_instance_uid} is there (status 0x0000)")


def check(dicombus: str, folder: Path) -> None:
    instance = folder / "smoke.dcm"
    sop_instance_uid = write_instance(instance)
    command = [dicombus, "up", "--data", str(folder / "data"), "--port", "0"]
    up = UpProcess(command, folder / "up.out")
    try:
        banner = up.banner()
        print(f"dicombus up: listening on {banner.host}:{banner.port}", flush=True)
        peer = [banner.host, banner.port, "-aec", banner.ae_title]
        run_scu([dicombus, "echo", *peer])
        run_scu([dicombus, "store", *peer, str(instance)])
        wait_for_audit(banner.audit_db, sop_instance_uid)
        code = up.interrupt()
        if code != 0:
            raise SmokeFailure(f"'dicombus up' exited with code {code} after SIGINT")
        print("dicombus up: stopped on SIGINT, exit code 0", flush=True)
    except SmokeFailure:
        up.kill_if_running()
        report_output(up, folder / "data" / "logs")
        raise


def report_output(up: UpProcess, logs: Path) -> None:
    print("--- dicombus up printed:", up.printed(), sep="\n", file=sys.stderr)
    for log in sorted(logs.glob("*.log")):
        print(f"--- {log.name}:", log.read_text(errors="replace"), sep="\n", file=sys.stderr)


def main() -> int:
    dicombus = shutil.which("dicombus")
    if dicombus is None:
        print("smoke_up: no 'dicombus' command on PATH (pip install -e . first)", file=sys.stderr)
        return 1
    print(f"smoke_up: checking {dicombus}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dicombus-smoke-") as folder:
        try:
            check(dicombus, Path(folder))
        except SmokeFailure as failure:
            print(f"smoke_up: FAILED: {failure}", file=sys.stderr)
            return 1
    print("smoke_up: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
