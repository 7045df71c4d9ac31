"""A destination's senders: threads that take due deliveries from the store and send them.

``concurrency`` threads per destination (its cap on simultaneous associations), in the
worker process that consumes the destination's queue. Each loop:

1. asks the circuit breaker: while it is open, deliveries wait (they do not fail) and a
   probe (C-ECHO, or a QIDO-RS search for STOW-RS) asks the destination every
   ``breaker_probe`` seconds; it closes when the destination answers;
2. claims the due deliveries of the destination (up to ``batch_size``), fetches from the
   edge on one C-GET association those whose file is not readable here (:mod:`.fetch`),
   and sends them on one association (:mod:`.dimse`) or one STOW-RS request
   (:mod:`.stow`), recording each response as it arrives;
3. classifies each answer, and each failed fetch, (:mod:`dicombus.routing.delivery_policy`):
   acknowledged, retried after a back-off delay kept in the store, or a dead letter;
4. publishes the steps as events (:mod:`.events`), one per destination and study.

With nothing due it sleeps until the next row is due, or until it is woken: by the
destination's task recording new rows, or by the study watch of the router's process
releasing held ones (:mod:`.wakeup`); or ``SAFETY_POLL`` seconds pass (a row replayed by
``dicombus routes retry``, a wake-up lost while Redis was away).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from dicombus.routing.delivery_policy import Outcome, describe_status
from dicombus.routing.delivery_store import Breaker, Delivery, DeliveryStore
from dicombus.routing.destinations import Destination, DimseDestination, EdgeSettings
from dicombus.routing.route_events import ROUTE_BEGIN, ROUTE_DEAD_LETTER, ROUTE_FAILED, ROUTE_SENT
from dicombus.status import code_to_category

from dicombus_workers.routing.dimse import DimseTransport
from dicombus_workers.routing.events import RouteEventPublisher
from dicombus_workers.routing.fetch import InstanceFiles, Unfetched
from dicombus_workers.routing.metrics import BreakerState, RoutingMetrics
from dicombus_workers.routing.stow import StowTransport
from dicombus_workers.routing.transport import ConnectionFailed, Response, Transport

LOGGER = logging.getLogger("dicombus_workers.routing")

STOW_SOURCE_AE_TITLE = "DICOMBUS"
# The longest a sender sleeps before it looks at the store again on its own.
SAFETY_POLL = 5.0


class DestinationSender:
    """The sender threads of one destination."""

    def __init__(
        self,
        destination: Destination,
        store: DeliveryStore,
        events: RouteEventPublisher,
        metrics: RoutingMetrics,
        edge: EdgeSettings | None = None,
    ) -> None:
        """``edge``: where instances whose stored file is not readable here are fetched."""
        self.destination = destination
        self.metrics = metrics
        self.files = InstanceFiles(edge)
        self.transport: Transport = (
            DimseTransport(destination, self.files)
            if isinstance(destination, DimseDestination)
            else StowTransport(destination, self.files)
        )
        # The AE title in the routing events' source (a STOW-RS sender has none of its own:
        # the DIMSE default names the router).
        self.ae_title = (
            destination.calling_ae_title
            if isinstance(destination, DimseDestination)
            else STOW_SOURCE_AE_TITLE
        )
        self.policy = destination.delivery
        self.store = store
        self.events = events
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        is_open = self.store.breaker(self.destination.name).is_open
        self.metrics.breaker(BreakerState.OPEN if is_open else BreakerState.CLOSED)
        for number in range(self.destination.concurrency):
            thread = threading.Thread(
                target=self._run, name=f"route-{self.destination.name}-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self.files.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.step()
            except Exception:
                # The store locked for too long, a bug: log, wait, go on; nothing is lost,
                # the rows stay in the store.
                LOGGER.exception("routing to %s failed; trying again", self.destination.name)
                worked = False
            if not worked:
                self._wake.wait(self._sleep())
                self._wake.clear()

    def _sleep(self) -> float:
        """How long to wait for the next round: until the next row is due, or, while the
        breaker is open, until its next probe (due rows wait for it: no round before)."""
        name = self.destination.name
        due = self.store.next_due(name)
        breaker = self.store.breaker(name)
        if breaker.is_open and breaker.probe_due is not None:
            due = breaker.probe_due if due is None else max(due, breaker.probe_due)
        return SAFETY_POLL if due is None else min(SAFETY_POLL, max(due - time.time(), 0.01))

    def step(self) -> bool:
        """One round: probe or send one batch. False when there was nothing to do."""
        if not self._breaker_allows():
            return False
        claimed = self.store.claim(self.destination.name, self.policy.batch_size)
        if not claimed:
            return False
        try:
            batch = self.transport.batch(claimed)
            self.store.put_back([d for d in claimed if d not in batch])
            self.send(batch, self.files.fetch(batch))
        except BaseException:
            # A failure mid-batch (the store locked too long, a bug): what was not settled
            # waits again now, rather than staying claimed by this live process until the
            # claim's lease runs out.
            self.store.put_back(claimed)
            raise
        finally:
            self.files.discard(claimed)
        return True

    # -- the circuit breaker --

    def _breaker_allows(self) -> bool:
        name = self.destination.name
        breaker = self.store.breaker(name)
        if not breaker.is_open:
            return True
        if breaker.probe_due is not None and time.time() < breaker.probe_due:
            return False
        self.metrics.breaker(BreakerState.HALF_OPEN)
        problem = self.transport.probe()
        if problem is None:
            LOGGER.warning("%s answers again: circuit breaker closed", name)
            self.store.set_breaker(name, Breaker())
            self.metrics.breaker(BreakerState.CLOSED)
            return True
        self.store.set_breaker(
            name, Breaker(breaker.failures, breaker.opened, time.time() + self.policy.breaker_probe)
        )
        self.metrics.breaker(BreakerState.OPEN)
        return False

    def _association_failed(self) -> None:
        name = self.destination.name
        breaker = self.store.breaker(name)
        failures = breaker.failures + 1
        if breaker.is_open or failures < self.policy.breaker_failures:
            self.store.set_breaker(name, Breaker(failures, breaker.opened, breaker.probe_due))
            return
        now = time.time()
        LOGGER.warning(
            "%s: %d failed connections in a row: circuit breaker open, probing every %.0f s",
            name,
            failures,
            self.policy.breaker_probe,
        )
        self.store.set_breaker(name, Breaker(failures, now, now + self.policy.breaker_probe))
        self.metrics.breaker(BreakerState.OPEN)

    # -- a batch --

    def send(
        self, batch: Sequence[Delivery], unfetched: Mapping[str, Unfetched] | None = None
    ) -> None:
        """Send ``batch``, but for the instances that could not be fetched from the edge
        (``unfetched``): those are settled by their own class, retried with the same
        back-off or dead letters, and do not count for the destination's breaker."""
        unfetched = unfetched or {}
        studies: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in batch:
            studies[delivery.request.context.get("study_instance_uid") or ""].append(delivery)
        to_send = [d for d in batch if d.sop_instance_uid not in unfetched]
        began: set[str] = set()
        for study, deliveries in studies.items():
            going = [d for d in deliveries if d.sop_instance_uid not in unfetched]
            if going:
                self._publish(ROUTE_BEGIN, going, {})
                began.add(study)
        results: dict[str, tuple[Outcome, int | None, str | None]] = {}
        for delivery in batch:
            missing = unfetched.get(delivery.sop_instance_uid)
            if missing is not None:
                response = Response(None, missing.reason, missing.permanent)
                results[delivery.sop_instance_uid] = self._settle(delivery, response)
        connection_error: str | None = None

        def record(delivery: Delivery, response: Response) -> None:
            nonlocal connection_error
            if response.status is None and not response.permanent:
                connection_error = connection_error or response.error
            results[delivery.sop_instance_uid] = self._settle(delivery, response)

        if to_send:
            try:
                self.transport.send_batch(to_send, record)
            except ConnectionFailed as exc:
                connection_error = str(exc)
                for delivery in to_send:
                    record(delivery, Response(None, str(exc)))
            if connection_error is not None:
                self._association_failed()
            elif self.store.breaker(self.destination.name).failures:
                self.store.set_breaker(self.destination.name, Breaker())
        self.metrics.settled(Counter(outcome for outcome, _, _ in results.values()))
        fetch_error = next((missing.reason for missing in unfetched.values()), None)
        for study, deliveries in studies.items():
            self._report(deliveries, results, connection_error or fetch_error, study in began)

    def _settle(
        self, delivery: Delivery, response: Response
    ) -> tuple[Outcome, int | None, str | None]:
        status = response.status
        if status is None:
            outcome = Outcome.DEAD if response.permanent else Outcome.RETRY
            reason = response.error or "no response"
        else:
            outcome = self.policy.classify(status)
            reason = f"{self.destination.name} answered {describe_status(status)}"
        attempts = delivery.attempts + 1
        if outcome is Outcome.RETRY and self.policy.gives_up(attempts):
            outcome, reason = Outcome.DEAD, f"gave up after {attempts} attempts: {reason}"
        if outcome is Outcome.ACKNOWLEDGED:
            self.store.acknowledge(delivery, status or 0)
            return outcome, status, None
        if outcome is Outcome.RETRY:
            due = time.time() + self.policy.delay(attempts)
            self.store.retry_later(delivery, due=due, status=status, reason=reason)
        else:
            LOGGER.warning(
                "%s -> %s: dead letter: %s", delivery.sop_instance_uid, delivery.destination, reason
            )
            self.store.dead_letter(delivery, status=status, reason=reason)
        return outcome, status, reason

    # -- events --

    def _report(
        self,
        deliveries: Sequence[Delivery],
        results: dict[str, tuple[Outcome, int | None, str | None]],
        error: str | None,
        began: bool,
    ) -> None:
        """The events that end a study's send; ``began``: its ``begin`` was published.
        Exactly one of them has ``closes_send`` set when it began (the audit's Instances
        Transferred for that Begin Transferring, PS3.15 A.5.3.7): ``sent`` when the
        destination answered any instance, else ``dead_letter`` (the send is over for
        them), else ``failed``."""
        answered = [d for d in deliveries if d.sop_instance_uid in results]
        sent = any(results[d.sop_instance_uid][1] is not None for d in answered)
        if sent:
            self._publish(ROUTE_SENT, answered, results, error, closes_send=began)
        retried = [d for d in answered if results[d.sop_instance_uid][0] is Outcome.RETRY]
        dead = [d for d in answered if results[d.sop_instance_uid][0] is Outcome.DEAD]
        unclosed = began and not sent
        if retried:
            self._publish(
                ROUTE_FAILED,
                retried,
                results,
                error or "refused for now",
                closes_send=unclosed and not dead,
            )
        if dead:
            self._publish(ROUTE_DEAD_LETTER, dead, results, error, closes_send=unclosed)

    def _publish(
        self,
        event_type: str,
        deliveries: Sequence[Delivery],
        results: dict[str, tuple[Outcome, int | None, str | None]],
        error: str | None = None,
        *,
        closes_send: bool = False,
    ) -> None:
        context = deliveries[0].request.context
        instances = []
        for delivery in deliveries:
            item: dict[str, Any] = {
                "sop_class_uid": delivery.request.sop_class_uid,
                "sop_instance_uid": delivery.sop_instance_uid,
            }
            if delivery.sop_instance_uid in results:
                outcome, status, reason = results[delivery.sop_instance_uid]
                item["status"] = status
                item["status_category"] = (
                    code_to_category(status) if status is not None else "Failure"
                )
                item["outcome"] = outcome.value
                item["reason"] = reason
            instances.append(item)
        data = {
            **self.transport.describe(),
            "study_instance_uid": context.get("study_instance_uid"),
            "patient_id": context.get("patient_id"),
            "patient_name": context.get("patient_name"),
            "accession_number": context.get("accession_number"),
            "instances": instances,
            "error": error,
            "closes_send": closes_send,
        }
        self.events.publish(
            event_type, data, edge=str(context.get("edge") or ""), ae_title=self.ae_title
        )
