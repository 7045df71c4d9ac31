"""compose/'s Prometheus files and dashboard against the real tools: Debian's promtool checks
the config and the rules, every metric name they use exists in `dicombus metrics`, and a real
Prometheus server scrapes a running node (edge + built-in workers) that receives instances,
until its PromQL answers equal what the audit store holds."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dicombus.bus.redis_server import EmbeddedRedis
from helpers import free_port, require_tool, wait_for_port
from up_support import audited
from worker_support import running_edge, running_worker, store, wait_for

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
CONFIG = COMPOSE / "prometheus" / "prometheus.yml"
RULES = COMPOSE / "prometheus" / "alerts.yml"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "dicombus.json"
SCRAPE_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# The metrics Prometheus itself adds to every target; not ours to serve.
PROMETHEUS_OWN = {"up"}


def test_promtool_accepts_the_scrape_config_and_the_alert_rules() -> None:
    promtool = require_tool("promtool")
    for command in (["check", "config", str(CONFIG)], ["check", "rules", str(RULES)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def used_metric_names() -> set[str]:
    """Every dicombus_* name in the dashboard's and the rules' expressions."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions += re.findall(r"expr: (.+)", RULES.read_text())
    return {name for e in expressions for name in re.findall(r"\bdicombus_[a-z_]+\b", e)}


def served_sample_names(exposition: str) -> set[str]:
    """The sample names a scrape can hold, from the # TYPE lines (also of empty families)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names |= (
            {name + s for s in ("_bucket", "_sum", "_count")} if kind == "histogram" else {name}
        )
    return names


@contextmanager
def metrics_server(redis_url: str) -> Iterator[int]:
    """`dicombus metrics` on a free loopback port, stopped by PID (SIGINT: exits 0)."""
    port = free_port()
    env = {**os.environ, "DICOMBUS_BROKER_URL": redis_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "dicombus.cli.main", "metrics", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
            raise
        assert status == 0


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_every_metric_the_dashboard_and_the_rules_use_is_served(tmp_path: Path) -> None:
    used = used_metric_names() - PROMETHEUS_OWN
    assert len(used) > 15  # the parse found the expressions
    with (
        EmbeddedRedis(tmp_path / "redis") as redis_server,
        metrics_server(redis_server.url) as port,
    ):
        served = served_sample_names(fetch(f"http://127.0.0.1:{port}/metrics"))
    assert used <= served, f"used but not served: {sorted(used - served)}"


@contextmanager
def prometheus(folder: Path, target_port: int) -> Iterator[int]:
    """A real Prometheus server scraping ``target_port`` every second, stopped by PID."""
    binary = require_tool("prometheus")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: dicombus\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(STOP_TIMEOUT)
        log.close()


def promql(port: int, query: str) -> float | None:
    """The single value of an instant query, or None while it has none."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    answer = json.loads(fetch(url))
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scraping_a_running_node_counts_what_the_audit_store_holds(
    tmp_path: Path,
) -> None:
    # The built-in tasks on their default subscriptions: the C-STORE durations come from
    # the outcomes themselves.
    audit_db = tmp_path / "worker" / "audit.sqlite3"
    with (
        EmbeddedRedis(tmp_path / "redis") as redis_server,
        running_worker(
            redis_server.url,
            tmp_path / "worker",
            builtin=True,
            include=(),
        ),
        running_edge(redis_server.url, tmp_path / "edge") as edge,
        metrics_server(redis_server.url) as metrics_port,
        prometheus(tmp_path / "prometheus", metrics_port) as port,
    ):
        edge_port = edge.address[1]
        uids = store(edge_port, 3, calling="CT1") + store(edge_port, 2, calling="MR1")
        wait_for(lambda: len(audited(audit_db, "EVT_C_STORE")) == len(uids), "the audit rows")
        stored = len(audited(audit_db, "EVT_C_STORE"))
        accepted = len(audited(audit_db, "EVT_ACCEPTED"))
        expected = {
            "sum(dicombus_cstore_instances_total)": stored,
            'sum(dicombus_associations_total{result="accepted"})': accepted,
            'sum(dicombus_associations_total{calling_ae="CT1"})': 1,
            "sum(dicombus_cstore_duration_seconds_count)": stored,
            'sum(dicombus_events_total{type="EVT_C_STORE"})': stored,
            'dicombus_edge_up{edge="edge-test"}': 1,
            'dicombus_outbox_messages{edge="edge-test"}': 0,
        }
        for query, value in expected.items():
            wait_for(lambda q=query, v=value: promql(port, q) == v, query, SCRAPE_TIMEOUT)
