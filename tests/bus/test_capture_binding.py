"""What EventCapture binds, and what an event type nobody wants costs: nothing.

Unwanted types get no handler, so the association never builds a
dicombus.evt.Event for them (counted by wrapping Event.__init__) and the
capture never builds a PendingEvent (EventCapture.built). Subscriptions that
change while associations run take effect on those associations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from capture_support import captured_edge, count_events, requestor, store_handler, wait_idle
from dicombus import evt
from dicombus.bus.capture import EventCapture
from dicombus.bus.event_data import EVENT_SPECS, NOTIFICATION_TYPES
from dicombus.sop_class import CTImageStorage, Verification
from helpers import small_dataset
from loopback import associated, quick_ae, serving

CONTEXTS = (Verification, CTImageStorage)


def exchange(server: Any) -> None:
    """An association that echoes and stores once, then releases."""
    with associated(requestor(CONTEXTS), server) as assoc:
        assoc.send_c_echo()
        assoc.send_c_store(small_dataset())
    wait_idle(server)


def test_with_nothing_wanted_nothing_is_bound_or_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = count_events(monkeypatch)
    with captured_edge(tmp_path, wants=lambda event_type: False, supported=CONTEXTS) as (
        server,
        capture,
        collected,
    ):
        assert server.outcome_observers == []
        assert all(server.get_handlers(EVENT_SPECS[t].event) == [] for t in NOTIFICATION_TYPES)
        exchange(server)
    assert capture.events_built == 0 and collected.pending == []
    assert built == {}  # not even the C-STORE: no handler at all, the default answered


def test_unsubscribed_types_build_neither_events_nor_pending_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = count_events(monkeypatch)
    wanted = {"EVT_ACCEPTED", "EVT_C_STORE"}
    with captured_edge(
        tmp_path,
        wants=wanted.__contains__,
        supported=CONTEXTS,
        handlers=[(evt.EVT_C_STORE, store_handler(tmp_path))],
    ) as (server, capture, collected):
        exchange(server)
    assert [pending.event_type for pending in collected.pending] == ["EVT_ACCEPTED", "EVT_C_STORE"]
    assert capture.events_built == 2
    for name in set(EVENT_SPECS) - wanted:
        assert capture.built(name) == 0, name
    # EVT_ACCEPTED for the capture's handler; EVT_C_STORE for the storage handler
    # (an outcome is observed without building an Event). Nothing else.
    assert built == {"EVT_ACCEPTED": 1, "EVT_C_STORE": 1}


def test_refresh_binds_and_unbinds_on_a_running_association(tmp_path: Path) -> None:
    wanted: set[str] = set()
    with captured_edge(tmp_path, wants=wanted.__contains__, supported=CONTEXTS) as (
        server,
        capture,
        collected,
    ):
        with associated(requestor(CONTEXTS), server) as assoc:
            (acceptor,) = server.active_associations
            wanted.update({"EVT_C_ECHO", "EVT_DIMSE_RECV"})
            capture.refresh()
            assert capture.wanted == {"EVT_C_ECHO", "EVT_DIMSE_RECV"}
            assert len(acceptor.outcome_observers) == 1
            assoc.send_c_echo(msg_id=2)
            collected.wait_for("EVT_C_ECHO")
            wanted.clear()
            capture.refresh()
            assert acceptor.outcome_observers == []
            assert server.outcome_observers == []
            assoc.send_c_echo(msg_id=3)
        wait_idle(server)
    assert [(p.event_type, p.sequence) for p in collected.pending] == [
        ("EVT_DIMSE_RECV", 1),
        ("EVT_C_ECHO", 2),
    ]
    assert collected.envelopes("EVT_C_ECHO")[0]["data"]["message_id"] == 2


def test_detach_leaves_the_server_as_it_was(tmp_path: Path) -> None:
    def mine(event: Any) -> None:
        """A handler of the application's, which the capture must leave alone."""

    def watcher(report: Any) -> None:
        """An outcome observer of the application's."""

    with captured_edge(tmp_path, wants=lambda event_type: True, supported=CONTEXTS) as (
        server,
        capture,
        collected,
    ):
        server.bind(evt.EVT_ACCEPTED, mine)
        server.outcome_observers.append(watcher)
        capture.detach()
        assert capture.wanted == frozenset()
        assert server.get_handlers(evt.EVT_ACCEPTED) == [(mine, None)]
        assert all(
            server.get_handlers(EVENT_SPECS[t].event) == []
            for t in NOTIFICATION_TYPES
            if t != "EVT_ACCEPTED"
        )
        assert server.outcome_observers == [watcher]
        exchange(server)
    assert collected.pending == []


def test_a_sink_that_raises_does_not_break_the_association(tmp_path: Path) -> None:
    def failing(pending: Any) -> None:
        raise RuntimeError("the queue is broken")

    capture = EventCapture(
        edge_id="edge-test",
        sink=failing,
        wants=lambda event_type: True,
        bulk_data_uri_base=tmp_path.as_uri(),
    )
    with serving(quick_ae("EDGE", supported=CONTEXTS)) as server:
        capture.attach(server)
        with associated(requestor(CONTEXTS), server) as assoc:
            assert assoc.send_c_echo().Status == 0x0000
        wait_idle(server)
    assert capture.built("EVT_C_ECHO") == 1
