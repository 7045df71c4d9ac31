"""Subscriptions: which Celery task wants which event types, and the edge's live view of them.

The registry lives in Redis:

- the hash :data:`REGISTRY_KEY` maps a Celery task name to the JSON of its
  :class:`Subscription` (queue, event types, whether it wants raw bytes);
- after every change the writer publishes on :data:`REGISTRY_CHANNEL`.

Workers register their tasks when they start (:func:`register_subscriptions`)
and leave them registered when they stop: events for a task keep collecting in
its queue while its workers are away. Retiring a task is an explicit
:func:`unregister_subscriptions`.

An edge holds a :class:`SubscriptionView`: the registry as last seen, merged with
the static subscriptions of its config (those win over a registered task of
the same name: a deployment that pins a subscription means it). The view loads
the hash at start, then follows the channel from a listener thread that
reconnects with bounded back-off, and reloads the whole hash after every
notification and every reconnect (a notification missed while disconnected
cannot leave it stale). It keeps the last registry it saw in a cache file, so
an edge restarted while Redis is down still publishes (into its outbox) for the
tasks that were subscribed.

Events bound for several batch tasks on one queue travel once: the view
groups each event type's ``batch`` subscribers by queue into one
:class:`Delivery`, which the edge sends as one message to the worker-side
task :data:`DISPATCH_TASK` naming the tasks; the worker runs each of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from dicombus.bus.redis_server import broker_client
from dicombus.data_folder import redact
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus.subscriptions")

REGISTRY_KEY = "dicombus:subscriptions"
REGISTRY_CHANNEL = "dicombus:subscriptions:changed"
CACHE_FORMAT = 1

# stop() wakes the listener with a message on its own channel; should that not
# arrive (Redis gone at that moment), the listener sees the stop flag after at
# most this long blocked on the pub/sub socket.
LISTEN_WAIT = 2.0
# Reconnect back-off while Redis is away: first wait, then doubling up to the cap.
RECONNECT_FIRST = 0.1
RECONNECT_CAP = 2.0
# Socket timeouts for the registry reads: an edge must start even if Redis hangs.
REDIS_TIMEOUT = 2.0

# The worker-side batch task that runs one message's event for each task it names
# (dicombus_workers.batch); a delivery to several batch tasks is sent to it.
DISPATCH_TASK = "dicombus.dispatch"


class SubscriptionError(DicombusError, ValueError):
    """A subscription (from Redis, a config or a cache file) is malformed."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """A Celery task that wants events of ``event_types``, delivered on ``queue``."""

    task: str
    queue: str
    event_types: frozenset[str]
    raw: bool = False  # wants raw PDU / data bytes (base64) in PDU and data events
    # A batch task (on_event(batch=True)): its events may share one message with the
    # other batch tasks of its queue. Edges that predate the key ignore it.
    batch: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "task": self.task,
                "queue": self.queue,
                "event_types": sorted(self.event_types),
                "raw": self.raw,
                "batch": self.batch,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Subscription:
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise SubscriptionError(f"not JSON: {exc}") from exc
        return cls.from_mapping(found)

    @classmethod
    def from_mapping(cls, found: Any) -> Subscription:
        if not isinstance(found, Mapping):
            raise SubscriptionError(f"a subscription is a JSON object, not {found!r}")
        task, queue = found.get("task"), found.get("queue")
        types, raw = found.get("event_types"), found.get("raw", False)
        batch = found.get("batch", False)
        if not isinstance(task, str) or not task:
            raise SubscriptionError(f"'task' must be a task name, not {task!r}")
        if not isinstance(queue, str) or not queue:
            raise SubscriptionError(f"{task}: 'queue' must be a queue name, not {queue!r}")
        if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
            raise SubscriptionError(f"{task}: 'event_types' must be a list of event names")
        if not isinstance(raw, bool):
            raise SubscriptionError(f"{task}: 'raw' must be true or false, not {raw!r}")
        if not isinstance(batch, bool):
            raise SubscriptionError(f"{task}: 'batch' must be true or false, not {batch!r}")
        return cls(task=task, queue=queue, event_types=frozenset(types), raw=raw, batch=batch)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message per event on ``queue``, for one task or for several batch tasks."""

    queue: str
    tasks: tuple[str, ...]
    # No raw flag of its own: an event carries raw bytes when any subscriber of its
    # type wants them (SubscriptionView.raw_wanted), so every delivery has them.

    @classmethod
    def of(cls, sub: Subscription) -> Delivery:
        return cls(sub.queue, (sub.task,))

    @property
    def task(self) -> str:
        """The task the message names: the one task, or :data:`DISPATCH_TASK`."""
        return self.tasks[0] if len(self.tasks) == 1 else DISPATCH_TASK

    @property
    def task_key(self) -> str:
        """What the message's task id is derived from (with the event id): the task's
        name, or ``dicombus.dispatch/<task>,<task>...`` for several."""
        return self.task if len(self.tasks) == 1 else f"{DISPATCH_TASK}/{','.join(self.tasks)}"


