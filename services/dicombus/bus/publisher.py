"""The edge's publisher: captured events to Celery task messages in Redis, never blocking DICOM.

Path of one event::

    association thread          publisher thread                        Redis
    ------------------          ----------------                        -----
    submit(pending) --put_nowait--> batch of up to batch_size events
          |                         to_envelope() once per event
          |                         one Celery message per subscribed task
          |                         one pipelined kombu publish -------> LPUSH <queue>
          |                               |
          | queue full                    | broker error: this batch and all
          v                               v that is queued after it
    outbox (SQLite) <---------------------+
          '------- replayed oldest first once Redis answers --------> LPUSH <queue>

``submit`` runs on association threads. It never touches the network: the
event goes onto a bounded in-memory queue (``put_nowait``). Only when that
queue is full (Redis slow and the publisher ``queue_size`` events behind) is the
event built and written to the outbox on the calling thread: a local SQLite
insert, whose cost docs/bus.md gives.

The publisher thread takes events off the queue in batches, builds each
envelope once and, per subscribed task, a Celery protocol-2 task message with
Celery's own ``app.amqp.as_task_v2`` (JSON, args ``[envelope]``, kwargs
``{}``), and publishes the batch through one reused kombu Producer as one Redis
pipeline. Retries in kombu and redis-py are off: the outbox owns durability.
On any broker error the batch goes to the outbox and the thread switches to
replay mode: it keeps moving whatever is queued into the outbox (so association
threads do not find the queue full), pings Redis with bounded back-off and,
once Redis answers, replays the outbox oldest first, deleting rows only after
Redis took them; then it publishes directly again.

Delivery is at least once. A batch that failed half-way may be partly in Redis
and is replayed whole; a replayed message is identical, with the task id
:func:`task_id_for` derives from (event id, task name), so a task that
deduplicates on its id (or on the event id) runs once.

Order. Events are numbered as they are submitted and the outbox replays by that
number. Before each replayed chunk the publisher moves the queue into the
outbox, and it reads the chunk again if an association thread spooled an event
itself meanwhile (that thread's earlier events may still have been queued). So
each association's events (submitted one after another by its thread) reach
every queue in sequence order.

What is not durable: events still in the in-memory queue when the edge process
is killed (SIGKILL) are lost; the window is the queue's depth, normally
milliseconds. :meth:`Publisher.stop` flushes the queue to Redis or the outbox.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.connection import Connection
from kombu.messaging import Producer
from kombu.transport import redis as kombu_redis

from dicombus.bus.envelope import PendingEvent
from dicombus.bus.outbox import Outbox, OutboxError, OutboxMessage, StoredMessage
from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import Subscription, SubscriptionView

LOGGER = logging.getLogger("dicombus.bus.publisher")

# Task ids are uuid5(namespace, "<event id>/<task name>"): stable across replays
# and restarts, different for each subscribed task of one event.
TASK_ID_NAMESPACE = uuid.UUID("6f1c3c8e-5a57-4f0e-9d55-2d1f1b7d0b1e")
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
# Replay-mode back-off between pings of a Redis that does not answer: short at
# first (most outages are a restart), capped so recovery is noticed within it.
RECONNECT_FIRST = 0.05
RECONNECT_CAP = 0.5
# One line of metrics at DEBUG this often (the thread also wakes for it when idle).
METRICS_INTERVAL = 30.0
# How long the publisher thread waits for a batch to fill once an event is in.
# One message per Redis pipeline costs about 70 us of CPU, one in a batch of
# 2 about 55 us, of 50 about 25 us; at a steady C-STORE pace (~1,000/s)
# batches were of one or two. Ten milliseconds make them about ten, which cut
# the edge's CPU per published C-STORE by about 90 us (bench/bus_run.py row 4)
# at a latency cost (5 ms on average) well under the 50 ms budget from DICOM
# event to task start.
BATCH_LINGER = 0.010

COUNTERS = (
    "submitted",  # events given to submit()
    "published",  # messages sent to Redis straight from the queue
    "spooled",  # messages written to the outbox
    "spooled_on_submit",  # events an association thread wrote to the outbox (queue full)
    "replayed",  # messages sent to Redis from the outbox
    "unrouted",  # events nobody was subscribed to any more by publishing time
    "failed",  # events that could not be serialized or stored (each logged with its id)
)


def task_id_for(event_id: str, task: str) -> str:
    """The Celery task id of ``event_id``'s message to ``task`` (deterministic)."""
    return str(uuid.uuid5(TASK_ID_NAMESPACE, f"{event_id}/{task}"))


