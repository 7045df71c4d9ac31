"""The Celery side of dicombus: tasks that react to events published by edge nodes.

::

    from dicombus import evt
    from dicombus_workers import EventRecord, on_event

    @on_event(evt.EVT_C_STORE, queue="routing", idempotent=True)
    def route(event: EventRecord) -> None:
        ...

Run with ``dicombus worker --include yourmodule`` (see docs/workers.md).
"""

from dicombus_workers.app import app
from dicombus_workers.on_event import on_event
from dicombus_workers.records import EventRecord

__all__ = ["EventRecord", "app", "on_event"]
