"""``/api/queues``: each Celery queue's depth and oldest message, and the workers on it.

Depth and age come from :func:`dicombus.metrics.snapshot.read_snapshot` (Redis lists).
Which workers consume a queue only the workers know: they are asked over Celery's remote
control (``inspect().active_queues()``, a broadcast answered within
:data:`INSPECT_TIMEOUT`). The answer is kept for :data:`WORKERS_MAX_AGE`, so a page
refreshing every few seconds broadcasts at most once per that time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from dicombus.metrics.snapshot import Snapshot

# Seconds to wait for the workers' answers: a worker busy with a long task still
# answers its control queue within this (Celery runs control in its main thread).
INSPECT_TIMEOUT = 1.0
WORKERS_MAX_AGE = 10.0


class WorkerDirectory:
    """The workers consuming each queue, asked at most once per :data:`WORKERS_MAX_AGE`."""

    def __init__(self, broker_url: str) -> None:
        from celery import Celery

        self._app = Celery("dicombus_dashboard", broker=broker_url)
        self._lock = threading.Lock()
        self._asked = -WORKERS_MAX_AGE
        self._by_queue: dict[str, list[str]] = {}

    def by_queue(self) -> dict[str, list[str]]:
        with self._lock:
            if time.monotonic() - self._asked >= WORKERS_MAX_AGE:
                answers = self._app.control.inspect(timeout=INSPECT_TIMEOUT).active_queues()
                found: dict[str, list[str]] = defaultdict(list)
                for worker, queues in (answers or {}).items():
                    for queue in queues:
                        found[str(queue["name"])].append(str(worker))
                self._by_queue = {name: sorted(workers) for name, workers in found.items()}
                self._asked = time.monotonic()
            return self._by_queue

    def close(self) -> None:
        self._app.close()


def queues_view(snapshot: Snapshot, workers: dict[str, list[str]]) -> dict[str, Any]:
    """The ``/api/queues`` document (docs/analytics.md#dashboard)."""
    names = sorted({queue.name for queue in snapshot.queues} | set(workers))
    depth = {queue.name: queue for queue in snapshot.queues}
    return {
        "queues": [
            {
                "name": name,
                "messages": depth[name].messages if name in depth else 0,
                "oldest_age_seconds": depth[name].oldest_age if name in depth else None,
                "workers": workers.get(name, []),
            }
            for name in names
        ],
        "dead_letters": snapshot.dead_letters,
    }
