"""Routing in the node's metrics (docs/analytics.md): deliveries counted, breakers' states.

- ``dicombus_routing_deliveries_total{destination, outcome}``: each settled delivery, with
  the outcome the store recorded (``acknowledged``, ``retry``, ``dead``), through
  :func:`dicombus.metrics.store.increment`;
- ``dicombus_routing_breaker_state{destination, state}``: the hash
  ``dicombus:routing:breakers``, ``closed``, ``open`` or ``half-open`` (a probe in flight),
  written where the sender changes the breaker.

Metrics never hold up delivery: a Redis that fails is logged (once per outage) and the
sender goes on; the delivery store keeps the facts either way.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from functools import partial

from dicombus.bus.redis_server import broker_client
from dicombus.metrics.families import ROUTING_DELIVERIES
from dicombus.metrics.snapshot import BREAKERS_KEY
from dicombus.metrics.store import increment
from dicombus.routing.delivery_policy import Outcome
from redis.exceptions import RedisError

LOGGER = logging.getLogger("dicombus_workers.routing")

TIMEOUT = 5.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"  # open, and a probe is asking the destination


class RoutingMetrics:
    """Writes a destination's deliveries and breaker state to the metrics in Redis."""

    def __init__(self, broker_url: str, destination: str) -> None:
        self.destination = destination
        self._client = broker_client(broker_url, timeout=TIMEOUT)
        self._lock = threading.Lock()
        self._failing = False

    def settled(self, outcomes: Counter[Outcome]) -> None:
        """Count a batch's settled deliveries, by outcome."""
        for outcome, count in outcomes.items():
            labels = [self.destination, outcome.value]
            self._write(partial(increment, self._client, ROUTING_DELIVERIES, labels, count))

    def breaker(self, state: BreakerState) -> None:
        self._write(partial(self._client.hset, BREAKERS_KEY, self.destination, state.value))

    def _write(self, write: Callable[[], object]) -> None:
        try:
            write()
        except (RedisError, OSError) as exc:
            with self._lock:
                if not self._failing:
                    LOGGER.warning("routing metrics not written (Redis): %s", exc)
                self._failing = True
            return
        with self._lock:
            self._failing = False

    def close(self) -> None:
        self._client.close()
