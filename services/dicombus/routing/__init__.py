"""Routing rules and destinations: what the routing workers forward, where, and changed how.

Pure code, with no broker or network in it: ``dicombus routes check`` and ``dry-run`` use it
on the operator's side, the routing workers on theirs (docs/routing.md).
"""

from dicombus.routing.config import (
    RoutingConfig,
    RoutingConfigError,
    load_routing_config,
    parse_routing_config,
)
from dicombus.routing.rules import Per, Route, Rule

__all__ = [
    "Per",
    "Route",
    "RoutingConfig",
    "RoutingConfigError",
    "Rule",
    "load_routing_config",
    "parse_routing_config",
]
