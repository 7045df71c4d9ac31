"""The subscription registry in a real Redis and the edge's live view of it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dicombus.bus import subscriptions
from dicombus.bus.redis_server import EmbeddedRedis, broker_client
from dicombus.bus.subscriptions import (
    REGISTRY_KEY,
    Subscription,
    SubscriptionError,
    SubscriptionView,
    register_subscriptions,
    unregister_subscriptions,
)
from loopback import wait_until
from publisher_support import ECHO, STORE, subscription

ACCEPTED = "EVT_ACCEPTED"


@pytest.fixture
def client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    connection = broker_client(redis_server.url)
    yield connection
    connection.close()


class Changes:
    """An on_change callback that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.calls += 1


ViewFactory = Callable[..., SubscriptionView]


@pytest.fixture
def view_of(redis_server: EmbeddedRedis) -> Iterator[ViewFactory]:
    """``view_of(**options)``: a started SubscriptionView on the test's Redis, stopped
    after the test."""
    views: list[SubscriptionView] = []

    def make(**options: Any) -> SubscriptionView:
        view = SubscriptionView(redis_server.url, **options)
        view.start()
        views.append(view)
        return view

    yield make
    for view in views:
        view.stop()


def test_a_subscription_round_trips_through_json() -> None:
    sub = subscription("tests.audit", "audit", STORE, ECHO, raw=True)
    assert Subscription.from_json(sub.to_json()) == sub
    assert json.loads(sub.to_json())["event_types"] == [ECHO, STORE]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"queue": "q", "event_types": ["EVT_C_STORE"]}',
        '{"task": "t", "event_types": ["EVT_C_STORE"]}',
        '{"task": "t", "queue": "q", "event_types": "EVT_C_STORE"}',
        '{"task": "t", "queue": "q", "event_types": ["EVT_C_STORE"], "raw": "yes"}',
    ],
)
def test_a_malformed_subscription_is_rejected(text: str) -> None:
    with pytest.raises(SubscriptionError):
        Subscription.from_json(text)


def test_registering_writes_the_hash_that_a_view_loads(
    client: redis.Redis, view_of: ViewFactory
) -> None:
    audit = subscription("tests.audit", "audit", STORE, ECHO)
    count = subscription("tests.count", "count", STORE)
    register_subscriptions(client, [audit, count])
    assert set(client.hkeys(REGISTRY_KEY)) == {b"tests.audit", b"tests.count"}
    view = view_of()
    assert view.synced.is_set()
    assert view.wants(STORE) and view.wants(ECHO) and not view.wants(ACCEPTED)
    assert view.subscribers(STORE) == [audit, count]
    assert view.subscribers(ECHO) == [audit]
    assert view.subscribers(ACCEPTED) == []
    assert view.wanted_types() == {STORE, ECHO}


def test_static_subscriptions_merge_and_win_over_a_registered_task_of_the_same_name(
    client: redis.Redis, view_of: ViewFactory
) -> None:
    register_subscriptions(
        client,
        [subscription("tests.audit", "elsewhere", ECHO), subscription("tests.count", "count")],
    )
    pinned = subscription("tests.audit", "audit", ACCEPTED, raw=True)
    view = view_of(static=[pinned])
    assert view.subscribers(ACCEPTED) == [pinned]
    assert not view.wants(ECHO)
    assert view.raw_wanted(ACCEPTED) and not view.raw_wanted(STORE)
    assert [sub.task for sub in view.subscriptions()] == ["tests.audit", "tests.count"]


def test_the_view_follows_registrations_live_and_reports_changes_of_wanted_types(
    client: redis.Redis, view_of: ViewFactory
) -> None:
    changes = Changes()
    view = view_of(on_change=changes)
    assert not view.wants(STORE)
    register_subscriptions(client, [subscription("tests.audit", "audit", STORE)])
    wait_until(lambda: view.wants(STORE))
    assert changes.calls == 1

    # Same types wanted, another task: the view changes, the wanted set does not.
    register_subscriptions(client, [subscription("tests.count", "count", STORE)])
    wait_until(lambda: len(view.subscribers(STORE)) == 2)
    assert changes.calls == 1

    unregister_subscriptions(client, ["tests.audit", "tests.count"])
    wait_until(lambda: not view.wants(STORE))
    assert changes.calls == 2


def test_a_malformed_registry_entry_is_skipped_and_logged(
    client: redis.Redis, view_of: ViewFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client.hset(REGISTRY_KEY, "tests.broken", "{not json")
    register_subscriptions(client, [subscription("tests.audit", "audit")])
    with caplog.at_level(logging.ERROR, logger="dicombus.bus.subscriptions"):
        view = view_of()
    assert [sub.task for sub in view.subscriptions()] == ["tests.audit"]
    assert "tests.broken" in caplog.text


def test_an_edge_restarted_while_redis_is_down_uses_its_cached_view(
    redis_server: EmbeddedRedis,
    client: redis.Redis,
    view_of: ViewFactory,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "subscriptions.json"
    audit = subscription("tests.audit", "audit", STORE)
    register_subscriptions(client, [audit])
    first = view_of(cache_path=cache)
    assert first.subscribers(STORE) == [audit]
    first.stop()

    redis_server.kill()
    changes = Changes()
    again = view_of(cache_path=cache, on_change=changes)
    assert not again.synced.is_set()
    assert again.subscribers(STORE) == [audit]
    assert changes.calls == 1  # from nothing to the cached types


def test_the_view_reconnects_after_redis_restarts_and_catches_up(
    redis_server: EmbeddedRedis, view_of: ViewFactory
) -> None:
    view = view_of()
    redis_server.kill()
    redis_server.start()  # same port; the registry hash came back from the AOF
    client = broker_client(redis_server.url)
    try:
        register_subscriptions(client, [subscription("tests.audit", "audit", ECHO)])
        wait_until(lambda: view.wants(ECHO))
    finally:
        client.close()


def test_stop_returns_promptly(view_of: ViewFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """stop() wakes the listener (no waiting out its blocking read): with reads that
    block for 30 s, it returns well before one could have run out."""
    monkeypatch.setattr(subscriptions, "LISTEN_WAIT", 30.0)
    monkeypatch.setattr(subscriptions, "REDIS_TIMEOUT", 31.0)
    view = view_of()
    wait_until(view.synced.is_set)
    started = time.monotonic()
    view.stop()
    assert time.monotonic() - started < 15.0
