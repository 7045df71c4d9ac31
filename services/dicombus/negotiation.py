"""Association negotiation on both sides, between an AE's configuration and the peer's PDUs.

The requestor builds an A-ASSOCIATE-RQ from its requested contexts and
extended negotiation items and reads the AC; the acceptor checks a received
RQ (AE titles, limits, user identity), asks the bound intervention handlers
about extended negotiation, negotiates presentation contexts and roles, and
answers with an AC or an RJ.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dicombus import config, evt
from dicombus.acse import (
    Rejection,
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
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityACSubItem,
    UserIdentityRQSubItem,
    UserSubItem,
)
from dicombus.protocol.pdus import AAssociateAC, AAssociateRJ, AAssociateRQ

if TYPE_CHECKING:
    from dicombus.association import Association

LOGGER = logging.getLogger("dicombus.acse")


def build_associate_rq(assoc: Association) -> AAssociateRQ:
    """The requestor's A-ASSOCIATE-RQ: our contexts, limits, identity and negotiation items."""
    ae = assoc.ae
    requestor = assoc.requestor
    requestor.implementation_class_uid = ae.implementation_class_uid
    requestor.implementation_version_name = ae.implementation_version_name
    info = build_user_information(
        maximum_length=requestor.maximum_length,
        implementation_class_uid=ae.implementation_class_uid,
        implementation_version_name=ae.implementation_version_name,
        extended=assoc.extended_negotiation,
    )
    # What we propose, as the acceptor's side sees it (pynetdicom's requestor.user_identity ...).
    requestor.absorb(info)
    return AAssociateRQ(
        called_ae_title=assoc.acceptor.ae_title,
        calling_ae_title=requestor.ae_title,
        presentation_contexts=tuple(
            PresentationContextRQItem(
                context_id=context.context_id or 0,
                abstract_syntax=context.abstract_syntax,
                transfer_syntaxes=tuple(context.transfer_syntax),
            )
            for context in assoc.requested_contexts
        ),
        user_information=info,
    )


def absorb_associate_ac(assoc: Association, ac: AAssociateAC) -> None:
    """Record what the acceptor agreed to."""
    assoc.acceptor.absorb(ac.user_information)
    proposed = {
        item.sop_class_uid: (item.scu_role, item.scp_role)
        for item in assoc.extended_negotiation
        if isinstance(item, ScpScuRoleSelectionSubItem)
    }
    returned = {
        uid: (item.scu_role, item.scp_role) for uid, item in assoc.acceptor.role_selection.items()
    }
    contexts = negotiate_as_requestor(
        assoc.requested_contexts, ac.presentation_contexts, proposed, returned
    )
    assoc.accepted_contexts = [c for c in contexts if c.result == 0]
    assoc.rejected_contexts = [c for c in contexts if c.result != 0]


