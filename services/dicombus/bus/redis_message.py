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
import os
from collections.abc import Iterator, Mapping, Sequence

from dicombus.bus.json_text import dumps
from dicombus.bus.outbox import OutboxMessage

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
# kombu's Redis transport encodes bodies in base64 (Channel.body_encoding).
BODY_ENCODING = "base64"
# AMQP's persistent delivery mode, which kombu's producer sets by default.
PERSISTENT = 2

# The document as kombu writes it, key for key, around the values that change: a
# concatenation of bytes instead of three dicts for orjson to walk. The body is
# base64 (ASCII, nothing to escape); the others are JSON text of their own.
_BEFORE_BODY = b'{"body":"'
_BEFORE_HEADERS = (
    f'","content-encoding":"{CONTENT_ENCODING}","content-type":"{CONTENT_TYPE}","headers":'
).encode()
_BEFORE_TASK_ID = b',"properties":{"correlation_id":'
_BEFORE_QUEUE = (
    f',"reply_to":"","delivery_mode":{PERSISTENT},"delivery_info":{{"exchange":"","routing_key":'
).encode()
_BEFORE_TAG = f'}},"priority":0,"body_encoding":"{BODY_ENCODING}","delivery_tag":"'.encode()
_END = b'"}}'

# RFC 9562 5.4 and 5.5: the version in the high nibble of octet 6, the variant (10)
# in the two high bits of octet 8.
_UUID_BYTES = 16


def uuid_text(octets: bytes, version: int) -> str:
    """The UUID of ``version`` made of 16 ``octets`` (random for version 4, a SHA-1 hash
    for version 5), as text: what ``str(uuid.UUID(bytes=octets, version=version))``
    gives, without the UUID object."""
    value = int.from_bytes(octets[:_UUID_BYTES])
    value = (value & ~(0xF000 << 64) | version << 76) & ~(0xC000 << 48) | 0x8000 << 48
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def delivery_tags(count: int) -> Iterator[str]:
    """``count`` new delivery tags: random (version 4) UUIDs as kombu makes them, from one
    read of the system's random source."""
    octets = os.urandom(_UUID_BYTES * count)
    for start in range(0, len(octets), _UUID_BYTES):
        yield uuid_text(octets[start : start + _UUID_BYTES], 4)


def redis_payloads(messages: Sequence[OutboxMessage]) -> list[bytes]:
    """Each of ``messages`` as the JSON document kombu's Redis transport keeps in the
    queue's list, each with a new delivery tag."""
    return [
        redis_payload(message, tag)
        for message, tag in zip(messages, delivery_tags(len(messages)), strict=True)
    ]


def redis_payload(message: OutboxMessage, delivery_tag: str) -> bytes:
    """``message`` as the JSON document kombu's Redis transport keeps in the queue's list."""
    return b"".join(
        (
            _BEFORE_BODY,
            base64.b64encode(message.body.encode(CONTENT_ENCODING)),
            _BEFORE_HEADERS,
            dumps(message.headers),
            _BEFORE_TASK_ID,
            dumps(message.task_id),
            _BEFORE_QUEUE,
            dumps(message.queue),
            _BEFORE_TAG,
            delivery_tag.encode("ascii"),
            _END,
        )
    )


def lpush_commands(payloads_by_queue: Mapping[str, Sequence[bytes]]) -> bytes:
    """An ``LPUSH`` of each queue's payloads, in the Redis protocol (RESP), as one buffer
    for one write.

    redis-py's ``pack_commands`` cuts a batch into pieces of about 6 KB and its
    connection writes each with a system call of its own: a few hundred for a batch
    of C-STORE events, each one handing Redis part of a command. Joined, the batch
    costs one copy and one write.
    """
    parts: list[bytes] = []
    for queue, payloads in payloads_by_queue.items():
        name = queue.encode(CONTENT_ENCODING)
        parts += (b"*%d\r\n$5\r\nLPUSH\r\n$%d\r\n" % (len(payloads) + 2, len(name)), name)
        for payload in payloads:
            parts += (b"\r\n$%d\r\n" % len(payload), payload)
        parts.append(b"\r\n")
    return b"".join(parts)
