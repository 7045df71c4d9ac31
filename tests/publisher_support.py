"""What the publisher, outbox and subscription tests share.

- :func:`pending` / :class:`Association`: PendingEvents as the capture makes
  them (a ULID id, one subject and rising sequence numbers per association);
- :func:`consume`: read task messages back from Redis with a real kombu
  Consumer, as a Celery worker's consumer would;
- :func:`running_publisher`: an outbox, a subscription view and a started
  publisher, stopped and closed afterwards;
- run as a script, the edge side of the edge-restart fault test
  (``python publisher_support.py spool|replay ...``), so that test can SIGKILL a
  real process.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicombus.bus.envelope import PendingEvent
from dicombus.bus.outbox import Outbox
from dicombus.bus.publisher import Publisher
from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import Subscription, SubscriptionView
from dicombus.ulid import new_ulid
from kombu import Connection
from kombu.message import Message

STORE = "EVT_C_STORE"
ECHO = "EVT_C_ECHO"
# Every wait on a live Redis, publisher or subprocess in these tests is bounded by this.
WAIT = 10.0


def store_data(number: int = 0) -> dict[str, Any]:
    """A C-STORE outcome ``data`` of realistic size (~600 bytes of JSON)."""
    return {
        "association": {
            "calling_ae_title": "MODALITY",
            "called_ae_title": "EDGE",
            "peer_address": "127.0.0.1",
            "peer_port": 40000 + number % 1000,
            "tls_peer_subject": None,
            "role": "acceptor",
        },
        "message_id": number,
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "sop_instance_uid": f"1.2.826.0.1.3680043.8.498.{number}",
        "transfer_syntax": "1.2.840.10008.1.2.1",
        "status": 0,
        "status_category": "Success",
        "stored_path": f"/data/storage/1.2.3/1.2.3.4/{number}.dcm",
        "stored_size": 524_288,
    }


def data_that_logs(message: str) -> dict[str, Any]:
    """A ``build_data`` (bound with functools.partial, so it pickles) that logs
    ``message`` at WARNING while it builds, as the C-STORE builder does when the
    stored file cannot be read."""
    logging.getLogger("dicombus.bus.event_data").warning("%s", message)
    return store_data()


def data_that_logs_a_lock(message: str) -> dict[str, Any]:
    """A ``build_data`` that logs with an ``extra`` value pickle cannot carry."""
    logging.getLogger("dicombus.bus.event_data").warning(
        "%s", message, extra={"lock": threading.Lock()}
    )
    return store_data()


def data_that_fails(reason: str) -> dict[str, Any]:
    """A ``build_data`` (bound with functools.partial) that raises, wherever it runs."""
    raise FileNotFoundError(reason)


def pending(
    event_type: str = STORE,
    *,
    subject: str | None = None,
    sequence: int = 1,
    build_data: Callable[[], dict[str, Any]] | None = None,
) -> PendingEvent:
    """One PendingEvent, as capture builds it on an association thread."""
    data = store_data(sequence)
    return PendingEvent(
        event_type=event_type,
        id=new_ulid(),
        subject=subject or new_ulid(),
        sequence=sequence,
        time=datetime.now(UTC),
        source="dicombus://edge-test/EDGE",
        build_data=build_data or functools.partial(dict, data),
    )


@dataclass
class Association:
    """Events of one association: one subject, sequence numbers 1, 2, 3 ..."""

    subject: str = field(default_factory=new_ulid)
    sequence: int = 0

    def next(self, event_type: str = STORE) -> PendingEvent:
        self.sequence += 1
        return pending(event_type, subject=self.subject, sequence=self.sequence)


def subscription(task: str, queue: str, *types: str, raw: bool = False) -> Subscription:
    return Subscription(task=task, queue=queue, event_types=frozenset(types or {STORE}), raw=raw)


@contextmanager
def running_publisher(
    url: str,
    folder: Path,
    subs: Iterable[Subscription],
    **options: Any,
) -> Iterator[Publisher]:
    """A started Publisher over ``folder/outbox.sqlite3`` with static ``subs``."""
    view = SubscriptionView(url, static=subs)
    view.start()
    outbox = Outbox(folder / "outbox.sqlite3", max_bytes=options.pop("max_bytes", 1 << 30))
    publisher = Publisher(url, view, outbox, **options)
    publisher.start()
    try:
        yield publisher
    finally:
        publisher.stop(timeout=WAIT)
        view.stop()
        outbox.close()


def wait_published(publisher: Publisher, messages: int, timeout: float = WAIT) -> None:
    """Until ``messages`` messages reached Redis (directly or replayed)."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = publisher.metrics()
        if metrics["published"] + metrics["replayed"] >= messages:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{messages} messages not published within {timeout} s: {metrics}")
        time.sleep(0.005)


def consume(url: str, queue: str, count: int, timeout: float = WAIT) -> list[Message]:
    """Take ``count`` task messages off ``queue`` with kombu (a SimpleQueue, which pops
    one message per call as a worker's consumer does, without its event loop), in
    the order a worker would receive them; fail if they do not all arrive in time."""
    received: list[Message] = []
    deadline = time.monotonic() + timeout
    with Connection(url) as connection, connection.SimpleQueue(queue, no_ack=True) as source:
        while len(received) < count:
            try:
                received.append(source.get_nowait())
            except source.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(received)} of {count} messages arrived on {queue} in {timeout} s"
                    ) from None
                time.sleep(0.005)
    return received


def queue_length(url: str, queue: str) -> int:
    """Messages waiting in ``queue`` (its Redis list), duplicates included."""
    client = broker_client(url)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


def envelope_of(message: Message) -> dict[str, Any]:
    """The CloudEvents envelope in a protocol-2 task message (args[0])."""
    args, _kwargs, _embed = message.decode()
    envelope: dict[str, Any] = args[0]
    return envelope


def assert_in_sequence(messages: Iterable[Message]) -> None:
    """Per subject, sequence numbers rise in the order the messages were received
    (counting each event's first delivery: a replay may repeat a message)."""
    last: dict[str, int] = {}
    seen: set[str] = set()
    for message in messages:
        if message.headers["id"] in seen:
            continue
        seen.add(message.headers["id"])
        envelope = envelope_of(message)
        subject, sequence = envelope["subject"], envelope["sequence"]
        assert sequence > last.get(subject, 0), (
            f"{subject}: sequence {sequence} arrived after {last.get(subject)}"
        )
        last[subject] = sequence


# -- the edge-restart fault test's child process -----------------------------------------


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["spool", "replay"])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--subject", default="")
    args = parser.parse_args(argv)
    subs = [subscription("tests.audit", "audit"), subscription("tests.count", "count")]
    with running_publisher(args.broker, args.folder, subs) as publisher:
        if args.mode == "spool":
            # Redis is away: every event ends in the outbox. Report progress as it
            # goes; the parent kills this process while it is still submitting.
            association = Association(subject=args.subject)
            for _ in range(args.events):
                publisher.submit(association.next())
                if association.sequence % 100 == 0:
                    _report(publisher)
            # Keep reporting while the publisher thread moves the queue into the
            # outbox; the parent kills this process before the loop ends.
            deadline = time.monotonic() + WAIT * 6
            while time.monotonic() < deadline:
                _report(publisher)
                time.sleep(0.02)
            return 1
        deadline = time.monotonic() + WAIT
        while publisher.metrics()["outbox_rows"] and time.monotonic() < deadline:
            time.sleep(0.01)
        _report(publisher)
    return 0


def _report(publisher: Publisher) -> None:
    print(json.dumps(publisher.metrics()), flush=True)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
