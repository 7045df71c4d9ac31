"""The publisher's messages run in a real ``celery worker`` process (a stock Celery app).

Slower than the other publisher tests (about 2 s): a Celery worker takes a
second or so to start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.sender import task_id_for
from loopback import wait_until
from publisher_support import Association, running_publisher, subscription, wait_published

HERE = Path(__file__).resolve().parent
WORKER_TIMEOUT = 30.0


def test_a_stock_celery_worker_runs_every_message_in_order(tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    out.touch()
    association = Association()
    events = [association.next() for _ in range(50)]
    with EmbeddedRedis(tmp_path / "redis") as server:
        with running_publisher(
            server.url, tmp_path, [subscription("tests.audit", "audit")]
        ) as publisher:
            for event in events:
                publisher.submit(event)
            wait_published(publisher, len(events))
        env = {
            **os.environ,
            "PUBLISHER_TEST_BROKER": server.url,
            "PUBLISHER_TEST_OUT": str(out),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "publisher_celery_app",
                "worker",
                "--pool",
                "solo",
                "--queues",
                "audit",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "WARNING",
            ],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until(lambda: len(out.read_text().splitlines()) >= len(events), WORKER_TIMEOUT)
        finally:
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                log, _ = worker.communicate(timeout=WORKER_TIMEOUT)
            except subprocess.TimeoutExpired:
                worker.kill()
                log, _ = worker.communicate(timeout=WORKER_TIMEOUT)
    ran = [line.split() for line in out.read_text().splitlines()]
    expected = [
        [task_id_for(event.id, "tests.audit"), event.id, str(event.sequence)] for event in events
    ]
    assert ran == expected, log
