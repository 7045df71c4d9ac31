"""The publisher's heavy work: Celery task messages built and sent to Redis.

Building an event's ``data`` (reading the stored file's header into DICOM JSON),
its Celery messages (a template of ``as_task_v2``'s, orjson) and sending them
(one LPUSH per queue and batch) is most of a published event's CPU (see
docs/performance.md). Where it runs is a :class:`Sender`:

- :class:`LocalSender` does it in the calling thread (the publisher thread with
  ``publisher_process = false``; the publisher child process otherwise);
- :class:`dicombus.bus.publisher_child.ProcessSender` hands it to a child
  process, off the edge's GIL (the default).
"""

from __future__ import annotations

import hashlib
import logging
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery
from redis.connection import ConnectionInterface

from dicombus.bus.envelope import PendingEvent
from dicombus.bus.json_text import dumps
from dicombus.bus.outbox import OutboxMessage
from dicombus.bus.redis_message import lpush_commands, redis_payloads, uuid_text
from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import Delivery, Subscription
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus.sender")

# Task ids are uuid5(namespace, "<event id>/<task name>"): stable across replays
# and restarts, different for each subscribed task of one event.
TASK_ID_NAMESPACE = uuid.UUID("6f1c3c8e-5a57-4f0e-9d55-2d1f1b7d0b1e")
_NAMESPACE_OCTETS = TASK_ID_NAMESPACE.bytes


def task_id_for(event_id: str, task: str) -> str:
    """The Celery task id of ``event_id``'s message to ``task`` (deterministic):
    ``str(uuid.uuid5(TASK_ID_NAMESPACE, f"{event_id}/{task}"))``, without the UUID
    objects (RFC 9562 5.5: the SHA-1 of the namespace and the name)."""
    digest = hashlib.sha1(_NAMESPACE_OCTETS + f"{event_id}/{task}".encode()).digest()
    return uuid_text(digest, 5)


class BrokerError(DicombusError, RuntimeError):
    """Redis did not take the messages (some of them may have reached it)."""


@dataclass(frozen=True, slots=True)
class SendItem:
    """A captured event and the messages it takes (to its subscribed tasks)."""

    order: int  # the publisher's submit order: the outbox replays by it
    created: float  # Unix time of submit: lag is measured from it
    pending: PendingEvent
    deliveries: tuple[Delivery, ...]

    def __reduce__(self) -> tuple[type[SendItem], tuple[Any, ...]]:
        # Pickled for the publisher child with every event: its arguments, not the
        # dataclass default's state (which calls fields() both ways).
        return SendItem, (self.order, self.created, self.pending, self.deliveries)


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
    """Celery protocol-2 task messages, from a template that Celery's own ``as_task_v2``
    made.

    The Celery app here only builds the template (it never connects anywhere); it
    is configured for JSON, as the workers are. Per message, four headers of the
    template change (``task``, ``id``, ``root_id``, ``argsrepr``) and the body is
    ``[[envelope], {}, embed]``, the envelope serialized once per event whatever
    the number of its subscribed tasks (tests/bus/test_task_message.py checks that
    the result is what ``as_task_v2`` gives for each message).
    """

    def __init__(self, origin: str) -> None:
        app = Celery("dicombus-edge", set_as_current=False)
        app.conf.update(task_serializer="json", accept_content=["json"])
        template = app.amqp.as_task_v2(
            _TEMPLATE_TASK_ID,
            _TEMPLATE_TASK,
            args=(),
            kwargs={},
            argsrepr="",
            kwargsrepr="{}",
            origin=origin,
        )
        self._headers: dict[str, Any] = dict(template.headers)
        _, _kwargs, embed = template.body
        # What follows the kwargs in the body: ",{"callbacks":null,...}]".
        self._embed_end = "," + dumps(embed).decode() + "]"
        self.origin = origin

    def build(
        self,
        envelope: dict[str, Any],
        sub: Subscription | Delivery,
        *,
        order: int,
        created: float,
    ) -> OutboxMessage:
        """The message of ``envelope`` to the task of ``sub``."""
        [message] = self.build_all(envelope, (sub,), order=order, created=created)
        return message

    def build_all(
        self,
        envelope: dict[str, Any],
        subs: Sequence[Subscription | Delivery],
        *,
        order: int,
        created: float,
    ) -> list[OutboxMessage]:
        """The messages of ``envelope`` to each task (or delivery) of ``subs``, in order.

        A delivery to several batch tasks is one message to :data:`DISPATCH_TASK`
        with keyword argument ``tasks`` (their names), its task id derived from
        :attr:`Delivery.task_key`. A value that is not JSON raises TypeError here:
        an error on the edge, not a surprise in a worker.
        """
        event_id = str(envelope["id"])
        head = "[[" + dumps(envelope).decode() + "],"
        # What logs and monitors show for the arguments; the default would repr
        # the whole envelope.
        argsrepr = f"<{envelope['type']} {event_id}>"
        messages = []
        for target in subs:
            delivery = target if isinstance(target, Delivery) else Delivery.of(target)
            kwargs: dict[str, Any] = {}
            if len(delivery.tasks) > 1:
                kwargs["tasks"] = list(delivery.tasks)
            task_id = task_id_for(event_id, delivery.task_key)
            headers = {
                **self._headers,
                "task": delivery.task,
                "id": task_id,
                "root_id": task_id,
                "argsrepr": argsrepr,
            }
            if kwargs:
                headers["kwargsrepr"] = repr(kwargs)
            messages.append(
                OutboxMessage(
                    event_id=event_id,
                    task=delivery.task,
                    queue=delivery.queue,
                    task_id=task_id,
                    body=head + (dumps(kwargs).decode() if kwargs else "{}") + self._embed_end,
                    headers=headers,
                    order=order,
                    created=created,
                )
            )
        return messages


