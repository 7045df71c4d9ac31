"""``dicombus events tail``: follow events live in a terminal.

The tail is a subscriber of its own. It registers a subscription for a task
name nobody else uses (``dicombus.tail.<ULID>``) whose queue is its own, and
reads that queue with a kombu consumer. Edges send it a copy of each event
of the chosen types, as they do for every subscribed task, so the messages
of real tasks are neither taken nor delayed; on exit the tail removes its
subscription and its queue.

A tail killed without the chance to clean up (SIGKILL, a lost terminal)
leaves its subscription behind; its heartbeat key expires after
:data:`HEARTBEAT_TTL` seconds and the next tail removes every subscription
whose heartbeat is gone.

Subscribing costs the edge the serialization of the subscribed types, so
the default is the lifecycle and intervention-outcome events (what the
built-in audit task takes); ``--type`` picks others, ``--all`` takes all 32.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

from dicombus import evt
from dicombus.cli.common import ExitCode, add_data_option, error, positive_int
from dicombus.data_folder import DataFolderError, broker_url_for, node_not_running, redact
from dicombus.ulid import new_ulid

if TYPE_CHECKING:
    import redis
    from kombu.message import Message

COMMAND = "events"
BROKER_URL_ENV = "DICOMBUS_BROKER_URL"
TAIL_PREFIX = "dicombus.tail."
# The tail refreshes its heartbeat every HEARTBEAT_EVERY seconds; one that
# missed HEARTBEAT_TTL seconds of them is gone.
HEARTBEAT_TTL = 30
HEARTBEAT_EVERY = 5.0
# How long one wait for a message lasts: the bound on noticing a signal.
POLL = 0.5

ALL_EVENT_NAMES = tuple(
    sorted([e.name for e in evt.NOTIFICATION_EVENTS] + [e.name for e in evt.INTERVENTION_EVENTS])
)
LIFECYCLE = (
    "EVT_CONN_OPEN",
    "EVT_REQUESTED",
    "EVT_ACCEPTED",
    "EVT_REJECTED",
    "EVT_ESTABLISHED",
    "EVT_RELEASED",
    "EVT_ABORTED",
    "EVT_CONN_CLOSE",
)
DEFAULT_TYPES = (*LIFECYCLE, *(event.name for event in evt.INTERVENTION_EVENTS))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(COMMAND, help="watch the events edges publish")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    tail = actions.add_parser(
        "tail",
        help="print events as they are published, until Ctrl-C",
        description="Print events live (one line each, or JSON) without taking them from "
        f"the tasks they are meant for. The broker is {BROKER_URL_ENV} if set, else the "
        "one of the node in --data.",
    )
    add_data_option(tail)
    tail.add_argument(
        "--type",
        dest="types",
        action="append",
        type=_event_type,
        metavar="EVT_NAME",
        help="only this event type (repeatable; default: lifecycle and outcomes)",
    )
    tail.add_argument("--all", action="store_true", help="every event type, PDUs included")
    tail.add_argument(
        "--ae",
        action="append",
        metavar="TITLE",
        help="only events whose calling or called AE title is TITLE (repeatable)",
    )
    tail.add_argument("--json", action="store_true", help="print each envelope as a JSON line")
    tail.add_argument(
        "--count", type=positive_int, metavar="N", help="exit after printing N events"
    )
    tail.set_defaults(run=run_tail)


def _event_type(text: str) -> str:
    name = text.strip().upper()
    if not name.startswith("EVT_"):
        name = f"EVT_{name}"
    if name not in ALL_EVENT_NAMES:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event type")
    return name


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_tail(args: argparse.Namespace) -> int:
    # Imported here: Redis and kombu are for this command, not for every ``dicombus`` one.
    import redis

    from dicombus.bus.redis_server import broker_client
    from dicombus.bus.subscriptions import Subscription, register_subscriptions

    try:
        url = broker_url_for(args.data)
        warning = node_not_running(args.data)
    except DataFolderError as exc:
        error(f"{COMMAND} tail", str(exc))
        return ExitCode.LOCAL_ERROR
    if warning:
        print(f"dicombus {COMMAND} tail: warning: {warning}", file=sys.stderr, flush=True)
    types = ALL_EVENT_NAMES if args.all else tuple(args.types or DEFAULT_TYPES)
    titles = {title.strip() for title in args.ae or ()}
    name = f"{TAIL_PREFIX}{new_ulid()}"
    client = broker_client(url)
    try:
        forget_stale_tails(client)
        heartbeat(client, name)
        register_subscriptions(client, [Subscription(name, name, frozenset(types))])
    except redis.exceptions.RedisError as exc:
        error(f"{COMMAND} tail", f"cannot reach Redis at {redact(url)}: {exc}")
        return ExitCode.LOCAL_ERROR
    previous = signal.signal(signal.SIGTERM, _interrupt)
    printed = 0
    try:
        printed = follow(url, client, name, titles, as_json=args.json, count=args.count)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        forget(client, [name])
        client.close()
    print(f"dicombus {COMMAND} tail: {printed} events", file=sys.stderr, flush=True)
    return ExitCode.OK


def follow(
    url: str,
    client: redis.Redis,
    name: str,
    titles: set[str],
    *,
    as_json: bool,
    count: int | None,
) -> int:
    """Print the events arriving on the tail's queue; return how many were printed."""
    from kombu.connection import Connection
    from kombu.entity import Queue

    printed = 0
    next_beat = time.monotonic() + HEARTBEAT_EVERY

    def on_message(body: Any, message: Message) -> None:
        nonlocal printed
        envelope = _envelope(body)
        message.ack()
        if envelope is None or (titles and not titles & _ae_titles(envelope)):
            return
        print(json.dumps(envelope) if as_json else describe(envelope), flush=True)
        printed += 1

    with Connection(url) as connection:
        queue = Queue(name, routing_key=name, auto_delete=False)
        with connection.Consumer(queue, callbacks=[on_message], accept=["json"]):
            print(
                f"dicombus {COMMAND} tail: following {redact(url)} ...", file=sys.stderr, flush=True
            )
            while count is None or printed < count:
                with contextlib.suppress(TimeoutError):  # no event within POLL
                    connection.drain_events(timeout=POLL)
                if time.monotonic() >= next_beat:
                    heartbeat(client, name)
                    next_beat = time.monotonic() + HEARTBEAT_EVERY
    return printed


