"""Where the publisher's heavy work runs: Celery task messages built and sent to Redis.

Building an event's ``data`` (reading the stored file's header into DICOM JSON),
its Celery message (``as_task_v2``, JSON) and sending it (kombu, redis-py) costs
about 120 us of CPU per C-STORE event. In the edge's own interpreter that time
comes out of the GIL the association threads share: the edge process spent
about 200 us more per stored instance with publishing on than off; with the
work in a child process, about 70 us (bench/bus_run.py row 4). So by default
it runs in a child:

- :class:`LocalSender` does the work in the calling thread: the child runs one,
  and so does an edge configured with ``publisher_process = false``;
- :class:`ProcessSender` hands batches of captured events to a child process
  (a socket pair, pickle) and waits for its answer. Only the publisher thread
  talks to it, one request at a time, so the publisher's order and outbox
  logic do not change; what the edge's interpreter still does per event is
  pickling it (about 11 us for a C-STORE).

The child is a fresh interpreter running :func:`child_main` (``python -c``):
not multiprocessing's spawn or fork server, which import the user's main
script again in the child (a script that starts an edge without an
``if __name__ == "__main__"`` guard would start another edge there), and not
fork, which would copy the edge's threads and locks mid-flight. It ignores
SIGINT (the edge flushes through it when Ctrl-C stops ``dicombus up``), ends
when its socket closes (the edge stopped or died), and sends its log records
back with each answer, so they reach the edge's handlers. Whenever it cannot
do the work (it died, hung, is being replaced, or a batch does not pickle),
the publisher thread does it itself, as :class:`LocalSender` does: no event
waits for a child.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from celery import Celery
from kombu.connection import Connection as KombuConnection
from kombu.messaging import Producer
from kombu.transport import redis as kombu_redis

from dicombus.bus.envelope import PendingEvent
from dicombus.bus.outbox import OutboxMessage
from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import Subscription

LOGGER = logging.getLogger("dicombus.bus.sender")

# Task ids are uuid5(namespace, "<event id>/<task name>"): stable across replays
# and restarts, different for each subscribed task of one event.
TASK_ID_NAMESPACE = uuid.UUID("6f1c3c8e-5a57-4f0e-9d55-2d1f1b7d0b1e")
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
# A child imports Celery, kombu and pydicom as it starts (about a second); the
# bound is for a machine so loaded that this stalls.
CHILD_START_TIMEOUT = 30.0
# A child's answer may take one Redis round trip that times out (connect, then
# the pipeline), plus the building; past this the child counts as hung.
ANSWER_TIMEOUT_FACTOR = 3
ANSWER_TIMEOUT_SLACK = 5.0
# How long a stopping child gets to exit before it is killed.
CHILD_EXIT_TIMEOUT = 5.0
# After a child failed, the wait before starting another: doubled while the
# replacements fail too (a child that cannot start costs a Python start-up,
# about a second of CPU, each time).
RESPAWN_FIRST = 1.0
RESPAWN_CAP = 60.0


def task_id_for(event_id: str, task: str) -> str:
    """The Celery task id of ``event_id``'s message to ``task`` (deterministic)."""
    return str(uuid.uuid5(TASK_ID_NAMESPACE, f"{event_id}/{task}"))


class BrokerError(RuntimeError):
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
            raise BrokerError(_describe(exc)) from exc

    def ping(self) -> bool:
        return self._broker.ping()

    def close(self) -> None:
        self._broker.close()

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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- the child process --------------------------------------------------------------------------

# The child runs this (``python -c``, so no script of the user's is imported
# again in it, as multiprocessing's spawn and fork server would), with its end
# of a socket pair as the one argument.
_CHILD_COMMAND = "from dicombus.bus.sender import child_main; child_main()"

# Requests (parent -> child) and answers (child -> parent) are pickled tuples:
#   ("send", items) -> ("ok", SendResult, records)
#   ("publish", messages) -> ("ok", None, records) | ("error", text, records)
#   ("ping",) -> ("ok", bool, records)
# First the parent sends ("init", sys.path, broker URL, timeout, origin, log
# level), and the child answers ("ready", pid, []).


class _RecordCollector(logging.Handler):
    """Keeps the child's log records of one request, to send back with its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Make it picklable: arguments merged into the message, traceback as text.
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args, record.exc_info = record.getMessage(), None, None
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken


def child_main() -> None:
    """The publisher child process: answer the edge's requests until its socket closes."""
    # Ctrl-C reaches the whole process group; the edge decides when this ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[1]))
    _, path, broker_url, timeout, origin, level = conn.recv()
    # The edge's import path: events may be built by functions of its modules.
    sys.path[:] = [*path, *(entry for entry in sys.path if entry not in path)]
    collector = _RecordCollector()
    root = logging.getLogger()
    root.handlers[:] = [collector]
    root.setLevel(level)
    sender = LocalSender(broker_url, timeout=timeout, builder=TaskMessageBuilder(origin))
    conn.send(("ready", os.getpid(), []))
    try:
        while True:
            try:
                kind, *arguments = conn.recv()
            except (EOFError, OSError):  # the edge closed its end, or died
                return
            answer: tuple[str, Any]
            if kind == "send":
                answer = ("ok", sender.send(arguments[0]))
            elif kind == "publish":
                try:
                    sender.publish(arguments[0])
                    answer = ("ok", None)
                except BrokerError as exc:
                    answer = ("error", str(exc))
            else:
                answer = ("ok", sender.ping())
            conn.send((*answer, collector.take()))
    finally:
        sender.close()


