"""Waiting for the workers to take what is queued, before they are stopped.

A Celery worker in warm shutdown finishes the tasks it runs and takes nothing
new: what the edge published last (its ``dicombus.node.stopped`` among it)
would wait in Redis for the next start. ``dicombus up``, which stops its own
workers, first waits (bounded) until the queues of every subscription are empty
and no message delivered lately is unacknowledged, i.e. every task ran (workers run
``acks_late``).
"""

from __future__ import annotations

import time

import redis

from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import load_registry

# kombu's Redis transport keeps each delivered, unacknowledged message in a hash,
# and the time it was delivered in this sorted set.
UNACKED_INDEX_KEY = "unacked_index"
# A message delivered longer ago than this and still unacknowledged is not one a live
# worker is about to finish (event tasks take milliseconds): it is a dead worker's,
# which Redis gives back after the visibility timeout, and is not waited for.
RECENT = 5.0
# How often the queues are looked at while waiting.
POLL = 0.1


def wait_until_drained(broker_url: str, timeout: float) -> bool:
    """True once every subscribed queue is empty and no message delivered lately is
    unacknowledged; False after ``timeout`` seconds, or at once when Redis does not answer."""
    deadline = time.monotonic() + timeout
    client = broker_client(broker_url)
    try:
        while True:
            queues = {subscription.queue for subscription in load_registry(client).values()}
            pipe = client.pipeline(transaction=False)
            for queue in sorted(queues):
                pipe.llen(queue)
            pipe.zcount(UNACKED_INDEX_KEY, time.time() - RECENT, "+inf")
            if not any(pipe.execute()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)
    except redis.RedisError:
        return False
    finally:
        client.close()
