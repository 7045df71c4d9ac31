"""A Celery task message as kombu's Redis transport keeps it in a queue's list.

kombu's Redis transport stores each message as one JSON document, ``LPUSH``ed
onto the list named after the queue (priority 0: the queue name itself); a
worker's ``BRPOP`` takes the oldest from the other end. The document, as
kombu 5's ``Producer.publish`` and ``Channel._put`` write it for a message to
the anonymous exchange (tests/bus/test_redis_message.py compares the two)::

    {"body": <base64 of the body's bytes>, "content-encoding": "utf-8",
     "content-type": "application/json", "headers": {...protocol-2 headers},
     "properties": {"correlation_id": <task id>, "reply_to": "", "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": <queue>},
                    "priority": 0, "body_encoding": "base64", "delivery_tag": <uuid4>}}

Building it here instead of through kombu's producer (a Message object, the
serializer registry, body encoding, ``delivery_info`` and the Redis command
per message) costs a few microseconds per message instead of about forty.
The delivery tag is new for every publish, as kombu makes it: a worker's
transport keys its unacknowledged messages by it, so two copies of one
message (a replay) must not share one.
"""

from __future__ import annotations

import base64
import uuid

from dicombus.bus.json_text import dumps
from dicombus.bus.outbox import OutboxMessage

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
# kombu's Redis transport encodes bodies in base64 (Channel.body_encoding).
BODY_ENCODING = "base64"
# AMQP's persistent delivery mode, which kombu's producer sets by default.
PERSISTENT = 2


def redis_payload(message: OutboxMessage) -> bytes:
    """``message`` as the JSON document kombu's Redis transport keeps in the queue's list."""
    body = base64.b64encode(message.body.encode(CONTENT_ENCODING)).decode("ascii")
    return dumps(
        {
            "body": body,
            "content-encoding": CONTENT_ENCODING,
            "content-type": CONTENT_TYPE,
            "headers": message.headers,
            "properties": {
                "correlation_id": message.task_id,
                "reply_to": "",
                "delivery_mode": PERSISTENT,
                "delivery_info": {"exchange": "", "routing_key": message.queue},
                "priority": 0,
                "body_encoding": BODY_ENCODING,
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )
