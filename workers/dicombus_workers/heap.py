"""A worker's start-up objects, left out of the cyclic garbage collector's scans.

A worker imports Celery, kombu, SQLAlchemy, pydicom and the tasks before it
takes its first message, and a batch's messages allocate enough (decoded
envelopes, rows, additions) to set off a full collection every few batches: in
a profile of the combined built-in task that scan was about a sixth of the
worker's time per event (docs/performance.md). So the worker freezes what
exists once it is ready (:mod:`dicombus.heap`). A prefork child freezes again
after its fork (its own start-up objects), which also keeps the pages it
shares with the parent from being written by a scan (the reason CPython added
``gc.freeze``).
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_ready
from dicombus.heap import freeze_start_up_objects


def freeze_when_ready(**_: Any) -> None:
    """Celery's signal receiver: freeze the objects alive now (see the module docstring)."""
    freeze_start_up_objects()


worker_ready.connect(freeze_when_ready, weak=False)
worker_process_init.connect(freeze_when_ready, weak=False)
