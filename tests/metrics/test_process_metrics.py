"""``dicombus edge --metrics-port`` and ``dicombus worker --metrics-port``: each process
serves the node's metrics itself, so an operator can scrape every process of a node;
all of them read the shared state in Redis, so they answer the same numbers as
``dicombus metrics``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from helpers import free_port, wait_for_port
from worker_support import (
    EDGE_ENVIRONMENT,
    Worker,
    dicombus_edge,
    edge_command,
    embedded_redis,
    store,
    wait_for,
)

STOP_TIMEOUT = 30.0
STORED = 3


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def stored_count(exposition: str) -> float:
    """The C-STORE instances counted, over every label set."""
    samples = re.findall(r"^dicombus_cstore_instances_total\{[^}]*\} (\S+)$", exposition, re.M)
    return sum(map(float, samples))


def edge_config(folder: Path, broker_url: str) -> Path:
    """A file of its own in ``folder`` for ``dicombus edge``, publishing to ``broker_url``."""
    config = folder / "edge.toml"
    config.write_text(
        f'[edge]\nid = "edge-1"\nae_title = "EDGE"\nport = 0\n'
        f'data_dir = "{folder / "edge-data"}"\n\n[bus]\nbroker_url = "{broker_url}"\n'
    )
    return config


def test_the_edge_and_the_worker_each_serve_the_same_metrics(tmp_path: Path) -> None:
    edge_metrics, worker_metrics = free_port(), free_port()
    with embedded_redis(tmp_path / "redis") as url:
        # The edge says where it serves them once it serves them, after its banner.
        served = f"metrics at http://127.0.0.1:{edge_metrics}/metrics"
        with dicombus_edge(
            edge_config(tmp_path, url),
            tmp_path / "edge.out",
            "--metrics-port",
            str(edge_metrics),
            ready=served,
            stop_signal=signal.SIGINT,
            stop_timeout=STOP_TIMEOUT,
        ) as port:
            worker = Worker(
                url,
                tmp_path / "worker",
                include=(),
                pool="solo",
                builtin=True,
                arguments=("--metrics-port", str(worker_metrics)),
            )
            try:
                wait_for_port(edge_metrics)
                wait_for_port(worker_metrics)
                store(port, STORED)
                # The worker's counter task counts them; then both servers say so.
                wait_for(lambda: stored_count(scrape(edge_metrics)) == STORED, "the edge's count")
                assert stored_count(scrape(worker_metrics)) == STORED
            finally:
                worker.stop()
    assert f"metrics at http://127.0.0.1:{worker_metrics}/metrics" in worker.log()


def test_a_taken_metrics_port_is_named_and_the_edge_does_not_start(tmp_path: Path) -> None:
    with embedded_redis(tmp_path / "redis") as url:
        taken = free_port()
        with subprocess.Popen(
            [sys.executable, "-m", "http.server", str(taken), "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as holder:
            try:
                wait_for_port(taken)
                result = subprocess.run(
                    edge_command(edge_config(tmp_path, url), "--metrics-port", str(taken)),
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env=EDGE_ENVIRONMENT,
                )
            finally:
                holder.terminate()
    assert result.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in result.stderr
