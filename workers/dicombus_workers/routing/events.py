"""Routing steps published as events, through the same Celery message path as the edge's.

The subscribers come from the registry in Redis (:mod:`dicombus.bus.subscriptions`): a task
that subscribed to ``dicombus.route.sent`` with ``on_event`` gets one message per event,
built by the edge's :class:`~dicombus.bus.sender.TaskMessageBuilder` (task ids from the
event id, so a republished event is one task) and sent with its
:class:`~dicombus.bus.sender.Broker`. Nobody subscribed: nothing is built.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from dicombus.bus.envelope import PendingEvent, source_uri
from dicombus.bus.redis_server import broker_client
from dicombus.bus.sender import Broker, TaskMessageBuilder
from dicombus.bus.subscriptions import Subscription, load_registry
from dicombus.ulid import new_ulid

LOGGER = logging.getLogger("dicombus_workers.routing")

# The registry is read again at most this often: subscriptions change rarely.
REGISTRY_TTL = 5.0
BROKER_TIMEOUT = 5.0


class RouteEventPublisher:
    """Publishes routing events to their subscribers; thread-safe."""

    def __init__(self, broker_url: str, *, origin: str) -> None:
        self.broker_url = broker_url
        self._builder = TaskMessageBuilder(origin)
        self._broker = Broker(broker_url, timeout=BROKER_TIMEOUT)
        self._lock = threading.Lock()
        self._registry: dict[str, Subscription] = {}
        self._read = -REGISTRY_TTL

    def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        edge: str,
        ae_title: str,
        event_id: str | None = None,
        subject: str | None = None,
    ) -> str:
        """Publish one event; returns its id (``event_id``, else a new one: an event
        published again with the same id is one task). A broker that fails is logged, not
        raised: the delivery it reports is in the store either way."""
        event_id = event_id or new_ulid()
        pending = PendingEvent(
            event_type=event_type,
            id=event_id,
            subject=subject or event_id,
            sequence=1,
            time=datetime.now(UTC),
            source=source_uri(edge or "router", ae_title),
            build_data=lambda: data,
        )
        with self._lock:
            try:
                subscribers = self._subscribers(event_type)
                if not subscribers:
                    return event_id
                envelope = pending.to_envelope()
                now = time.time()
                messages = [
                    self._builder.build(envelope, sub, order=0, created=now) for sub in subscribers
                ]
                self._broker.publish(messages)
            except Exception as exc:
                LOGGER.warning("cannot publish %s %s: %s", event_type, event_id, exc)
        return event_id

    def _subscribers(self, event_type: str) -> list[Subscription]:
        if time.monotonic() - self._read >= REGISTRY_TTL:
            client = broker_client(self.broker_url, timeout=BROKER_TIMEOUT)
            try:
                self._registry = load_registry(client)
            finally:
                client.close()
            self._read = time.monotonic()
        return [sub for sub in self._registry.values() if event_type in sub.event_types]

    def close(self) -> None:
        with self._lock:
            self._broker.close()
