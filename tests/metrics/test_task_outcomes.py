"""``dicombus_tasks_total{task, outcome}`` for every event task, from a real ``dicombus
worker`` on events of a real edge, read back as Prometheus scrapes it.

Each task of ``outcome_tasks`` runs on one EVT_C_ECHO: a task that fails once then succeeds
counts one ``retried`` and one ``succeeded``, one that gives up counts one ``dead_letter``
(or ``failed`` without dead letters), for single-message and batch tasks alike. Before,
only the built-in counter task's successes were counted.
"""

from __future__ import annotations

from pathlib import Path

import redis
from dicombus.metrics.collector import registry_for
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from worker_support import TESTS, echo, embedded_redis, running_edge, running_worker, wait_for

EXPECTED = {
    ("test.flaky", "retried"): 1.0,
    ("test.flaky", "succeeded"): 1.0,
    ("test.flaky_batch", "retried"): 1.0,
    ("test.flaky_batch", "succeeded"): 1.0,
    ("test.doomed", "dead_letter"): 1.0,
    ("test.doomed_batch", "dead_letter"): 1.0,
    ("test.quiet", "failed"): 1.0,
}
TIMEOUT = 30.0


def tasks_total(client: redis.Redis) -> dict[tuple[str, str], float]:
    """The ``dicombus_tasks_total`` samples of a scrape, by (task, outcome)."""
    exposition = generate_latest(registry_for(client)).decode()
    return {
        (sample.labels["task"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "dicombus_tasks_total"
    }


def test_every_event_task_counts_how_its_runs_ended(tmp_path: Path) -> None:
    with (
        embedded_redis(tmp_path / "redis") as url,
        running_worker(
            url, tmp_path / "worker", include=("outcome_tasks",), tasks_folder=TESTS / "metrics"
        ),
        running_edge(url, tmp_path / "edge") as edge,
    ):
        echo(edge.address[1])
        client = redis.Redis.from_url(url)
        try:
            wait_for(lambda: tasks_total(client) == EXPECTED, "every outcome counted", TIMEOUT)
        except AssertionError:
            raise AssertionError(f"counted {tasks_total(client)}, expected {EXPECTED}") from None
        finally:
            client.close()