class _ChildUnavailable(RuntimeError):
    """The child died, did not start, did not answer in time, or may not be started yet."""


class ProcessSender:
    """Builds and publishes in a child process; see the module docstring.

    Whenever the child cannot do it (it died, hung, cannot start, or a batch
    does not pickle), the work is done here, in the calling thread, as
    :class:`LocalSender` does it: events never wait for a child. A child that
    failed is replaced on a later request, no sooner than ``RESPAWN_FIRST``
    seconds after, doubling up to ``RESPAWN_CAP`` while replacements keep failing.
    """

    def __init__(self, broker_url: str, *, timeout: float, builder: TaskMessageBuilder) -> None:
        self._url = broker_url
        self._timeout = timeout
        self._origin = builder.origin
        self._local = LocalSender(broker_url, timeout=timeout, builder=builder)
        self._answer_timeout = ANSWER_TIMEOUT_FACTOR * timeout + ANSWER_TIMEOUT_SLACK
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._spawned = 0
        self._respawn_delay = RESPAWN_FIRST
        self._respawn_at = 0.0  # time.monotonic() from which a new child may start

    @property
    def restarts(self) -> int:
        """Children started after the first (each after one died, hung or did not start)."""
        return max(0, self._spawned - 1)

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        if self._process is None:
            self._spawn()

    def send(self, items: Sequence[SendItem]) -> SendResult:
        try:
            request = pickle.dumps(("send", items), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            # A user's build_data that is a closure, say.
            LOGGER.debug("a batch did not pickle (%s); building it in the edge", _describe(exc))
            return self._local.send(items)
        try:
            result: SendResult = self._ask(request)
        except _ChildUnavailable:
            return self._local.send(items)
        return result

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        request = pickle.dumps(("publish", list(messages)), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._ask(request)
        except _ChildUnavailable:
            self._local.publish(messages)

    def ping(self) -> bool:
        try:
            return bool(self._ask(pickle.dumps(("ping",))))
        except _ChildUnavailable:
            return self._local.ping()

    def close(self) -> None:
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready = None, None, False
        if conn is not None:
            conn.close()  # the child sees its socket close and returns
        if process is not None:
            try:
                process.wait(CHILD_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                LOGGER.warning("the publisher child %d did not exit; killing it", process.pid)
                process.kill()
                process.wait(CHILD_EXIT_TIMEOUT)
        self._local.close()

    # -- internals ------------------------------------------------------------------------

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        # Where dicombus itself is, first: it may be importable here only through
        # sys.path entries the child would not have before it reads the edge's.
        package_root = str(Path(__file__).resolve().parents[2])
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                entry for entry in (package_root, os.environ.get("PYTHONPATH")) if entry
            ),
        }
        with child:
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_COMMAND, str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                env=environment,
            )
        conn = Connection(parent.detach())
        level = logging.getLogger("dicombus").getEffectiveLevel()
        conn.send(("init", list(sys.path), self._url, self._timeout, self._origin, level))
        self._process, self._conn, self._ready = process, conn, False
        self._spawned += 1

    def _ask(self, request: bytes) -> Any:
        conn = self._running()
        try:
            conn.send_bytes(request)
            kind, value = self._answer(conn, self._answer_timeout)
        except (OSError, EOFError, _ChildUnavailable) as exc:
            self._discard(f"it failed: {exc}")
            raise _ChildUnavailable(str(exc)) from exc
        self._respawn_delay = RESPAWN_FIRST  # it works: a later failure respawns soon
        if kind == "error":
            raise BrokerError(value)
        return value

    def _running(self) -> Connection:
        """The child's socket, the child started (again) and ready."""
        process = self._process
        if process is not None and process.poll() is not None:
            self._discard(f"it exited with code {process.returncode}")
        if self._process is None:
            if time.monotonic() < self._respawn_at:
                raise _ChildUnavailable("waiting before starting a new child")
            self._spawn()
        conn = self._conn
        assert conn is not None  # set by _spawn
        if not self._ready:
            try:
                kind, pid = self._answer(conn, CHILD_START_TIMEOUT)
            except (OSError, EOFError, _ChildUnavailable) as exc:
                self._discard(f"it did not start: {exc}")
                raise _ChildUnavailable(str(exc)) from exc
            self._ready = kind == "ready"
            LOGGER.debug("publisher child process %s is ready", pid)
        return conn

    def _answer(self, conn: Connection, timeout: float) -> tuple[str, Any]:
        if not conn.poll(timeout):
            raise _ChildUnavailable(f"no answer within {timeout:.0f} s")
        kind, value, records = conn.recv()
        for record in records:
            logging.getLogger(record.name).handle(record)
        return kind, value

    def _discard(self, reason: str) -> None:
        """Forget a child that failed (killing it if it still runs); a new one may start
        after the respawn delay, and until then the work is done here."""
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready = None, None, False
        if conn is not None:
            conn.close()
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(CHILD_EXIT_TIMEOUT)
        LOGGER.warning(
            "publisher child process %d is gone (%s); the edge publishes itself until a new "
            "one starts (in %.0f s at the earliest)",
            process.pid,
            reason,
            self._respawn_delay,
        )
        self._respawn_at = time.monotonic() + self._respawn_delay
        self._respawn_delay = min(self._respawn_delay * 2, RESPAWN_CAP)
