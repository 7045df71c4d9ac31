"""The worker side without processes: EventRecord, on_event, idempotency, the Celery settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dicombus import evt
from dicombus.bus.dicom_json import file_bulk_data_uri, to_dicom_json
from dicombus_workers import EventRecord, app, on_event
from dicombus_workers.app import safe_settings
from dicombus_workers.idempotency import first_time, idempotent, is_done
from dicombus_workers.on_event import subscriptions
from helpers import small_dataset, write_part10
from worker_support import embedded_redis


def _envelope(**data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "01JD0000000000000000000001",
        "source": "dicombus://edge%201/EDGE",
        "type": "EVT_C_STORE",
        "time": "2026-11-22T21:00:00.123456Z",
        "subject": "01JD00000000000000000000AS",
        "datacontenttype": "application/json",
        "sequence": 7,
        "schemaversion": "1",
        "data": {
            "association": {
                "calling_ae_title": "CT1",
                "called_ae_title": "EDGE",
                "peer_address": "10.0.0.5",
                "peer_port": 40000,
                "local_port": 11112,
                "tls_peer_subject": None,
                "role": "acceptor",
            },
            **data,
        },
    }


def test_record_reads_like_a_pynetdicom_handler_event() -> None:
    ds = small_dataset()
    record = EventRecord(
        _envelope(
            status=0,
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            transfer_syntax="1.2.840.10008.1.2.1",
            dataset=to_dicom_json(ds, bulk_data_uri="file:///stored.dcm"),
        )
    )
    assert record.event == evt.EVT_C_STORE and record.event.name == "EVT_C_STORE"
    assert (record.id, record.sequence, record.edge) == (
        "01JD0000000000000000000001",
        7,
        "edge 1",
    )
    assert record.timestamp.isoformat() == "2026-11-22T21:00:00.123456+00:00"
    assert record.assoc.requestor.ae_title == "CT1"
    assert (record.assoc.requestor.address, record.assoc.requestor.port) == ("10.0.0.5", 40000)
    assert (record.assoc.acceptor.ae_title, record.assoc.acceptor.port) == ("EDGE", 11112)
    assert record.assoc.is_acceptor and record.assoc.id == record.subject
    assert record.status == 0
    assert record.dataset is not None
    assert record.dataset.PatientID == ds.PatientID
    assert record.dataset.SOPInstanceUID == ds.SOPInstanceUID
    assert record.file_meta is not None
    assert record.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_bulk_data_is_a_uri_until_asked_for(tmp_path: Path) -> None:
    ds = small_dataset()
    stored = write_part10(ds, tmp_path / "stored.dcm")
    model = to_dicom_json(ds, bulk_data_uri=lambda tag: file_bulk_data_uri(stored, tag))
    record = EventRecord(_envelope(dataset=model))
    assert record.dataset is not None and not record.dataset.PixelData
    full = record.dataset_with_bulk_data()
    assert full is not None and full.PixelData == ds.PixelData


def test_record_without_a_dataset_or_raw_bytes() -> None:
    record = EventRecord(_envelope())
    assert record.dataset is None and record.identifier is None and record.raw is None
    assert record.status is None and record.file_meta is None


def test_on_event_makes_a_task_and_a_subscription() -> None:
    @on_event(evt.EVT_C_STORE, "EVT_ACCEPTED", queue="test.unit", name="test.unit.seen")
    def seen(event: EventRecord) -> str:
        return f"{event.type} {event.assoc.requestor.ae_title}"

    assert seen.name == "test.unit.seen" and "test.unit.seen" in app.tasks
    assert app.amqp.router.route({}, "test.unit.seen")["queue"].name == "test.unit"
    assert seen.run(_envelope()) == "EVT_C_STORE CT1"
    [sub] = [s for s in subscriptions(["test.unit"])]
    assert (sub.task, sub.queue, sub.raw) == ("test.unit.seen", "test.unit", False)
    assert sub.event_types == {"EVT_C_STORE", "EVT_ACCEPTED"}


def test_on_event_refuses_unknown_event_types_with_a_hint() -> None:
    with pytest.raises(ValueError, match="did you mean EVT_C_STORE"):
        on_event("EVT_C_STOR")
    with pytest.raises(ValueError, match="at least one"):
        on_event()


def test_worker_settings_are_the_safe_ones() -> None:
    settings = safe_settings(visibility_timeout=600, restore_interval=2)
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"]
    assert settings["accept_content"] == ["json"] and settings["task_serializer"] == "json"
    assert settings["worker_prefetch_multiplier"] == 1
    assert settings["task_time_limit"] < 600
    options = settings["broker_transport_options"]
    assert options["visibility_timeout"] == 600
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (2, 1)
    assert app.conf.task_acks_late and app.conf.accept_content == ["json"]


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """An embedded Redis that the app's idempotency helpers use."""
    with embedded_redis(tmp_path) as url:
        monkeypatch.setattr(app.conf, "broker_url", url)
        client = redis.Redis.from_url(url)
        yield client
        client.close()


def test_first_time_is_true_once_per_scope(broker: redis.Redis) -> None:
    assert first_time("E1", "mail")
    assert not first_time("E1", "mail")
    assert first_time("E1", "sms")
    assert 0 < broker.ttl("dicombus:idem:mail:claimed:E1") <= 7 * 24 * 3600


def test_idempotent_skips_after_a_finished_run_only(broker: redis.Redis) -> None:
    runs: list[str] = []

    @idempotent("unit")
    def effect(record: EventRecord) -> None:
        runs.append(record.id)
        if len(runs) == 1:
            raise RuntimeError("killed half-way")

    record = EventRecord(_envelope())
    with pytest.raises(RuntimeError):
        effect(record)
    assert not is_done(record.id, "unit")
    effect(record)
    effect(record)
    assert runs == [record.id, record.id]
    assert is_done(record.id, "unit", client=broker)


def test_an_idempotent_bound_task_runs_once_per_event(broker: redis.Redis) -> None:
    calls: list[tuple[str, str]] = []

    @on_event("EVT_C_ECHO", name="test.unit.once", queue="test.unit", idempotent=True, bind=True)
    def once(task: Any, event: EventRecord) -> None:
        calls.append((task.name, event.id))

    once.run(_envelope())
    once.run(_envelope())
    assert calls == [("test.unit.once", "01JD0000000000000000000001")]
