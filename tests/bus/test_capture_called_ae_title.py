"""The Called AE Title in the association block: what the A-ASSOCIATE-RQ asked for, in every event.

A dicombus SCP titled EDGE that does not require its own title
(``require_called_aet`` off, the default) accepts a dicombus SCU that calls
it ANY-TITLE. The audit trail must show ANY-TITLE from EVT_REQUESTED to
EVT_RELEASED, not the acceptor's own title once the RQ is answered; the
worker's EventRecord reads it as ``assoc.called_ae_title`` and keeps the
edge's own title as ``assoc.acceptor.ae_title``. On the requestor's side the
called title is the one dicombus called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capture_support import captured_edge, requestor, store_handler, wait_idle
from dicombus import evt
from dicombus.bus.event_data import association_context
from dicombus.sop_class import CTImageStorage, Verification
from dicombus_workers import EventRecord
from helpers import small_dataset
from loopback import associated

CONTEXTS = (Verification, CTImageStorage)
CALLED = "ANY-TITLE"
ASSOCIATION_EVENTS = (
    "EVT_REQUESTED",
    "EVT_ACCEPTED",
    "EVT_ESTABLISHED",
    "EVT_C_ECHO",
    "EVT_C_STORE",
    "EVT_RELEASED",
    "EVT_CONN_CLOSE",
)


def test_the_acceptor_reports_the_title_the_peer_called_in_every_event(tmp_path: Path) -> None:
    with captured_edge(
        tmp_path,
        wants=lambda event_type: event_type in ASSOCIATION_EVENTS,
        supported=CONTEXTS,
        handlers=[(evt.EVT_C_STORE, store_handler(tmp_path))],
    ) as (server, _, collected):
        assert server.ae_title == "EDGE" and not server.ae.require_called_aet
        with associated(requestor(CONTEXTS), server, ae_title=CALLED) as assoc:
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assert assoc.send_c_store(small_dataset()).Status == 0
        wait_idle(server)
    envelopes = collected.envelopes()
    assert [envelope["type"] for envelope in envelopes] == list(ASSOCIATION_EVENTS)
    titles = {
        envelope["type"]: (
            envelope["data"]["association"]["calling_ae_title"],
            envelope["data"]["association"]["called_ae_title"],
        )
        for envelope in envelopes
    }
    assert titles == {event_type: ("MODALITY", CALLED) for event_type in ASSOCIATION_EVENTS}
    records = [EventRecord(envelope) for envelope in envelopes]
    assert {record.assoc.called_ae_title for record in records} == {CALLED}
    assert {record.assoc.calling_ae_title for record in records} == {"MODALITY"}
    assert {record.assoc.requestor.ae_title for record in records} == {"MODALITY"}
    # The edge itself is the acceptor: its own title, whatever the peer called.
    assert {record.assoc.acceptor.ae_title for record in records} == {"EDGE"}


def test_the_requestor_reports_the_title_it_called(tmp_path: Path) -> None:
    seen: dict[str, dict[str, Any]] = {}

    def remember(event: evt.Event) -> None:
        seen[event.event.name] = association_context(event.assoc)

    handlers = [
        (event_type, remember)
        for event_type in (evt.EVT_REQUESTED, evt.EVT_ACCEPTED, evt.EVT_RELEASED)
    ]
    with captured_edge(tmp_path, wants=lambda event_type: False, supported=CONTEXTS) as (
        server,
        _,
        _collected,
    ):
        with associated(
            requestor(CONTEXTS), server, ae_title=CALLED, evt_handlers=handlers
        ) as assoc:
            assert assoc.send_c_echo().Status == 0
        wait_idle(server)
    assert set(seen) == {"EVT_REQUESTED", "EVT_ACCEPTED", "EVT_RELEASED"}
    assert {context["role"] for context in seen.values()} == {"requestor"}
    assert {context["called_ae_title"] for context in seen.values()} == {CALLED}
    assert {context["calling_ae_title"] for context in seen.values()} == {"MODALITY"}
