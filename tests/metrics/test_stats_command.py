"""`dicombus stats` as a user runs it (a subprocess) against a real Redis holding metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.metrics.heartbeat import EdgeHeartbeat
from test_collectors import c_store, count, envelope
from worker_support import wait_for

TIMEOUT = 30.0


def stats(url: str, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dicombus.cli.main", "stats", *arguments],
        env={**os.environ, "DICOMBUS_BROKER_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_stats_prints_a_table_per_edge_and_per_queue_and_watch_ends_on_ctrl_c(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        count(client, [envelope("EVT_ACCEPTED", {}), c_store(), c_store(size=2 * 1024 * 1024)])
        figures = {"outbox_rows": 3.0, "outbox_bytes": 100.0, "lag_seconds": 0.25}
        EdgeHeartbeat(server.url, "edge-1", lambda: figures, {"ae_title": "EDGE"}).beat()
        client.close()

        once = stats(server.url)
        out, err = once.communicate(timeout=TIMEOUT)
        assert once.returncode == 0, err
        assert "Edge edge-1 (EDGE at ): UP" in out
        assert "outbox 3 messages (100 bytes), publisher lag 250 ms" in out
        assert any(line.split() == ["CT1", "1", "0", "0"] for line in out.splitlines())
        assert any(line.split() == ["CT", "success", "2", "2.0"] for line in out.splitlines())
        assert "Queues" in out and "events" in out

        bounded = stats(server.url, "--watch", "--interval", "0.1", "--count", "2")
        out, err = bounded.communicate(timeout=TIMEOUT)
        assert bounded.returncode == 0, err
        assert out.count("dicombus stats, ") == 2

        watch = stats(server.url, "--watch", "--interval", "0.2")
        assert watch.stdout is not None
        wait_for(lambda: "Queues" in (watch.stdout.readline() or "Queues"), "a first summary")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(TIMEOUT) == 0


def test_stats_names_an_unreachable_redis() -> None:
    run = stats("redis://127.0.0.1:1/0")
    _out, err = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 4
    assert "cannot read the metrics from Redis at redis://127.0.0.1:1/0" in err