def deliveries_of(subs: Iterable[Subscription]) -> tuple[Delivery, ...]:
    """The messages an event for ``subs`` takes: one per task, except that the batch
    tasks of one queue share one; in the order of each delivery's first task."""
    deliveries: list[Delivery | list[Subscription]] = []
    grouped: dict[str, list[Subscription]] = {}
    for sub in subs:
        if not sub.batch:
            deliveries.append(Delivery.of(sub))
        elif sub.queue in grouped:
            grouped[sub.queue].append(sub)
        else:
            grouped[sub.queue] = [sub]
            deliveries.append(grouped[sub.queue])
    return tuple(
        entry
        if isinstance(entry, Delivery)
        else Delivery(entry[0].queue, tuple(sub.task for sub in entry))
        for entry in deliveries
    )


def register_subscriptions(client: redis.Redis, subs: Iterable[Subscription]) -> None:
    """Write ``subs`` into the registry (replacing same-named tasks) and notify edges."""
    subs = list(subs)
    if not subs:
        return
    with client.pipeline(transaction=True) as pipe:
        for sub in subs:
            pipe.hset(REGISTRY_KEY, sub.task, sub.to_json())
        pipe.publish(REGISTRY_CHANNEL, "register")
        pipe.execute()


def unregister_subscriptions(client: redis.Redis, tasks: Iterable[str]) -> None:
    """Retire the subscriptions of ``tasks`` (edges stop sending them events)."""
    names = list(tasks)
    if not names:
        return
    with client.pipeline(transaction=True) as pipe:
        pipe.hdel(REGISTRY_KEY, *names)
        pipe.publish(REGISTRY_CHANNEL, "unregister")
        pipe.execute()


def load_registry(client: redis.Redis) -> dict[str, Subscription]:
    """The registry as stored in Redis; malformed entries are logged and skipped."""
    found: dict[bytes | str, bytes | str] = client.hgetall(REGISTRY_KEY)
    subs: dict[str, Subscription] = {}
    for name, text in found.items():
        task = name.decode() if isinstance(name, bytes) else name
        try:
            sub = Subscription.from_json(text)
        except SubscriptionError as exc:
            LOGGER.error(
                "ignoring the malformed subscription of %s in %s: %s", task, REGISTRY_KEY, exc
            )
            continue
        subs[sub.task] = sub
    return subs


@dataclass(frozen=True, slots=True)
class _Index:
    """Everything the hot path asks, precomputed; replaced whole on every change."""

    by_type: Mapping[str, tuple[Subscription, ...]]
    deliveries: Mapping[str, tuple[Delivery, ...]]
    raw_types: frozenset[str]

    @classmethod
    def of(cls, subs: Iterable[Subscription]) -> _Index:
        by_type: dict[str, list[Subscription]] = {}
        raw: set[str] = set()
        for sub in sorted(subs, key=lambda s: s.task):
            for event_type in sub.event_types:
                by_type.setdefault(event_type, []).append(sub)
                if sub.raw:
                    raw.add(event_type)
        return cls(
            {t: tuple(s) for t, s in by_type.items()},
            {t: deliveries_of(s) for t, s in by_type.items()},
            frozenset(raw),
        )


