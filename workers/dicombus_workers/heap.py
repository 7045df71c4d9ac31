"""The worker's start-up objects, left out of the cyclic garbage collector's scans.

A worker imports Celery, kombu, SQLAlchemy, pydicom and the tasks before it
takes its first message: some hundreds of thousands of objects that live as
long as the process. Python's collector scans every tracked object of the
oldest generation at each full collection, and a batch's messages allocate
enough (decoded envelopes, rows, additions) to set one off every few batches:
in a profile of the combined built-in task that scan was about a sixth of the
worker's time per event (docs/performance.md). ``gc.freeze()`` moves what
exists when the worker is ready into a permanent generation that collections
skip; objects made afterwards are collected as before, and so are cycles among
them. A prefork child freezes again after its fork (its own start-up objects),
which also keeps the pages it shares with the parent from being written by a
scan (the reason CPython added ``gc.freeze``).
"""

from __future__ import annotations

import gc
from typing import Any

from celery.signals import worker_process_init, worker_ready


def freeze_start_up_objects(**_: Any) -> None:
    """Leave every object alive now out of later collections (see the module docstring)."""
    gc.collect()
    gc.freeze()


worker_ready.connect(freeze_start_up_objects, weak=False)
worker_process_init.connect(freeze_start_up_objects, weak=False)
