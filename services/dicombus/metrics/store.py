"""Adding to the metrics in Redis: one Lua script call for a whole batch of events.

The workers' counter task hands :func:`apply` the :class:`~dicombus.metrics.recorder.EventOps`
of a batch. The script claims each event id (``SET NX EX``, the marker the
counter task has always used) and applies that event's additions only if the
claim is new, so a redelivered or replayed event counts once, and each event's
claim and additions happen together or not at all (a script runs atomically).
The additions of the events whose claim is new are summed per key and field
and applied once each: events of one stream share nearly all of them, so a
batch costs one ``SET`` per event and one ``HINCRBY`` per field it touches,
where adding event by event cost about ten ``HINCRBY`` and three ``EXPIRE``
per C-STORE (docs/performance.md).

Capped labels (:data:`~dicombus.metrics.families.LABEL_CAPS`) are resolved in
the script too, so every worker on every host agrees on which values are kept.

The additions:

- ``incr`` / ``incrf``: ``HINCRBY`` / ``HINCRBYFLOAT`` of a field made of label values;
- ``hincr``: ``HINCRBY`` by 1 of a plain field (the counter hashes of old);
- ``expire``: ``EXPIRE`` a key (the per-minute hashes).

:func:`increment` is the door for other parts of the system (routing
delivery) to add to a counter family from Python.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dicombus.bus.json_text import dumps
from dicombus.metrics.families import LABEL_CAPS, OTHER, VALUES_PREFIX, Family
from dicombus.metrics.recorder import EventOps

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

# ARGV[1]: JSON {"ttl", "caps", "other", "values_prefix", "labels",
# "ops", "events"}, the batch's additions gathered by :func:`_gathered`:
# - labels: the distinct [label, value] pairs of the batch;
# - ops: the distinct additions of the batch, [kind, key, field] (a field's
#   parts: a number is the index of one of ``labels``, a string is taken as it
#   is), [kind, key, field text] for ``hincr``, ["expire", key, seconds];
# - events: [marker, label indices, [op index, amount, ...]].
# An event whose claim is new adds its amounts to the sums of its ops (in Lua,
# no Redis command); the sums are applied once per op at the end: one HINCRBY
# per key and field of the batch instead of one per event.
_APPLY = """
local doc = cjson.decode(ARGV[1])
local counted = 0
local function admit(label, value)
  local cap = doc.caps[label]
  if cap == nil then return value end
  local set = doc.values_prefix .. label
  if redis.call('SISMEMBER', set, value) == 1 then return value end
  if redis.call('SCARD', set) < cap then
    redis.call('SADD', set, value)
    return value
  end
  return doc.other
end
-- A label value is admitted once per batch, at its first claimed event: within
-- one atomic script a set only grows, so later events would resolve it alike.
local resolved = {}
local function value(index)
  local found = resolved[index]
  if found == nil then
    found = admit(doc.labels[index][1], doc.labels[index][2])
    resolved[index] = found
  end
  return found
end
local function field(parts)
  local out = {}
  for j, part in ipairs(parts) do
    if type(part) == 'number' then out[j] = value(part) else out[j] = part end
  end
  return cjson.encode(out)
end
local sums = {}
for _, event in ipairs(doc.events) do
  if redis.call('SET', event[1], 1, 'NX', 'EX', doc.ttl) then
    for _, index in ipairs(event[2]) do value(index) end
    local adds = event[3]
    for k = 1, #adds, 2 do
      local op = adds[k]
      sums[op] = (sums[op] or 0) + adds[k + 1]
    end
    counted = counted + 1
  end
end
-- In the ops' order: a key's EXPIRE comes after the addition that made it.
for index, op in ipairs(doc.ops) do
  local total = sums[index]
  if total ~= nil then
    if op[1] == 'incr' then
      redis.call('HINCRBY', op[2], field(op[3]), total)
    elseif op[1] == 'hincr' then
      redis.call('HINCRBY', op[2], op[3], total)
    elseif op[1] == 'incrf' then
      redis.call('HINCRBYFLOAT', op[2], field(op[3]), total)
    else
      redis.call('EXPIRE', op[2], op[3])
    end
  end
end
return counted
"""
# Sent as EVALSHA (the script's text once per Redis, not once per batch); redis-py's
# Script loads it again when Redis answers NOSCRIPT (a restarted or flushed Redis).
_script: Script | None = None


def apply(client: redis.Redis, events: Sequence[EventOps], *, marker_ttl: int) -> int:
    """Claim and count a batch of events in one script call; how many were new."""
    if not events:
        return 0
    document = {
        "ttl": marker_ttl,
        "caps": LABEL_CAPS,
        "other": OTHER,
        "values_prefix": VALUES_PREFIX,
        **_gathered(events),
    }
    global _script
    if _script is None:
        _script = client.register_script(_APPLY)
    # orjson (dicombus.bus.json_text): the standard module's dumps of the document was
    # about a sixth of the Python work of counting a batch; cjson reads the same values.
    return int(_script(args=[dumps(document)], client=client))


def _gathered(events: Sequence[EventOps]) -> dict[str, list[Any]]:
    """The batch's distinct labels and additions, and each event's share of them (the
    script's ``labels``, ``ops`` and ``events``): events of one stream share nearly
    every key and field, so the script adds in Lua and calls Redis once per op."""
    labels: dict[tuple[str, str], int] = {}
    ops: dict[tuple[Any, ...], int] = {}
    rows: list[list[Any]] = []
    for event in events:
        own = [labels.setdefault((name, value), len(labels) + 1) for name, value in event.values]
        adds: list[Any] = []
        for op in event.ops:
            kind = op[0]
            if kind in ("incr", "incrf"):
                identity: tuple[Any, ...] = (kind, op[1], tuple(_parts(op[2], own)))
                amount = op[3]
            elif kind == "hincr":
                identity, amount = (kind, op[1], op[2]), 1
            else:  # expire: applied once if any claimed event asked for it
                identity, amount = (kind, op[1], op[2]), 0
            adds += [ops.setdefault(identity, len(ops) + 1), amount]
        rows.append([event.marker, own, adds])
    return {
        "labels": [list(pair) for pair in labels],
        "ops": [
            [kind, key, list(rest) if isinstance(rest, tuple) else rest] for kind, key, rest in ops
        ],
        "events": rows,
    }


def _parts(parts: list[Any], own: list[int]) -> list[Any]:
    """A field's parts with the event's label indices (1-based) made the batch's."""
    return [own[part - 1] if isinstance(part, int) else part for part in parts]


def increment(client: redis.Redis, family: Family, labels: Sequence[str], amount: int = 1) -> None:
    """Add ``amount`` to a counter family's series (labels in the family's order).

    For parts of the system outside the counter task (routing delivery).
    Values are taken as given: cap them first if a peer chooses them."""
    if len(labels) != len(family.labels):
        raise ValueError(
            f"{family.name}: expected the labels {', '.join(family.labels)}, got {list(labels)}"
        )
    client.hincrby(family.key, json.dumps(list(labels)), amount)
