"""ACSE: what goes into an association request and whether we accept one.

Pure functions over the AE's configuration and the PDUs; the association
runs them and sends what they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

from dicombus.ae_title import same_ae_title
from dicombus.protocol.items import (
    AsynchronousOperationsWindowSubItem,
    ImplementationClassUIDSubItem,
    ImplementationVersionNameSubItem,
    MaximumLengthSubItem,
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityACSubItem,
    UserIdentityRQSubItem,
    UserInformationItem,
    UserSubItem,
)
from dicombus.protocol.pdus import (
    AAssociateRQ,
    AcseRejectReason,
    PresentationRejectReason,
    RejectResult,
    RejectSource,
    UserRejectReason,
)

# PS3.7 A.2.1: the one application context name of the DICOM standard.
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


class Rejection(NamedTuple):
    """An A-ASSOCIATE-RJ to send, with the reason in words for the log."""

    result: int
    source: int
    reason: int
    explanation: str


# PS3.8 Table 9-21, reasons by source.
REJECT_REASONS: dict[tuple[int, int], str] = {
    (RejectSource.SERVICE_USER, UserRejectReason.NO_REASON_GIVEN): "no reason given",
    (RejectSource.SERVICE_USER, UserRejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED): (
        "application context name not supported"
    ),
    (RejectSource.SERVICE_USER, UserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED): (
        "calling AE title not recognized"
    ),
    (RejectSource.SERVICE_USER, UserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED): (
        "called AE title not recognized"
    ),
    (RejectSource.SERVICE_PROVIDER_ACSE, AcseRejectReason.NO_REASON_GIVEN): "no reason given",
    (RejectSource.SERVICE_PROVIDER_ACSE, AcseRejectReason.PROTOCOL_VERSION_NOT_SUPPORTED): (
        "protocol version not supported"
    ),
    (RejectSource.SERVICE_PROVIDER_PRESENTATION, PresentationRejectReason.TEMPORARY_CONGESTION): (
        "temporary congestion"
    ),
    (RejectSource.SERVICE_PROVIDER_PRESENTATION, PresentationRejectReason.LOCAL_LIMIT_EXCEEDED): (
        "local limit exceeded"
    ),
}


def describe_rejection(result: int, source: int, reason: int) -> str:
    kinds: dict[int, str] = {
        RejectResult.PERMANENT: "permanent",
        RejectResult.TRANSIENT: "transient",
    }
    kind = kinds.get(result, f"result {result}")
    who: dict[int, str] = {
        RejectSource.SERVICE_USER: "service user",
        RejectSource.SERVICE_PROVIDER_ACSE: "service provider (ACSE)",
        RejectSource.SERVICE_PROVIDER_PRESENTATION: "service provider (presentation)",
    }
    return (
        f"{kind}, by the {who.get(source, f'source {source}')}: "
        f"{REJECT_REASONS.get((source, reason), f'reason {reason}')}"
    )


@dataclass
class ServiceUser:
    """One end of an association: who it is and what it negotiated (pynetdicom's names)."""

    ae_title: str = ""
    address: str = ""
    port: int = 0
    maximum_length: int = 0
    implementation_class_uid: str = ""
    implementation_version_name: str | None = None
    asynchronous_operations: tuple[int, int] = (1, 1)
    role_selection: dict[str, ScpScuRoleSelectionSubItem] = field(default_factory=dict)
    sop_class_extended: dict[str, bytes] = field(default_factory=dict)
    sop_class_common_extended: dict[str, SOPClassCommonExtendedNegotiationSubItem] = field(
        default_factory=dict
    )
    # The requestor's identity (RQ item); on the acceptor's side, its answer (AC item).
    user_identity: UserIdentityRQSubItem | UserIdentityACSubItem | None = None
    tls_peer_subject: str | None = None
    user_information: tuple[UserSubItem, ...] = ()

    @property
    def extended_negotiation(self) -> list[UserSubItem]:
        return [
            item
            for item in self.user_information
            if not isinstance(
                item,
                MaximumLengthSubItem
                | ImplementationClassUIDSubItem
                | ImplementationVersionNameSubItem,
            )
        ]

    def record(self, negotiated: ServiceUser) -> None:
        """Take what negotiation decided about this side (its title, limits, identity and
        negotiation items); where it is connected (address, port, TLS subject) stays."""
        for name in _NEGOTIATED_FIELDS:
            setattr(self, name, getattr(negotiated, name))

    def absorb(self, info: UserInformationItem) -> None:
        """Record what a received user-information item says about this side."""
        self.user_information = tuple(info.sub_items)
        self.maximum_length = info.maximum_length or 0
        self.implementation_class_uid = info.implementation_class_uid or ""
        self.implementation_version_name = info.implementation_version_name
        window = info.async_ops_window
        if window is not None:
            self.asynchronous_operations = (
                window.max_operations_invoked,
                window.max_operations_performed,
            )
        self.role_selection = {item.sop_class_uid: item for item in info.role_selection}
        self.sop_class_extended = {
            item.sop_class_uid: item.service_class_application_information
            for item in info.sop_class_extended
        }
        self.sop_class_common_extended = {
            item.sop_class_uid: item for item in info.sop_class_common_extended
        }
        self.user_identity = info.user_identity_rq or info.user_identity_ac


# What negotiation decides about a ServiceUser, as against where it is connected.
_NEGOTIATED_FIELDS = tuple(
    item.name
    for item in fields(ServiceUser)
    if item.name not in ("address", "port", "tls_peer_subject")
)


def build_user_information(
    *,
    maximum_length: int,
    implementation_class_uid: str,
    implementation_version_name: str | None,
    extended: Iterable[UserSubItem] = (),
) -> UserInformationItem:
    """PS3.7 D.3.3: maximum length, implementation identity, then the negotiation items."""
    items: list[UserSubItem] = [
        MaximumLengthSubItem(maximum_length=maximum_length),
        ImplementationClassUIDSubItem(uid=implementation_class_uid),
    ]
    extra = list(extended)
    # PS3.7 D.3.3.3: the asynchronous operations window comes before role selection.
    items.extend(item for item in extra if isinstance(item, AsynchronousOperationsWindowSubItem))
    items.extend(item for item in extra if isinstance(item, ScpScuRoleSelectionSubItem))
    if implementation_version_name:
        items.append(ImplementationVersionNameSubItem(name=implementation_version_name))
    items.extend(
        item
        for item in extra
        if isinstance(
            item,
            SOPClassExtendedNegotiationSubItem
            | SOPClassCommonExtendedNegotiationSubItem
            | UserIdentityRQSubItem,
        )
    )
    return UserInformationItem(sub_items=tuple(items))


def check_association_request(
    rq: AAssociateRQ,
    *,
    ae_title: str,
    require_called_aet: bool,
    require_calling_aet: Sequence[str],
    active_associations: int,
    maximum_associations: int,
) -> Rejection | None:
    """The reasons, in PS3.8's order of checking, to refuse ``rq`` before negotiating."""
    if not rq.protocol_version & 1:
        return Rejection(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_PROVIDER_ACSE,
            AcseRejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
            f"protocol version {rq.protocol_version} is not supported",
        )
    if rq.application_context_name != DICOM_APPLICATION_CONTEXT:
        return Rejection(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            UserRejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
            f"application context {rq.application_context_name} is not DICOM's",
        )
    if require_called_aet and not same_ae_title(rq.called_ae_title, ae_title):
        return Rejection(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            UserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED,
            f"called AE title {rq.called_ae_title!r} is not ours ({ae_title!r})",
        )
    if require_calling_aet and not any(
        same_ae_title(rq.calling_ae_title, title) for title in require_calling_aet
    ):
        return Rejection(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            UserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED,
            f"calling AE title {rq.calling_ae_title!r} is not in the allow list",
        )
    if active_associations > maximum_associations:
        return Rejection(
            RejectResult.TRANSIENT,
            RejectSource.SERVICE_PROVIDER_PRESENTATION,
            PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
            f"{active_associations - 1} associations are active, "
            f"the limit is {maximum_associations}",
        )
    return None


def presentation_items(
    contexts: Sequence[tuple[int, str, Sequence[str]]],
) -> tuple[PresentationContextRQItem, ...]:
    """(id, abstract syntax, transfer syntaxes) triples as A-ASSOCIATE-RQ items."""
    return tuple(
        PresentationContextRQItem(
            context_id=context_id,
            abstract_syntax=abstract_syntax,
            transfer_syntaxes=tuple(transfer_syntaxes),
        )
        for context_id, abstract_syntax, transfer_syntaxes in contexts
    )
