"""The id and event sequence of each association the bus observes.

Every envelope names its association (``subject``, a ULID) and numbers its
events 1, 2, 3 ... (``sequence``: the order consumers restore them in). Both
belong to the bus, not to the association: :class:`AssociationIds` makes them
at an association's first captured event and keeps them as long as the
association lives (weakly, so an ended association is forgotten with it).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterator

from dicombus.bus.association_view import AssociationView
from dicombus.ulid import new_ulid


class AssociationIds:
    """Hands out (association id, next sequence number) per association."""

    def __init__(self) -> None:
        self._tallies: weakref.WeakKeyDictionary[AssociationView, tuple[str, Iterator[int]]] = (
            weakref.WeakKeyDictionary()
        )
        # Events of one association come from its own thread and from user
        # threads sending on it (EVT_DIMSE_SENT); each number is given once.
        self._lock = threading.Lock()

    def next_event(self, assoc: AssociationView) -> tuple[str, int]:
        """The association's id and the sequence number of its next event."""
        with self._lock:
            tally = self._tallies.get(assoc)
            if tally is None:
                tally = self._tallies[assoc] = (new_ulid(), itertools.count(1))
            return tally[0], next(tally[1])

    def __len__(self) -> int:
        """How many associations are remembered (those still alive)."""
        with self._lock:
            return len(self._tallies)
