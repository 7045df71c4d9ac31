"""What the service classes see of an association: a narrow interface, not ``Association``.

A service turns a request into intervention events and their results into
responses (serving), or a user's call into a request and its responses (SCU).
For that it needs to send messages and requests on the association, read what
was negotiated, call the handlers bound to it, report outcomes to its
observers, and -- while a handler runs -- learn whether the peer cancelled or
went away. :class:`ServiceAssociation` is exactly that; the runtime's
:class:`dicombus.association.Association` is one (structurally: nothing here
imports it), and a test or another runtime may give another.

C-MOVE's sub-operations go over an association of their own to the move
destination (PS3.4 C.4.2.3); the service opens it through the
:class:`AssociationOpener` the association hands it, never through the AE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from dicombus import evt
from dicombus.acse import ServiceUser
from dicombus.presentation import PresentationContext
from dicombus.protocol.commands import CommandSet
from dicombus.protocol.fragments import DimseMessage
from dicombus.runtime.transport import Buffer


class ServiceAssociation(Protocol):
    """An established association, as the service classes use it."""

    @property
    def is_established(self) -> bool:
        """False once released or aborted: a service stops serving (and answering) then."""

    @property
    def requestor(self) -> ServiceUser:
        """The requestor's side; C-MOVE names its AE title as the Move Originator."""

    @property
    def accepted_contexts(self) -> Sequence[PresentationContext]:
        """The presentation contexts negotiated, to choose the one to send on."""

    @property
    def handlers(self) -> evt.HandlerRegistry:
        """The event handlers bound to the association (see :func:`dicombus.evt.trigger`)."""

    @property
    def association_opener(self) -> AssociationOpener:
        """How a service opens an association of its own (C-MOVE's to its destination)."""

    def send_message(self, context_id: int, command: CommandSet, dataset: Buffer | None) -> None:
        """Send one message (a response, a C-CANCEL) whole; ConnectionError if not open."""

    def send_request(
        self, context_id: int, command: CommandSet, dataset: Buffer | None
    ) -> Iterator[DimseMessage | None]:
        """Send a request when its first response is asked for; yield its responses
        (None, and stop, when none came in time: the association is then aborted)."""

    def start_request(
        self,
        context_id: int,
        command: CommandSet,
        dataset: Buffer | None,
        *,
        more_follow: Callable[[CommandSet], bool] | None = None,
    ) -> Iterator[DimseMessage | None]:
        """Send a request now; its responses as :meth:`send_request`'s.
        ``more_follow(command)``: whether another response follows (default: Pending)."""

    def report_outcome(
        self,
        event: evt.InterventionEvent,
        status: int | None,
        *,
        request: Any = None,
        context: Any = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Tell the outcome observers what a handler decided; False when one could not
        record it (a C-STORE then answers a failure, see :mod:`dicombus.outcomes`)."""

    def is_cancelled(self, message_id: int) -> bool:
        """Whether the peer sent a C-CANCEL for the request being served (PS3.7 9.3.2.3)."""

    def poll_peer(self) -> None:
        """Between two steps of a handler: take in what the peer has sent meanwhile."""

    def abort(self) -> None:
        """Send an A-ABORT (the peer sent what no service can answer) and close."""


class RequestorAssociation(ServiceAssociation, Protocol):
    """An association a service opened itself, and releases when done with it."""

    def release(self) -> None:
        """Release the association (PS3.8 7.2), as the requestor."""


class AssociationOpener(Protocol):
    """Opens associations for a service, as :meth:`dicombus.ae.AE.associate` does.

    The AE is the default one (``AE.association_opener``); an application may
    give another, say one that records or pools the associations it opens.
    """

    @property
    def requested_contexts(self) -> list[PresentationContext]:
        """What to propose when the service names no contexts of its own."""

    @property
    def associate(self) -> Callable[..., RequestorAssociation]:
        """``associate(address, port, contexts, **options)`` with AE.associate's options;
        returns the association whether or not it was accepted (see is_established)."""
