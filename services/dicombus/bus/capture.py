"""EventCapture: turns what happens on a server's associations into PendingEvents.

It binds a handler on the server for each notification event type that
``wants`` says someone subscribed to, and registers an outcome observer when
an intervention event type is wanted; nothing else. An event type nobody
wants therefore costs nothing: no handler is bound, so the association never
builds a :class:`dicombus.evt.Event` for it, and nothing here runs.

For a wanted event, the handler runs on the association's thread and does
the cheap part only (see :mod:`dicombus.bus.event_data`): an id, the
association's id and next sequence number (kept here, see
:mod:`dicombus.bus.association_ids`), the time, and a snapshot of what will
not survive the thread going on; it reads the association through
:class:`dicombus.bus.association_view.AssociationView` only. The
:class:`PendingEvent` goes to ``sink`` (the publisher's ``submit``), which must
not block; ``data`` is built when the publisher calls
:meth:`PendingEvent.to_envelope`.

An outcome a response depends on -- a C-STORE answered Success or Warning,
i.e. an instance the node now holds -- goes to ``durable_sink`` instead (the
publisher's ``submit_durable``: journal, then queue), which returns only once
the event is on disk. The service reports the outcome before it sends the
response; if the journal cannot take it (or the publisher is saturated: it holds
all it may in memory), :class:`OutcomeNotRecorded` tells the service to answer
a failure instead. The capture's observer goes first in the observer lists, so
that the observers after it hear only the status the peer is given.

Subscriptions change at run time: :meth:`EventCapture.refresh` re-reads
``wants`` and binds or unbinds on the attached servers and their running
associations.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dicombus import evt
from dicombus.ae_title import our_ae_title
from dicombus.bus.association_ids import AssociationIds
from dicombus.bus.association_view import AssociationView
from dicombus.bus.dicom_json import DEFAULT_THRESHOLD
from dicombus.bus.envelope import PendingEvent, source_uri
from dicombus.bus.event_data import EVENT_SPECS, NOTIFICATION_TYPES, DataOptions, EventSpec
from dicombus.bus.journal import JournalError
from dicombus.bus.publisher import PublisherSaturated
from dicombus.outcomes import OutcomeNotRecorded, OutcomeReport
from dicombus.protocol.status import STATUS_SUCCESS, STATUS_WARNING, status_category
from dicombus.ulid import new_ulid

if TYPE_CHECKING:
    from dicombus.server import AssociationServer

LOGGER = logging.getLogger("dicombus.bus")

_NOTIFICATIONS = frozenset(NOTIFICATION_TYPES)
# Outcomes whose Success the node promises an event for (issue 8): the peer was
# told the instance is held, so the event must survive the edge dying.
JOURNALED_OUTCOMES = frozenset({evt.EVT_C_STORE.name})
_HELD = frozenset({STATUS_SUCCESS, STATUS_WARNING})  # PS3.4 B.2.3: the instance is stored


class EventCapture:
    """Captures the wanted events of the servers it is attached to and hands them to ``sink``."""

    def __init__(
        self,
        *,
        edge_id: str,
        sink: Callable[[PendingEvent], None],
        wants: Callable[[str], bool],
        bulk_data_uri_base: str,
        bulk_threshold: int = DEFAULT_THRESHOLD,
        raw_wanted: Callable[[str], bool] = lambda event_type: False,
        durable_sink: Callable[[PendingEvent], None] | None = None,
    ) -> None:
        self.edge_id = edge_id
        self._sink = sink
        self._durable_sink = durable_sink
        self._wants = wants
        self._raw_wanted = raw_wanted
        self._bulk_data_uri_base = bulk_data_uri_base
        self._bulk_threshold = bulk_threshold
        self._servers: list[AssociationServer] = []
        self._wanted: frozenset[str] = frozenset()
        self._options: dict[str, DataOptions] = {}
        self._sources: dict[str, str] = {}
        # Set by the edge once its server listens (the port is known then) and it
        # serves C-GET: each event says where what it stored can be retrieved.
        self.retrieve_uri: str | None = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._built: Counter[str] = Counter()
        self.association_ids = AssociationIds()
        # Bound once: binding and unbinding compare handlers by identity.
        self._handler = self._on_notification
        self._observer = self._on_outcome

    # -- counters ---------------------------------------------------------------------------

    @property
    def events_built(self) -> int:
        """How many PendingEvents have been made, all types together."""
        with self._count_lock:
            return sum(self._built.values())

    def built(self, event_type: str) -> int:
        """How many PendingEvents of ``event_type`` have been made."""
        with self._count_lock:
            return self._built[event_type]

    @property
    def wanted(self) -> frozenset[str]:
        """The event types captured now."""
        return self._wanted

    # -- binding ----------------------------------------------------------------------------

    def attach(self, server: AssociationServer) -> None:
        """Capture the wanted events of ``server``'s associations, running and future."""
        with self._lock:
            if server in self._servers:
                return
            self._servers.append(server)
            if not self._options:
                self._options = self._read_options()
            self._wanted = frozenset(self._options)
            self._apply(server, frozenset(), self._wanted)

    def refresh(self) -> None:
        """Re-read ``wants`` / ``raw_wanted`` after the subscriptions changed."""
        with self._lock:
            options = self._read_options()
            before, after = self._wanted, frozenset(options)
            # New options first: a handler bound below must find its own.
            self._options = options
            self._wanted = after
            for server in self._servers:
                self._apply(server, before, after)

    def detach(self) -> None:
        """Stop capturing on every attached server."""
        with self._lock:
            for server in self._servers:
                self._apply(server, self._wanted, frozenset())
            self._servers.clear()
            self._wanted = frozenset()
            self._options = {}

    def _read_options(self) -> dict[str, DataOptions]:
        return {
            name: DataOptions(
                bulk_data_uri_base=self._bulk_data_uri_base,
                bulk_threshold=self._bulk_threshold,
                raw=bool(self._raw_wanted(name)),
            )
            for name in EVENT_SPECS
            if self._wants(name)
        }

    def _apply(
        self, server: AssociationServer, before: frozenset[str], after: frozenset[str]
    ) -> None:
        for name in (before ^ after) & _NOTIFICATIONS:
            event = EVENT_SPECS[name].event
            if name in after:
                server.bind(event, self._handler)
            else:
                server.unbind(event, self._handler)
        observing = bool(after - _NOTIFICATIONS)
        if observing != bool(before - _NOTIFICATIONS):
            # New lists, never changed in place: an association may be
            # iterating its list on its own thread right now.
            server.update_outcome_observers(lambda current: self._observers(current, observing))

    def _observers(self, current: list[Any], observing: bool) -> list[Any]:
        others = [observer for observer in current if observer != self._observer]
        # First: it may refuse a Success (OutcomeNotRecorded), and the observers after
        # it must then hear only the failure the peer is answered.
        return [self._observer, *others] if observing else others

    # -- on the association's thread --------------------------------------------------------

    def _on_notification(self, event: evt.Event) -> None:
        self._capture(event.event.name, event)

    def _on_outcome(self, report: OutcomeReport) -> None:
        self._capture(report.event.name, report)

    def _capture(self, name: str, source: Any) -> None:
        options = self._options.get(name)
        if options is None:
            return  # unsubscribed a moment ago, or an outcome of a type nobody wants
        spec: EventSpec = EVENT_SPECS[name]
        assoc: AssociationView = source.assoc
        subject, sequence = self.association_ids.next_event(assoc)
        pending = PendingEvent(
            event_type=name,
            id=new_ulid(),
            subject=subject,
            sequence=sequence,
            time=datetime.now(UTC),
            source=self._source(assoc),
            build_data=spec.snapshot(source, options),
            retrieve_uri=self.retrieve_uri,
        )
        with self._count_lock:
            self._built[name] += 1
        if self._durable_sink is not None and _journaled(name, source):
            try:
                self._durable_sink(pending)
            except (JournalError, PublisherSaturated) as exc:
                raise OutcomeNotRecorded(str(exc)) from exc
        else:
            self._sink(pending)

    def _source(self, assoc: AssociationView) -> str:
        title = our_ae_title(assoc.ae, assoc.server)
        source = self._sources.get(title)
        if source is None:
            source = self._sources[title] = source_uri(self.edge_id, title)
        return source


def _journaled(name: str, source: Any) -> bool:
    """Whether this captured event must be on disk before the response leaves."""
    return (
        name in JOURNALED_OUTCOMES
        and isinstance(source, OutcomeReport)
        and source.status is not None
        and status_category(source.status) in _HELD
    )
