"""What the bus reads of an association: a narrow interface, not ``Association``.

The capture turns events and outcomes into envelopes; for the ``association``
block of ``data`` and the envelope's ``source`` it reads who is at each end,
what was negotiated and which AE it belongs to -- on the association's thread,
while those are still what the event saw. :class:`AssociationView` is exactly
that; :class:`dicombus.association.Association` is one, structurally.

The association's id (the envelope's ``subject``) and the sequence of its
events are the bus's own (:mod:`dicombus.bus.association_ids`), not the
association's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dicombus.acse import Rejection, ServiceUser
from dicombus.presentation import PresentationContext


class TitledAE(Protocol):
    """An AE or a server, as far as the envelope's ``source`` names it."""

    @property
    def ae_title(self) -> str:
        """Its AE title."""


class AssociationView(Protocol):
    """An association, as the bus observes it."""

    @property
    def mode(self) -> str:
        """dicombus's side: "requestor" or "acceptor"."""

    @property
    def requestor(self) -> ServiceUser:
        """The requestor's end (its AE title is the Calling AE Title)."""

    @property
    def local(self) -> ServiceUser:
        """dicombus's end."""

    @property
    def remote(self) -> ServiceUser:
        """The peer's end."""

    @property
    def called_ae_title(self) -> str:
        """The Called AE Title of the A-ASSOCIATE-RQ (PS3.8 7.1.1.4)."""

    @property
    def accepted_contexts(self) -> Sequence[PresentationContext]:
        """The presentation contexts accepted."""

    @property
    def rejected_contexts(self) -> Sequence[PresentationContext]:
        """The presentation contexts rejected, with their reasons."""

    @property
    def rejection(self) -> Rejection | None:
        """The A-ASSOCIATE-RJ, when the association was rejected."""

    @property
    def server(self) -> TitledAE | None:
        """The server that accepted it (None for a requestor)."""

    @property
    def ae(self) -> TitledAE:
        """The AE it belongs to."""
