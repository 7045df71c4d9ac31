"""Captured events survive pickling: the edge may build and publish them in another process.

Every event type is captured from real associations on 127.0.0.1 (the tour
of scripts/gen_events_doc.py, plus an SCP that stores nothing), and each
PendingEvent, pickled and unpickled, must build the very envelope the
original builds.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest
from capture_support import captured_edge, events_doc_script, requestor, wait_idle
from dicombus import evt
from dicombus.bus.envelope import PendingEvent
from dicombus.bus.event_data import EVENT_SPECS
from dicombus.sop_class import CTImageStorage
from helpers import small_dataset
from loopback import associated

# What the edge's publisher process receives; 5 carries bytes without copying them twice.
PROTOCOL = 5


def unpickled(pending: PendingEvent) -> PendingEvent:
    copy: PendingEvent = pickle.loads(pickle.dumps(pending, protocol=PROTOCOL))
    return copy


def assert_survives_pickling(pending: PendingEvent) -> dict[str, Any]:
    """``pending``'s envelope, after checking its unpickled copy builds the same one."""
    envelope = pending.to_envelope()
    assert unpickled(pending).to_envelope() == envelope, pending.event_type
    return envelope


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> list[PendingEvent]:
    """Every PendingEvent of the tour; its storage stays, for the C-STORE to read back."""
    return list(events_doc_script().tour_events(tmp_path_factory.mktemp("tour")))


def test_every_event_type_of_the_tour_builds_the_same_envelope_after_pickling(
    tour: list[PendingEvent],
) -> None:
    envelopes = [assert_survives_pickling(pending) for pending in tour]
    covered = {envelope["type"] for envelope in envelopes}
    assert covered == set(EVENT_SPECS) and len(covered) == 32


def test_a_stored_c_store_is_read_back_from_its_file_after_pickling(
    tour: list[PendingEvent],
) -> None:
    stores = [pending for pending in tour if pending.event_type == "EVT_C_STORE"]
    assert stores
    for pending in stores:
        data = unpickled(pending).to_envelope()["data"]
        assert data["dataset_source"] == "stored_file"
        assert Path(data["stored_path"]).is_file()
        assert data["dataset"]["7FE00010"]["BulkDataURI"].startswith(data["bulk_data_uri_base"])


def test_an_unstored_c_store_with_details_json_cannot_hold_pickles_without_them(
    tmp_path: Path,
) -> None:
    """The handler stores nothing and records an object() beside JSON values: the header
    comes from the request's bytes, and details keep only what JSON can carry, as before."""
    instance = small_dataset()

    def keep_nothing(event: Any) -> int:
        event.request.outcome.update(opaque=object(), note="not stored", where=tmp_path)
        return 0x0000

    with captured_edge(
        tmp_path,
        wants=lambda event_type: event_type == "EVT_C_STORE",
        supported=(CTImageStorage,),
        handlers=[(evt.EVT_C_STORE, keep_nothing)],
    ) as (server, _, collected):
        with associated(requestor((CTImageStorage,)), server) as assoc:
            assoc.send_c_store(instance)
        wait_idle(server)
    (pending,) = collected.of_type("EVT_C_STORE")
    data = assert_survives_pickling(pending)["data"]
    assert (data["stored_path"], data["dataset_source"]) == (None, "request")
    assert data["dataset"]["00080018"]["Value"] == [instance.SOPInstanceUID]
    assert data["details"] == {"note": "not stored", "where": str(tmp_path)}


def test_an_event_journaled_by_an_earlier_edge_loads_with_the_fields_added_since(
    tour: list[PendingEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edge upgraded with events still in its journal replays them: a row pickled
    before ``retrieve_uri`` existed (its state one field short) loads, the new field
    at its default."""
    pending = next(p for p in tour if p.event_type == "EVT_C_ECHO")
    current = PendingEvent.__getstate__
    monkeypatch.setattr(PendingEvent, "__getstate__", lambda self: current(self)[:-1])
    old_row = pickle.dumps(pending, protocol=PROTOCOL)
    monkeypatch.undo()
    loaded: PendingEvent = pickle.loads(old_row)
    assert loaded.retrieve_uri is None
    assert loaded.to_envelope() == pending.to_envelope()


def test_the_pickled_state_is_the_dataclass_default(tour: list[PendingEvent]) -> None:
    """Rows already in a journal, and rows an earlier edge reads after a downgrade, hold
    the state the dataclass default made: every field's value, in order."""
    for pending in tour:
        state = pending.__reduce_ex__(PROTOCOL)[2]
        assert state == [getattr(pending, field.name) for field in dataclasses.fields(pending)]
