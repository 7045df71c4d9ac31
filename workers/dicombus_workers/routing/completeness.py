"""Study completeness: STUDY_STABLE when a study has been quiet, and the per-study release.

DICOM has no "end of study" message (a modality may send a series hours later), so a study
is taken as complete when no new instance has arrived for ``[routing] study_quiet_seconds``.
The router records each stored instance in the delivery store before it routes it
(:meth:`~dicombus.routing.delivery_store.DeliveryStore.saw_instance`); this loop, a thread of
the worker that consumes the router's queue, looks for quiet studies and, for each:

1. publishes ``dicombus.study.stable`` (``data.update`` true when it fired before: late
   instances came), through the routing events' path (:mod:`.events`);
2. records that it fired and releases the study's ``per = "study"`` deliveries, in one
   transaction, so they go together in one batch.

Both steps are keyed by the store, so a restarted router fires what was due while it was
down, once. The event is published before it is recorded: a router killed in between
publishes it again with the same id (from the study and its firing), which is one task.

The same loop releases the deliveries of rules with their own ``quiet_seconds`` when their
study or series has been quiet that long. It does not poll: it sleeps until the store's
next quiet deadline (:meth:`~dicombus.routing.delivery_store.DeliveryStore.next_quiet`),
and the router wakes it early when an instance arrives (a new study may be due first).
Whatever it releases, it wakes the senders of every process (:mod:`.wakeup`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from dicombus.routing.delivery_store import DeliveryStore, Study
from dicombus.routing.route_events import STUDY_STABLE
from dicombus.ulid import encode_ulid

from dicombus_workers.routing.events import RouteEventPublisher

LOGGER = logging.getLogger("dicombus_workers.routing")

# The longest the loop sleeps without a deadline: what another router process recorded
# (its own watch handles it too) or a clock that jumped.
SAFETY_POLL = 30.0
# The shortest sleep: a deadline the clock's rounding says is not quite there yet.
MIN_SLEEP = 0.01
# After a failed round (the store locked for too long), the next try.
RETRY = 1.0
SOURCE_AE_TITLE = "DICOMBUS"


class StudyWatch:
    """The thread that fires STUDY_STABLE for the studies the store says are quiet, and
    releases the deliveries held by the rules' own quiet times."""

    def __init__(
        self,
        store: DeliveryStore,
        events: RouteEventPublisher,
        quiet: float,
        *,
        rule_quiets: Mapping[str, Iterable[float]] | None = None,
        released: Callable[[], None] = lambda: None,
    ) -> None:
        """``rule_quiets``: the rules' own quiet times per ``"study"`` and ``"series"``;
        ``released``: called when deliveries became due (to wake the senders)."""
        self.store = store
        self.events = events
        self.quiet = quiet
        self.rule_quiets = {per: tuple(times) for per, times in (rule_quiets or {}).items()}
        self.released = released
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="study-watch", daemon=True)
        self._thread.start()

    def saw_instance(self) -> None:
        """A new instance was recorded: the next deadline may be sooner (a new study)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        deadline: float | None = 0.0  # look at once: what came due while no router ran
        while not self._stopping.is_set():
            try:
                if deadline is not None and time.time() >= deadline:
                    self.step()
                deadline = self.store.next_quiet(self.quiet, self.rule_quiets)
                sleep = SAFETY_POLL if deadline is None else deadline - time.time()
            except Exception:
                # The store locked for too long, a bug: log and go on; the studies stay
                # in the store and fire on a later round.
                LOGGER.exception("study completeness: trying again")
                deadline, sleep = 0.0, RETRY
            self._wake.wait(min(max(sleep, MIN_SLEEP), SAFETY_POLL))
            self._wake.clear()

    def step(self) -> int:
        """Fire STUDY_STABLE for every quiet study, release the deliveries whose own quiet
        time has passed, and wake the senders if any became due; returns how many fired."""
        fired = released = 0
        for study in self.store.quiet_studies(self.quiet):
            self.events.publish(
                STUDY_STABLE,
                stable_data(study, self.quiet),
                edge=str(study.context.get("edge") or ""),
                ae_title=SOURCE_AE_TITLE,
                event_id=stable_event_id(study),
                subject=study.study_instance_uid,
            )
            count = self.store.study_stable(study)
            LOGGER.info(
                "study %s stable (%d instances%s): %d per-study deliveries released",
                study.study_instance_uid,
                study.instances,
                ", an update" if study.fired else "",
                count,
            )
            fired += 1
            released += count
        if any(self.rule_quiets.values()):
            released += self.store.release_quiet()
        if released:
            self.released()
        return fired


def stable_data(study: Study, quiet: float) -> dict[str, Any]:
    """The ``data`` of ``dicombus.study.stable`` (docs/routing.md)."""
    context = study.context
    return {
        "study_instance_uid": study.study_instance_uid,
        "update": study.fired > 0,
        "instances": study.instances,
        "series": study.series,
        "first_seen": _iso(study.first_seen),
        "last_seen": _iso(study.last_seen),
        "quiet_seconds": quiet,
        "patient_id": context.get("patient_id"),
        "patient_name": context.get("patient_name"),
        "accession_number": context.get("accession_number"),
        "calling_ae_title": context.get("calling_ae_title"),
        "edge": context.get("edge"),
    }


def stable_event_id(study: Study) -> str:
    """A ULID that is the same each time this firing of this study is published: the
    milliseconds of its last instance, and 80 bits of a hash of the study and the firing."""
    millis = int(study.last_seen * 1000)
    digest = hashlib.sha256(f"{study.study_instance_uid}/{study.fired}".encode()).digest()
    return encode_ulid((millis << 80) | int.from_bytes(digest[:10], "big"))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
