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

In a steady stream each fetch would take the few messages of one publisher
batch, and the per-fetch costs (the ``BRPOP``'s wake-up, the script call, an
fsync of Redis's append-only file, the event loop's turn) would be paid every
few events: about 1 ms of worker CPU per fetch in ``dicombus up``'s stream,
more than the events themselves (docs/performance.md). So after a fetch that
emptied the list while messages kept coming, the channel holds its next
``BRPOP`` (:class:`~dicombus.bus.linger.AdaptiveLinger`, at most
:data:`FETCH_LINGER`), and more arrive meanwhile to be taken together; after a
quiet spell it does not wait, nor when its prefetch has room for fewer than
:data:`FETCH_TARGET` (it would only fall behind). In a worker the hold does
not stop the event loop: the QoS takes nothing until it ends (kombu's poller
sends no ``BRPOP`` then), a timer wakes the loop when it does, and meanwhile
the loop runs its batches, acknowledgements and timers; without an event loop
(``drain_events``) the channel sleeps instead. The messages it fetched are
delivered before the hold, so no message waits for it; what arrives during it
waits at most :data:`FETCH_LINGER`, and another worker's ``BRPOP`` on the same
queue may take it first.

The script pops and records atomically, which kombu's own two steps do not: a
worker killed between them can lose no message here (the ``BRPOP``'s own
message is exposed between its pop and the script, as it is in kombu).
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

import orjson
from dicombus.bus.linger import AdaptiveLinger
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils import json as kombu_json
from kombu.utils.encoding import bytes_to_str
from redis.commands.core import Script

# At most this many messages per script call beyond the one BRPOP returned, also
# when the prefetch is unlimited: bounds one call's time in Redis.
BULK_LIMIT = 200

# The hold before the next BRPOP in a stream (see the module docstring), and the
# fetch size it aims at. As long as a batch task's own linger (dicombus_workers.batch,
# 50 ms): in a stream a fetch then fills about one batch, and an event waits at most
# twice that before its batch runs; a single-message task's event on the same
# worker waits at most this much more. In `up`'s stream (publisher batches about
# 25 ms apart, two workers) a shorter hold would not wait at all after most fetches.
FETCH_LINGER = 0.05
FETCH_TARGET = 32

# KEYS: the list, the unacked hash, the unacked index. ARGV: how many more, now,
# the message the BRPOP returned. kombu's QoS.append stores [message, exchange,
# routing key] under the message's delivery tag and indexes the tag by time; the
# message's own JSON is kept as is. Decoding the whole message (about 1.5 KB, most
# of it the base64 body) to read those three was most of the script's time in
# Redis: a key that occurs once in the text can only be the properties' own (a
# JSON string holds no unescaped quote, so '"delivery_tag"' inside one is
# '\"delivery_tag\"'), so its value is read where it stands; a message where
# either key occurs again, or whose value is not plain, is decoded whole. The
# entries of a fetch go in with one ZADD and one HSET.
_POP_AND_RECORD = """
local scores, entries = {}, {}
local function after_only(raw, key)
  local at = string.find(raw, key, 1, true)
  if at and not string.find(raw, key, at + #key, true) then return at + #key end
  return nil
end
local function properties_of(raw)
  local tag_at = after_only(raw, '"delivery_tag"')
  local info_at = after_only(raw, '"delivery_info"')
  if tag_at and info_at then
    local tag = string.match(raw, '^%s*:%s*"([^"\\\\]*)"', tag_at)
    local info = string.match(raw, '^%s*:%s*(%b{})', info_at)
    if tag and info then
      local ok, decoded = pcall(cjson.decode, info)
      if ok and type(decoded) == 'table' then return tag, decoded end
    end
  end
  local properties = cjson.decode(raw)['properties']
  return properties['delivery_tag'], properties['delivery_info']
end
local function record(raw)
  local tag, info = properties_of(raw)
  scores[#scores + 1] = ARGV[2]
  scores[#scores + 1] = tag
  entries[#entries + 1] = tag
  entries[#entries + 1] = '[' .. raw .. ',' .. cjson.encode(info['exchange'])
    .. ',' .. cjson.encode(info['routing_key']) .. ']'
end
record(ARGV[3])
local popped = {}
for i = 1, tonumber(ARGV[1]) do
  local raw = redis.call('RPOP', KEYS[1])
  if not raw then break end
  record(raw)
  popped[#popped + 1] = raw
end
redis.call('ZADD', KEYS[3], unpack(scores))
redis.call('HSET', KEYS[2], unpack(entries))
return popped
"""
# Sent as EVALSHA; redis-py loads it again when Redis answers NOSCRIPT (a restart).
_pop_and_record: Script | None = None