class TaskMessageBuilder:
    """Celery protocol-2 task messages, built by Celery's own ``as_task_v2``.

    The Celery app here only builds messages (it never connects anywhere); it is
    configured for JSON, as the workers are.
    """

    def __init__(self, origin: str) -> None:
        self._app = Celery("dicombus-edge", set_as_current=False)
        self._app.conf.update(task_serializer="json", accept_content=["json"])
        # Built now, once: otherwise on first use, possibly on an association thread.
        self._amqp = self._app.amqp
        self._origin = origin

    def build(
        self, envelope: dict[str, Any], sub: Subscription, *, order: int, created: float
    ) -> OutboxMessage:
        event_id = str(envelope["id"])
        task_id = task_id_for(event_id, sub.task)
        message = self._amqp.as_task_v2(
            task_id,
            sub.task,
            args=(envelope,),
            kwargs={},
            # What logs and monitors show for the arguments; the default would
            # repr the whole envelope.
            argsrepr=f"<{envelope['type']} {event_id}>",
            kwargsrepr="{}",
            origin=self._origin,
        )
        return OutboxMessage(
            event_id=event_id,
            task=sub.task,
            queue=sub.queue,
            task_id=task_id,
            # Plain JSON (not kombu's encoder, which tags datetimes in its own
            # format): a value that is not JSON is an error here, not a surprise
            # in a worker.
            body=json.dumps(message.body, separators=(",", ":")),
            headers=message.headers,
            order=order,
            created=created,
        )


class _PublishChannel(kombu_redis.Channel):
    """kombu's Redis channel, with one Redis client kept for publishing.

    kombu makes a new redis-py client (and copies its table of ~200 response
    callbacks) for every publish batch: about 50 us of CPU, paid per batch,
    which at a steady C-STORE pace means per event. The client shares the
    channel's connection pool either way; only the publisher thread uses it.
    """

    _publish_client: Any = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._publish_client is None:
            self._publish_client = self._create_client()  # type: ignore[no-untyped-call]
        yield self._publish_client


class _PublishTransport(kombu_redis.Transport):
    Channel = _PublishChannel


# kombu's aliases for its plain Redis transport; others (sentinel://) keep their own.
_PLAIN_REDIS_SCHEMES = ("redis", "rediss")


class Broker:
    """One kombu connection with one reused Producer, rebuilt after any failure.

    Publishes a batch of messages as one Redis pipeline (kombu's
    ``Producer.batch``), to the anonymous exchange with the queue name as the
    routing key: the message lands in the Redis list of that queue whether or not
    a worker has declared it yet.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Send ``messages``; on any error the connection is dropped and the error raised
        (some of the messages may have reached Redis)."""
        if not messages:
            return
        try:
            producer = self._producer or self._connect()
            with producer.batch(max_size=len(messages)):
                for message in messages:
                    producer.publish(
                        message.body,
                        exchange="",
                        routing_key=message.queue,
                        headers=message.headers,
                        content_type=CONTENT_TYPE,
                        content_encoding=CONTENT_ENCODING,
                        delivery_mode=2,
                        retry=False,
                        correlation_id=message.task_id,
                        reply_to="",
                    )
        except BaseException:
            self.close()
            raise

    def ping(self) -> bool:
        """Whether Redis answers now (a fresh connection, ``timeout`` bounded)."""
        client = broker_client(self.url, timeout=self.timeout)
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception as exc:  # a dead connection may fail to close; it is gone anyway
                LOGGER.debug("closing the broker connection: %s", exc)

    def _connect(self) -> Producer:
        options = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            # kombu's own connection retries: none, the publisher has its policy.
            "max_retries": 0,
        }
        scheme = self.url.partition("://")[0].lower()
        self._connection = Connection(
            self.url,
            connect_timeout=self.timeout,
            transport_options=options,
            transport=_PublishTransport if scheme in _PLAIN_REDIS_SCHEMES else None,
        )
        self._producer = Producer(self._connection.default_channel, auto_declare=False)
        return self._producer