class SubscriptionView:
    """The edge's current view of who wants what: static subscriptions plus the registry.

    ``wants``, ``raw_wanted`` and ``subscribers`` are called on association and
    publisher threads; they read one immutable index that the listener replaces
    whole, so they take no lock.
    """

    def __init__(
        self,
        broker_url: str,
        *,
        static: Iterable[Subscription] = (),
        cache_path: Path | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.broker_url = broker_url
        # For logs: the URL carries the embedded Redis's password.
        self._shown_url = redact(broker_url)
        self.cache_path = cache_path
        self._static = {sub.task: sub for sub in static}
        self._on_change = on_change
        self._registered: dict[str, Subscription] = {}
        self._index = _Index.of(self._static.values())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_channel = f"{REGISTRY_CHANNEL}:wake:{uuid.uuid4().hex}"
        self._client = broker_client(broker_url, timeout=REDIS_TIMEOUT)
        # Serialises changes of the view (start, the listener, refresh()).
        self._apply_lock = threading.Lock()
        # Set once the registry has been read from Redis at least once.
        self.synced = threading.Event()

    # -- what the edge asks ---------------------------------------------------------------

    def wants(self, event_type: str) -> bool:
        return event_type in self._index.by_type

    def raw_wanted(self, event_type: str) -> bool:
        return event_type in self._index.raw_types

    def subscribers(self, event_type: str) -> list[Subscription]:
        return list(self._index.by_type.get(event_type, ()))

    def deliveries(self, event_type: str) -> tuple[Delivery, ...]:
        """The messages an event of ``event_type`` takes (:func:`deliveries_of`)."""
        return self._index.deliveries.get(event_type, ())

    def wanted_types(self) -> frozenset[str]:
        return frozenset(self._index.by_type)

    def subscriptions(self) -> list[Subscription]:
        """Every subscription in the view, static ones included, by task name."""
        merged = {**self._registered, **self._static}
        return [merged[name] for name in sorted(merged)]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load the registry (or, if Redis is away, the cache) and start following changes."""
        if self._thread is not None:
            raise RuntimeError("the subscription view is already started")
        cached = self._read_cache()
        if cached is not None:
            self._apply(cached, persist=False)
        try:
            self._apply(load_registry(self._client))
            self.synced.set()
        except redis.exceptions.RedisError as exc:
            LOGGER.warning(
                "cannot read the subscription registry at %s (%s); using %s until it answers",
                self._shown_url,
                exc,
                "the cached registry" if cached is not None else "static subscriptions only",
            )
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._listen, name="dicombus-subscriptions", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following the registry (the view keeps answering from what it has)."""
        if self._thread is not None:
            self._stop.set()
            with contextlib.suppress(redis.exceptions.RedisError):
                self._client.publish(self._wake_channel, "stop")
            self._thread.join(timeout=LISTEN_WAIT + REDIS_TIMEOUT + 1)
            if self._thread.is_alive():
                LOGGER.warning("the subscription listener did not stop in time")
            self._thread = None
        self._client.close()

    def refresh(self) -> None:
        """Read the registry from Redis now (the listener does this on every change)."""
        self._apply(load_registry(self._client))
        self.synced.set()

    # -- the listener ---------------------------------------------------------------------

    def _listen(self) -> None:
        backoff = RECONNECT_FIRST
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
            try:
                pubsub.subscribe(REGISTRY_CHANNEL, self._wake_channel)
                # Subscribed first, then read: a change between the two is not missed.
                self.refresh()
                backoff = RECONNECT_FIRST
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_WAIT)
                    if message is not None and message["channel"] == REGISTRY_CHANNEL.encode():
                        self.refresh()
            except redis.exceptions.RedisError as exc:
                LOGGER.info(
                    "subscription listener lost Redis (%s); retrying in %.1f s", exc, backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_CAP)
            finally:
                pubsub.close()

    # -- merging, change notification and the cache --------------------------------------

    def _apply(self, registered: dict[str, Subscription], *, persist: bool = True) -> None:
        with self._apply_lock:
            if registered == self._registered:
                return  # the common case: a notification that changed nothing
            before = self._index
            self._registered = registered
            self._index = _Index.of({**registered, **self._static}.values())
            if persist:
                self._write_cache(registered)
            changed = (
                before.by_type.keys() != self._index.by_type.keys()
                or before.raw_types != self._index.raw_types
            )
        if changed:
            LOGGER.info("subscribed event types now: %s", ", ".join(sorted(self._index.by_type)))
            if self._on_change is not None:
                self._on_change()

    def _read_cache(self) -> dict[str, Subscription] | None:
        if self.cache_path is None or not self.cache_path.exists():
            return None
        try:
            found = json.loads(self.cache_path.read_text())
            if found.get("format") != CACHE_FORMAT:
                raise SubscriptionError(f"unknown cache format {found.get('format')!r}")
            subs = [Subscription.from_mapping(entry) for entry in found["subscriptions"]]
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            LOGGER.error("ignoring the subscription cache %s: %s", self.cache_path, exc)
            return None
        return {sub.task: sub for sub in subs}

    def _write_cache(self, registered: dict[str, Subscription]) -> None:
        if self.cache_path is None:
            return
        document = {
            "format": CACHE_FORMAT,
            "subscriptions": [
                json.loads(registered[name].to_json()) for name in sorted(registered)
            ],
        }
        # Write, then rename: a crash mid-write leaves the previous cache whole.
        temporary = self.cache_path.with_name(self.cache_path.name + ".tmp")
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(document, indent=1))
            os.replace(temporary, self.cache_path)
        except OSError as exc:
            LOGGER.error("cannot write the subscription cache %s: %s", self.cache_path, exc)
