"""A worker's start-up objects are frozen out of the cyclic collector's scans.

Checked in a fresh interpreter (the test process's own heap is pytest's): the
worker module connects the freeze to Celery's process signals, and a prefork
child's ``worker_process_init`` (the signal only this module listens to here)
leaves the objects alive then in the permanent generation.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from celery.signals import worker_process_init, worker_ready
from dicombus_workers import heap
assert gc.get_freeze_count() == 0, gc.get_freeze_count()
assert heap.freeze_when_ready in [ref for _, ref in worker_ready.receivers]
worker_process_init.send(sender=None)
print(gc.get_freeze_count())
"""


def test_a_ready_worker_leaves_its_start_up_objects_out_of_collections() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    # Celery, kombu and the tasks' modules: many thousands of objects.
    assert int(done.stdout) > 10_000
