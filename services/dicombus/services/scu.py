"""What every SCU operation shares: picking an accepted context, reading a response."""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicombus.presentation import PresentationContext
from dicombus.protocol.fragments import DimseMessage
from dicombus.services.interface import ServiceAssociation

# pynetdicom returns these response elements in the status Dataset.
STATUS_KEYWORDS = (
    "Status",
    "ErrorComment",
    "ErrorID",
    "OffendingElement",
    "AffectedSOPInstanceUID",
    "AffectedSOPClassUID",
    "NumberOfRemainingSuboperations",
    "NumberOfCompletedSuboperations",
    "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations",
)


def require_established(assoc: ServiceAssociation, operation: str) -> None:
    if not assoc.is_established:
        raise RuntimeError(
            f"the association with a peer must be established before sending a {operation} request"
        )


def require_context(
    assoc: ServiceAssociation, abstract_syntax: str, operation: str
) -> PresentationContext:
    """The first accepted context for ``abstract_syntax`` in which we may act as SCU."""
    require_established(assoc, operation)
    for context in assoc.accepted_contexts:
        if context.abstract_syntax == abstract_syntax and context.as_scu is not False:
            return context
    raise ValueError(
        f"no presentation context for '{_name(abstract_syntax)}' has been accepted by the "
        "peer for the SCU role"
    )


def status_dataset(response: DimseMessage | None) -> Dataset:
    """The response's status elements as a Dataset, or an empty one when no response came."""
    if response is None:
        return Dataset()
    return response.command.to_dataset(STATUS_KEYWORDS)


def _name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else uid
