"""Task messages from the template (TaskMessageBuilder) are what Celery's own code builds.

The builder makes Celery's ``as_task_v2`` message once, as a template, and
per message replaces the task, the ids and ``argsrepr``; the envelope is
serialized once per event (orjson, dicombus.bus.json_text). These tests hold
each message against ``as_task_v2`` and the standard ``json`` module.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from dicombus.bus.dicom_json import stored_file_json
from dicombus.bus.json_text import dumps
from dicombus.bus.sender import TaskMessageBuilder, task_id_for
from helpers import small_dataset, write_part10
from publisher_support import pending, store_data, subscription
from pydicom.dataset import Dataset
from pydicom.valuerep import IS, DSfloat

ORIGIN = "dicombus-edge@tests"


def celery_message(envelope: dict[str, Any], task: str) -> Any:
    """The message Celery's own code builds for ``envelope`` to ``task``."""
    app = Celery("reference", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    event_id = envelope["id"]
    return app.amqp.as_task_v2(
        task_id_for(event_id, task),
        task,
        args=(envelope,),
        kwargs={},
        argsrepr=f"<{envelope['type']} {event_id}>",
        kwargsrepr="{}",
        origin=ORIGIN,
    )


def report_envelope(tmp_path: Path) -> dict[str, Any]:
    """A C-STORE envelope whose data holds the DICOM JSON of a stored instance with
    sequences, non-ASCII names and numbers of several kinds."""
    ds = small_dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.ImagePositionPatient = [-1.5, 2, 3.25e-7]
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.ReferencedFrameNumber = [1, 2]
    ds.ReferencedImageSequence = [item]
    header = stored_file_json(write_part10(ds, tmp_path / "report.dcm"))
    assert header is not None
    data = {**store_data(7), "dataset": header, "note": "naïve ✓", "ratio": 0.1 + 0.2}
    return pending(build_data=lambda: data).to_envelope()


def test_each_message_is_what_celery_builds(tmp_path: Path) -> None:
    envelope = report_envelope(tmp_path)
    subs = [subscription("tests.audit", "audit"), subscription("tests.count", "count")]
    builder = TaskMessageBuilder(ORIGIN)
    messages = builder.build_all(envelope, subs, order=3, created=1.5)
    assert [m.task for m in messages] == ["tests.audit", "tests.count"]
    for message, sub in zip(messages, subs, strict=True):
        reference = celery_message(envelope, sub.task)
        assert message.headers == reference.headers
        assert list(message.headers) == list(reference.headers)  # the same order, too
        assert message.task_id == reference.headers["id"] == reference.properties["correlation_id"]
        assert message.queue == sub.queue
        assert (message.order, message.created) == (3, 1.5)
        # The body parses to what Celery's body serializes to.
        assert json.loads(message.body) == json.loads(json.dumps(reference.body))
    assert builder.build(envelope, subs[1], order=3, created=1.5) == messages[1]


def test_the_json_text_parses_to_what_the_json_module_writes(tmp_path: Path) -> None:
    envelope = report_envelope(tmp_path)
    envelope["data"].update(
        pydicom_numbers=[DSfloat("1.25"), IS("12")], counts={7: "int keys become strings"}
    )
    text = dumps(envelope)
    assert json.loads(text) == json.loads(json.dumps(envelope))
    assert "Müller".encode() in text  # UTF-8, not \u escapes


def test_a_number_json_cannot_hold_is_null() -> None:
    """RFC 8259 6: no NaN or Infinity in JSON (the json module would write NaN, which
    most parsers refuse)."""
    assert json.loads(dumps({"a": float("nan"), "b": float("inf")})) == {"a": None, "b": None}


@pytest.mark.parametrize("value", [object(), datetime.datetime.now(datetime.UTC), {1, 2}, b"bytes"])
def test_what_is_not_json_is_an_error(value: object) -> None:
    with pytest.raises(TypeError):
        dumps({"data": value})
