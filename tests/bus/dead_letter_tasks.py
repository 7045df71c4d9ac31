"""Event tasks that always fail without retrying, with dead letters and without.

``test.refuses`` fails at once on every EVT_C_ECHO: its event is kept as a
dead letter. ``test.refuses_quietly`` fails the same way but was made with
``dead_letter=False``: its events go nowhere, as the caller asked.
"""

from __future__ import annotations

from dicombus import evt
from dicombus_workers import EventRecord, on_event


@on_event(evt.EVT_C_ECHO, queue="test.refuses", name="test.refuses")
def refuses(event: EventRecord) -> None:
    raise ValueError(f"{event.type} is not wanted here")


@on_event(evt.EVT_C_ECHO, queue="test.refuses", name="test.refuses_quietly", dead_letter=False)
def refuses_quietly(event: EventRecord) -> None:
    raise ValueError(f"{event.type} is not wanted here either")
