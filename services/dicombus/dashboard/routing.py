"""``/api/routing``: destinations with their breaker and deliveries, and the dead letters.

Read from the routing workers' delivery store (:mod:`dicombus.routing.delivery_store`),
the SQLite file ``dicombus routes failed`` reads; a replay is
:meth:`~dicombus.routing.delivery_store.DeliveryStore.replay`, what ``dicombus routes
retry`` runs. Like those commands, the dashboard then runs on the routing workers' host.
A breaker state written to Redis by routing delivery (``Snapshot.breakers``) wins over
the one derived from the store.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicombus.protocol.errors import DicombusError
from dicombus.routing.delivery_store import Breaker, Delivery, DeliveryStore, State


class RoutingUnavailable(DicombusError):
    """No delivery store where the dashboard looks (no routing worker has run there)."""


class RoutingView:
    """The delivery store at ``path``, opened when it exists (never made here)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: DeliveryStore | None = None

    def _opened(self) -> DeliveryStore:
        if self._store is None:
            if not self.path.is_file():
                raise RoutingUnavailable(
                    f"no delivery store at {self.path} (no routing worker has run there)"
                )
            self._store = DeliveryStore(self.path)
        return self._store

    def view(self, breakers: dict[str, str]) -> dict[str, Any]:
        """The ``/api/routing`` document (docs/analytics.md#dashboard)."""
        try:
            store = self._opened()
        except RoutingUnavailable as exc:
            return {"store": None, "note": str(exc), "destinations": [], "dead_letters": []}
        deliveries = store.deliveries()
        states: dict[str, Counter[str]] = {}
        for delivery in deliveries:
            states.setdefault(delivery.destination, Counter())[delivery.state.value] += 1
        now = time.time()
        destinations = [
            {
                "name": name,
                "breaker": breakers.get(name) or breaker_state(store.breaker(name), now),
                "deliveries": {state.value: states.get(name, Counter())[state] for state in State},
            }
            for name in sorted(set(states) | set(breakers))
        ]
        return {
            "store": str(self.path),
            "destinations": destinations,
            "dead_letters": [d.dead_letter_json() for d in deliveries if d.state is State.DEAD],
        }

    def replay(self, uids: Sequence[str] | None, destination: str | None) -> list[Delivery]:
        """Dead letters sent again to their destination (``dicombus routes retry``)."""
        return self._opened().replay(uids, destination=destination)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def breaker_state(breaker: Breaker, now: float) -> str:
    """``closed``; ``open`` until its probe is due; ``half-open`` once a probe may go."""
    if not breaker.is_open:
        return "closed"
    return "half-open" if breaker.probe_due is not None and now >= breaker.probe_due else "open"
