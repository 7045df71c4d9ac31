"""The events routing publishes about itself, so audit and analytics see every step.

Each is a CloudEvents envelope like the edge's (docs/events.md), ``source``
``dicombus://<edge id>/<our calling AE title>``, ``subject`` the event's own id (the
study's UID for STUDY_STABLE), with the ``data`` docs/audit.md gives for
``dicombus.route.begin`` / ``dicombus.route.sent``: one event per destination and study.

- ``dicombus.route.begin``: before the association (PS3.15 A.5.3.3 Begin Transferring);
- ``dicombus.route.sent``: after the last C-STORE response, each instance with the
  destination's status (A.5.3.7 Instances Transferred); "sent" means acknowledged, the
  instances the destination refused have their failure category;
- ``dicombus.route.failed``: the send failed as a whole (no connection, rejected,
  aborted) or instances were refused for now; ``retry_at`` says when they go again;
- ``dicombus.route.dead_letter``: instances that became dead letters, with the reason.

``data.closes_send`` is true on the one event that ends a send ``begin`` opened: ``sent``
when the destination answered any instance, else ``dead_letter``, else ``failed`` (the
audit's Instances Transferred for that Begin Transferring).

And one derived event about what the edge received: ``dicombus.study.stable``
(STUDY_STABLE), when a study has had no new instance for ``[routing]
study_quiet_seconds``; once per study, and again with ``data.update`` true when late
instances arrive after it fired (docs/routing.md, "Study completeness").
"""

from __future__ import annotations

ROUTE_BEGIN = "dicombus.route.begin"
ROUTE_SENT = "dicombus.route.sent"
ROUTE_FAILED = "dicombus.route.failed"
ROUTE_DEAD_LETTER = "dicombus.route.dead_letter"
STUDY_STABLE = "dicombus.study.stable"
# Every type routing publishes: what on_event accepts besides the edge's EVT_* events.
ROUTE_EVENT_TYPES = (ROUTE_BEGIN, ROUTE_SENT, ROUTE_FAILED, ROUTE_DEAD_LETTER, STUDY_STABLE)