# kombu's JSON marks the values it extends JSON with (datetimes, decimals, UUIDs) as
# objects with this key; only its own loads turns them back.
_KOMBU_TYPE_MARKER = '"__type__"'
_KOMBU_TYPE_MARKER_BYTES = _KOMBU_TYPE_MARKER.encode()


def loads(raw: bytes | str) -> Any:
    """A JSON document of a message, as kombu's ``loads`` reads it, by orjson.

    kombu's ``loads`` calls a Python hook for every object of the document, which
    made decoding a worker's largest cost per message after the acknowledgements
    (docs/performance.md). orjson gives the same values for the documents the edge
    and Celery write; what it reads differently goes to kombu's: a document with
    kombu's type markers, and what orjson refuses (``NaN``, integers beyond 64 bits,
    lone surrogates), for which kombu's gives its own value or error.
    """
    marked = (
        _KOMBU_TYPE_MARKER_BYTES in raw if isinstance(raw, bytes) else _KOMBU_TYPE_MARKER in raw
    )
    if not marked:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return kombu_json.loads(raw)


class BulkQoS(kombu_redis.QoS):
    """kombu's Redis QoS that does not record again what the bulk script recorded, and
    that takes nothing while the channel holds its next fetch (``held_until``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.recorded: set[str] = set()
        self.held_until = 0.0  # time.monotonic() before which no BRPOP is sent

    def can_consume(self) -> bool:
        # kombu's poller sends the next BRPOP only when this says yes.
        if time.monotonic() < self.held_until:
            return False
        return bool(super().can_consume())  # type: ignore[no-untyped-call]

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)  # type: ignore[no-untyped-call]


class BulkChannel(kombu_redis.Channel):
    """A Redis channel whose consumer drains a list in bulk after each ``BRPOP``."""

    QoS = BulkQoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._fetch_linger = AdaptiveLinger(FETCH_LINGER, FETCH_TARGET)

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
        first = loads(item)
        if self.global_keyprefix:
            # A key prefix would need every key of the script rewritten: kombu's way.
            self.connection._deliver(first, queue)
            return True
        # How long the BRPOP waited (kombu notes when it sent it; unknown: a quiet spell).
        idle = time.monotonic() - (self._brpop_sent_at or 0.0)
        more, wanted = self._record_and_take(key, item)
        for payload in [first, *more]:
            self.qos.recorded.add(payload["properties"]["delivery_tag"])
            self.connection._deliver(payload, queue)
        pause = self._fetch_linger.wait(idle)
        self._fetch_linger.taken(1 + len(more))
        if pause > 0 and len(more) < wanted and wanted >= FETCH_TARGET:
            # The list is empty and messages kept coming: let the next few gather
            # before the next BRPOP (delivered ones are not held back). Only when the
            # prefetch can take them: a consumer of a few messages at a time (a
            # single-message task) waiting would fall behind a fast stream.
            self._hold_fetch(pause)
        return True

    def _hold_fetch(self, pause: float) -> None:
        """No BRPOP for ``pause`` seconds. In a worker's event loop the loop goes on
        (its timers, the batches' flushes and acknowledgements) and a timer wakes it when
        the hold ends; without a loop (``drain_events``) nothing else would run: sleep."""
        loop = self.connection.event_loop
        if loop is None:
            time.sleep(pause)
            return
        self.qos.held_until = time.monotonic() + pause
        loop.call_later(pause, _held_fetch_over)

    def _record_and_take(self, key: bytes, first: bytes) -> tuple[list[dict[str, Any]], int]:
        """Record ``first`` (the BRPOP's message) and pop and record as many more as
        the prefetch has room for beside it: the more, in the list's order, and how
        many were wanted."""
        global _pop_and_record
        room = self.qos.can_consume_max_estimate()
        wanted = BULK_LIMIT if room is None else max(min(room - 1, BULK_LIMIT), 0)
        with self.conn_or_acquire() as client:
            if _pop_and_record is None:
                _pop_and_record = client.register_script(_POP_AND_RECORD)
            popped = _pop_and_record(
                keys=[key, self.unacked_key, self.unacked_index_key],
                args=[wanted, time.time(), first],
                client=client,
            )
        return [loads(raw) for raw in popped], wanted


def _held_fetch_over() -> None:
    """A timer's callback: the event loop's next turn sends the held BRPOP (it polls
    for the channels whose QoS can consume at every turn)."""


class Transport(kombu_redis.Transport):
    """``broker_transport`` of the dicombus workers: Redis, with :class:`BulkChannel`."""

    Channel = BulkChannel
    # The worker's event loop (kombu's Hub) once registered: what a held fetch's timer
    # goes on; None for a consumer that drains without one.
    event_loop: Any = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)  # type: ignore[no-untyped-call]
        self.event_loop = loop
