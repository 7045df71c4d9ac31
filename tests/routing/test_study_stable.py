"""Study completeness: STUDY_STABLE once per study, an update for late instances, and
``per = "study"`` deliveries released by it (docs/routing.md, "Study completeness").

The store-level tests give the clock explicitly; the worker test runs an edge, a routing
worker (router, study watch, sender), a task subscribed to the event, and a pynetdicom SCP.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from delivery_support import (
    counting_scp,
    destination_toml,
    routing_worker,
    states,
    store_datasets,
    write_config,
)
from dicombus.bus.redis_server import EmbeddedRedis
from dicombus.routing.delivery_store import DeliveryRequest, DeliveryStore, State
from dicombus.routing.route_events import STUDY_STABLE
from dicombus_workers.routing import wakeup
from dicombus_workers.routing.wakeup import WakeListener, wake_senders
from helpers import small_dataset
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from study_tasks import STUDIES
from worker_support import embedded_redis, running_edge, wait_for

pytestmark = pytest.mark.interop

QUIET = 10.0


def request(uid: str, study: str, per: str = "study", **context: object) -> DeliveryRequest:
    return DeliveryRequest(
        sop_instance_uid=uid,
        destination="pacs",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax="1.2.840.10008.1.2.1",
        stored_path=f"/data/{uid}.dcm",
        event_id="01M82N4HHFD4QEZNWZK13EGMYD",
        context={"per": per, "study_instance_uid": study, **context},
    )


def test_store_fires_a_quiet_study_once_and_again_after_a_late_series(tmp_path: Path) -> None:
    db = DeliveryStore(tmp_path / "routing.sqlite3")
    for number in (1, 2):
        assert db.saw_instance("1.9", "1.9.1", f"1.9.1.{number}", {"edge": "e"}, now=100.0)
        db.add([request(f"1.9.1.{number}", "1.9")], now=100.0)
    db.add([request("2.1", "1.9", per="instance")], now=100.0)
    assert db.saw_instance("1.9", "1.9.1", "1.9.1.1", {}, now=105.0) is False  # a replay
    assert states(db, "pacs") == {State.HELD: 2, State.WAITING: 1}
    assert db.quiet_studies(QUIET, now=109.0) == []

    (study,) = db.quiet_studies(QUIET, now=110.0)
    assert (study.instances, study.series, study.fired, study.last_seen) == (2, 1, 0, 100.0)
    assert db.study_stable(study, now=110.0) == 2
    # A second router that read the same quiet study marks nothing: it fired once.
    assert DeliveryStore(tmp_path / "routing.sqlite3").study_stable(study, now=110.5) == 0
    assert db.study("1.9") == replace(study, stable_at=110.0, fired=1)
    assert states(db, "pacs") == {State.WAITING: 3}
    assert db.quiet_studies(QUIET, now=1000.0) == []  # fired once
    # A request arriving after the study is stable (its router task lagged) goes at once.
    db.add([request("1.9.1.9", "1.9")], now=111.0)
    assert states(db, "pacs")[State.HELD] == 0

    assert db.saw_instance("1.9", "1.9.2", "1.9.2.1", {}, now=200.0)  # a late series
    db.add([request("1.9.2.1", "1.9")], now=200.0)
    assert states(db, "pacs")[State.HELD] == 1
    (late,) = db.quiet_studies(QUIET, now=210.0)
    assert (late.instances, late.series, late.fired) == (3, 2, 1)
    # Restart-safe: a second store on the file (a restarted router) sees the same.
    assert DeliveryStore(tmp_path / "routing.sqlite3").quiet_studies(QUIET, now=210.0) == [late]
    assert db.study_stable(late, now=210.0) == 1
    assert db.quiet_studies(QUIET, now=1000.0) == []


def test_a_study_marked_stable_after_a_new_instance_is_not_marked(tmp_path: Path) -> None:
    db = DeliveryStore(tmp_path / "routing.sqlite3")
    db.saw_instance("1.9", "1.9.1", "1.9.1.1", {}, now=100.0)
    (study,) = db.quiet_studies(QUIET, now=110.0)
    db.saw_instance("1.9", "1.9.1", "1.9.1.2", {}, now=110.5)  # arrived while it fired
    assert db.study_stable(study, now=111.0) == 0
    assert db.quiet_studies(QUIET, now=121.0)[0].fired == 0


def test_a_rule_s_own_quiet_time_holds_its_study_or_series_until_quiet(tmp_path: Path) -> None:
    db = DeliveryStore(tmp_path / "routing.sqlite3")
    study = {"per": "study", "unit_uid": "1.9", "quiet_seconds": 5.0}
    by_series = {"per": "series", "quiet_seconds": 2.0}
    db.saw_instance("1.9", "1.9.1", "1.9.1.1", {}, now=100.0)
    db.saw_instance("1.9", "1.9.2", "1.9.2.1", {}, now=101.0)
    db.add([request("1.9.1.1", "1.9", **study)], now=100.0)
    db.add([request("1.9.1.1s", "1.9", **by_series, unit_uid="1.9.1")], now=100.0)
    db.add([request("1.9.2.1s", "1.9", **by_series, unit_uid="1.9.2")], now=101.0)
    db.add([request("1.9.1.1g", "1.9")], now=100.0)  # per study, the global quiet time
    assert states(db, "pacs") == {State.HELD: 4}
    # The next deadlines: series 1.9.1 at 102, 1.9.2 at 103, the study at 106, and
    # STUDY_STABLE (60 s quiet) at 161.
    rule_quiets = {"study": (5.0,), "series": (2.0,)}
    assert db.next_quiet(60.0, rule_quiets, now=100.5) == 102.0
    assert db.next_quiet(60.0, rule_quiets, now=102.0) == 103.0
    assert db.next_quiet(60.0, rule_quiets, now=103.0) == 106.0
    assert db.next_quiet(60.0, rule_quiets, now=106.0) == 161.0
    assert db.next_quiet(60.0, {}, now=100.5) == 161.0

    assert db.release_quiet(now=101.9) == 0
    assert db.release_quiet(now=102.0) == 1  # series 1.9.1, not 1.9.2 (newer)
    assert db.release_quiet(now=103.0) == 1
    # A request that arrives after its unit is quiet (its router task lagged) goes at once;
    # one of a rule with a longer quiet time for the same series waits for it.
    db.add([request("1.9.2.2s", "1.9", **by_series, unit_uid="1.9.2")], now=104.0)
    longer = request("1.9.2.2s", "1.9", per="series", quiet_seconds=30.0, unit_uid="1.9.2")
    db.add([replace(longer, destination="archive")], now=104.0)
    assert states(db, "archive") == {State.HELD: 1}
    assert states(db, "pacs") == {State.HELD: 2, State.WAITING: 3}
    assert db.release_quiet(now=106.0) == 1
    assert db.release_quiet(now=130.9) == 0
    assert db.release_quiet(now=131.0) == 1  # the longer quiet time
    # STUDY_STABLE releases only the per-study rows without a quiet time of their own.
    (quiet,) = db.quiet_studies(60.0, now=161.0)
    assert db.study_stable(quiet, now=161.0) == 1
    assert states(db, "pacs") == {State.WAITING: 5}

    # A late instance holds its new deliveries again, until quiet again.
    db.saw_instance("1.9", "1.9.1", "1.9.1.2", {}, now=200.0)
    db.add([request("1.9.1.2", "1.9", **study)], now=200.0)
    assert db.release_quiet(now=204.0) == 0
    assert db.next_quiet(60.0, rule_quiets, now=204.0) == 205.0
    assert db.release_quiet(now=205.0) == 1


FRESH_STORES = 40
THREADS_AT_FIRST_USE = 6


def test_threads_that_first_use_a_new_store_together_all_get_it(tmp_path: Path) -> None:
    """A worker's threads may each open their connection to a store that does not exist
    yet at the same moment: every one gets a working store, none "database is locked"
    (about one store in fifteen failed so before the switch to WAL was tried again and the
    schema made in a write transaction: dicombus.sqlite_setup)."""
    failures: list[Exception] = []
    for number in range(FRESH_STORES):
        db = DeliveryStore(tmp_path / f"store-{number}" / "routing.sqlite3")
        start = threading.Barrier(THREADS_AT_FIRST_USE)

        def first_use(db: DeliveryStore = db, start: threading.Barrier = start) -> None:
            start.wait(30)
            try:
                db.claim("pacs", 7)
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=first_use) for _ in range(THREADS_AT_FIRST_USE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        db.close()
    assert failures == []


def test_threads_of_one_worker_share_a_store_each_in_its_own_transaction(
    tmp_path: Path,
) -> None:
    """The deliverer task records rows while a sender claims and settles them, in the same
    process: once, the task's BEGIN inside the sender's transaction failed the batch and
    left the sender's claimed rows stuck."""
    db = DeliveryStore(tmp_path / "routing.sqlite3")
    count, failures, settled = 400, [], []

    def deliverer() -> None:
        try:
            for number in range(count):
                db.add([request(f"1.9.{number}", "1.9", per="instance")])
        except Exception as exc:
            failures.append(exc)

    def sender() -> None:
        try:
            while len(settled) < count and not failures:
                for delivery in db.claim("pacs", 7):
                    db.acknowledge(delivery, 0)
                    settled.append(delivery.sop_instance_uid)
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=f, daemon=True) for f in (deliverer, sender)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert sorted(settled) == sorted(f"1.9.{number}" for number in range(count))
    assert states(db, "pacs") == {State.ACKNOWLEDGED: count}
    db.close()


