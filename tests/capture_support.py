"""What the envelope and capture tests share (tests/bus/test_envelope_*, test_capture_*).

- :class:`Collected`: an EventCapture sink that keeps every PendingEvent, and
  builds the envelopes on demand as the publisher thread would;
- :func:`store_handler`: an EVT_C_STORE handler that writes the instance
  durably and records ``stored_path`` / ``stored_size`` in the outcome, as the
  edge's handler does;
- :func:`captured_edge`: a dicombus SCP on 127.0.0.1 with an EventCapture
  attached, detached and shut down afterwards;
- :func:`schema_validator`: the shipped JSON Schema, ready to validate;
- :func:`events_doc_script`: scripts/gen_events_doc.py as a module (its tour).
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
from dicombus import AE, evt
from dicombus.bus.capture import EventCapture
from dicombus.bus.envelope import PendingEvent
from dicombus.bus.json_schema import load_schema
from dicombus.server import AssociationServer
from dicombus.storage_files import Layout, store_instance
from loopback import WAIT_TIMEOUT, quick_ae, serving, wait_until

EDGE_ID = "edge-test"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gen_events_doc.py"

Handlers = Sequence[tuple[Any, Callable[..., Any]]]


class Collected:
    """A sink: PendingEvents in the order the capture handed them over."""

    def __init__(self) -> None:
        self.pending: list[PendingEvent] = []
        self._lock = threading.Lock()

    def __call__(self, pending: PendingEvent) -> None:
        with self._lock:
            self.pending.append(pending)

    def of_type(self, event_type: str) -> list[PendingEvent]:
        with self._lock:
            return [item for item in self.pending if item.event_type == event_type]

    def envelopes(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            chosen = [p for p in self.pending if event_type in (None, p.event_type)]
        return [item.to_envelope() for item in chosen]

    def wait_for(self, event_type: str, count: int = 1) -> None:
        wait_until(lambda: len(self.of_type(event_type)) >= count)


def store_handler(root: Path) -> Callable[[Any], int]:
    """EVT_C_STORE: write the instance under ``root``, record where, answer Success."""

    def handle(event: Any) -> int:
        path = store_instance(
            root,
            file_meta=event.file_meta,
            dataset_bytes=event.encoded_dataset(include_meta=False),
            layout=Layout.SOP_CLASS,
        ).path
        event.request.outcome.update(stored_path=str(path), stored_size=path.stat().st_size)
        return 0x0000

    return handle


@contextmanager
def captured_edge(
    storage: Path,
    *,
    wants: Callable[[str], bool],
    supported: Sequence[str],
    handlers: Handlers = (),
    raw_wanted: Callable[[str], bool] = lambda event_type: False,
    **settings: Any,
) -> Iterator[tuple[AssociationServer, EventCapture, Collected]]:
    """An SCP titled EDGE on a free port, an EventCapture attached to it, and its sink;
    ``settings`` are set as attributes of the SCP's AE (``require_called_aet=True``)."""
    collected = Collected()
    capture = EventCapture(
        edge_id=EDGE_ID,
        sink=collected,
        wants=wants,
        bulk_data_uri_base=storage.resolve().as_uri(),
        raw_wanted=raw_wanted,
    )
    ae = quick_ae("EDGE", supported=supported)
    for name, value in settings.items():
        setattr(ae, name, value)
    with serving(ae, list(handlers)) as server:
        capture.attach(server)
        try:
            yield server, capture, collected
        finally:
            capture.detach()


def requestor(requested: Sequence[str]) -> AE:
    return quick_ae("MODALITY", requested=requested)


def wait_idle(server: AssociationServer) -> None:
    """Until every association of ``server`` has ended and reported its last event."""
    wait_until(lambda: not server.active_associations, WAIT_TIMEOUT)


@functools.cache
def schema_validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def schema_errors(envelope: dict[str, Any]) -> list[str]:
    """Where ``envelope`` breaks the shipped schema (empty: it validates)."""
    return [
        f"{envelope.get('type')} {error.json_path}: {error.message[:200]}"
        for error in schema_validator().iter_errors(envelope)
    ]


def events_doc_script() -> ModuleType:
    """scripts/gen_events_doc.py, imported (it is not in a package)."""
    spec = importlib.util.spec_from_file_location("gen_events_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_events(monkeypatch: Any) -> dict[str, int]:
    """Count every dicombus.evt.Event constructed from now on, by event name."""
    built: dict[str, int] = {}
    original = evt.Event.__init__

    def counting(self: evt.Event, assoc: Any, event: Any, attrs: Any = None) -> None:
        built[event.name] = built.get(event.name, 0) + 1
        original(self, assoc, event, attrs)

    monkeypatch.setattr(evt.Event, "__init__", counting)
    return built
