"""``@on_event``: a plain function becomes a Celery task and a subscription to event types.

::

    from dicombus import evt
    from dicombus_workers import on_event

    @on_event(evt.EVT_C_STORE, queue="routing", idempotent=True)
    def route(event):
        print(event.assoc.requestor.ae_title, event.dataset.PatientID)

The task receives the event's envelope (a JSON object, the only argument of
the message the edge publishes) and calls the function with an
:class:`~dicombus_workers.records.EventRecord`. The subscription (task name,
queue, event types, whether raw PDU bytes are wanted) is kept here and
written to Redis when a worker that consumes its queue starts
(:func:`register_on_start`); edges then send each event of those types to
the task, one message per subscribed task (one for all the batch tasks of a
queue).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis
from celery import Task
from celery.signals import worker_ready
from dicombus import evt
from dicombus.bus.node_events import NODE_EVENT_TYPES
from dicombus.bus.subscriptions import Subscription, register_subscriptions
from dicombus.routing.route_events import ROUTE_EVENT_TYPES

from dicombus_workers.app import DEFAULT_QUEUE, app
from dicombus_workers.batch import BatchTask
from dicombus_workers.dead_letter import DeadLetterTask
from dicombus_workers.idempotency import DEFAULT_TTL, is_done, mark_all_done, mark_done, not_done
from dicombus_workers.records import EventRecord

LOGGER = logging.getLogger("dicombus_workers")

DICOM_EVENT_NAMES: frozenset[str] = frozenset(
    [event.name for event in evt.NOTIFICATION_EVENTS]
    + [event.name for event in evt.INTERVENTION_EVENTS]
)
# With the events the routing workers publish about their own steps (docs/routing.md) and
# the edge's start and stop (docs/bus.md).
EVENT_NAMES: frozenset[str] = (
    DICOM_EVENT_NAMES | frozenset(ROUTE_EVENT_TYPES) | frozenset(NODE_EVENT_TYPES)
)

# Every subscription made with on_event in this process, by task name.
_SUBSCRIPTIONS: dict[str, Subscription] = {}

EventTypeLike = evt.NotificationEvent | evt.InterventionEvent | str


def event_name(event_type: EventTypeLike) -> str:
    """``evt.EVT_C_STORE`` or ``"EVT_C_STORE"`` -> ``"EVT_C_STORE"``; unknown names fail."""
    name = event_type if isinstance(event_type, str) else event_type.name
    if name not in EVENT_NAMES:
        close = difflib.get_close_matches(name, sorted(EVENT_NAMES), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"{name!r} is not a dicombus event type{hint}")
    return name


def on_event(
    *event_types: EventTypeLike,
    queue: str = DEFAULT_QUEUE,
    raw: bool = False,
    name: str | None = None,
    idempotent: bool = False,
    idempotency_ttl: int = DEFAULT_TTL,
    dead_letter: bool = True,
    batch: bool = False,
    **task_options: Any,
) -> Callable[[Callable[..., Any]], Task]:
    """Make ``fn(event_record)`` a Celery task subscribed to ``event_types``.

    ``name``: the task name (default ``<module>.<function>``); ``queue``: the
    Celery queue its messages go to; ``raw``: ask edges for the raw bytes of
    PDU and data events; ``idempotent``: skip an event a finished run already
    handled and mark it done after a run returns (as
    :func:`dicombus_workers.idempotency.idempotent`, scoped by the task name);
    ``dead_letter``: keep an event the task gave up on (retries exhausted, or
    an error it does not retry) in its dead-letter list in Redis
    (:mod:`dicombus_workers.dead_letter`); False lets such an event go;
    ``batch``: the function receives a list of event records, many events per
    call (:mod:`dicombus_workers.batch`; ``batch_size=`` and ``batch_linger=``
    tune it; failures, retries and dead letters stay per event; the batch tasks of
    one queue receive each event in one message between them).
    Other keyword arguments are Celery task options (``autoretry_for``,
    ``max_retries``, ``bind=True`` to receive the task as the first argument ...).
    """
    if not event_types:
        raise ValueError("on_event needs at least one event type")
    names = frozenset(event_name(event_type) for event_type in event_types)
    bind = bool(task_options.pop("bind", False))
    if batch:
        if not dead_letter or "base" in task_options:
            raise ValueError(
                "on_event: a batch task keeps its failed events as dead letters "
                "with its own base class; leave out dead_letter=False and base="
            )
        # Celery's autoretry wraps a call of one message; a batch retries each
        # failed event itself (BatchTask.retry_for).
        task_options["retry_for"] = tuple(task_options.pop("autoretry_for", ()))
    base = task_options.pop("base", BatchTask if batch else DeadLetterTask if dead_letter else Task)
    if dead_letter and not issubclass(base, DeadLetterTask):
        raise ValueError(
            f"on_event: base={base.__name__} does not subclass DeadLetterTask; "
            "subclass it, or pass dead_letter=False"
        )

    def decorate(fn: Callable[..., Any]) -> Task:
        task_name = name or f"{fn.__module__}.{fn.__name__}"

        def run_one(task: Task, envelope: dict[str, Any]) -> Any:
            record = EventRecord(envelope)
            if idempotent and is_done(record.id, task_name):
                return None
            result = fn(task, record) if bind else fn(record)
            if idempotent:
                mark_done(record.id, task_name, idempotency_ttl)
            return result

        def run_batch(task: Task, envelopes: list[dict[str, Any]]) -> Any:
            records = [EventRecord(envelope) for envelope in envelopes]
            if idempotent:
                records = not_done(records, task_name)
                if not records:
                    return None
            result = fn(task, records) if bind else fn(records)
            if idempotent:
                mark_all_done([record.id for record in records], task_name, idempotency_ttl)
            return result

        run = run_batch if batch else run_one

        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__module__ = fn.__module__
        run.__doc__ = fn.__doc__
        task: Task = app.task(name=task_name, bind=True, base=base, **task_options)(run)
        # Messages Celery itself sends for the task (retries, delay()) go to its
        # queue too, and a worker started without -Q consumes that queue.
        app.conf.task_routes[task_name] = {"queue": queue}
        app.amqp.queues.select_add(queue)
        _SUBSCRIPTIONS[task_name] = Subscription(
            task=task_name, queue=queue, event_types=names, raw=raw, batch=batch
        )
        return task

    return decorate


def subscriptions(queues: Iterable[str] | None = None) -> list[Subscription]:
    """The on_event subscriptions of this process, only those on ``queues`` if given."""
    wanted = None if queues is None else set(queues)
    return [sub for sub in _SUBSCRIPTIONS.values() if wanted is None or sub.queue in wanted]


def register_on_start(sender: Any = None, **_kwargs: Any) -> None:
    """Write the subscriptions this worker serves to the registry in Redis.

    Only those whose queue the worker consumes: a subscription nobody
    consumes would pile messages up in Redis.
    """
    consumed = list(app.amqp.queues.consume_from)
    subs = subscriptions(consumed)
    if not subs:
        return
    client = redis.Redis.from_url(str(app.conf.broker_url))
    try:
        register_subscriptions(client, subs)
    finally:
        client.close()
    LOGGER.info(
        "registered subscriptions: %s",
        ", ".join(f"{sub.task} ({len(sub.event_types)} event types)" for sub in subs),
    )


worker_ready.connect(register_on_start)
