"""The publisher's heavy work: Celery task messages built and sent to Redis.

Building an event's ``data`` (reading the stored file's header into DICOM JSON),
its Celery message (``as_task_v2``, JSON) and sending it (kombu, redis-py) costs
about 120 us of CPU per C-STORE event. Where it runs is a :class:`Sender`:

- :class:`LocalSender` does it in the calling thread (the publisher thread with
  ``publisher_process = false``; the publisher child process otherwise);
- :class:`dicombus.bus.publisher_child.ProcessSender` hands it to a child
  process, off the edge's GIL (the default).
"""

from __future__ import annotations

import contextlib
import json
import logging
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery
from kombu.connection import Connection as KombuConnection
from kombu.messaging import Producer
from kombu.transport import redis as kombu_redis

from dicombus.bus.envelope import PendingEvent
from dicombus.bus.outbox import OutboxMessage
from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import Subscription
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus.sender")

# Task ids are uuid5(namespace, "<event id>/<task name>"): stable across replays
# and restarts, different for each subscribed task of one event.
TASK_ID_NAMESPACE = uuid.UUID("6f1c3c8e-5a57-4f0e-9d55-2d1f1b7d0b1e")
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"


def task_id_for(event_id: str, task: str) -> str:
    """The Celery task id of ``event_id``'s message to ``task`` (deterministic)."""
    return str(uuid.uuid5(TASK_ID_NAMESPACE, f"{event_id}/{task}"))


class BrokerError(DicombusError, RuntimeError):
    """Redis did not take the messages (some of them may have reached it)."""


@dataclass(frozen=True, slots=True)
class SendItem:
    """A captured event and the tasks it goes to."""

    order: int  # the publisher's submit order: the outbox replays by it
    created: float  # Unix time of submit: lag is measured from it
    pending: PendingEvent
    subscribers: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """An event whose message could not be built: it is not published."""

    event_id: str
    event_type: str
    error: str  # the traceback, as text (it may come from the child)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one batch."""

    published: int = 0  # messages Redis took
    failures: tuple[Failure, ...] = ()
    # Built but not taken by Redis (``error`` says why): the outbox's to keep.
    unsent: tuple[OutboxMessage, ...] = ()
    error: str | None = None


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
        self.origin = origin

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
            origin=self.origin,
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


def build_messages(
    builder: TaskMessageBuilder, items: Sequence[SendItem]
) -> tuple[list[OutboxMessage], list[Failure]]:
    """One message per (item, subscriber), in item order; the events that failed."""
    messages: list[OutboxMessage] = []
    failures: list[Failure] = []
    for item in items:
        pending = item.pending
        try:
            envelope = pending.to_envelope()
            built = [
                builder.build(envelope, sub, order=item.order, created=item.created)
                for sub in item.subscribers
            ]
        except Exception:
            failures.append(Failure(pending.id, pending.event_type, traceback.format_exc()))
            continue
        messages.extend(built)
    return messages, failures


class _PublishChannel(kombu_redis.Channel):
    """kombu's Redis channel, with one Redis client kept for publishing.

    kombu makes a new redis-py client (and copies its table of ~200 response
    callbacks) for every publish batch: about 50 us of CPU, paid per batch,
    which at a steady C-STORE pace means per event. The client shares the
    channel's connection pool either way; only one thread publishes.
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
    a worker has declared it yet. Retries in kombu and redis-py are off: the
    publisher's outbox owns durability.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: KombuConnection | None = None
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
        self._connection = KombuConnection(
            self.url,
            connect_timeout=self.timeout,
            transport_options=options,
            transport=_PublishTransport if scheme in _PLAIN_REDIS_SCHEMES else None,
        )
        self._producer = Producer(self._connection.default_channel, auto_declare=False)
        return self._producer


class Sender(Protocol):
    """What the publisher thread asks of a sender (one request at a time)."""

    def start(self) -> None:
        """Get ready in the background (the first request waits if need be)."""

    def send(self, items: Sequence[SendItem]) -> SendResult:
        """Build each item's messages and publish them; broker errors are in the result."""

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Publish built messages (a replay); raises :class:`BrokerError`."""

    def ping(self) -> bool:
        """Whether Redis answers now."""

    def close(self) -> None:
        """Release the broker connection (and the child process)."""

    def kill(self) -> None:
        """From any thread: make a request in flight fail now (a stop that cannot wait)."""

    @property
    def restarts(self) -> int:
        """How many times the sender had to be started again (a child died or hung)."""

    @property
    def pid(self) -> int | None:
        """The child process's id, if the work runs in one now."""


class LocalSender:
    """Builds and publishes in the calling thread."""

    def __init__(self, broker_url: str, *, timeout: float, builder: TaskMessageBuilder) -> None:
        self._builder = builder
        self._broker = Broker(broker_url, timeout=timeout)

    def start(self) -> None:
        """Nothing to start: the broker connects on first use."""

    def send(self, items: Sequence[SendItem]) -> SendResult:
        messages, failures = build_messages(self._builder, items)
        return _publish_built(self.publish, messages, failures)

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        try:
            self._broker.publish(messages)
        except Exception as exc:
            raise BrokerError(describe(exc)) from exc

    def ping(self) -> bool:
        return self._broker.ping()

    def close(self) -> None:
        self._broker.close()

    def kill(self) -> None:
        """Nothing to kill: the work runs in the caller's thread, bounded by the timeout."""

    @property
    def restarts(self) -> int:
        return 0  # nothing to restart

    @property
    def pid(self) -> int | None:
        return None  # the calling process does the work


def _publish_built(
    publish: Callable[[Sequence[OutboxMessage]], None],
    messages: Sequence[OutboxMessage],
    failures: Sequence[Failure],
) -> SendResult:
    """``publish`` built ``messages``; a :class:`BrokerError` becomes unsent messages."""
    try:
        publish(messages)
    except BrokerError as exc:
        return SendResult(failures=tuple(failures), unsent=tuple(messages), error=str(exc))
    return SendResult(published=len(messages), failures=tuple(failures))


def describe(exc: BaseException) -> str:
    """``ExceptionType: message``, for log lines."""
    return f"{type(exc).__name__}: {exc}"
