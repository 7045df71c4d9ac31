"""Routing workers: forward what the edge stored to the destinations the rules name.

:mod:`.task` (the router and the deliverers), :mod:`.sender` (a destination's senders,
breaker and retries), :mod:`.dimse` (one association per batch), :mod:`.events` (the
routing steps on the bus). docs/routing.md describes the guarantees.
"""
