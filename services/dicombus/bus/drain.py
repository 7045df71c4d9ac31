"""Waiting for the workers to take what is queued, before they are stopped.

A Celery worker in warm shutdown finishes the tasks it runs and takes nothing
new: what the edge published last (its ``dicombus.node.stopped`` among it)
would wait in Redis for the next start. ``dicombus up``, which stops its own
workers, first waits (bounded) until the queues of every subscription are empty
and no message is unacknowledged, i.e. every task ran (workers run ``acks_late``).
"""

from __future__ import annotations

import time

import redis

from dicombus.bus.redis_server import broker_client
from dicombus.bus.subscriptions import load_registry

# kombu's Redis transport keeps each delivered, unacknowledged message in this hash.
UNACKED_KEY = "unacked"
# How often the queues are looked at while waiting.
POLL = 0.1


def wait_until_drained(broker_url: str, timeout: float) -> bool:
    """True once every subscribed queue is empty and nothing is unacknowledged; False
    after ``timeout`` seconds, or at once when Redis does not answer."""
    deadline = time.monotonic() + timeout
    client = broker_client(broker_url)
    try:
        while True:
            queues = {subscription.queue for subscription in load_registry(client).values()}
            pipe = client.pipeline(transaction=False)
            for queue in sorted(queues):
                pipe.llen(queue)
            pipe.hlen(UNACKED_KEY)
            if not any(pipe.execute()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)
    except redis.RedisError:
        return False
    finally:
        client.close()
