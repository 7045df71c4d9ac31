"""The ATNA task: audit messages from events, spooled, then sent by the forwarder.

Registered with the built-in tasks (``dicombus_workers.builtin``) when the
node's file named by ``DICOMBUS_CONFIG`` has an ``[audit.syslog]`` section;
otherwise there is no subscription, and edges serialize nothing for it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from dicombus import evt
from dicombus.bus.node_events import NODE_EVENT_TYPES

from dicombus_workers.app import task_max_retries
from dicombus_workers.atna import from_events
from dicombus_workers.atna.config import CONFIG_ENV, SyslogConfig, Transport, load_syslog_config
from dicombus_workers.atna.forwarder import Forwarder
from dicombus_workers.atna.from_events import Reporter
from dicombus_workers.atna.messages import AuditMessage, to_xml
from dicombus_workers.atna.spool import Spool
from dicombus_workers.atna.syslog import Sender, TlsSender, UdpSender, syslog_message, tls_context
from dicombus_workers.on_event import on_event
from dicombus_workers.records import EventRecord

ATNA_TASK = "dicombus.atna"
ATNA_QUEUE = "dicombus.atna"
ATNA_EVENTS = (
    evt.EVT_C_STORE,
    evt.EVT_C_FIND,
    evt.EVT_USER_ID,
    evt.EVT_REJECTED,
    evt.EVT_CONN_CLOSE,
    from_events.ROUTE_BEGIN,
    from_events.ROUTE_SENT,
    # Only the one that closes a send the destination answered nothing of makes a message.
    from_events.ROUTE_FAILED,
    from_events.ROUTE_DEAD_LETTER,
    *NODE_EVENT_TYPES,
)


class AtnaAuditor:
    """Turns events into spooled syslog messages and wakes the forwarder."""

    def __init__(self, config: SyslogConfig) -> None:
        self.config = config
        self.reporter = Reporter(
            hostname=config.hostname,
            source_id=config.source_id,
            enterprise_site=config.enterprise_site,
        )
        self.spool = Spool(config.spool)
        self.forwarder = Forwarder(self.spool, _sender(config), max_backoff=config.max_backoff)

    def handle(self, record: EventRecord) -> None:
        if record.type == evt.EVT_C_STORE.name:
            self.spool.add_transfer(
                record.id, record.subject, from_events.stored_instance(record), self._render(record)
            )
        elif record.type == evt.EVT_CONN_CLOSE.name and record.data.get("tls_error"):
            # No association was made: no transfers to gather, only the alert.
            alert = from_events.tls_failure(record, self.reporter)
            self.spool.add(record.id, [self._syslog(alert)])
        elif record.type == evt.EVT_CONN_CLOSE.name:
            render = self._render(record)
            self.spool.close_association(record.id, record.subject, record.time, render)
        else:
            self.spool.add(record.id, [self._syslog(m) for m in self._messages(record)])
        self.forwarder.wake()

    def application_activity(self, start: bool) -> None:
        now = datetime.now(UTC)
        message = from_events.application_activity(start, self.reporter, now)
        key = f"application-{'start' if start else 'stop'}-{os.getpid()}-{now.isoformat()}"
        self.spool.add(key, [self._syslog(message)])

    def _messages(self, record: EventRecord) -> list[AuditMessage]:
        if record.type == evt.EVT_C_FIND.name:
            return [from_events.query(record, self.reporter)]
        if record.type == evt.EVT_USER_ID.name:
            return from_events.user_authentication(record, self.reporter)
        if record.type == evt.EVT_REJECTED.name:
            return [from_events.association_rejected(record, self.reporter)]
        route_step = record.type in (from_events.ROUTE_BEGIN, from_events.ROUTE_SENT)
        if route_step or from_events.closes_failed_send(record):
            return [from_events.route_send(record, self.reporter)]
        if record.type in NODE_EVENT_TYPES:
            return [from_events.node_activity(record, self.reporter)]
        return []

    def _render(self, record: EventRecord) -> Callable[[list[Mapping[str, Any]]], list[bytes]]:
        def render(instances: list[Mapping[str, Any]]) -> list[bytes]:
            messages = from_events.instances_transferred(instances, self.reporter, record.timestamp)
            return [self._syslog(message) for message in messages]

        return render

    def _syslog(self, message: AuditMessage) -> bytes:
        return syslog_message(
            to_xml(message),
            time=message.time,
            hostname=self.config.hostname,
            app_name=self.config.app_name,
            procid=str(os.getpid()),
        )


def _sender(config: SyslogConfig) -> Sender:
    if config.transport is Transport.UDP:
        return UdpSender(config.host, config.port)
    return TlsSender(
        config.host,
        config.port,
        tls_context(config.ca, config.cert, config.key),
        server_name=config.server_name,
        timeout=config.timeout,
    )


def configured_auditor() -> AtnaAuditor | None:
    path = os.environ.get(CONFIG_ENV, "").strip()
    config = load_syslog_config(Path(path)) if path else None
    return AtnaAuditor(config) if config is not None else None


_auditor = configured_auditor()

if _auditor is not None:
    auditor: AtnaAuditor = _auditor

    @on_event(
        *ATNA_EVENTS,
        queue=ATNA_QUEUE,
        name=ATNA_TASK,
        # The spool's file briefly locked by another process: retry, then a dead letter.
        autoretry_for=(sqlite3.OperationalError,),
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=task_max_retries(),
    )
    def atna(event: EventRecord) -> None:
        """Spool the event's audit messages (idempotent by event id) and send them."""
        auditor.handle(event)

    def _started(**_kwargs: Any) -> None:
        auditor.application_activity(start=True)
        auditor.forwarder.wake()

    def _stopping(**_kwargs: Any) -> None:
        auditor.application_activity(start=False)
        auditor.forwarder.stop()
        auditor.forwarder.flush()

    worker_ready.connect(_started, weak=False)
    worker_shutdown.connect(_stopping, weak=False)
