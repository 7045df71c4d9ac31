"""Adding to the metrics in Redis: one Lua script call for a whole batch of events.

The workers' counter task hands :func:`apply` the :class:`~dicombus.metrics.recorder.EventOps`
of a batch. The script claims each event id (``SET NX EX``, the marker the
counter task has always used) and applies that event's additions only if the
claim is new, so a redelivered or replayed event counts once, and each event's
claim and additions happen together or not at all (a script runs atomically).

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
from typing import TYPE_CHECKING

from dicombus.metrics.families import LABEL_CAPS, OTHER, VALUES_PREFIX, Family
from dicombus.metrics.recorder import EventOps

if TYPE_CHECKING:
    import redis

# ARGV[1]: JSON {"ttl", "caps", "other", "values_prefix", "events": [{"marker", "values",
# "ops"}]}. A field part that is a number is the index of one of the event's
# resolved label values; a string is taken as it is.
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
local function field(parts, values)
  local out = {}
  for j, part in ipairs(parts) do
    if type(part) == 'number' then out[j] = values[part] else out[j] = part end
  end
  return cjson.encode(out)
end
for _, event in ipairs(doc.events) do
  if redis.call('SET', event.marker, 1, 'NX', 'EX', doc.ttl) then
    local values = {}
    for j, labelled in ipairs(event.values) do values[j] = admit(labelled[1], labelled[2]) end
    for _, op in ipairs(event.ops) do
      if op[1] == 'incr' then
        redis.call('HINCRBY', op[2], field(op[3], values), op[4])
      elseif op[1] == 'hincr' then
        redis.call('HINCRBY', op[2], op[3], 1)
      elseif op[1] == 'expire' then
        redis.call('EXPIRE', op[2], op[3])
      elseif op[1] == 'incrf' then
        redis.call('HINCRBYFLOAT', op[2], field(op[3], values), op[4])
      end
    end
    counted = counted + 1
  end
end
return counted
"""


def apply(client: redis.Redis, events: Sequence[EventOps], *, marker_ttl: int) -> int:
    """Claim and count a batch of events in one script call; how many were new."""
    if not events:
        return 0
    document = {
        "ttl": marker_ttl,
        "caps": LABEL_CAPS,
        "other": OTHER,
        "values_prefix": VALUES_PREFIX,
        "events": [
            {"marker": event.marker, "values": event.values, "ops": event.ops} for event in events
        ],
    }
    return int(client.eval(_APPLY, 0, json.dumps(document, separators=(",", ":"))))


def increment(client: redis.Redis, family: Family, labels: Sequence[str], amount: int = 1) -> None:
    """Add ``amount`` to a counter family's series (labels in the family's order).

    For parts of the system outside the counter task (routing delivery).
    Values are taken as given: cap them first if a peer chooses them."""
    if len(labels) != len(family.labels):
        raise ValueError(
            f"{family.name}: expected the labels {', '.join(family.labels)}, got {list(labels)}"
        )
    client.hincrby(family.key, json.dumps(list(labels)), amount)
