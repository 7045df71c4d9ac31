"""The shipped JSON Schema and docs/events.md against the code, and real events against both.

The tour of scripts/gen_events_doc.py runs once here (a dicombus SCU and a
dicombus SCP with an EventCapture that wants everything, on 127.0.0.1): every
event type must appear, every envelope must validate, and the committed page
must be what the script writes now, volatile values aside.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from capture_support import events_doc_script, schema_errors, schema_validator
from dicombus.bus.event_data import EVENT_SPECS, NOTIFICATION_TYPES, OUTCOME_TYPES
from dicombus.bus.json_schema import SCHEMA_FILE, json_schema, load_schema, schema_text


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return events_doc_script()


@pytest.fixture(scope="module")
def tour(script: ModuleType) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(docs/events.md as generated now, every envelope the tour captured)."""
    yield script.generate()


def test_the_shipped_schema_is_the_one_the_tables_build() -> None:
    assert load_schema() == json_schema()
    assert schema_text().endswith("\n")
    assert SCHEMA_FILE == "v1.json"


def test_the_schema_is_valid_draft_2020_12() -> None:
    schema_validator()  # check_schema raises on an invalid schema


def test_the_schema_describes_every_event_type_and_nothing_else() -> None:
    schema = load_schema()
    assert len(NOTIFICATION_TYPES) == 17
    assert len(OUTCOME_TYPES) == 15
    assert set(schema["properties"]["type"]["enum"]) == set(EVENT_SPECS)
    assert set(EVENT_SPECS) <= set(schema["$defs"])


def test_every_event_type_was_captured_from_a_real_association(
    tour: tuple[str, list[dict[str, Any]]],
) -> None:
    _, envelopes = tour
    assert {envelope["type"] for envelope in envelopes} == set(EVENT_SPECS)


def test_every_captured_envelope_validates_against_the_schema(
    tour: tuple[str, list[dict[str, Any]]],
) -> None:
    _, envelopes = tour
    errors = [error for envelope in envelopes for error in schema_errors(envelope)]
    assert errors == []


def test_a_data_object_with_an_unknown_or_missing_field_does_not_validate(
    tour: tuple[str, list[dict[str, Any]]],
) -> None:
    _, envelopes = tour
    store = next(envelope for envelope in envelopes if envelope["type"] == "EVT_C_STORE")
    extra = {**store, "data": {**store["data"], "surprise": 1}}
    missing = {**store, "data": {k: v for k, v in store["data"].items() if k != "stored_path"}}
    assert schema_errors(extra) and schema_errors(missing)


def test_docs_events_md_is_up_to_date(
    script: ModuleType, tour: tuple[str, list[dict[str, Any]]]
) -> None:
    generated, _ = tour
    committed = script.DOC.read_text("utf-8")
    assert script.normalise(committed) == script.normalise(generated), (
        "docs/events.md is out of date: run python scripts/gen_events_doc.py"
    )


def test_the_page_has_fields_and_a_real_example_for_every_type(
    tour: tuple[str, list[dict[str, Any]]],
) -> None:
    generated, _ = tour
    for name, spec in EVENT_SPECS.items():
        section = generated.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert f'"type": "{name}"' in section, name
        for field in spec.fields:
            assert f"| `{field.name}` |" in section, (name, field.name)


def test_normalising_hides_only_the_volatile_values(script: ModuleType) -> None:
    line = (
        '"id": "01M82M3E3PJNRW85KPM70VKGKX", "time": "2026-11-22T21:55:22.870803Z", '
        '"peer_port": 41766, "stored_path": "/tmp/dicombus-events-doc-8g_9itho/storage/x.dcm", '
        '"message_id": 1'
    )
    assert script.normalise(line) == (
        '"id": "<ULID>", "time": "<TIME>", "peer_port": <PORT>, '
        '"stored_path": "<WORKDIR>/storage/x.dcm", "message_id": 1'
    )