def answer_associate_rq(assoc: Association, rq: AAssociateRQ) -> AAssociateAC | AAssociateRJ:
    """The acceptor's decision on ``rq``: an AC with negotiated contexts, or an RJ."""
    ae = assoc.ae
    requestor, acceptor = assoc.requestor, assoc.acceptor
    our_title = assoc.server.ae_title if assoc.server is not None else ae.ae_title
    requestor.ae_title = rq.calling_ae_title
    acceptor.ae_title = our_title
    requestor.absorb(rq.user_information)
    # This request and the associations already established: connections still
    # negotiating (an idle flood among them) are bounded by the server instead.
    active = 1
    if assoc.server is not None:
        active += sum(other.is_established for other in assoc.server.active_associations)
    rejection = check_association_request(
        rq,
        ae_title=our_title,
        require_called_aet=ae.require_called_aet,
        require_calling_aet=ae.require_calling_aet,
        active_associations=active,
        maximum_associations=ae.maximum_associations,
    )
    if rejection is None and assoc.server is not None:
        rejection = assoc.server.refusal()
    replies: list[UserSubItem] = []
    if rejection is None:
        rejection = _check_user_identity(assoc, replies)
        _report_user_identity(assoc, verified=rejection is None)
    if rejection is not None:
        LOGGER.info(
            "rejecting the association from %s: %s (%s)",
            rq.calling_ae_title,
            rejection.explanation,
            describe_rejection(rejection.result, rejection.source, rejection.reason),
        )
        return AAssociateRJ(
            result=rejection.result, source=rejection.source, reason=rejection.reason
        )
    replies.extend(_extended_negotiation_replies(assoc))
    contexts, ac_roles = _negotiate_contexts(assoc, rq)
    assoc.accepted_contexts = [c for c in contexts if c.result == 0]
    assoc.rejected_contexts = [c for c in contexts if c.result != 0]
    acceptor.maximum_length = ae.maximum_pdu_size
    acceptor.implementation_class_uid = ae.implementation_class_uid
    acceptor.implementation_version_name = ae.implementation_version_name
    info = build_user_information(
        maximum_length=ae.maximum_pdu_size,
        implementation_class_uid=ae.implementation_class_uid,
        implementation_version_name=ae.implementation_version_name,
        extended=[*ac_roles, *replies],
    )
    # PS3.7 D.3.3.7.2: the identity response goes last, after the other items.
    info = type(info)(
        sub_items=info.sub_items
        + tuple(item for item in replies if isinstance(item, UserIdentityACSubItem))
    )
    acceptor.user_information = info.sub_items
    return AAssociateAC(
        called_ae_title=rq.called_ae_title,
        calling_ae_title=rq.calling_ae_title,
        presentation_contexts=tuple(
            PresentationContextACItem(
                context_id=context.context_id or 0,
                result=context.result if context.result is not None else 2,
                transfer_syntax=context.transfer_syntax[0] if context.transfer_syntax else None,
            )
            for context in contexts
        ),
        user_information=info,
    )


def _negotiate_contexts(
    assoc: Association, rq: AAssociateRQ
) -> tuple[list[PresentationContext], list[ScpScuRoleSelectionSubItem]]:
    requested = rq.presentation_contexts
    supported = list(assoc.supported_contexts)
    if config.UNRESTRICTED_STORAGE_SERVICE:
        supported.extend(_unrestricted_contexts(requested, supported))
    roles = {
        uid: (item.scu_role, item.scp_role) for uid, item in assoc.requestor.role_selection.items()
    }
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


def _intervene(assoc: Association, event: evt.InterventionEvent, **attrs: Any) -> Any:
    """Ask the handler bound to a negotiation event; (None, False) when none is bound."""
    if not assoc.handlers.is_bound(event):
        raise evt.NoHandlerBound(event.name)
    return evt.trigger(assoc, event, attrs)


# PS3.7 D.3.3.7.1: the identity types whose server response carries something.
_KERBEROS, _SAML, _JWT = 3, 4, 5


def _check_user_identity(assoc: Association, replies: list[UserSubItem]) -> Rejection | None:
    """PS3.7 D.3.3.7: let the EVT_USER_ID handler accept or refuse the requestor's identity."""
    identity = assoc.requestor.user_identity
    if not isinstance(identity, UserIdentityRQSubItem):
        return None
    try:
        result = _intervene(
            assoc,
            evt.EVT_USER_ID,
            user_id_type=identity.user_identity_type,
            primary_field=identity.primary_field,
            secondary_field=identity.secondary_field,
        )
    except evt.NoHandlerBound:
        # No handler: the identity is neither checked nor answered (as pynetdicom).
        return None
    except Exception:
        LOGGER.exception("the EVT_USER_ID handler raised; rejecting the association")
        return Rejection(1, 1, 1, "the user identity handler failed")
    answer = _identity_answer(result)
    if answer is None:
        return Rejection(1, 1, 1, "the user identity handler returned no (verified, response)")
    verified, response = answer
    if not verified:
        return Rejection(1, 1, 1, "the user identity was not verified")
    if identity.positive_response_requested:
        reply = _identity_response(identity.user_identity_type, response)
        if reply is not None:
            replies.append(reply)
    return None


