"""kombu's Redis transport, fetching many messages per round trip (the workers' broker transport).

kombu's Redis consumer takes one message per ``BRPOP`` and then records it as
unacknowledged with a ``MULTI``/``EXEC`` of its own (``ZADD`` to the unacked
index, ``HSET`` of the message into the unacked hash): two round trips per
message, and with ``appendfsync always`` one fsync per message, whatever the
prefetch allows. This transport keeps the ``BRPOP`` (it is how the worker waits
for work) and, when it returns a message, records that message and takes up to
as many more from the same list as the prefetch has room for, in one Lua script
that records each one exactly as kombu does: same keys, same entries, same
delivery tags. So a batch costs two round trips (the ``BRPOP`` and the script)
where kombu spent two per message, and the ``BRPOP``'s message is recorded
before it is delivered, as kombu's ``QoS.append`` records it. The restore
sweep, acknowledgements and redelivery work on them unchanged.

The script pops and records atomically, which kombu's own two steps do not: a
worker killed between them can lose no message here (the ``BRPOP``'s own
message is exposed between its pop and the script, as it is in kombu).
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

# At most this many messages per script call beyond the one BRPOP returned, also
# when the prefetch is unlimited: bounds one call's time in Redis.
BULK_LIMIT = 200

# KEYS: the list, the unacked hash, the unacked index. ARGV: how many more, now,
# the message the BRPOP returned. kombu's QoS.append stores [message, exchange,
# routing key] under the message's delivery tag and indexes the tag by time; the
# message's own JSON is kept as is.
_POP_AND_RECORD = """
local function record(raw)
  local properties = cjson.decode(raw)['properties']
  local tag = properties['delivery_tag']
  local info = properties['delivery_info']
  redis.call('ZADD', KEYS[3], ARGV[2], tag)
  redis.call('HSET', KEYS[2], tag, '[' .. raw .. ',' .. cjson.encode(info['exchange'])
    .. ',' .. cjson.encode(info['routing_key']) .. ']')
end
record(ARGV[3])
local popped = {}
for i = 1, tonumber(ARGV[1]) do
  local raw = redis.call('RPOP', KEYS[1])
  if not raw then break end
  record(raw)
  popped[#popped + 1] = raw
end
return popped
"""


class BulkQoS(kombu_redis.QoS):
    """kombu's Redis QoS that does not record again what the bulk script recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)  # type: ignore[no-untyped-call]


class BulkChannel(kombu_redis.Channel):
    """A Redis channel whose consumer drains a list in bulk after each ``BRPOP``."""

    QoS = BulkQoS

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's _brpop_read, with the recording and the bulk step in one script.
        try:
            try:
                found = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not found:
                raise Empty()
            key, item = found
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu's own reset
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]
        first = loads(bytes_to_str(item))
        if self.global_keyprefix:
            # A key prefix would need every key of the script rewritten: kombu's way.
            self.connection._deliver(first, queue)
            return True
        for payload in [first, *self._record_and_take(key, item)]:
            self.qos.recorded.add(payload["properties"]["delivery_tag"])
            self.connection._deliver(payload, queue)
        return True

    def _record_and_take(self, key: bytes, first: bytes) -> list[dict[str, Any]]:
        """Record ``first`` (the BRPOP's message) and pop and record as many more as
        the prefetch has room for beside it; the more, in the list's order."""
        room = self.qos.can_consume_max_estimate()
        wanted = BULK_LIMIT if room is None else max(min(room - 1, BULK_LIMIT), 0)
        with self.conn_or_acquire() as client:
            popped = client.eval(
                _POP_AND_RECORD,
                3,
                key,
                self.unacked_key,
                self.unacked_index_key,
                wanted,
                time.time(),
                first,
            )
        return [loads(bytes_to_str(raw)) for raw in popped]


class Transport(kombu_redis.Transport):
    """``broker_transport`` of the dicombus workers: Redis, with :class:`BulkChannel`."""

    Channel = BulkChannel
