"""The publisher's messages in a real Redis (EmbeddedRedis), read back with kombu consumers.

One Celery protocol-2 task message per subscribed task, built by Celery's own
code, with a deterministic task id; batches keep each association's order;
unsubscribed events are never serialized; a real Celery app runs the message.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.worker.request import Request
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.bus.sender import task_id_for
from loopback import wait_until
from publisher_support import (
    ECHO,
    STORE,
    Association,
    assert_in_sequence,
    consume,
    envelope_of,
    pending,
    running_publisher,
    store_data,
    subscription,
    wait_published,
)


def test_one_celery_task_message_per_subscribed_task(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    subs = [
        subscription("tests.audit", "audit", STORE, ECHO),
        subscription("tests.count", "count", STORE),
        subscription("tests.accepted", "accepted", "EVT_ACCEPTED"),
    ]
    store, echo = pending(STORE), pending(ECHO)
    with running_publisher(redis_server.url, tmp_path, subs) as publisher:
        publisher.submit(store)
        publisher.submit(echo)
        wait_published(publisher, 3)
        assert publisher.metrics()["published"] == 3

    audit = consume(redis_server.url, "audit", 2)
    [count] = consume(redis_server.url, "count", 1)
    assert [envelope_of(m)["id"] for m in audit] == [store.id, echo.id]
    assert envelope_of(count)["id"] == store.id

    message = audit[0]
    # Celery protocol 2: the task name and id in the headers, [args, kwargs, embed] as body.
    assert message.headers["task"] == "tests.audit"
    assert message.headers["id"] == task_id_for(store.id, "tests.audit")
    assert message.headers["root_id"] == message.headers["id"]
    assert message.headers["lang"] == "py"
    assert message.headers["argsrepr"] == f"<EVT_C_STORE {store.id}>"
    assert message.properties["correlation_id"] == message.headers["id"]
    assert message.content_type == "application/json"
    args, kwargs, embed = message.decode()
    assert kwargs == {}
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    [envelope] = args
    assert envelope == store.to_envelope()
    assert count.headers["id"] == task_id_for(store.id, "tests.count")
    assert count.headers["id"] != message.headers["id"]


def test_task_ids_are_deterministic_per_event_and_task() -> None:
    first = task_id_for("01J0000000000000000000000A", "tests.audit")
    assert first == task_id_for("01J0000000000000000000000A", "tests.audit")
    assert first != task_id_for("01J0000000000000000000000A", "tests.count")
    assert first != task_id_for("01J0000000000000000000000B", "tests.audit")
    assert uuid.UUID(first).version == 5


def test_a_real_celery_app_runs_the_message(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    """Celery's own worker-side Request parses the message and runs the task with the
    envelope as its one argument."""
    event = pending()
    with running_publisher(
        redis_server.url, tmp_path, [subscription("tests.audit", "audit")]
    ) as publisher:
        publisher.submit(event)
        wait_published(publisher, 1)
    [message] = consume(redis_server.url, "audit", 1)

    app = Celery("tests", set_as_current=False)
    app.conf.accept_content = ["json"]
    received: list[dict[str, Any]] = []

    @app.task(name="tests.audit", shared=False)
    def audit(envelope: dict[str, Any]) -> str:
        received.append(envelope)
        return str(envelope["id"])

    request = Request(message, app=app, task=app.tasks["tests.audit"])
    assert request.id == task_id_for(event.id, "tests.audit")
    assert request.execute() == event.id
    assert received == [event.to_envelope()]


def test_batches_keep_each_association_in_order(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Eight association threads submit at once; the queue holds every event once,
    each association's in sequence order."""
    threads, per_thread = 8, 300
    with running_publisher(
        redis_server.url, tmp_path, [subscription("tests.audit", "audit")], batch_size=64
    ) as publisher:

        def associate() -> None:
            association = Association()
            for _ in range(per_thread):
                publisher.submit(association.next())

        workers = [threading.Thread(target=associate) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=10)
        total = threads * per_thread
        wait_published(publisher, total)
        metrics = publisher.metrics()
    messages = consume(redis_server.url, "audit", total)
    assert len({m.headers["id"] for m in messages}) == total
    assert_in_sequence(messages)
    assert metrics["submitted"] == total
    assert metrics["queued"] == 0
    assert metrics["lag_seconds"] == 0


def test_an_event_nobody_subscribes_to_is_not_serialized(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    built: list[str] = []

    def build_data() -> dict[str, Any]:
        built.append("built")
        return store_data()

    with running_publisher(
        redis_server.url, tmp_path, [subscription("tests.audit", "audit", STORE)]
    ) as publisher:
        publisher.submit(pending(ECHO, build_data=build_data))
        publisher.submit(pending(STORE))
        wait_published(publisher, 1)
        metrics = publisher.metrics()
    assert built == []
    assert metrics["unrouted"] == 1
    assert metrics["published"] == 1


def test_an_event_that_cannot_be_serialized_is_logged_and_counted(
    redis_server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise FileNotFoundError("the stored file is gone")

    bad, good = pending(build_data=broken), pending()
    with running_publisher(
        redis_server.url, tmp_path, [subscription("tests.audit", "audit")]
    ) as publisher:
        with caplog.at_level(logging.ERROR, logger="dicombus.bus.publisher"):
            publisher.submit(bad)
            publisher.submit(good)
            wait_published(publisher, 1)
        metrics = publisher.metrics()
    assert metrics["failed"] == 1
    assert bad.id in caplog.text
    [message] = consume(redis_server.url, "audit", 1)
    assert envelope_of(message)["id"] == good.id


def test_metrics_are_logged_periodically_at_debug(
    redis_server: EmbeddedRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger="dicombus.bus.publisher"),
        running_publisher(
            redis_server.url,
            tmp_path,
            [subscription("tests.audit", "audit")],
            metrics_interval=0.02,
        ) as publisher,
    ):
        publisher.submit(pending())
        wait_published(publisher, 1)
        wait_until(lambda: "'published': 1," in caplog.text)
    assert "publisher metrics: {'submitted': 1," in caplog.text
