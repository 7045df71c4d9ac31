"""Association negotiation on both sides, as functions of a configuration and a PDU.

Acceptor: :func:`negotiate` takes the acceptor's :class:`AcceptorConfig`, the
A-ASSOCIATE-RQ and the acceptor's current :class:`Admission` state, checks the
request (AE titles, limits, user identity), asks the user's intervention
handlers about identity and extended negotiation, negotiates presentation
contexts and roles, and returns a :class:`NegotiationResult`: the AC or RJ to
send and everything the association records. The handlers are reached only
through the ``intervene`` callable; nothing else is touched.

Requestor: :func:`build_associate_rq` turns a :class:`RequestorConfig` into
the A-ASSOCIATE-RQ, and :func:`absorb_associate_ac` reads the acceptor's AC
into a :class:`Negotiated` record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dicombus import config, evt
from dicombus.acse import (
    Rejection,
    ServiceUser,
    build_user_information,
    check_association_request,
    describe_rejection,
)
from dicombus.presentation import (
    PresentationContext,
    PresentationContextError,
    negotiate_as_acceptor,
    negotiate_as_requestor,
)
from dicombus.protocol.items import (
    MAX_ITEM_LENGTH,
    AsynchronousOperationsWindowSubItem,
    PresentationContextACItem,
    PresentationContextResult,
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityACSubItem,
    UserIdentityRQSubItem,
    UserSubItem,
)
from dicombus.protocol.pdus import (
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    RejectResult,
    RejectSource,
    UserRejectReason,
)

if TYPE_CHECKING:
    from dicombus.ae import AE

LOGGER = logging.getLogger("dicombus.acse")

Intervene = Callable[[evt.InterventionEvent, dict[str, Any]], Any]
"""Calls the handler bound to an intervention event with the event's attributes and
returns what it returned; raises :class:`evt.NoHandlerBound` when none is bound. On an
association this is ``functools.partial(evt.trigger, assoc)``."""


def no_intervention(event: evt.InterventionEvent, attrs: dict[str, Any]) -> Any:
    """An :data:`Intervene` with no handler bound to anything: every default applies."""
    raise evt.NoHandlerBound(event.name)


# -- the acceptor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptorConfig:
    """What the acceptor's answer depends on, read once from the AE and its server."""

    ae_title: str
    supported_contexts: tuple[PresentationContext, ...]
    require_called_aet: bool
    require_calling_aet: tuple[str, ...]
    maximum_associations: int
    maximum_pdu_size: int
    implementation_class_uid: str
    implementation_version_name: str | None
    # config.UNRESTRICTED_STORAGE_SERVICE: accept any abstract syntax nobody configured.
    unrestricted_storage: bool

    @classmethod
    def of(
        cls, ae: AE, *, ae_title: str, supported_contexts: Sequence[PresentationContext]
    ) -> AcceptorConfig:
        """The configuration of ``ae`` answering as ``ae_title`` with these contexts."""
        return cls(
            ae_title=ae_title,
            supported_contexts=tuple(supported_contexts),
            require_called_aet=ae.require_called_aet,
            require_calling_aet=tuple(ae.require_calling_aet),
            maximum_associations=ae.maximum_associations,
            maximum_pdu_size=ae.maximum_pdu_size,
            implementation_class_uid=ae.implementation_class_uid,
            implementation_version_name=ae.implementation_version_name,
            unrestricted_storage=config.UNRESTRICTED_STORAGE_SERVICE,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """The acceptor's state when a request arrives, beside its configuration."""

    # Established associations, this request included.
    active_associations: int = 1
    # A transient reason to turn every requestor away now (see AssociationServer.refusal).
    refusal: Rejection | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiationOutcome:
    """What an intervention event of negotiation decided, for the outcome observers
    (``assoc.report_outcome(event, None, details=details)``)."""

    event: evt.InterventionEvent
    details: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """What an association records once negotiation is over, on either side."""

    # None on the requestor, which recorded its own A-ASSOCIATE-RQ when it sent it.
    requestor: ServiceUser | None
    acceptor: ServiceUser
    accepted_contexts: tuple[PresentationContext, ...] = ()
    rejected_contexts: tuple[PresentationContext, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiationResult(Negotiated):
    """The acceptor's answer: the PDU to send, why it rejects (if it does), and what
    the intervention events decided."""

    reply: AAssociateAC | AAssociateRJ
    rejection: Rejection | None = None
    outcomes: tuple[NegotiationOutcome, ...] = field(default=())


def negotiate(
    acceptor_config: AcceptorConfig,
    rq: AAssociateRQ,
    *,
    admission: Admission | None = None,
    intervene: Intervene = no_intervention,
) -> NegotiationResult:
    """The acceptor's decision on ``rq``: an AC with negotiated contexts, or an RJ."""
    admission = admission if admission is not None else Admission()
    requestor = ServiceUser(ae_title=rq.calling_ae_title)
    requestor.absorb(rq.user_information)
    acceptor = ServiceUser(ae_title=acceptor_config.ae_title)
    outcomes: list[NegotiationOutcome] = []
    rejection = check_association_request(
        rq,
        ae_title=acceptor_config.ae_title,
        require_called_aet=acceptor_config.require_called_aet,
        require_calling_aet=acceptor_config.require_calling_aet,
        active_associations=admission.active_associations,
        maximum_associations=acceptor_config.maximum_associations,
    )
    if rejection is None:
        rejection = admission.refusal
    replies: list[UserSubItem] = []
    if rejection is None and isinstance(requestor.user_identity, UserIdentityRQSubItem):
        rejection = _check_user_identity(requestor.user_identity, intervene, replies, outcomes)
    if rejection is not None:
        LOGGER.info(
            "rejecting the association from %s: %s (%s)",
            rq.calling_ae_title,
            rejection.explanation,
            describe_rejection(rejection.result, rejection.source, rejection.reason),
        )
        return NegotiationResult(
            reply=AAssociateRJ(
                result=rejection.result, source=rejection.source, reason=rejection.reason
            ),
            rejection=rejection,
            requestor=requestor,
            acceptor=acceptor,
            outcomes=tuple(outcomes),
        )
    replies.extend(_extended_negotiation_replies(requestor, acceptor, intervene, outcomes))
    contexts, ac_roles = _negotiate_contexts(acceptor_config, rq, requestor)
    acceptor.maximum_length = acceptor_config.maximum_pdu_size
    acceptor.implementation_class_uid = acceptor_config.implementation_class_uid
    acceptor.implementation_version_name = acceptor_config.implementation_version_name
    info = build_user_information(
        maximum_length=acceptor_config.maximum_pdu_size,
        implementation_class_uid=acceptor_config.implementation_class_uid,
        implementation_version_name=acceptor_config.implementation_version_name,
        extended=[*ac_roles, *replies],
    )
    # PS3.7 D.3.3.7.2: the identity response goes last, after the other items.
    info = type(info)(
        sub_items=info.sub_items
        + tuple(item for item in replies if isinstance(item, UserIdentityACSubItem))
    )
    acceptor.user_information = info.sub_items
    return NegotiationResult(
        reply=AAssociateAC(
            called_ae_title=rq.called_ae_title,
            calling_ae_title=rq.calling_ae_title,
            presentation_contexts=tuple(
                PresentationContextACItem(
                    context_id=context.context_id or 0,
                    result=(
                        context.result
                        if context.result is not None
                        else PresentationContextResult.NO_REASON
                    ),
                    transfer_syntax=context.transfer_syntax[0] if context.transfer_syntax else None,
                )
                for context in contexts
            ),
            user_information=info,
        ),
        requestor=requestor,
        acceptor=acceptor,
        accepted_contexts=tuple(c for c in contexts if c.result == 0),
        rejected_contexts=tuple(c for c in contexts if c.result != 0),
        outcomes=tuple(outcomes),
    )


def _negotiate_contexts(
    acceptor_config: AcceptorConfig, rq: AAssociateRQ, requestor: ServiceUser
) -> tuple[list[PresentationContext], list[ScpScuRoleSelectionSubItem]]:
    requested = rq.presentation_contexts
    supported = list(acceptor_config.supported_contexts)
    if acceptor_config.unrestricted_storage:
        supported.extend(_unrestricted_contexts(requested, supported))
    roles = {uid: (item.scu_role, item.scp_role) for uid, item in requestor.role_selection.items()}
    return negotiate_as_acceptor(requested, supported, roles)


def _unrestricted_contexts(
    requested: Sequence[PresentationContextRQItem], supported: list[PresentationContext]
) -> list[PresentationContext]:
    """Contexts for abstract syntaxes nobody configured, with every syntax we accept anywhere."""
    known: set[str] = {str(context.abstract_syntax) for context in supported}
    syntaxes: list[str] = []
    for context in supported:
        syntaxes.extend(ts for ts in context.transfer_syntax if ts not in syntaxes)
    extra = []
    for item in requested:
        if item.abstract_syntax in known:
            continue
        known.add(item.abstract_syntax)
        try:
            extra.append(
                PresentationContext(abstract_syntax=item.abstract_syntax, transfer_syntax=syntaxes)
            )
        except PresentationContextError:
            continue  # not a UID at all: negotiation answers it "abstract syntax not supported"
    return extra


# PS3.7 D.3.3.7.1: the identity types whose server response carries something.
_KERBEROS, _SAML, _JWT = 3, 4, 5
# PS3.7 D.3.3.7.1: types 1 and 2 carry a user name; the others a ticket, an
# assertion or a token, as secret as the passcode.
_USERNAME_TYPES = (1, 2)


def _identity_rejection(explanation: str) -> Rejection:
    # PS3.8 Table 9-21 has no reason for a refused identity: the service user
    # rejects it permanently, "no reason given" (as pynetdicom and DCMTK).
    return Rejection(
        RejectResult.PERMANENT,
        RejectSource.SERVICE_USER,
        UserRejectReason.NO_REASON_GIVEN,
        explanation,
    )


def _check_user_identity(
    identity: UserIdentityRQSubItem,
    intervene: Intervene,
    replies: list[UserSubItem],
    outcomes: list[NegotiationOutcome],
) -> Rejection | None:
    """PS3.7 D.3.3.7: let the EVT_USER_ID handler accept or refuse the requestor's identity;
    its outcome (who asked to be identified, never a secret) goes to ``outcomes``."""
    rejection: Rejection | None = None
    verified: bool | None = None
    try:
        result = intervene(
            evt.EVT_USER_ID,
            {
                "user_id_type": identity.user_identity_type,
                "primary_field": identity.primary_field,
                "secondary_field": identity.secondary_field,
            },
        )
    except evt.NoHandlerBound:
        # No handler: the identity is neither checked nor answered (as pynetdicom).
        result = None
    except Exception:
        LOGGER.exception("the EVT_USER_ID handler raised; rejecting the association")
        rejection = _identity_rejection("the user identity handler failed")
        verified = False
    else:
        rejection = _identity_verdict(identity, result, replies)
        verified = rejection is None
    kind = identity.user_identity_type
    outcomes.append(
        NegotiationOutcome(
            event=evt.EVT_USER_ID,
            details={
                "user_identity_type": kind,
                "username": (
                    identity.primary_field.decode("utf-8", "replace")
                    if kind in _USERNAME_TYPES
                    else None
                ),
                "positive_response_requested": identity.positive_response_requested,
                # None without a handler: nothing was checked.
                "verified": verified,
            },
        )
    )
    return rejection


def _identity_verdict(
    identity: UserIdentityRQSubItem, result: Any, replies: list[UserSubItem]
) -> Rejection | None:
    """The EVT_USER_ID handler's answer as a rejection, or None and maybe a reply."""
    answer = _identity_answer(result)
    if answer is None:
        return _identity_rejection("the user identity handler returned no (verified, response)")
    verified, response = answer
    if not verified:
        return _identity_rejection("the user identity was not verified")
    if identity.positive_response_requested:
        reply = _identity_response(identity.user_identity_type, response)
        if reply is not None:
            replies.append(reply)
    return None


def _identity_answer(result: Any) -> tuple[bool, bytes | None] | None:
    """The handler's (verified, response), or None (logged) when it returned something else."""
    if isinstance(result, tuple | list) and len(result) == 2:
        verified, response = result
        if response is None or isinstance(response, bytes | bytearray):
            return bool(verified), None if response is None else bytes(response)
    LOGGER.error(
        "the EVT_USER_ID handler returned %r; return (verified: bool, response: bytes or None)",
        result,
    )
    return None


def _identity_response(identity_type: int, response: bytes | None) -> UserIdentityACSubItem | None:
    """PS3.7 D.3.3.7.2: the server response sent back when the requestor asked for one.

    For a username (types 1 and 2) it is zero length whatever the handler said;
    for Kerberos, SAML and JWT it is the handler's ticket, assertion response or
    token, and nothing is sent when the handler has none.
    """
    if identity_type not in (_KERBEROS, _SAML, _JWT):
        return UserIdentityACSubItem(server_response=b"")
    if response is None:
        return None
    if len(response) > MAX_ITEM_LENGTH - 2:
        LOGGER.error(
            "the EVT_USER_ID handler's response has %d bytes, more than a sub-item holds; "
            "none is sent",
            len(response),
        )
        return None
    return UserIdentityACSubItem(server_response=response)


def _extended_negotiation_replies(
    requestor: ServiceUser,
    acceptor: ServiceUser,
    intervene: Intervene,
    outcomes: list[NegotiationOutcome],
) -> list[UserSubItem]:
    """PS3.7 D.3.3.3, D.3.3.5, D.3.3.6: the items answering the requestor's proposals;
    records the accepted common extended negotiation in ``acceptor``."""
    replies: list[UserSubItem] = []
    window = requestor.asynchronous_operations
    if window != (1, 1):
        granted = _async_ops_window(window, intervene)
        if granted is not None:
            replies.append(granted)
        outcomes.append(
            NegotiationOutcome(
                event=evt.EVT_ASYNC_OPS,
                details={
                    "invoked": window[0],
                    "performed": window[1],
                    "granted": (1, 1) if granted is not None else None,
                },
            )
        )
    if requestor.sop_class_extended:
        asked = dict(requestor.sop_class_extended)
        answers = _ask_or_default(intervene, evt.EVT_SOP_EXTENDED, {"app_info": dict(asked)})
        # PS3.7 D.3.3.5: an answer only for a SOP class the requestor asked about.
        answered = {
            uid: bytes(info)
            for uid, info in answers.items()
            if uid in asked and isinstance(info, bytes | bytearray)
        }
        replies.extend(
            SOPClassExtendedNegotiationSubItem(
                sop_class_uid=uid, service_class_application_information=info
            )
            for uid, info in answered.items()
        )
        outcomes.append(
            NegotiationOutcome(
                event=evt.EVT_SOP_EXTENDED, details={"requested": asked, "answered": answered}
            )
        )
    if requestor.sop_class_common_extended:
        asked_common = dict(requestor.sop_class_common_extended)
        answers = _ask_or_default(intervene, evt.EVT_SOP_COMMON, {"items": dict(asked_common)})
        # PS3.7 D.3.3.6: no A-ASSOCIATE-AC item answers it; the acceptor records what it took.
        acceptor.sop_class_common_extended = {
            uid: item
            for uid, item in answers.items()
            if isinstance(item, SOPClassCommonExtendedNegotiationSubItem)
        }
        outcomes.append(
            NegotiationOutcome(
                event=evt.EVT_SOP_COMMON,
                details={
                    "requested": asked_common,
                    "accepted": list(acceptor.sop_class_common_extended),
                },
            )
        )
    return replies


def _async_ops_window(
    window: tuple[int, int], intervene: Intervene
) -> AsynchronousOperationsWindowSubItem | None:
    """PS3.7 D.3.3.3: the window answered to a proposal other than (1, 1), if any."""
    try:
        # pynetdicom's code names these nr_invoked / nr_performed, its
        # documentation invoked / performed: both are set.
        intervene(
            evt.EVT_ASYNC_OPS,
            {
                "nr_invoked": window[0],
                "nr_performed": window[1],
                "invoked": window[0],
                "performed": window[1],
            },
        )
    except evt.NoHandlerBound:
        return None
    except Exception:
        LOGGER.exception("the EVT_ASYNC_OPS handler raised; no window is returned")
        return None
    # As pynetdicom: requests are performed one at a time whatever the handler
    # returns, so the only window we can honestly grant is (1, 1).
    return AsynchronousOperationsWindowSubItem(max_operations_invoked=1, max_operations_performed=1)


def _ask_or_default(
    intervene: Intervene, event: evt.InterventionEvent, attrs: dict[str, Any]
) -> dict[str, Any]:
    """The handler's {SOP class UID: answer}; {} without a handler or a usable answer."""
    try:
        answers = intervene(event, attrs)
    except evt.NoHandlerBound:
        return {}
    except Exception:
        LOGGER.exception("the %s handler raised; nothing is negotiated", event.name)
        return {}
    if answers is None:
        return {}
    if not isinstance(answers, dict):
        LOGGER.error(
            "the %s handler returned %s, not a dict; nothing is negotiated",
            event.name,
            type(answers).__name__,
        )
        return {}
    return {str(uid): answer for uid, answer in answers.items()}


# -- the requestor ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestorConfig:
    """What the requestor proposes, read once from the AE and ``associate``'s arguments."""

    ae_title: str
    called_ae_title: str
    maximum_length: int
    implementation_class_uid: str
    implementation_version_name: str | None
    # With their context IDs already given (1, 3, 5 ...).
    requested_contexts: tuple[PresentationContext, ...]
    extended_negotiation: tuple[UserSubItem, ...] = ()


def build_associate_rq(requestor_config: RequestorConfig) -> AAssociateRQ:
    """The requestor's A-ASSOCIATE-RQ: our contexts, limits, identity and negotiation items."""
    return AAssociateRQ(
        called_ae_title=requestor_config.called_ae_title,
        calling_ae_title=requestor_config.ae_title,
        presentation_contexts=tuple(
            PresentationContextRQItem(
                context_id=context.context_id or 0,
                abstract_syntax=context.abstract_syntax,
                transfer_syntaxes=tuple(context.transfer_syntax),
            )
            for context in requestor_config.requested_contexts
        ),
        user_information=build_user_information(
            maximum_length=requestor_config.maximum_length,
            implementation_class_uid=requestor_config.implementation_class_uid,
            implementation_version_name=requestor_config.implementation_version_name,
            extended=requestor_config.extended_negotiation,
        ),
    )


def absorb_associate_ac(requestor_config: RequestorConfig, ac: AAssociateAC) -> Negotiated:
    """What the acceptor agreed to, as the requestor records it."""
    acceptor = ServiceUser(ae_title=requestor_config.called_ae_title)
    acceptor.absorb(ac.user_information)
    proposed = {
        item.sop_class_uid: (item.scu_role, item.scp_role)
        for item in requestor_config.extended_negotiation
        if isinstance(item, ScpScuRoleSelectionSubItem)
    }
    returned = {
        uid: (item.scu_role, item.scp_role) for uid, item in acceptor.role_selection.items()
    }
    contexts = negotiate_as_requestor(
        requestor_config.requested_contexts, ac.presentation_contexts, proposed, returned
    )
    return Negotiated(
        requestor=None,
        acceptor=acceptor,
        accepted_contexts=tuple(c for c in contexts if c.result == 0),
        rejected_contexts=tuple(c for c in contexts if c.result != 0),
    )
