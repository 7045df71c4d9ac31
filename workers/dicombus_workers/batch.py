"""Batch tasks: a worker runs many events in one call (``on_event(..., batch=True)``).

A Celery task costs the worker about 1.4 ms of CPU per message here, most of it
Celery's own machinery around the function (a request object, tracing, state,
signals, one acknowledgement round trip). A :class:`BatchTask` replaces the
task's *strategy*, the worker-side handler of its messages: each message is
decoded into a :class:`BatchItem` and buffered; when ``batch_size`` items are
buffered, or ``batch_linger`` seconds after the first one arrived, the whole
buffer runs as one call of the task in the pool, with the list of envelopes.

What a batch keeps of the one-message guarantees:

- **At least once, acknowledged late.** The messages of a batch are
  acknowledged only after the call returned (or after each event that failed
  was retried or kept as a dead letter). A worker killed mid-batch leaves every
  message of the batch unacknowledged: a killed prefork child's batch is put
  back at once (``task_reject_on_worker_lost``), a killed worker's after the
  visibility timeout, as for single messages.
- **Order.** Items run in the order the worker received them, which for one
  queue is the order the edge published them (per association: sequence order).
- **Failures stay per event.** When the call raises, each event of the batch
  runs again alone, in order: the events that succeed are done; an event that
  fails alone with a retryable error (``autoretry_for``) is sent again to the
  task's queue with back-off (the same task id, one retry more, as Celery's
  ``retry`` does), and one that fails for good becomes a dead letter of its own
  (:mod:`dicombus_workers.dead_letter`). The rest of the batch is not held back.

The worker reserves ``batch_size`` more messages per batch task it consumes
(:class:`BatchPrefetch`), so a batch can fill beyond the worker's prefetch.

Several batch tasks on one queue share one message per event: the edge sends
it to :class:`DispatchTask` (``dicombus.dispatch``) with the tasks' names, and
a batch of those messages runs as one call of each named task, with the task
id the edge would have given that task's own message (``<event id>/<task>``):
retries, dead letters and idempotency stay each task's.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery import bootsteps
from celery.utils.time import get_exponential_backoff_interval, maybe_iso8601
from dicombus.bus.sender import task_id_for
from dicombus.bus.subscriptions import DISPATCH_TASK
from kombu.message import Message
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from dicombus_workers import transport
from dicombus_workers.app import app
from dicombus_workers.dead_letter import DeadLetterTask
from dicombus_workers.task_outcomes import RETRIED, SUCCEEDED, record

LOGGER = logging.getLogger("dicombus_workers.batch")

# Events per call. 100 amortises the per-call costs (a transaction, a script,
# a function call) to a few microseconds an event, and bounds what one failing
# call makes run again alone.
DEFAULT_BATCH_SIZE = 100
# How long the first event of a partial batch waits for company: at a trickle
# an event runs at most this much later; under load batches fill first.
DEFAULT_BATCH_LINGER = 0.05
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One message of a batch: what the pool process needs (it is pickled to it)."""

    task_id: str
    envelope: dict[str, Any]
    retries: int  # how many times the event was retried before this delivery
    # A dispatch message's: the tasks it names, and the queue it came on.
    tasks: tuple[str, ...] = ()
    queue: str = ""


@dataclass(frozen=True, slots=True)
class _Delivery:
    """A buffered message and how to settle it with the broker."""

    item: BatchItem
    message: Message
    requeue: Callable[[], Any]


