"""Waking the senders of other worker processes when deliveries become due.

The study watch (in the router's process) releases held deliveries that senders in other
processes (``dicombus worker -Q dicombus.route.<name>``) are to send. It says so on a Redis
channel, ``dicombus.route.wake`` (PUBLISH, one message per release, naming nothing: a
sender that wakes for nothing looks at the store once and sleeps again), and every
process with senders listens to it. A lost message (Redis away, a listener reconnecting)
costs only latency: the senders look at the store on their own every ``SAFETY_POLL``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dicombus.bus.redis_server import broker_client
from redis.exceptions import RedisError

LOGGER = logging.getLogger("dicombus_workers.routing")

CHANNEL = "dicombus.route.wake"
TIMEOUT = 5.0
# How long the listener waits for a message before it checks whether it is stopping.
LISTEN = 1.0
# After losing Redis it subscribes again after 1 s, then waits twice as long each time
# it fails, up to this: an outage is logged once, not every second it lasts.
RECONNECT_CAP = 30.0


def wake_senders(broker_url: str) -> None:
    """Tell every listening process that deliveries became due; a failure is logged."""
    client = broker_client(broker_url, timeout=TIMEOUT)
    try:
        client.publish(CHANNEL, b"")
    except RedisError as exc:
        LOGGER.warning("cannot wake the senders (they look again on their own): %s", exc)
    finally:
        client.close()


class WakeListener:
    """A thread that calls ``wake`` for each message on the channel."""

    def __init__(self, broker_url: str, wake: Callable[[], None]) -> None:
        self.broker_url = broker_url
        self.wake = wake
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="route-wake", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = LISTEN
        while not self._stopping.is_set():
            client = broker_client(self.broker_url, timeout=TIMEOUT)
            try:
                with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(CHANNEL)
                    if backoff > LISTEN:
                        LOGGER.info("routing wake-ups: listening again")
                    backoff = LISTEN
                    # Subscribed: what was released meanwhile was missed; look now.
                    self.wake()
                    while not self._stopping.is_set():
                        if pubsub.get_message(timeout=LISTEN) is not None:
                            self.wake()
            except RedisError as exc:
                if backoff == LISTEN:
                    LOGGER.warning(
                        "routing wake-ups: %s; the senders look on their own meanwhile", exc
                    )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_CAP)
            finally:
                client.close()
