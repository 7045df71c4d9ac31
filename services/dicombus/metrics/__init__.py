"""Analytics in the operator's tools: Prometheus metrics and the terminal summary.

Every number comes from state shared in the broker's Redis, never from one
process's memory, so any number of workers and edges on any number of hosts
add up, and ``dicombus metrics`` or ``dicombus stats`` run anywhere that
reaches that Redis:

- :mod:`.families`: the metric names, their labels, buckets and caps (data);
- :mod:`.recorder`: what one event adds (the workers' counter task applies it
  with :mod:`.store`'s Lua script, once per event id);
- :mod:`.heartbeat`: each edge's publisher figures, written to Redis;
- :mod:`.snapshot`: everything read back in one pass;
- :mod:`.collector`: the snapshot as prometheus-client metric families.
"""
