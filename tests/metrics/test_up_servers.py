"""``dicombus up --metrics-port --dashboard-port``: the two servers are children it supervises.

A real ``dicombus up`` (embedded Redis, a worker, the edge, ``dicombus metrics`` and
``dicombus dashboard``); each server is SIGKILLed by the PID the banner printed, and must
be started again by ``up`` and answer on its port as before.
"""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path

from helpers import free_port
from up_support import UpProcess
from worker_support import wait_for

TIMEOUT = 60.0


def fetch(url: str) -> str | None:
    """The body of a 200 answer, None while nothing (or an error) answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except (OSError, urllib.error.URLError):
        return None


def banner_pid(node: UpProcess, server: str) -> int:
    found = re.search(rf"^  {server}: +http\S+, pid (\d+)", node.text, re.MULTILINE)
    assert found, node.text
    return int(found.group(1))


def restarted_pid(node: UpProcess, server: str, old: int) -> int | None:
    """The PID ``up`` says it restarted ``server`` as, after ``old`` died."""
    found = re.search(rf"{server} \(pid {old}\) exited with code -?\d+; restarted as pid (\d+)",
                      node.text)  # fmt: skip
    return int(found.group(1)) if found else None


def serving(server: str, url: str) -> bool:
    body = fetch(url)
    if body is None:
        return False
    if server == "metrics":
        return "dicombus_edge_up" in body
    return "edges" in json.loads(body)


def test_killed_metrics_and_dashboard_servers_are_restarted_and_serve_again(
    tmp_path: Path,
) -> None:
    ports = {"metrics": free_port(), "dashboard": free_port()}
    urls = {
        "metrics": f"http://127.0.0.1:{ports['metrics']}/metrics",
        "dashboard": f"http://127.0.0.1:{ports['dashboard']}/api/edges",
    }
    node = UpProcess(
        tmp_path / "node",
        *["--workers", "1", "--metrics-port", str(ports["metrics"])],
        *["--dashboard-port", str(ports["dashboard"])],
    )
    try:
        node.wait_ready()
        for server, url in urls.items():
            wait_for(lambda s=server, u=url: serving(s, u), f"{server} serving", TIMEOUT)
        for server, url in urls.items():
            old = banner_pid(node, server)
            os.kill(old, signal.SIGKILL)  # the server up started, by its PID
            new = wait_for(
                lambda s=server, o=old: restarted_pid(node, s, o),
                f"up restarting {server}",
                TIMEOUT,
            )
            assert new != old
            os.kill(new, 0)  # alive
            wait_for(lambda s=server, u=url: serving(s, u), f"{server} serving again", TIMEOUT)
    finally:
        stopped = node.stop()
    assert stopped == 0, node.text
