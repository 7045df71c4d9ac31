"""A plain Celery app (no dicombus code) whose worker runs the publisher's messages.

test_publisher_celery_worker.py starts ``celery -A publisher_celery_app worker``
on it: the proof that the edge's messages are what a stock Celery worker expects.
Each run of ``tests.audit`` appends "<task id> <event id> <sequence>" to the file
named by PUBLISHER_TEST_OUT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery

app = Celery("publisher_tests", broker=os.environ["PUBLISHER_TEST_BROKER"])
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    broker_connection_retry_on_startup=True,
)
OUT = Path(os.environ["PUBLISHER_TEST_OUT"])


@app.task(name="tests.audit", bind=True)
def audit(self: Any, envelope: dict[str, Any]) -> None:
    with OUT.open("a") as out:
        out.write(f"{self.request.id} {envelope['id']} {envelope['sequence']}\n")
