"""An edge's heartbeat: its publisher's figures in Redis, every few seconds.

Outbox depth and publisher lag live in the edge process; ``dicombus metrics``
may run on another host. So the edge writes them where every reader finds
them, in the broker's Redis:

- ``dicombus:edge:<edge id>``: a hash of the publisher's gauges
  (``Publisher.metrics()``: ``outbox_rows``, ``outbox_bytes``, ``lag_seconds``,
  ``queued``, ``held``, ``outbox_full`` ...) plus ``ae_title`` and ``address``;
- ``dicombus:edge:<edge id>:alive``: a key that expires :data:`ALIVE_TTL`
  seconds after the last beat. Its remaining time says how old the beat is,
  on Redis's clock, so hosts whose clocks disagree still agree on "up";
- ``dicombus:edges``: the set of edge ids that ever beat.

An edge that stops cleanly deletes its alive key: it reads as down at once.
While Redis is away nothing can be written, and the edge reads as down, which
is what the readers can see of it then anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from dicombus.bus.redis_server import broker_client

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

LOGGER = logging.getLogger("dicombus.metrics.heartbeat")

EDGES_KEY = "dicombus:edges"
EDGE_PREFIX = "dicombus:edge:"
# Seconds between beats: the resolution of outbox depth and lag in Prometheus,
# whose default scrape interval is 15 s.
BEAT_INTERVAL = 5.0
# Three missed beats: a busy edge or a slow Redis may miss one, not three.
ALIVE_TTL = 15
REDIS_TIMEOUT = 2.0


def edge_key(edge_id: str) -> str:
    return EDGE_PREFIX + edge_id


def alive_key(edge_id: str) -> str:
    return EDGE_PREFIX + edge_id + ":alive"


class EdgeHeartbeat:
    """A daemon thread that writes ``figures()`` (and ``identity``) to Redis every beat."""

    def __init__(
        self,
        broker_url: str,
        edge_id: str,
        figures: Callable[[], Mapping[str, float]],
        identity: Mapping[str, str],
        *,
        interval: float = BEAT_INTERVAL,
    ) -> None:
        self.edge_id = edge_id
        self._figures = figures
        self._identity = dict(identity)
        self._interval = interval
        self._client = broker_client(broker_url, timeout=REDIS_TIMEOUT)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dicombus-heartbeat", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and mark the edge down (best effort: Redis may be gone)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(self._interval + 2 * REDIS_TIMEOUT)
        try:
            self._client.delete(alive_key(self.edge_id))
        except Exception:  # redis-py raises several kinds; nothing to do about any
            LOGGER.debug("could not mark edge %s down", self.edge_id, exc_info=True)
        self._client.close()

    def beat(self) -> None:
        """Write the figures now, in one transaction."""
        fields: dict[FieldT, EncodableT] = {}
        for name, text in self._identity.items():
            fields[name] = text
        for name, value in self._figures().items():
            fields[name] = repr(float(value))
        pipe = self._client.pipeline(transaction=True)
        pipe.sadd(EDGES_KEY, self.edge_id)
        pipe.hset(edge_key(self.edge_id), mapping=fields)
        pipe.set(alive_key(self.edge_id), 1, ex=ALIVE_TTL)
        pipe.execute()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.beat()
            except Exception as exc:  # Redis away: the publisher's outbox has it covered
                if not self._failing:
                    LOGGER.warning("edge heartbeat not written to Redis: %s", exc)
                self._failing = True
            else:
                if self._failing:
                    LOGGER.info("edge heartbeat written to Redis again")
                self._failing = False
            self._stopping.wait(self._interval)