class BatchTask(DeadLetterTask):
    """A task whose function receives a list of event envelopes (see the module docstring).

    ``retry_for``: the errors an event is retried for (``on_event`` moves
    ``autoretry_for`` here: Celery's autoretry wraps a single-message call).
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    batch_linger: float = DEFAULT_BATCH_LINGER
    retry_for: tuple[type[BaseException], ...] = ()

    # -- in the pool process --------------------------------------------------------------

    def run_items(self, items: Sequence[BatchItem]) -> None:
        """Run a batch; if it raises, run its events alone and settle each failure."""
        try:
            self.run([item.envelope for item in items])
            record(self.name, SUCCEEDED, len(items))
            return
        except Exception as error:
            if len(items) == 1:
                self._settle_failure(items[0], error)
                return
            LOGGER.warning(
                "%s: a batch of %d events failed (%s: %s); running them one at a time",
                self.name,
                len(items),
                type(error).__name__,
                error,
            )
        succeeded = 0
        for item in items:
            try:
                self.run([item.envelope])
                succeeded += 1
            except Exception as error:
                self._settle_failure(item, error)
        record(self.name, SUCCEEDED, succeeded)

    def _settle_failure(self, item: BatchItem, error: Exception) -> None:
        """Retry the event later on its own, or keep it as a dead letter."""
        max_retries = self.max_retries
        retryable = isinstance(error, self.retry_for)
        if retryable and (max_retries is None or item.retries < max_retries):
            countdown = self._retry_delay(item.retries)
            self.apply_async(
                args=(item.envelope,),
                task_id=item.task_id,
                retries=item.retries + 1,
                countdown=countdown,
                queue=self.routed_queue(),
            )
            record(self.name, RETRIED)
            LOGGER.info(
                "%s: event %s retried in %d s (%s: %s)",
                self.name,
                item.envelope.get("id"),
                countdown,
                type(error).__name__,
                error,
            )
            return
        self.keep_dead_letter(
            item.envelope,
            error=f"{type(error).__name__}: {error}",
            attempts=item.retries + 1,
            traceback_text="".join(traceback.format_exception(error)),
        )

    def _retry_delay(self, retries: int) -> int:
        if not self.retry_backoff:
            return int(self.default_retry_delay)
        return int(
            get_exponential_backoff_interval(
                factor=int(max(1.0, float(self.retry_backoff))),
                retries=retries,
                maximum=int(getattr(self, "retry_backoff_max", 600)),
                full_jitter=bool(getattr(self, "retry_jitter", True)),
            )
        )

    # -- in the worker's consumer ---------------------------------------------------------

    def Strategy(self, task: BatchTask, _app: Any, consumer: Any) -> Callable[..., None]:
        """The handler of this task's messages in the worker (Celery's strategy hook)."""
        return _BatchBuffer(task, consumer).on_message


class _BatchBuffer:
    """The worker-side buffer of one batch task: fills, then hands a batch to the pool."""

    def __init__(self, task: BatchTask, consumer: Any) -> None:
        self.task = task
        self.consumer = consumer
        self.pending: list[_Delivery] = []
        self.linger_timer: Any = None

    def on_message(
        self, message: Message, _payload: Any, ack: Any, reject: Any, _callbacks: Any, **_: Any
    ) -> None:
        # Celery's promises: settled on the consumer's next loop turn, errors logged.
        errors = self.consumer.connection_errors
        try:
            delivery = _Delivery(
                _item_of(message), message, functools.partial(reject, LOGGER, errors, True)
            )
        except ValueError as error:
            # Not an event message: keep it whole as a dead letter rather than drop it.
            self.task.keep_dead_letter(
                {"body": message.body if isinstance(message.body, str) else repr(message.body)},
                error=f"ValueError: {error}",
                attempts=1,
                traceback_text="",
            )
            ack(LOGGER, errors)
            return
        wait = _seconds_until(message.headers.get("eta"))
        if wait > 0:
            # A retry with back-off: held until its time without taking a prefetch
            # slot, as Celery's own strategy holds ETA messages.
            self.consumer.qos.increment_eventually()
            self.consumer.timer.call_after(wait, self._add_after_eta, (delivery,), priority=6)
            return
        self._add(delivery)

    def _add_after_eta(self, delivery: _Delivery) -> None:
        self.consumer.qos.decrement_eventually()
        self._add(delivery)

    def _add(self, delivery: _Delivery) -> None:
        self.pending.append(delivery)
        if len(self.pending) >= self.task.batch_size:
            self.flush()
        elif self.linger_timer is None:
            self.linger_timer = self.consumer.timer.call_after(self.task.batch_linger, self.flush)

    def flush(self) -> None:
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        batch, self.pending = self.pending, []
        if not batch:
            return
        task = self.task
        time_limit = task.time_limit or task.app.conf.task_time_limit
        self.consumer.pool.apply_async(
            _run_batch,
            args=(task.name, [delivery.item for delivery in batch]),
            callback=lambda result: self.settle(batch, result),
            error_callback=lambda error: self.settle(batch, error),
            timeout=time_limit,
        )

    def settle(self, batch: list[_Delivery], result: Any) -> None:
        """Acknowledge the batch once its call returned; put it back if its process died."""
        task = self.task
        error = result.exception if isinstance(result, ExceptionInfo) else result
        if isinstance(error, WorkerLostError) and task.reject_on_worker_lost:
            LOGGER.error(
                "%s: the process running a batch of %d died; requeued", task.name, len(batch)
            )
            for delivery in batch:
                delivery.requeue()
            return
        if isinstance(error, BaseException):
            # The hard time limit (or another death the task could not report): each
            # event becomes a dead letter, as a single message would.
            for delivery in batch:
                task.keep_dead_letter(
                    delivery.item.envelope,
                    error=f"{type(error).__name__}: {error}",
                    attempts=delivery.item.retries + 1,
                    traceback_text="",
                )
        try:
            _acknowledge([delivery.message for delivery in batch])
        except self.consumer.connection_errors + self.consumer.channel_errors as ack_error:
            # As kombu's ack_log_error: unacknowledged, the messages come back after
            # the visibility timeout, and the tasks are idempotent by event id.
            LOGGER.critical("%s: could not acknowledge a batch: %r", task.name, ack_error)


def _acknowledge(messages: list[Message]) -> None:
    """Acknowledge messages together: one Redis transaction of two commands for the batch.

    kombu's Redis transport acknowledges a message with a MULTI/EXEC of its own
    (ZREM of the unacked index, HDEL of the unacked hash): a round trip, and
    with ``appendfsync always`` an fsync, per message. Here one ``ZREM`` and one
    ``HDEL`` name every delivery tag of the batch (both take many members), in
    one transaction: the same keys and entries removed, with two commands to
    encode and two replies to parse where a command pair per message cost the
    worker more CPU than the audit row (docs/performance.md). Other transports
    acknowledge one by one.
    """
    channel = messages[0].channel
    qos = channel.qos
    if not isinstance(qos, kombu_redis.QoS):
        for message in messages:
            message.ack()
        return
    tags = [message.delivery_tag for message in messages]
    with channel.conn_or_acquire() as client, client.pipeline() as pipe:
        pipe.zrem(qos.unacked_index_key, *tags).hdel(qos.unacked_key, *tags)
        pipe.execute()
    for message in messages:
        # What kombu's QoS.ack does after its Redis commands: forget the delivery
        # (this frees the prefetch slot), and mark the message acknowledged.
        virtual.QoS.ack(qos, message.delivery_tag)
        message._state = "ACK"


class DispatchTask(BatchTask):
    """``dicombus.dispatch``: each event of a batch, for each batch task its message names.

    The events are grouped by task, in the order received, and each task's
    ``run_items`` gets its own items under its own task ids. A task this worker
    does not have as a batch task gets each of its events sent alone to the queue
    the dispatch message came on, as the edge would have sent it without
    grouping: another worker of that queue may have it; the event is not dropped.
    """

    name = DISPATCH_TASK

    def run_items(self, items: Sequence[BatchItem]) -> None:
        by_task: dict[str, list[BatchItem]] = {}
        for item in items:
            event_id = str(item.envelope.get("id"))
            for name in item.tasks:
                own = BatchItem(task_id_for(event_id, name), item.envelope, item.retries)
                by_task.setdefault(name, []).append(own)
        queue = items[0].queue if items else ""
        first_error: Exception | None = None
        for name, task_items in by_task.items():
            task = self.app.tasks.get(name)
            try:
                if isinstance(task, BatchTask) and not isinstance(task, DispatchTask):
                    task.run_items(task_items)
                else:
                    self._send_alone(name, task_items, queue)
            except Exception as error:
                # run_items settles its events' failures itself; what escapes it (Redis
                # refusing a retry or a dead letter) must not keep the other tasks from
                # their events: it is raised once they have run.
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    def _send_alone(self, name: str, items: list[BatchItem], queue: str) -> None:
        LOGGER.warning(
            "%s: this worker has no batch task %s; its %d events are sent to it alone on %s",
            self.name,
            name,
            len(items),
            queue,
        )
        for item in items:
            self.app.send_task(
                name, args=(item.envelope,), task_id=item.task_id, queue=queue or None
            )


app.register_task(DispatchTask())


def _run_batch(task_name: str, items: list[BatchItem]) -> None:
    """What the pool runs: by name, so a prefork child uses its own task object."""
    task = app.tasks[task_name]
    if not isinstance(task, BatchTask):
        raise TypeError(f"{task_name} is not a batch task in this process")
    task.run_items(items)


def _seconds_until(eta: str | None) -> float:
    """How long until a message's ETA (ISO 8601, as Celery writes it); 0 if none or past."""
    moment = maybe_iso8601(eta)
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # Celery writes UTC with enable_utc (its default)
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, float((moment - datetime.now(UTC)).total_seconds()))


