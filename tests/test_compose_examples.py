"""The deployment examples in compose/ are real: the edge config loads, Redis runs with redis.conf.

Docker itself cannot run here, so these check the two files the containers read.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
from dicombus.bus.edge_config import load_edge_config
from dicombus.bus.redis_server import redis_server_binary

from tests.helpers import free_port

COMPOSE = Path(__file__).resolve().parent.parent / "compose"


def test_the_example_edge_config_loads_with_its_static_subscription() -> None:
    config = load_edge_config(COMPOSE / "edge.toml")
    assert config.ae_title == "EDGE_CT1"
    assert [s.task for s in config.subscriptions] == ["routing_tasks.forward_ct"]
    assert config.calling_ae_titles == ("CT_SCANNER_1", "CT_SCANNER_2", "PACS")


def test_redis_runs_with_the_example_conf_and_keeps_events_safe(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            str(redis_server_binary()),
            str(COMPOSE / "redis.conf"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        for _ in range(50):  # bounded: about 5 s for the server to answer
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        settings = {
            key: client.config_get(key)[key]
            for key in ("appendonly", "appendfsync", "maxmemory-policy")
        }
        assert settings == {
            "appendonly": "yes",
            "appendfsync": "always",
            "maxmemory-policy": "noeviction",
        }
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
