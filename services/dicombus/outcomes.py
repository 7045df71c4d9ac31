"""Outcomes of intervention events, for observers such as the event bus.

An intervention handler decides a response; the service reports what was
decided (the request, the context, the status and whatever the handler
recorded in ``event.request.outcome``) to the observers registered on the
association. With no observer the report is never built.

C-STORE reports before its response is sent: an observer that must account
for a Success (the event bus journals its event) raises
:class:`OutcomeNotRecorded` when it cannot, and the service answers a failure
instead of a Success nobody can account for. Such an observer goes first in
the list: the observers after it are not told the refused Success, and hear
the failure the service then reports, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dicombus.protocol.errors import DicombusError

if TYPE_CHECKING:
    from dicombus.association import Association
    from dicombus.evt import InterventionEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeReport:
    """What an intervention event decided."""

    assoc: Association
    event: InterventionEvent
    status: int | None
    # The received request (a ServiceRequest), None for negotiation events.
    request: Any = None
    # The PresentationContextTuple the request arrived on.
    context: Any = None
    # Event-specific facts: for C-STORE what the handler recorded (stored_path,
    # stored_size ...); for user identity the type and user name, never a secret.
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


OutcomeObserver = Callable[[OutcomeReport], None]


class OutcomeNotRecorded(DicombusError, RuntimeError):
    """An observer could not record an outcome that it must account for (its store failed)."""