def test_a_release_wakes_the_senders_of_other_processes(tmp_path: Path) -> None:
    woken = threading.Event()
    with embedded_redis(tmp_path / "redis") as url:
        listener = WakeListener(url, woken.set)
        listener.start()
        try:
            wait_for(woken.is_set, "the look at subscribing")
            woken.clear()
            wake_senders(url)
            wait_for(woken.is_set, "the wake-up")
        finally:
            listener.stop()


def test_a_redis_outage_is_logged_once_and_the_listener_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis away: the listener tries again with a growing wait and says so once, not once
    a second; back, it listens again and a release wakes it."""
    caplog.set_level(logging.INFO, logger=wakeup.LOGGER.name)
    monkeypatch.setattr(wakeup, "LISTEN", 0.05)
    monkeypatch.setattr(wakeup, "RECONNECT_CAP", 0.2)
    attempts: list[str] = []
    real_client = wakeup.broker_client

    def counted(url: str, **options: Any) -> Any:
        attempts.append(url)
        return real_client(url, **options)

    monkeypatch.setattr(wakeup, "broker_client", counted)
    woken = threading.Event()
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    listener = WakeListener(url, woken.set)
    listener.start()
    try:
        wait_for(woken.is_set, "the look at subscribing")
        server.kill()
        wait_for(lambda: len(attempts) >= 5, "several attempts while Redis is away")
        lost = [r for r in caplog.records if "routing wake-ups" in r.getMessage()]
        assert [r.levelno for r in lost] == [logging.WARNING]
        server.start()  # the same port
        wait_for(lambda: "listening again" in caplog.text, "the listener to come back")
        woken.clear()
        wake_senders(url)
        wait_for(woken.is_set, "the wake-up")
    finally:
        listener.stop()
        server.stop()


def series(study: str, count: int) -> list[Dataset]:
    uid = generate_uid()
    datasets = []
    for number in range(count):
        ds = small_dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, uid, number + 1
        datasets.append(ds)
    return datasets


def events(client: redis.Redis) -> list[dict[str, object]]:
    return [json.loads(line) for line in client.lrange(STUDIES, 0, -1)]


def test_per_study_route_waits_for_study_stable_then_one_association(tmp_path: Path) -> None:
    study = generate_uid()
    first, late = series(study, 3), series(study, 2)
    with (
        counting_scp() as pacs,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as edge,
    ):
        config = write_config(
            tmp_path,
            destination_toml("pacs", "PYSCP", pacs.port),
            ["pacs"],
            routing="study_quiet_seconds = 2\n",
            rule='per = "study"\n',
        )
        worker = routing_worker(
            url,
            tmp_path / "worker",
            config,
            ["dicombus.route.pacs", "test.study"],
            tasks=("study_tasks",),
        )
        db = DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
        client = redis.Redis.from_url(url)
        try:
            store_datasets(edge.address[1], first)
            wait_for(lambda: len(events(client)) == 1, "STUDY_STABLE")
            wait_for(lambda: states(db, "pacs")[State.ACKNOWLEDGED] == 3, "3 acknowledged")
            stable = db.study(study)
            assert stable is not None and stable.stable_at is not None
            # Not before: nothing was sent until the study was stable, then all in one go.
            assert all(d.updated >= stable.stable_at for d in db.deliveries())
            assert len(pacs.associations) == 1

            store_datasets(edge.address[1], late)
            wait_for(lambda: len(events(client)) == 2, "the update")
            wait_for(lambda: states(db, "pacs")[State.ACKNOWLEDGED] == 5, "5 acknowledged")
        finally:
            worker.stop()
        fired, update = events(client)
        assert fired["type"] == update["type"] == STUDY_STABLE
        assert fired["study_instance_uid"] == update["study_instance_uid"] == study
        assert (fired["update"], fired["instances"], fired["series"]) == (False, 3, 1)
        assert (update["update"], update["instances"], update["series"]) == (True, 5, 2)
        assert fired["id"] != update["id"]
        assert len(pacs.associations) == 2
        assert pacs.received == {str(ds.SOPInstanceUID): 1 for ds in first + late}


def test_a_series_rule_with_its_own_quiet_time_delivers_before_study_stable(
    tmp_path: Path,
) -> None:
    study = generate_uid()
    first, second = series(study, 2), series(study, 2)
    with (
        counting_scp() as ai,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as edge,
    ):
        config = write_config(
            tmp_path,
            destination_toml("ai", "PYSCP", ai.port),
            ["ai"],
            routing="study_quiet_seconds = 3600\n",
            rule='per = "series"\nquiet_seconds = 3\n',
        )
        worker = routing_worker(
            url,
            tmp_path / "worker",
            config,
            ["dicombus.route.ai", "test.study"],
            tasks=("study_tasks",),
        )
        db = DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
        client = redis.Redis.from_url(url)
        try:
            store_datasets(edge.address[1], first)
            wait_for(lambda: states(db, "ai")[State.ACKNOWLEDGED] == 2, "the first series")
            store_datasets(edge.address[1], second)
            wait_for(lambda: states(db, "ai")[State.ACKNOWLEDGED] == 4, "the second series")
        finally:
            worker.stop()
        # Each series held until quiet, then in one association; the study (an hour's
        # quiet time) is not stable, and its event did not fire.
        assert len(ai.associations) == 2
        assert ai.received == {str(ds.SOPInstanceUID): 1 for ds in first + second}
        assert events(client) == []
        stable = db.study(study)
        assert stable is not None and stable.fired == 0
