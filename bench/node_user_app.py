"""What a user would build instead of ``dicombus up``: the baseline of bench/node_run.py.

A pynetdicom Storage SCP (TCP_NODELAY set, as bench/peers.py does) whose
C-STORE handler writes the instance as received (no fsync), builds a JSON
envelope with the header as DICOM JSON (pydicom's ``to_json_dict``, values
above 1 KB as BulkDataURIs into the file) and calls Celery ``apply_async`` for
two tasks: ``user.audit`` (one SQLite row per event) and ``user.count`` (a
Redis INCR). Celery with the safe settings a careful user would pick and
dicombus's workers use too: acks late, prefetch 1, JSON only, no results.

    python bench/node_user_app.py serve --out DIR
    celery -A node_user_app worker --pool=solo --concurrency=1 -Q user.events

``serve`` prints ``READY <port>`` once it listens and stops when its stdin
closes. Both read the broker and the audit file from the environment
(``NODE_USER_BROKER``, ``NODE_USER_AUDIT_DB``); each worker counts itself in
Redis (``user:ready``) once it consumes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_ready

BROKER_ENV = "NODE_USER_BROKER"
AUDIT_DB_ENV = "NODE_USER_AUDIT_DB"
QUEUE = "user.events"
READY_KEY = "user:ready"
COUNT_KEY = "user:count:EVT_C_STORE"
# pydicom's default: longer values become BulkDataURIs, as dicombus's envelopes do.
BULK_DATA_THRESHOLD = 1024

app = Celery("node_user_app", broker=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    accept_content=["json"],
    task_serializer="json",
    task_ignore_result=True,
    result_backend=None,
    task_default_queue=QUEUE,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, time TEXT NOT NULL, envelope TEXT NOT NULL
)
"""
_connections: dict[int, sqlite3.Connection] = {}
_redis: dict[int, redis.Redis] = {}


def _audit_db() -> sqlite3.Connection:
    connection = _connections.get(os.getpid())
    if connection is None:
        connection = sqlite3.connect(os.environ[AUDIT_DB_ENV], timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(_SCHEMA)
        _connections[os.getpid()] = connection
    return connection


def _redis_client() -> redis.Redis:
    client = _redis.get(os.getpid())
    if client is None:
        client = _redis[os.getpid()] = redis.Redis.from_url(os.environ[BROKER_ENV])
    return client


@app.task(name="user.audit")
def audit(envelope: dict[str, Any]) -> None:
    connection = _audit_db()
    with connection:
        connection.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
            (envelope["id"], envelope["type"], envelope["time"], json.dumps(envelope)),
        )


@app.task(name="user.count")
def count(envelope: dict[str, Any]) -> None:
    _redis_client().incr(f"user:count:{envelope['type']}")


@worker_ready.connect
def _count_ready(**_kwargs: Any) -> None:
    _redis_client().incr(READY_KEY)


def handle_store(event: Any, out_dir: str) -> int:
    request = event.request
    path = os.path.join(out_dir, f"{request.AffectedSOPInstanceUID}.dcm")
    with open(path, "wb") as stream:
        stream.write(event.encoded_dataset())
    uri = Path(path).as_uri()
    header = event.dataset.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD,
        bulk_data_element_handler=lambda element: f"{uri}#{element.tag:08X}",
    )
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "EVT_C_STORE",
        "time": datetime.datetime.now(datetime.UTC).isoformat(),
        "source": "user-built-scp",
        "data": {
            "calling_ae_title": event.assoc.requestor.ae_title,
            "sop_class_uid": str(request.AffectedSOPClassUID),
            "sop_instance_uid": str(request.AffectedSOPInstanceUID),
            "path": path,
            "header": header,
        },
    }
    audit.apply_async((envelope,))
    count.apply_async((envelope,))
    return 0x0000


def serve(out_dir: str) -> None:
    import pynetdicom
    from data import CT_IMAGE_STORAGE
    from peers import (
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLICIT_VR_LITTLE_ENDIAN,
        VERIFICATION,
        _force_pynetdicom_nodelay,
    )

    _force_pynetdicom_nodelay(pynetdicom)
    ae = pynetdicom.AE(ae_title="USER-SCP")
    ae.maximum_associations = 64
    for abstract_syntax in (VERIFICATION, CT_IMAGE_STORAGE):
        ae.add_supported_context(
            abstract_syntax, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
        )
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(pynetdicom.evt.EVT_C_STORE, handle_store, [out_dir])],
    )
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the orchestrator closes our stdin (or dies)
    server.shutdown()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    scp = commands.add_parser("serve")
    scp.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    serve(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
