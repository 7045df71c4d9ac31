"""The events an edge publishes about itself: it started, it is stopping.

``dicombus.node.started`` once the server listens, ``dicombus.node.stopped`` once
it has stopped listening, before the publisher stops (so the stop is in Redis,
or in the outbox while Redis is away, like every event). The ATNA task makes
each an Application Activity message (PS3.15 A.5.3.1); docs/bus.md has the
``data``. Each is a CloudEvents envelope like the edge's DICOM events,
``subject`` its own id (no association), ``sequence`` 1.
"""

from __future__ import annotations

import functools
import getpass
import os
import socket
from datetime import UTC, datetime
from typing import Any

from dicombus import __version__
from dicombus.bus.envelope import PendingEvent, source_uri
from dicombus.ulid import new_ulid

NODE_STARTED = "dicombus.node.started"
NODE_STOPPED = "dicombus.node.stopped"
# What on_event accepts besides the DICOM and routing events.
NODE_EVENT_TYPES = (NODE_STARTED, NODE_STOPPED)


def node_event(
    event_type: str, *, edge_id: str, ae_title: str, host: str, port: int
) -> PendingEvent:
    """``event_type`` (:data:`NODE_STARTED` or :data:`NODE_STOPPED`) for the edge
    ``edge_id`` listening as ``ae_title`` on ``host``:``port``, from this process."""
    data: dict[str, Any] = {
        "edge": edge_id,
        "ae_title": ae_title,
        "host": host,
        "port": port,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "user": login_name(),
        "version": __version__,
    }
    event_id = new_ulid()
    return PendingEvent(
        event_type=event_type,
        id=event_id,
        subject=event_id,
        sequence=1,
        time=datetime.now(UTC),
        source=source_uri(edge_id, ae_title),
        # A copy, and picklable: the journal keeps it.
        build_data=functools.partial(dict, data),
    )


def login_name() -> str | None:
    """Who runs the edge (PS3.15 A.5.3.1: the Application Launcher), when the system says."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER: not known
        return None