def _envelope(body: Any) -> dict[str, Any] | None:
    # A Celery protocol-2 body: [args, kwargs, embed]; the envelope is args[0].
    if isinstance(body, list | tuple) and body and isinstance(body[0], list | tuple) and body[0]:
        found = body[0][0]
        return found if isinstance(found, dict) else None
    return None


def _ae_titles(envelope: dict[str, Any]) -> set[str]:
    association = (envelope.get("data") or {}).get("association") or {}
    return {
        str(association.get(key, "")).strip() for key in ("calling_ae_title", "called_ae_title")
    }


def describe(envelope: dict[str, Any]) -> str:
    """One line: time, type, sequence, calling -> called, and what the event says."""
    data = envelope.get("data") or {}
    association = data.get("association") or {}
    parts = [
        envelope.get("time", "?"),
        f"{envelope.get('type', '?'):<18}",
        f"#{envelope.get('sequence', '?')}",
        f"{association.get('calling_ae_title') or '?'} -> "
        f"{association.get('called_ae_title') or '?'}",
    ]
    if data.get("status") is not None:
        parts.append(f"status 0x{int(data['status']):04X}")
    for key in ("sop_instance_uid", "stored_path", "matches", "reason"):
        if data.get(key) is not None:
            parts.append(f"{key}={data[key]}")
    parts.append(f"assoc {envelope.get('subject', '?')}")
    return "  ".join(str(part) for part in parts)


def _alive_key(name: str) -> str:
    return f"dicombus:tail:{name}:alive"


def heartbeat(client: redis.Redis, name: str) -> None:
    client.set(_alive_key(name), 1, ex=HEARTBEAT_TTL)


def forget(client: redis.Redis, names: Iterable[str]) -> None:
    """Remove tails' subscriptions, queues and heartbeats (best effort: Redis may be gone)."""
    import redis

    from dicombus.bus.subscriptions import unregister_subscriptions

    names = list(names)
    try:
        unregister_subscriptions(client, names)
        client.delete(*names, *(_alive_key(name) for name in names))
    except redis.exceptions.RedisError as exc:
        print(f"dicombus {COMMAND} tail: could not unsubscribe: {exc}", file=sys.stderr)


def forget_stale_tails(client: redis.Redis) -> None:
    """Remove the subscriptions of tails whose heartbeat expired."""
    from dicombus.bus.subscriptions import REGISTRY_KEY

    registered: list[bytes] = client.hkeys(REGISTRY_KEY)  # type: ignore[assignment]
    stale = [
        task
        for task in (raw.decode() for raw in registered)
        if task.startswith(TAIL_PREFIX) and not client.exists(_alive_key(task))
    ]
    if stale:
        forget(client, stale)
