"""The routing tasks: a router that applies the rules, and a deliverer per destination.

Registered with the built-in tasks (``dicombus_workers.builtin``) when the node's file
named by ``DICOMBUS_CONFIG`` has ``[routing]`` destinations:

- ``dicombus.route`` (queue ``dicombus.route``), a batch task on EVT_C_STORE: evaluates
  the rules on each stored instance and sends one message per (instance, destination) to
  the destination's queue, ``dicombus.route.<name>``;
- ``dicombus.route.deliver.<name>`` (queue ``dicombus.route.<name>``), a batch task:
  records the messages in the delivery store (``DICOMBUS_ROUTING_DB``, default
  ``routing.sqlite3`` in the node's ``data_dir``) and wakes the destination's senders,
  which run in every worker that consumes that queue (``dicombus worker -Q
  dicombus.route.<name>``), ``concurrency`` of them (:mod:`.sender`).

The messages are acknowledged once recorded: from there the store keeps them (retries
with their due times, dead letters), and the store's primary key makes a redelivered
message or a replayed event change nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown
from dicombus import evt
from dicombus.bus.edge_config import load_edge_config
from dicombus.bus.sender import task_id_for
from dicombus.routing import RoutingConfig, load_routing_config, rules
from dicombus.routing.delivery_store import DeliveryRequest, DeliveryStore, store_path
from dicombus.routing.requests import delivery_request, study_context, study_of
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from dicombus_workers.app import app, broker_url, task_max_retries
from dicombus_workers.batch import BatchTask
from dicombus_workers.on_event import on_event
from dicombus_workers.records import EventRecord
from dicombus_workers.routing.completeness import StudyWatch
from dicombus_workers.routing.events import FOLDER as EVENTS_FOLDER
from dicombus_workers.routing.events import RouteEventPublisher
from dicombus_workers.routing.metrics import RoutingMetrics
from dicombus_workers.routing.sender import DestinationSender
from dicombus_workers.routing.wakeup import WakeListener, wake_senders

LOGGER = logging.getLogger("dicombus_workers.routing")

CONFIG_ENV = "DICOMBUS_CONFIG"
STORE_ENV = "DICOMBUS_ROUTING_DB"
ROUTER_TASK = "dicombus.route"
ROUTER_QUEUE = "dicombus.route"
DELIVER_TASK_PREFIX = "dicombus.route.deliver."
# The units a rule's own quiet time can hold deliveries for.
QUIET_PER = (rules.Per.STUDY, rules.Per.SERIES)


class Routing:
    """The node's routing configuration, its delivery store, and the senders started here."""

    def __init__(self, config: RoutingConfig, store: DeliveryStore) -> None:
        self.config = config
        self.store = store
        self.senders: dict[str, DestinationSender] = {}
        self.watch: StudyWatch | None = None
        self.events: RouteEventPublisher | None = None
        self.wake_listener: WakeListener | None = None

    def route(self, records: list[EventRecord]) -> None:
        """Send each (instance, destination) the rules give to the destination's queue."""
        for record in records:
            self._saw(record)
            for route in self.config.routes(record.envelope):
                request = delivery_request(record.envelope, route)
                name = DELIVER_TASK_PREFIX + route.destination
                app.send_task(
                    name,
                    args=(request.to_json(),),
                    queue=self.config.destinations[route.destination].queue,
                    task_id=task_id_for(record.id, name),
                )

    def _saw(self, record: EventRecord) -> None:
        """Record the stored instance for study completeness, before it is routed (so a
        per-study request never finds its study stable while the study still arrives)."""
        found = study_of(record.envelope)
        if found is None or not rules.stored_instance(record.envelope):
            return
        study, series = found
        sop_instance_uid = str(record.data.get("sop_instance_uid"))
        context = study_context(record.envelope)
        if self.store.saw_instance(study, series, sop_instance_uid, context) and self.watch:
            self.watch.saw_instance()

    def deliver(self, destination: str, envelopes: list[dict[str, Any]]) -> None:
        self.store.add(DeliveryRequest.from_json(found) for found in envelopes)
        sender = self.senders.get(destination)
        if sender is not None:
            sender.wake()

    def start_senders(self, consumed: set[str]) -> None:
        url = broker_url()
        events = RouteEventPublisher(url, self.store.path.parent / EVENTS_FOLDER)
        self.events = events
        if ROUTER_QUEUE in consumed:
            self.watch = StudyWatch(
                self.store,
                events,
                self.config.study_quiet_seconds,
                rule_quiets={per.value: self.config.quiet_times(per) for per in QUIET_PER},
                released=lambda: wake_senders(url),
            )
            self.watch.start()
        for destination in self.config.destinations.values():
            if destination.queue in consumed:
                metrics = RoutingMetrics(broker_url(), destination.name)
                sender = DestinationSender(
                    destination, self.store, events, metrics, self.config.edge
                )
                self.senders[destination.name] = sender
                sender.start()
                LOGGER.info(
                    "routing to %s (%s): %d sender(s)",
                    destination.name,
                    destination.address,
                    destination.concurrency,
                )
        if self.senders:
            self.wake_listener = WakeListener(url, self._wake_senders)
            self.wake_listener.start()

    def _wake_senders(self) -> None:
        for sender in self.senders.values():
            sender.wake()

    def stop_senders(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        if self.wake_listener is not None:
            self.wake_listener.stop()
        for sender in self.senders.values():
            sender.stop()
        if self.events is not None:
            self.events.close()  # after the senders: their last events are kept


def configured_routing() -> Routing | None:
    """The routing of the node's file ``DICOMBUS_CONFIG``; None without destinations."""
    path = os.environ.get(CONFIG_ENV, "").strip()
    if not path:
        return None
    config = load_routing_config(Path(path))
    if not config.destinations:
        return None
    named = os.environ.get(STORE_ENV, "").strip()
    store = Path(named) if named else store_path(load_edge_config(Path(path)).data_dir)
    return Routing(config, DeliveryStore(store))


def _deliverer(routing: Routing, destination: str, queue: str) -> Task:
    name = DELIVER_TASK_PREFIX + destination

    def deliver(_task: Task, envelopes: list[dict[str, Any]]) -> None:
        routing.deliver(destination, envelopes)

    deliver.__name__ = deliver.__qualname__ = f"deliver_{destination}"
    task: Task = app.task(
        name=name,
        bind=True,
        base=BatchTask,
        # The store's file briefly locked by another process: retry, then a dead letter.
        retry_for=(sqlite3.OperationalError,),
        max_retries=task_max_retries(),
    )(deliver)
    # Not added to the default queues: only a worker started for the destination
    # (-Q dicombus.route.<name>) consumes it, and runs its senders.
    app.conf.task_routes[name] = {"queue": queue}
    return task


_routing = configured_routing()

if _routing is not None:
    routing: Routing = _routing
    for _destination in routing.config.destinations.values():
        _deliverer(routing, _destination.name, _destination.queue)

    @on_event(
        evt.EVT_C_STORE,
        queue=ROUTER_QUEUE,
        name=ROUTER_TASK,
        batch=True,
        # Redis briefly away while the router hands on: retry, then a dead letter.
        autoretry_for=(OperationalError, RedisError, OSError),
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=task_max_retries(),
    )
    def route(events: list[EventRecord]) -> None:
        """Apply the rules; hand each (instance, destination) to the destination's queue."""
        routing.route(events)

    def _started(**_kwargs: Any) -> None:
        routing.start_senders(set(app.amqp.queues.consume_from))

    def _stopping(**_kwargs: Any) -> None:
        routing.stop_senders()

    worker_ready.connect(_started, weak=False)
    worker_shutdown.connect(_stopping, weak=False)