@dataclass(frozen=True, slots=True)
class _Submitted:
    order: int  # submit order: the outbox replays by it
    created: float  # Unix time of submit(); lag is measured from it
    pending: PendingEvent


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Publisher:
    """Bounded queue + publisher thread + outbox; see the module docstring."""

    def __init__(
        self,
        broker_url: str,
        view: SubscriptionView,
        outbox: Outbox,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        broker_timeout: float = 5.0,
        metrics_interval: float = METRICS_INTERVAL,
        batch_linger: float = BATCH_LINGER,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be positive")
        self._view = view
        self._outbox = outbox
        self._batch_size = batch_size
        self._linger = batch_linger
        self._metrics_interval = metrics_interval
        # None entries are wake-ups (stop), not events.
        self._queue: queue.Queue[_Submitted | None] = queue.Queue(maxsize=queue_size)
        # Continue after what a previous run left in the outbox, so those replay first.
        self._order = itertools.count(outbox.max_order() + 1)
        self._builder = TaskMessageBuilder(origin=f"dicombus-edge@{socket.gethostname()}")
        self._broker = Broker(broker_url, timeout=broker_timeout)
        self._counters = _Counters()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight_since: float | None = None
        self._replay_started: float | None = None

    @property
    def outbox_full(self) -> bool:
        """True while the outbox is at its limit: the edge refuses new associations."""
        return self._outbox.full

    # -- association threads --------------------------------------------------------------

    def submit(self, pending: PendingEvent) -> None:
        """Hand ``pending`` over for publishing; never blocks on the network or the queue."""
        item = _Submitted(next(self._order), time.time(), pending)
        self._counters.add("submitted")
        if not self._stopping.is_set():
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
        # The queue is full, or the publisher is stopping: store the event here
        # and now (its number keeps it in order on replay). Counted first: the
        # replay loop reads the count to notice that this happened.
        self._counters.add("spooled_on_submit")
        self._spool([item])

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the publisher is already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="dicombus-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Flush the queue (to Redis, or the outbox if Redis does not take it) and stop.

        Events submitted from now on go to the outbox. ``timeout`` should exceed
        the broker timeout: one publish attempt may have to time out first.
        """
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # then the thread is busy and sees the flag
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOGGER.error("the publisher thread did not stop within %.1f s", timeout)
            self._thread = None
        self._broker.close()

    # -- metrics --------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Counters (see :data:`COUNTERS`) and gauges: queued (events in memory now),
        lag_seconds (age of the oldest event not yet in Redis), outbox_rows,
        outbox_bytes, outbox_full (0 or 1), replaying (0 or 1)."""
        values: dict[str, float] = dict(self._counters.snapshot())
        values["queued"] = self._queue.qsize()
        values["lag_seconds"] = self._lag()
        values["outbox_rows"] = self._outbox.rows
        values["outbox_bytes"] = self._outbox.bytes
        values["outbox_full"] = float(self._outbox.full)
        values["replaying"] = float(self._outbox.rows > 0)
        return values

    def _lag(self) -> float:
        oldest: list[float] = []
        if self._inflight_since is not None:
            oldest.append(self._inflight_since)
        with self._queue.mutex:
            head = next((item for item in self._queue.queue if item is not None), None)
        if head is not None:
            oldest.append(head.created)
        if self._outbox.rows:
            # Metrics must not fail with the outbox (its failures are logged where
            # they lose events).
            with contextlib.suppress(OutboxError):
                created = self._outbox.oldest_created()
                if created is not None:
                    oldest.append(created)
        return max(0.0, time.time() - min(oldest)) if oldest else 0.0

    # -- the publisher thread -------------------------------------------------------------

    def _run(self) -> None:
        backoff = RECONNECT_FIRST
        next_attempt = 0.0  # monotonic time of the next replay attempt
        report_at = time.monotonic() + self._metrics_interval
        while True:
            now = time.monotonic()
            if now >= report_at:
                report_at = now + self._metrics_interval
                if LOGGER.isEnabledFor(logging.DEBUG):
                    LOGGER.debug("publisher metrics: %s", self.metrics())
            if self._stopping.is_set():
                # Flush: to Redis while the outbox is empty, else behind what waits there.
                batch = self._take(wait=None)
                if not batch:
                    return
                self._send(batch)
            elif not self._outbox.rows:
                batch = self._take(wait=report_at - now, linger=self._linger)
                if batch:
                    self._send(batch)
            else:
                if now >= next_attempt:
                    if self._replay_outbox():
                        backoff, next_attempt = RECONNECT_FIRST, 0.0
                        continue
                    next_attempt = time.monotonic() + backoff
                    backoff = min(backoff * 2, RECONNECT_CAP)
                # Until the next attempt, keep the queue moving into the outbox.
                wait = min(next_attempt, report_at) - time.monotonic()
                self._spool(self._take(wait=max(wait, 0.0)))

    def _take(self, wait: float | None, linger: float = 0.0) -> list[_Submitted]:
        """Up to batch_size events; waits ``wait`` seconds for the first (None: no wait),
        then ``linger`` seconds for more to arrive before taking them."""
        batch: list[_Submitted] = []
        try:
            first = self._queue.get_nowait() if wait is None else self._queue.get(timeout=wait)
        except queue.Empty:
            return batch
        if first is not None:
            batch.append(first)
        if linger > 0 and first is not None:
            self._inflight_since = first.created  # in hand: lag counts it (_send clears it)
            # A plain sleep, not a get() with a timeout: that would wake this
            # thread (and take the GIL from the association threads) once per
            # event submitted meanwhile; this wakes it once per batch.
            time.sleep(linger)
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
        return batch

    def _drain(self) -> list[_Submitted]:
        """What is in the queue now (at most one queue's worth: bounded under any inflow)."""
        drained: list[_Submitted] = []
        while len(drained) < self._queue.maxsize and (batch := self._take(wait=None)):
            drained.extend(batch)
        return drained

    def _send(self, batch: list[_Submitted]) -> None:
        self._inflight_since = batch[0].created
        try:
            if self._outbox.rows:
                # Something was spooled since these were queued: they go behind it
                # (their submit numbers put them before it on replay).
                self._spool(batch)
                return
            messages = self._build(batch)
            try:
                self._broker.publish(messages)
            except Exception as exc:
                LOGGER.warning(
                    "Redis at %s did not take %d messages (%s: %s); they are in the outbox "
                    "and will be replayed when it answers",
                    self._broker.url,
                    len(messages),
                    type(exc).__name__,
                    exc,
                )
                self._store(messages)
            else:
                self._counters.add("published", len(messages))
        finally:
            self._inflight_since = None

    def _replay_outbox(self) -> bool:
        """One replay attempt: True once the outbox is empty (publish directly again)."""
        if self._replay_started is None:
            self._replay_started = time.monotonic()
        self._checkpoint()
        if not self._broker.ping():
            return False
        replayed = 0
        while not self._stopping.is_set():
            spilled = self._counters.get("spooled_on_submit")
            # Nothing queued may be older than the chunk about to go out: move the
            # queue behind what waits (the numbers put each event in its place).
            self._spool(self._drain())
            chunk = self._outbox.oldest(self._batch_size)
            if not chunk:
                LOGGER.info(
                    "outbox replayed (%d messages in the last round; replay mode lasted "
                    "%.1f s); publishing directly again",
                    replayed,
                    time.monotonic() - self._replay_started,
                )
                self._replay_started = None
                return True
            if self._counters.get("spooled_on_submit") != spilled:
                continue  # that thread's earlier events may have been queued: read again
            if not self._replay(chunk):
                return False
            replayed += len(chunk)
            self._checkpoint()
        return False

    def _checkpoint(self) -> None:
        try:
            self._outbox.maybe_checkpoint()
        except OutboxError as exc:
            LOGGER.warning("%s", exc)  # the WAL grows until the next one succeeds

    def _replay(self, chunk: list[StoredMessage]) -> bool:
        try:
            self._broker.publish([stored.message for stored in chunk])
        except Exception as exc:
            LOGGER.warning(
                "replay to %s failed (%s: %s)", self._broker.url, type(exc).__name__, exc
            )
            return False
        try:
            self._outbox.delete(chunk)
        except OutboxError as exc:
            # They are in Redis and still in the outbox: replayed again later
            # (same task ids), which idempotent tasks absorb.
            LOGGER.error("%s", exc)
            return False
        self._counters.add("replayed", len(chunk))
        return True

    # -- building and spooling (any thread) -----------------------------------------------

    def _build(self, items: Iterable[_Submitted]) -> list[OutboxMessage]:
        messages: list[OutboxMessage] = []
        for item in items:
            pending = item.pending
            subscribers = self._view.subscribers(pending.event_type)
            if not subscribers:
                self._counters.add("unrouted")
                continue
            try:
                envelope = pending.to_envelope()
                built = [
                    self._builder.build(envelope, sub, order=item.order, created=item.created)
                    for sub in subscribers
                ]
            except Exception:
                self._counters.add("failed")
                LOGGER.exception(
                    "cannot serialize event %s (%s); it is not published",
                    pending.id,
                    pending.event_type,
                )
                continue
            messages.extend(built)
        return messages

    def _spool(self, items: list[_Submitted]) -> None:
        if items:
            self._store(self._build(items))

    def _store(self, messages: list[OutboxMessage]) -> None:
        try:
            self._outbox.append(messages)
        except OutboxError as exc:
            lost = sorted({message.event_id for message in messages})
            self._counters.add("failed", len(lost))
            LOGGER.critical("EVENTS LOST: %s; events %s are not published", exc, ", ".join(lost))
        else:
            self._counters.add("spooled", len(messages))
