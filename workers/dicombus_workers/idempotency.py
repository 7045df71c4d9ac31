"""Idempotency by event id: the bus delivers at least once, so tasks make repeats harmless.

A message can arrive twice: the edge replays its outbox after an outage and
cannot know which of the last events Redis had taken, and a worker that dies
after its task finished but before the acknowledgement leaves the message to
be handed out again. Two tools, both keyed by (scope, event id) in Redis with
an expiry longer than any replay window:

- :func:`first_time` claims an event (``SET key 1 NX EX ttl``): True once,
  False ever after. Guard an effect that must never happen twice with it,
  accepting that a task killed between the claim and the effect loses it.
- :func:`idempotent` (or ``on_event(..., idempotent=True)``) skips the task
  when an earlier run *finished*, and marks the event done after the function
  returns. A run that died half-way runs again. The window between the
  function's effect and the mark is the one place a repeat can slip through;
  an effect that must be exactly once writes its own mark in the same
  transaction as the effect (the built-in tasks do: an SQLite primary key, a
  Redis script).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import redis

from dicombus_workers.app import app

# A week: longer than an edge keeps events in its outbox before someone notices.
DEFAULT_TTL = 7 * 24 * 3600
KEY_PREFIX = "dicombus:idem"

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()

Result = TypeVar("Result")
Record = TypeVar("Record", bound="HasId")


class HasId(Protocol):
    """What batch idempotency needs of a record: the event id."""

    @property
    def id(self) -> str: ...


def redis_client() -> redis.Redis:
    """This process's client for the broker's Redis (redis-py reconnects after a fork)."""
    url = str(app.conf.broker_url)
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url)
        return client


def marker_key(event_id: str, scope: str, state: str = "claimed") -> str:
    return f"{KEY_PREFIX}:{scope}:{state}:{event_id}"


def first_time(
    event_id: str, scope: str, ttl: int = DEFAULT_TTL, *, client: redis.Redis | None = None
) -> bool:
    """True for the first caller with this (scope, event id), False for every later one."""
    target = client if client is not None else redis_client()
    return bool(target.set(marker_key(event_id, scope), 1, nx=True, ex=ttl))


def is_done(event_id: str, scope: str, *, client: redis.Redis | None = None) -> bool:
    """Whether a run of ``scope`` for this event finished (see :func:`mark_done`)."""
    target = client if client is not None else redis_client()
    return bool(target.exists(marker_key(event_id, scope, "done")))


def mark_done(
    event_id: str, scope: str, ttl: int = DEFAULT_TTL, *, client: redis.Redis | None = None
) -> None:
    target = client if client is not None else redis_client()
    target.set(marker_key(event_id, scope, "done"), 1, ex=ttl)


def not_done(records: list[Record], scope: str) -> list[Record]:
    """The records of a batch whose event no run of ``scope`` finished (one round trip)."""
    with redis_client().pipeline(transaction=False) as pipe:
        for record in records:
            pipe.exists(marker_key(record.id, scope, "done"))
        found = pipe.execute()
    return [record for record, done in zip(records, found, strict=True) if not done]


def mark_all_done(event_ids: list[str], scope: str, ttl: int = DEFAULT_TTL) -> None:
    """:func:`mark_done` for every event of a batch, in one round trip."""
    with redis_client().pipeline(transaction=False) as pipe:
        for event_id in event_ids:
            pipe.set(marker_key(event_id, scope, "done"), 1, ex=ttl)
        pipe.execute()


def idempotent(
    scope: str, ttl: int = DEFAULT_TTL
) -> Callable[[Callable[..., Result]], Callable[..., Result | None]]:
    """Decorate ``fn(record, ...)``: skipped (returns None) once a run for the event finished."""

    def decorate(fn: Callable[..., Result]) -> Callable[..., Result | None]:
        @functools.wraps(fn)
        def run(record: Any, *args: Any, **kwargs: Any) -> Result | None:
            if is_done(record.id, scope):
                return None
            result = fn(record, *args, **kwargs)
            mark_done(record.id, scope, ttl)
            return result

        return run

    return decorate