def _report_user_identity(assoc: Association, *, verified: bool) -> None:
    """Tell the outcome observers (the event bus) who asked to be identified, never a secret."""
    identity = assoc.requestor.user_identity
    if not isinstance(identity, UserIdentityRQSubItem) or not assoc.outcome_observers:
        return
    kind = identity.user_identity_type
    details = {
        "user_identity_type": kind,
        # PS3.7 D.3.3.7.1: types 1 and 2 carry a user name; the others a ticket,
        # an assertion or a token, as secret as the passcode.
        "username": identity.primary_field.decode("utf-8", "replace") if kind in (1, 2) else None,
        "positive_response_requested": identity.positive_response_requested,
        # Without a handler nothing was checked (see _check_user_identity).
        "verified": verified if assoc.handlers.is_bound(evt.EVT_USER_ID) else None,
    }
    assoc.report_outcome(evt.EVT_USER_ID, None, details=details)


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


def _extended_negotiation_replies(assoc: Association) -> list[UserSubItem]:
    requestor = assoc.requestor
    replies: list[UserSubItem] = []
    window = requestor.asynchronous_operations
    if window != (1, 1):
        granted: tuple[int, int] | None = None
        try:
            # pynetdicom's code names these nr_invoked / nr_performed, its
            # documentation invoked / performed: both are set.
            _intervene(
                assoc,
                evt.EVT_ASYNC_OPS,
                nr_invoked=window[0],
                nr_performed=window[1],
                invoked=window[0],
                performed=window[1],
            )
            # As pynetdicom: requests are performed one at a time whatever the
            # handler returns, so the only window we can honestly grant is (1, 1).
            replies.append(
                AsynchronousOperationsWindowSubItem(
                    max_operations_invoked=1, max_operations_performed=1
                )
            )
            granted = (1, 1)
        except evt.NoHandlerBound:
            pass
        except Exception:
            LOGGER.exception("the EVT_ASYNC_OPS handler raised; no window is returned")
        assoc.report_outcome(
            evt.EVT_ASYNC_OPS,
            None,
            details={"invoked": window[0], "performed": window[1], "granted": granted},
        )
    if requestor.sop_class_extended:
        answers = _ask_or_default(
            assoc, evt.EVT_SOP_EXTENDED, app_info=dict(requestor.sop_class_extended)
        )
        # PS3.7 D.3.3.5: an answer only for a SOP class the requestor asked about.
        answered = {
            uid: bytes(info)
            for uid, info in answers.items()
            if uid in requestor.sop_class_extended and isinstance(info, bytes | bytearray)
        }
        replies.extend(
            SOPClassExtendedNegotiationSubItem(
                sop_class_uid=uid, service_class_application_information=info
            )
            for uid, info in answered.items()
        )
        assoc.report_outcome(
            evt.EVT_SOP_EXTENDED,
            None,
            details={"requested": dict(requestor.sop_class_extended), "answered": answered},
        )
    if requestor.sop_class_common_extended:
        answers = _ask_or_default(
            assoc, evt.EVT_SOP_COMMON, items=dict(requestor.sop_class_common_extended)
        )
        assoc.acceptor.sop_class_common_extended = {
            uid: item
            for uid, item in answers.items()
            if isinstance(item, SOPClassCommonExtendedNegotiationSubItem)
        }
        assoc.report_outcome(
            evt.EVT_SOP_COMMON,
            None,
            details={
                "requested": dict(requestor.sop_class_common_extended),
                "accepted": list(assoc.acceptor.sop_class_common_extended),
            },
        )
    return replies


def _ask_or_default(
    assoc: Association, event: evt.InterventionEvent, **attrs: Any
) -> dict[str, Any]:
    """The handler's {SOP class UID: answer}; {} without a handler or a usable answer."""
    try:
        answers = _intervene(assoc, event, **attrs)
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