def _body_of(message: Message) -> Any:
    """The message's body decoded: JSON (the workers' only content type) by the
    transport's reader, anything else by kombu (which refuses what is not accepted)."""
    accept = message.accept
    if message.content_type == _JSON and (accept is None or _JSON in accept):
        return transport.loads(message.body)
    return message.decode()


def _item_of(message: Message) -> BatchItem:
    """The event of a Celery protocol-2 message whose only argument is its envelope."""
    headers = message.headers or {}
    task_id = headers.get("id")
    decoded = _body_of(message)
    args = decoded[0] if isinstance(decoded, list | tuple) and decoded else None
    if not isinstance(task_id, str) or not isinstance(args, list | tuple) or len(args) != 1:
        raise ValueError(
            f"a message for batch task {headers.get('task')!r} must be a Celery protocol-2 "
            "message whose only argument is an event envelope"
        )
    envelope = args[0]
    if not isinstance(envelope, dict):
        raise ValueError(f"the argument of message {task_id} is not an event envelope")
    kwargs = decoded[1] if len(decoded) > 1 and isinstance(decoded[1], dict) else {}
    tasks = kwargs.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(name, str) and name for name in tasks):
        raise ValueError(f"the 'tasks' of message {task_id} is not a list of task names")
    if headers.get("task") == DISPATCH_TASK and not tasks:
        raise ValueError(f"the {DISPATCH_TASK} message {task_id} names no tasks")
    return BatchItem(
        task_id=task_id,
        envelope=envelope,
        retries=int(headers.get("retries") or 0),
        tasks=tuple(tasks),
        queue=str((message.delivery_info or {}).get("routing_key") or ""),
    )


class BatchPrefetch(bootsteps.StartStopStep):  # type: ignore[misc]
    """Reserve ``batch_size`` more messages per batch task this worker consumes.

    With ``worker_prefetch_multiplier`` 1 a worker holds one unacknowledged
    message per pool process, and a batch would never grow past that.
    Runs after the task consumer has set its prefetch, at every (re)connect.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer: Any) -> None:
        consumed = set(consumer.app.amqp.queues.consume_from or consumer.app.amqp.queues)
        extra = sum(
            task.batch_size
            for task in consumer.app.tasks.values()
            if isinstance(task, BatchTask) and task.routed_queue() in consumed
        )
        if extra:
            consumer.qos.increment_eventually(extra)
            consumer.qos.update()


app.steps["consumer"].add(BatchPrefetch)
