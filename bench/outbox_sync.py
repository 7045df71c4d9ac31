"""What an outbox commit costs with synchronous=NORMAL and FULL, per spooled batch.

The publisher spools one batch per transaction (1 message when an association
thread spools on submit, up to batch_size when the publisher thread moves its
queue). Run from the repository root::

    python bench/outbox_sync.py [folder]

``folder`` (default: the current one) must be on the disk the outbox lives on:
fsync costs what that disk makes it cost.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from dicombus.bus.outbox import Outbox, OutboxMessage

BATCHES = {1: 300, 50: 100, 500: 30}  # batch size -> batches appended
BODY = "[[{" + '"x":"' + "a" * 700 + '"' + "}],{},{}]"  # about a C-STORE envelope


def message(number: int) -> OutboxMessage:
    return OutboxMessage(
        event_id=f"01H{number:023d}",
        task="dicombus_workers.builtin.audit",
        queue="audit",
        task_id=f"{number:032x}",
        body=BODY,
        headers={"lang": "py", "task": "audit", "id": f"{number:032x}", "retries": 0},
        order=number,
        created=time.time(),
    )


def measure(folder: Path, synchronous: str, size: int, batches: int) -> str:
    with tempfile.TemporaryDirectory(dir=folder) as where:
        outbox = Outbox(Path(where) / "outbox.sqlite3", synchronous=synchronous)  # type: ignore[arg-type]
        walls: list[float] = []
        cpus: list[float] = []
        for batch_number in range(batches):
            batch = [message(batch_number * size + k) for k in range(size)]
            wall, cpu = time.perf_counter(), time.process_time()
            outbox.append(batch)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        outbox.close()
    walls.sort()
    return (
        f"{synchronous:6} batch of {size:3}: wall p50 {statistics.median(walls) * 1e3:.2f} ms, "
        f"p99 {walls[int(len(walls) * 0.99) - 1] * 1e3:.2f} ms; "
        f"CPU {statistics.mean(cpus) * 1e6:.0f} us"
    )


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for synchronous in ("NORMAL", "FULL"):
        for size, batches in BATCHES.items():
            print(measure(folder, synchronous, size, batches), flush=True)


if __name__ == "__main__":
    main()
