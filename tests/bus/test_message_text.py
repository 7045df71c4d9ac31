"""The publisher's hand-made text is what the general way writes, byte for byte.

Task ids (uuid5), delivery tags (uuid4), the kombu document around a message and
event times are made without the objects the standard library would build for
them, and JSON text without orjson's slower option for non-string keys where no
key needs it; for any input Hypothesis draws, the text is the same.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from dicombus.bus.envelope import format_time
from dicombus.bus.json_text import dumps
from dicombus.bus.outbox import OutboxMessage
from dicombus.bus.redis_message import delivery_tags, redis_payload, uuid_text
from dicombus.bus.sender import TASK_ID_NAMESPACE, task_id_for
from hypothesis import given
from hypothesis import strategies as st


@given(st.text(), st.text())
def test_a_task_id_is_uuid5_of_the_event_and_task(event_id: str, task: str) -> None:
    assert task_id_for(event_id, task) == str(uuid.uuid5(TASK_ID_NAMESPACE, f"{event_id}/{task}"))


@given(st.binary(min_size=16, max_size=16), st.sampled_from([4, 5]))
def test_uuid_text_is_the_uuid_modules(octets: bytes, version: int) -> None:
    assert uuid_text(octets, version) == str(uuid.UUID(bytes=octets, version=version))


def test_delivery_tags_are_new_random_uuids() -> None:
    tags = list(delivery_tags(50))
    assert len(set(tags)) == 50
    for tag in tags:
        parsed = uuid.UUID(tag)
        assert (str(parsed), parsed.version, parsed.variant) == (tag, 4, uuid.RFC_4122)


_JSON_TEXT = st.text(max_size=20)
_HEADER_VALUES = st.one_of(
    st.none(), st.integers(-(2**40), 2**40), _JSON_TEXT, st.lists(_JSON_TEXT)
)


@given(
    st.text(max_size=300),
    st.dictionaries(_JSON_TEXT, _HEADER_VALUES, max_size=6),
    _JSON_TEXT,
    _JSON_TEXT,
)
def test_the_document_is_the_one_orjson_writes_of_its_dict(
    body: str, headers: dict[str, Any], task_id: str, queue: str
) -> None:
    message = OutboxMessage(
        event_id="01J0000000000000000000000A",
        task="tests.audit",
        queue=queue,
        task_id=task_id,
        body=body,
        headers=headers,
        order=1,
        created=0.0,
    )
    [tag] = delivery_tags(1)
    general = {
        "body": base64.b64encode(body.encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": tag,
        },
    }
    payload = redis_payload(message, tag)
    assert payload == orjson.dumps(general)
    assert json.loads(payload) == general


@given(
    st.datetimes(
        min_value=datetime(1000, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_an_event_time_is_strftimes(moment: datetime) -> None:
    assert format_time(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.text(),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSON_VALUES)
def test_json_text_with_string_keys_is_the_non_string_keys_options(value: Any) -> None:
    """dumps tries orjson without OPT_NON_STR_KEYS first (three times faster); with string
    keys only, the text is what the option gives."""
    options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    assert dumps(value) == orjson.dumps(value, option=options | orjson.OPT_PASSTHROUGH_DATACLASS)


def test_json_text_keys_that_are_not_strings_become_strings() -> None:
    assert json.loads(dumps({7: "seven", "a": {1.5: [None]}})) == {
        "7": "seven",
        "a": {"1.5": [None]},
    }
