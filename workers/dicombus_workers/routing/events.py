"""Routing steps published as events, as durably and in the same order as the edge's.

Each event goes through the edge's own publishing chain (:mod:`dicombus.bus.publisher`),
so audit and analytics never miss a routing step:

- :meth:`RouteEventPublisher.publish` commits the event to a
  :class:`~dicombus.bus.journal.Journal` (a worker killed a moment later publishes it at
  its next start, with the same id) and queues it;
- the publisher thread sends it to the subscribed tasks' queues (the registry in Redis, as
  a :class:`~dicombus.bus.subscriptions.SubscriptionView` that keeps a cache file, so a
  worker restarted while Redis is away still knows who subscribed), one Celery message per
  task, task ids from the event id (a republished event is one task);
- while Redis is away the messages go to an :class:`~dicombus.bus.outbox.Outbox` and are
  replayed in the order they were published once it answers.

Each worker process keeps these files in a **slot** of its own under the routing store's
folder, ``route-events/<n>/``, taken with an exclusive ``flock`` (an outbox has one
writer): a process takes the lowest free slot, so a restarted worker takes over what a
previous one left there and publishes it first.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicombus.bus.envelope import PendingEvent, source_uri
from dicombus.bus.held_file import HELD_FILE, replay_held
from dicombus.bus.journal import Journal, JournalError
from dicombus.bus.outbox import Outbox
from dicombus.bus.publisher import Publisher, PublisherSaturated
from dicombus.bus.subscriptions import SubscriptionView
from dicombus.ulid import new_ulid

LOGGER = logging.getLogger("dicombus_workers.routing")

FOLDER = "route-events"  # beside the delivery store
BROKER_TIMEOUT = 5.0
# A few events per batch and study: a small outbox. At its limit nothing is refused
# (a worker has no association to turn away); it only logs.
OUTBOX_MAX_BYTES = 256 << 20
STOP_TIMEOUT = 10.0


class RouteEventPublisher:
    """Publishes routing events to their subscribers, durably; thread-safe."""

    def __init__(self, broker_url: str, folder: Path) -> None:
        """``folder``: where the slots are (``route-events`` beside the delivery store)."""
        self.broker_url = broker_url
        self.slot, self._lock_fd = take_slot(folder)
        self.view = SubscriptionView(broker_url, cache_path=self.slot / "subscriptions.json")
        # FULL: the journal forgets an event once its messages are in the outbox, so
        # the outbox must be on disk as the journal was (as the edge's, docs/bus.md).
        self.outbox = Outbox(
            self.slot / "outbox.sqlite3", max_bytes=OUTBOX_MAX_BYTES, synchronous="FULL"
        )
        replay_held(self.slot / HELD_FILE, self.outbox)
        # A journal.sqlite3 that an earlier version left in the slot is upgraded.
        self.journal = Journal(self.slot / "journal")
        self.publisher = Publisher(
            broker_url,
            self.view,
            self.outbox,
            broker_timeout=BROKER_TIMEOUT,
            # A worker's few events a second: building them here costs nothing worth a
            # child process.
            publisher_process=False,
            journal=self.journal,
            held_file=self.slot / HELD_FILE,
        )
        self.view.start()
        self.publisher.start()
        left = self.publisher.resubmit_journaled()
        if left or self.outbox.rows:
            LOGGER.info(
                "routing events left by an earlier worker in %s: %d journaled, %d in the "
                "outbox; publishing them first",
                self.slot,
                left,
                self.outbox.rows,
            )

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
        published again with the same id is one task). It is on disk when this returns;
        a journal that cannot store is logged, not raised: the delivery it reports is in
        the store either way."""
        event_id = event_id or new_ulid()
        pending = PendingEvent(
            event_type=event_type,
            id=event_id,
            subject=subject or event_id,
            sequence=1,
            time=datetime.now(UTC),
            source=source_uri(edge or "router", ae_title),
            # A copy, and picklable: the journal keeps it.
            build_data=functools.partial(dict, data),
        )
        try:
            self.publisher.submit_durable(pending)
        except (JournalError, PublisherSaturated) as exc:
            LOGGER.error("cannot keep %s %s: %s", event_type, event_id, exc)
        return event_id

    def metrics(self) -> dict[str, float]:
        """The publisher's counters and gauges (outbox_rows, replaying, ...)."""
        return self.publisher.metrics()

    def close(self) -> None:
        """Flush to Redis or the outbox, and give the slot up."""
        self.publisher.stop(STOP_TIMEOUT)
        self.view.stop()
        self.journal.close()
        self.outbox.close()
        os.close(self._lock_fd)


def take_slot(folder: Path) -> tuple[Path, int]:
    """The lowest slot ``folder/<n>`` no other process holds, locked for this one."""
    number = 0
    while True:
        slot = folder / str(number)
        slot.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(slot / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            number += 1
            continue
        return slot, descriptor
