"""A long-running process's start-up objects, left out of the cyclic garbage collector's scans.

An edge node or a worker imports pydicom, the DICOM dictionaries, Celery or
SQLAlchemy and builds its configuration before its first association or
message: some hundreds of thousands of objects that live as long as the
process. Python's collector scans every tracked object of the oldest
generation at each full collection, and the objects a C-STORE or a batch of
events allocates set one off every few hundred instances: a scan of all of
them, on whichever thread allocated last (an association's, in the edge).
``gc.freeze()`` moves what exists once the process is ready into a permanent
generation that collections skip; objects made afterwards are collected as
before, and so are cycles among them (docs/performance.md has the figures).
"""

from __future__ import annotations

import gc


def freeze_start_up_objects() -> None:
    """Leave every object alive now out of later collections (see the module docstring)."""
    gc.collect()
    gc.freeze()