# The template's placeholders: every message replaces them.
_TEMPLATE_TASK_ID = "00000000-0000-0000-0000-000000000000"
_TEMPLATE_TASK = "dicombus.template"


def build_messages(
    builder: TaskMessageBuilder, items: Sequence[SendItem]
) -> tuple[list[OutboxMessage], list[Failure]]:
    """One message per (item, delivery), in item order; the events that failed."""
    messages: list[OutboxMessage] = []
    failures: list[Failure] = []
    for item in items:
        pending = item.pending
        try:
            built = builder.build_all(
                pending.to_envelope(), item.deliveries, order=item.order, created=item.created
            )
        except Exception:
            failures.append(Failure(pending.id, pending.event_type, traceback.format_exc()))
            continue
        messages.extend(built)
    return messages, failures


class Broker:
    """One connection to Redis, kept until a failure, which drops it.

    A batch goes out as one pipeline of one ``LPUSH`` per queue, each with that
    queue's messages in order, oldest first: a worker's ``BRPOP`` takes them in
    that order (:mod:`dicombus.bus.redis_message`). The commands are written to a
    redis-py connection of our own, not through a client: a client's command
    checks its pooled connection for stray data first (a non-blocking read, and
    two socket mode changes), which doubled the CPU a one-event batch costs here.
    No retries in redis-py: the publisher's outbox owns durability.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: ConnectionInterface | None = None

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Send ``messages``; on any error the connection is dropped and the error raised
        (some of the messages may have reached Redis)."""
        if not messages:
            return
        by_queue: dict[str, list[bytes]] = {}
        for message, payload in zip(messages, redis_payloads(messages), strict=True):
            by_queue.setdefault(message.queue, []).append(payload)
        try:
            connection = self._connection or self._connect()
            connection.send_packed_command([lpush_commands(by_queue)])  # type: ignore[no-untyped-call]
            for _ in by_queue:
                connection.read_response()  # the list's length; an error reply raises
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
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.disconnect()  # type: ignore[no-untyped-call]
            except Exception as exc:  # a dead connection may fail to close; it is gone anyway
                LOGGER.debug("closing the broker connection: %s", exc)

    def _connect(self) -> ConnectionInterface:
        """A connection as the URL says (TLS, password, database), timeouts and all."""
        client = broker_client(self.url, timeout=self.timeout)
        connection = client.connection_pool.make_connection()
        connection.connect()  # type: ignore[no-untyped-call]
        self._connection = connection
        return connection


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
