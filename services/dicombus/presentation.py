"""Presentation contexts and their negotiation.

A presentation context pairs an abstract syntax (a SOP Class) with the
transfer syntaxes its data may be encoded in (PS3.8 7.1.1.13, PS3.7 D.3.2). The requestor
proposes contexts, the acceptor answers each one (PS3.8 9.3.2.2, 9.3.3.2), and
SCP/SCU Role Selection (PS3.7 D.3.3.4) decides which side may act as SCU and
which as SCP for each SOP Class. Everything here is a pure function of its
inputs; the runtime feeds it decoded items and encodes what it returns.

The names follow pynetdicom's (``build_context``, ``PresentationContext``,
``StoragePresentationContexts``, ...) so code written for it keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, TypeAlias

from pydicom import config as pydicom_config
from pydicom._uid_dict import UID_dictionary
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicombus import sop_class
from dicombus.protocol.errors import LocalProtocolError, RemoteProtocolError
from dicombus.protocol.items import (
    PresentationContextACItem,
    PresentationContextResult,
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
)
from dicombus.protocol.limits import MAX_UID_LENGTH

DEFAULT_TRANSFER_SYNTAXES: list[UID] = [
    ImplicitVRLittleEndian,  # PS3.5 10.1: the Default Transfer Syntax for DICOM
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
"""The transfer syntaxes ``build_context`` uses when given none (pynetdicom's order)."""

# Transfer syntaxes published after the pydicom release we run on (PS3.5
# Table A-1 / PS3.6 Table A-1, 2024 editions). pynetdicom adds them to
# pydicom's registry when it is imported; we list them ourselves, so that what
# we accept does not depend on whether pynetdicom happened to be imported first.
_NEWER_THAN_PYDICOM = (
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
)


def _all_transfer_syntaxes() -> list[UID]:
    found: list[UID] = list(DEFAULT_TRANSFER_SYNTAXES)
    registry = [uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax"]
    for uid in (*registry, *_NEWER_THAN_PYDICOM):
        if uid not in found:
            found.append(UID(uid))
    return found


ALL_TRANSFER_SYNTAXES: list[UID] = _all_transfer_syntaxes()
"""Every transfer syntax in pydicom's registry (and a few newer), the default ones first."""

# PS3.5 9.1: digits in dot-separated components, at most 64 characters. We do
# not enforce "no leading zero in a component": peers in the field break it and
# a UID that compares equal byte for byte still identifies the same thing.
_UID_SHAPE = re.compile(r"[0-9]+(\.[0-9]+)*")

_STATUS: dict[int | None, str] = {
    None: "Pending",
    PresentationContextResult.ACCEPTANCE: "Accepted",
    PresentationContextResult.USER_REJECTION: "User Rejected",
    PresentationContextResult.NO_REASON: "Provider Rejected",
    PresentationContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "Abstract Syntax Not Supported",
    PresentationContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: "Transfer Syntax(es) Not Supported",
}

_ACCEPTED = PresentationContextResult.ACCEPTANCE
_USER_REJECTION = PresentationContextResult.USER_REJECTION
_NO_REASON = PresentationContextResult.NO_REASON
_ABSTRACT_NOT_SUPPORTED = PresentationContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
_TRANSFER_NOT_SUPPORTED = PresentationContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
_RESULTS = frozenset(PresentationContextResult)

Roles: TypeAlias = Mapping[str, tuple[bool, bool]] | Mapping[UID, tuple[bool, bool]]
"""SOP Class UID -> (SCU role, SCP role), as carried by SCP/SCU Role Selection items.

Keyed by str or by UID (``{CTImageStorage: (True, True)}``): a Mapping's key
type is invariant, so type checkers need both spelled out.
"""


class PresentationContextError(LocalProtocolError, ValueError):
    """A presentation context was given a value that PS3.8 does not allow.

    Also a ValueError, which is what pynetdicom raises for the same mistakes.
    """


def _uid(value: str) -> UID:
    """A UID we have checked ourselves (or must carry as sent), so pydicom need not warn."""
    return UID(value, validation_mode=pydicom_config.IGNORE)


def _checked_uid(value: str, what: str) -> UID:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if len(value) > MAX_UID_LENGTH or not _UID_SHAPE.fullmatch(value):
        raise PresentationContextError(
            f"{what} {value!r} is not a UID (PS3.5 9.1: dot-separated digits, "
            f"at most {MAX_UID_LENGTH} characters)"
        )
    return _uid(value)


def _checked_role(value: bool | None, what: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{what} must be a bool or None, got {value!r}")
    return value


class PresentationContextTuple(NamedTuple):
    """An accepted presentation context, as handlers see it in ``event.context``."""

    context_id: int
    abstract_syntax: UID
    transfer_syntax: UID


class PresentationContext:
    """One presentation context: proposed, supported, or negotiated.

    Mutable, as pynetdicom's is: build it, then set or add to its fields (and,
    being mutable and compared by value, it is not hashable).
    ``scu_role`` / ``scp_role`` are configuration: for a requestor, the roles
    it proposes; for an acceptor, whether it accepts the requestor's proposal
    of that role (None: the default roles, and no role reply). ``as_scu`` /
    ``as_scp`` are the outcome, set by negotiation, from the point of view of
    the side that negotiated.
    """

    __slots__ = (
        "_abstract_syntax",
        "_as_scp",
        "_as_scu",
        "_context_id",
        "_scp_role",
        "_scu_role",
        "_transfer_syntax",
        "result",
    )

    def __init__(
        self,
        *,
        context_id: int | None = None,
        abstract_syntax: str | None = None,
        transfer_syntax: Iterable[str] = (),
        result: int | None = None,
        scu_role: bool | None = None,
        scp_role: bool | None = None,
    ) -> None:
        self._context_id: int | None = None
        self._abstract_syntax = UID("")
        self._transfer_syntax: list[UID] = []
        self.result: int | None = result
        self._scu_role: bool | None = None
        self._scp_role: bool | None = None
        self._as_scu: bool | None = None
        self._as_scp: bool | None = None
        self.context_id = context_id
        if abstract_syntax is not None:
            self.abstract_syntax = abstract_syntax
        self.transfer_syntax = list(transfer_syntax)
        self.scu_role = scu_role
        self.scp_role = scp_role

    @property
    def context_id(self) -> int | None:
        """The Presentation Context ID: an odd integer 1..255 (PS3.8 9.3.2.2)."""
        return self._context_id

    @context_id.setter
    def context_id(self, value: int | None) -> None:
        valid = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 255
        if value is not None and not (valid and value % 2 == 1):
            raise PresentationContextError(
                f"context ID must be an odd integer 1..255 (PS3.8 9.3.2.2), got {value!r}"
            )
        self._context_id = value

    @property
    def abstract_syntax(self) -> UID:
        """The SOP Class UID this context is for; empty until set."""
        return self._abstract_syntax

    @abstract_syntax.setter
    def abstract_syntax(self, value: str) -> None:
        self._abstract_syntax = _checked_uid(value, "abstract syntax")

    @property
    def transfer_syntax(self) -> list[UID]:
        """The transfer syntaxes, in order of preference, without duplicates."""
        return self._transfer_syntax

    @transfer_syntax.setter
    def transfer_syntax(self, syntaxes: list[str]) -> None:
        if not isinstance(syntaxes, list):
            raise TypeError("transfer_syntax must be a list")
        self._transfer_syntax = []
        for syntax in syntaxes:
            self.add_transfer_syntax(syntax)

    def add_transfer_syntax(self, syntax: str) -> None:
        """Append ``syntax`` unless it is already listed."""
        uid = _checked_uid(syntax, "transfer syntax")
        if uid not in self._transfer_syntax:
            self._transfer_syntax.append(uid)

    @property
    def scu_role(self) -> bool | None:
        """Acceptor: accept the requestor's proposal to act as SCU (None: not configured)."""
        return self._scu_role

    @scu_role.setter
    def scu_role(self, value: bool | None) -> None:
        self._scu_role = _checked_role(value, "scu_role")

    @property
    def scp_role(self) -> bool | None:
        """Acceptor: accept the requestor's proposal to act as SCP (None: not configured)."""
        return self._scp_role

    @scp_role.setter
    def scp_role(self, value: bool | None) -> None:
        self._scp_role = _checked_role(value, "scp_role")

    @property
    def as_scu(self) -> bool | None:
        """After negotiation: whether this side may act as SCU on the context."""
        return self._as_scu

    @property
    def as_scp(self) -> bool | None:
        """After negotiation: whether this side may act as SCP on the context."""
        return self._as_scp

    @property
    def status(self) -> str:
        """The result in words (PS3.8 Table 9-18)."""
        return _STATUS.get(self.result, "Unknown")

    @property
    def as_tuple(self) -> PresentationContextTuple:
        """The accepted context as (ID, abstract syntax, its one transfer syntax)."""
        if self._context_id is None or not self._transfer_syntax:
            raise LocalProtocolError("only a negotiated context has an ID and a transfer syntax")
        return PresentationContextTuple(
            self._context_id, self._abstract_syntax, self._transfer_syntax[0]
        )

    def _fields(self) -> tuple[object, ...]:
        return (
            self._context_id,
            self._abstract_syntax,
            self._transfer_syntax,
            self.result,
            self._scu_role,
            self._scp_role,
            self._as_scu,
            self._as_scp,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PresentationContext):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        return (
            f"PresentationContext(context_id={self._context_id!r}, "
            f"abstract_syntax={str(self._abstract_syntax)!r}, "
            f"transfer_syntax={[str(ts) for ts in self._transfer_syntax]!r}, "
            f"result={self.result!r})"
        )

    def __str__(self) -> str:
        lines = []
        if self._context_id is not None:
            lines.append(f"ID: {self._context_id}")
        if self._abstract_syntax:
            lines.append(f"Abstract Syntax: {self._abstract_syntax.name}")
        lines.append("Transfer Syntax(es):")
        lines.extend(f"    ={ts.name}" for ts in self._transfer_syntax)
        if not self._transfer_syntax:
            lines.append("    (none)")
        if self.result is not None:
            lines.append(f"Result: {self.status}")
        if self._as_scu is not None and self._as_scp is not None:
            lines.append(f"Role: {_ROLE_WORDS[self._as_scu, self._as_scp]}")
        return "\n".join(lines)


Requested: TypeAlias = "PresentationContext | PresentationContextRQItem"
"""A proposed context: decoded from an A-ASSOCIATE-RQ, or built by us."""

Answer: TypeAlias = "PresentationContext | PresentationContextACItem"
"""An answer to a proposed context: decoded from an A-ASSOCIATE-AC, or built by us."""

_ROLE_WORDS = {
    (True, False): "SCU only",
    (False, True): "SCP only",
    (True, True): "SCU and SCP",
    (False, False): "(none)",
}


def build_context(
    abstract_syntax: str, transfer_syntax: str | Sequence[str] | None = None
) -> PresentationContext:
    """Return a context for ``abstract_syntax`` offering ``transfer_syntax``.

    ``transfer_syntax`` is one UID, a list in order of preference (duplicates
    are dropped), or None for :data:`DEFAULT_TRANSFER_SYNTAXES`. Raises
    :class:`PresentationContextError` (a ValueError) for a malformed UID.
    """
    if transfer_syntax is None:
        transfer_syntax = DEFAULT_TRANSFER_SYNTAXES
    elif isinstance(transfer_syntax, str):
        transfer_syntax = [transfer_syntax]
    return PresentationContext(abstract_syntax=abstract_syntax, transfer_syntax=transfer_syntax)


def build_role(
    uid: str, scu_role: bool = False, scp_role: bool = False
) -> ScpScuRoleSelectionSubItem:
    """Return the SCP/SCU Role Selection item that proposes these roles for SOP Class ``uid``."""
    return ScpScuRoleSelectionSubItem(
        sop_class_uid=_checked_uid(uid, "SOP class UID"), scu_role=scu_role, scp_role=scp_role
    )


# ---------------------------------------------------------------------------
# Negotiation


def _by_uid(roles: Roles | None) -> dict[str, tuple[bool, bool]]:
    return {str(uid): pair for uid, pair in (roles or {}).items()}


def _granted(proposed: tuple[bool, bool], answered: tuple[bool, bool]) -> tuple[bool, bool]:
    """PS3.7 D.3.3.4 (Table D.3.3.4-1): the requestor's roles after role selection.

    The acceptor can only grant what was proposed ("shall not return the value
    (1) if the Association-requestor has not proposed the role") and the
    requestor ignores a grant it did not propose: a role holds when both sides
    said 1. The acceptor's roles are the mirror image.
    """
    return proposed[0] and answered[0], proposed[1] and answered[1]


def _proposed_syntaxes(context: Requested) -> Sequence[str]:
    if isinstance(context, PresentationContextRQItem):
        return context.transfer_syntaxes
    return context.transfer_syntax


def _result(
    context_id: int,
    abstract_syntax: str,
    transfer_syntax: str,
    result: PresentationContextResult,
    roles: tuple[bool, bool] = (False, False),
) -> PresentationContext:
    """Build a negotiated context without re-validating names that came off the wire.

    ``roles`` is (as_scu, as_scp) for the side that negotiated.
    """
    context = PresentationContext(context_id=context_id, result=result)
    context._abstract_syntax = _uid(abstract_syntax)
    context._transfer_syntax = [_uid(transfer_syntax)]
    context._as_scu, context._as_scp = roles
    return context


def _by_requested_id(requested: Sequence[Requested]) -> dict[int, Requested]:
    """Index the proposals by context ID, refusing any that cannot get one answer.

    PS3.8 7.1.1.13: the requestor assigns "an arbitrary, but unused identifier"
    to each context (odd 1..255, PS3.8 9.3.2.2; PresentationContextRQItem and
    the PresentationContext setter already refuse others). A repeated ID is not
    answered with result 1 or 2: PS3.8 7.1.1.14 wants one result per proposal,
    the A-ASSOCIATE-AC names contexts by ID alone, and two answers with one ID
    would leave the peer unable to tell which is which. It is an invalid PDU
    parameter value, so the association is aborted (PS3.8 Table 9-10: Evt19,
    invalid PDU received, leads to AA-8, A-ABORT). So is a context without a
    transfer syntax (PS3.8 9.3.2.2: one or more).
    """
    found: dict[int, Requested] = {}
    for context in requested:
        context_id = context.context_id
        if context_id is None:
            raise LocalProtocolError("a proposed presentation context has no context ID")
        if context_id in found:
            raise RemoteProtocolError(f"presentation context ID {context_id} proposed twice")
        if not _proposed_syntaxes(context):
            raise RemoteProtocolError(f"presentation context {context_id} has no transfer syntax")
        found[context_id] = context
    return found


def _by_abstract_syntax(supported: Sequence[PresentationContext]) -> dict[str, PresentationContext]:
    found: dict[str, PresentationContext] = {}
    for context in supported:
        if not context.abstract_syntax:
            raise LocalProtocolError("a supported presentation context has no abstract syntax")
        if context.abstract_syntax in found:
            raise LocalProtocolError(
                f"abstract syntax {context.abstract_syntax} is supported more than once; "
                "list all its transfer syntaxes in one context"
            )
        found[context.abstract_syntax] = context
    return found


def _accept_one(
    context_id: int,
    rq: Requested,
    supported: Mapping[str, PresentationContext],
    roles: Mapping[str, tuple[bool, bool]],
) -> tuple[PresentationContext, ScpScuRoleSelectionSubItem | None]:
    """PS3.8 9.3.3.2 and PS3.7 D.3.3.4 for one proposed context; returns its role reply."""
    abstract, offered = rq.abstract_syntax, _proposed_syntaxes(rq)
    ours = supported.get(abstract)
    if ours is None:
        return _result(context_id, abstract, offered[0], _ABSTRACT_NOT_SUPPORTED), None
    # The requestor lists its transfer syntaxes in its order of preference;
    # we take the first one we support.
    chosen = next((ts for ts in offered if ts in ours.transfer_syntax), None)
    if chosen is None:
        return _result(context_id, abstract, offered[0], _TRANSFER_NOT_SUPPORTED), None
    proposed = roles.get(abstract)
    if proposed is None or ours.scu_role is None or ours.scp_role is None:
        # PS3.7 D.3.3.4: no role item proposed, or none returned: the
        # requestor is SCU and the acceptor SCP.
        return _result(context_id, abstract, chosen, _ACCEPTED, (False, True)), None
    scu, scp = _granted(proposed, (ours.scu_role, ours.scp_role))
    if not (scu or scp):
        # Neither side could act on the context, so it is of no use: refuse it.
        return _result(context_id, abstract, offered[0], _USER_REJECTION), None
    reply = ScpScuRoleSelectionSubItem(sop_class_uid=abstract, scu_role=scu, scp_role=scp)
    # Our roles mirror the requestor's: it acts as SCP where we act as SCU.
    return _result(context_id, abstract, chosen, _ACCEPTED, (scp, scu)), reply


def negotiate_as_acceptor(
    requested: Sequence[Requested],
    supported: Sequence[PresentationContext],
    roles: Roles | None = None,
) -> tuple[list[PresentationContext], list[ScpScuRoleSelectionSubItem]]:
    """Answer each proposed context as the association acceptor.

    ``requested`` are the peer's proposals (decoded items or contexts),
    ``supported`` ours (one per abstract syntax), ``roles`` the roles the peer
    proposed in its SCP/SCU Role Selection items. Returns one result per
    proposal, sorted by context ID, with ``as_scu`` / ``as_scp`` saying what WE
    may do; and the role items to send back, one per SOP Class whose proposal
    we answered, sorted by UID. Raises RemoteProtocolError for a repeated
    context ID or a context without transfer syntaxes.
    """
    proposals = _by_requested_id(requested)
    ours = _by_abstract_syntax(supported)
    results: list[PresentationContext] = []
    replies: dict[str, ScpScuRoleSelectionSubItem] = {}
    proposed_roles = _by_uid(roles)
    for context_id in sorted(proposals):
        context, reply = _accept_one(context_id, proposals[context_id], ours, proposed_roles)
        results.append(context)
        if reply is not None:
            replies[reply.sop_class_uid] = reply
    return results, [replies[uid] for uid in sorted(replies)]


def _answer(answer: Answer) -> tuple[PresentationContextResult, str | None]:
    """The result and the transfer syntax of one answer from the A-ASSOCIATE-AC."""
    if answer.result not in _RESULTS:
        raise RemoteProtocolError(
            f"presentation context {answer.context_id}: unknown result {answer.result!r}"
        )
    result = PresentationContextResult(answer.result)
    if isinstance(answer, PresentationContextACItem):
        return result, answer.transfer_syntax
    return result, answer.transfer_syntax[0] if answer.transfer_syntax else None


def _answers_by_id(
    answers: Sequence[Answer], proposed: Mapping[int, PresentationContext]
) -> dict[int, tuple[PresentationContextResult, str | None]]:
    found: dict[int, tuple[PresentationContextResult, str | None]] = {}
    for answer in answers:
        context_id = answer.context_id
        if context_id is None or context_id not in proposed:
            raise RemoteProtocolError(f"answer to presentation context {context_id}: not proposed")
        if context_id in found:
            raise RemoteProtocolError(f"presentation context {context_id} answered twice")
        found[context_id] = _answer(answer)
    return found


def _proposed_roles(
    ours: PresentationContext, roles_proposed: Mapping[str, tuple[bool, bool]]
) -> tuple[bool, bool] | None:
    if ours.abstract_syntax in roles_proposed:
        return roles_proposed[ours.abstract_syntax]
    if ours.scu_role is None or ours.scp_role is None:
        return None
    return ours.scu_role, ours.scp_role


def _settle_one(
    context_id: int,
    ours: PresentationContext,
    answer: tuple[PresentationContextResult, str | None] | None,
    roles_proposed: Mapping[str, tuple[bool, bool]],
    roles_returned: Mapping[str, tuple[bool, bool]],
) -> PresentationContext:
    """The outcome of one of our proposals, from the requestor's side."""
    abstract, first = ours.abstract_syntax, ours.transfer_syntax[0]
    if answer is None:
        # PS3.8 7.1.1.14 wants one result per proposal; a context left
        # unanswered cannot be used, as if the acceptor had rejected it.
        return _result(context_id, abstract, first, _NO_REASON)
    result, chosen = answer
    if result != _ACCEPTED:
        # PS3.8 9.3.3.2: a rejected context's transfer syntax is not significant.
        return _result(context_id, abstract, first, result)
    if chosen is None or chosen not in ours.transfer_syntax:
        raise RemoteProtocolError(
            f"presentation context {context_id} accepted with transfer syntax {chosen!r}, "
            "which we did not propose"
        )
    proposed = _proposed_roles(ours, roles_proposed)
    returned = roles_returned.get(abstract)
    if proposed is None or returned is None:
        # PS3.7 D.3.3.4: without both a proposal and a reply, the requestor is SCU.
        return _result(context_id, abstract, chosen, _ACCEPTED, (True, False))
    return _result(context_id, abstract, chosen, _ACCEPTED, _granted(proposed, returned))


def _by_our_id(requested: Sequence[PresentationContext]) -> dict[int, PresentationContext]:
    found: dict[int, PresentationContext] = {}
    for context in requested:
        context_id = context.context_id
        if context_id is None or context_id in found or not context.transfer_syntax:
            raise LocalProtocolError(
                f"{context!r}: a requested context needs a unique ID and a transfer syntax"
            )
        found[context_id] = context
    return found


def negotiate_as_requestor(
    requested: Sequence[PresentationContext],
    accepted: Sequence[Answer],
    roles_proposed: Roles | None = None,
    roles_returned: Roles | None = None,
) -> list[PresentationContext]:
    """Match the acceptor's answers to our proposals, as the association requestor.

    ``requested`` are the contexts we sent (with IDs), ``accepted`` the answers
    from the A-ASSOCIATE-AC (decoded items or contexts), ``roles_proposed`` the
    roles we proposed (default: each requested context's ``scu_role`` /
    ``scp_role``), ``roles_returned`` the acceptor's role items. Returns one
    context per proposal, sorted by ID, with ``as_scu`` / ``as_scp`` saying what
    WE may do. Raises RemoteProtocolError for an answer to an ID we never
    proposed, an ID answered twice, an unknown result, or an acceptance with a
    transfer syntax we did not propose.
    """
    ours = _by_our_id(requested)
    answers = _answers_by_id(accepted, ours)
    proposed, returned = _by_uid(roles_proposed), _by_uid(roles_returned)
    return [
        _settle_one(context_id, ours[context_id], answers.get(context_id), proposed, returned)
        for context_id in sorted(ours)
    ]


# ---------------------------------------------------------------------------
# Ready-made context lists, one per service (pynetdicom's names)


def _contexts(uids: Iterable[str]) -> list[PresentationContext]:
    # pynetdicom orders its lists by UID as text; so do we, so both propose alike.
    return [build_context(uid) for uid in sorted(uids)]


def _service(*names: str) -> list[PresentationContext]:
    return _contexts(uid for name in names for uid in sop_class.SERVICE_SOP_CLASSES.get(name, ()))


# pynetdicom's choice of "common" storage classes (retired ones still in use
# included): 120 of them leaves room for a few more contexts under the limit
# of 128 per association (PS3.8 9.3.2.2), and the same choice means a dicombus
# requestor proposes what a pynetdicom one does.
_COMMON_STORAGE = (
    "AmbulatoryECGWaveformStorage",
    "ArterialPulseWaveformStorage",
    "AutorefractionMeasurementsStorage",
    "BasicStructuredDisplayStorage",
    "BasicTextSRStorage",
    "BasicVoiceAudioWaveformStorage",
    "BlendingSoftcopyPresentationStateStorage",
    "BreastTomosynthesisImageStorage",
    "CTImageStorage",
    "CardiacElectrophysiologyWaveformStorage",
    "ChestCADSRStorage",
    "ColonCADSRStorage",
    "ColorSoftcopyPresentationStateStorage",
    "Comprehensive3DSRStorage",
    "ComprehensiveSRStorage",
    "ComputedRadiographyImageStorage",
    "DeformableSpatialRegistrationStorage",
    "DigitalIntraOralXRayImageStorageForPresentation",
    "DigitalIntraOralXRayImageStorageForProcessing",
    "DigitalMammographyXRayImageStorageForPresentation",
    "DigitalMammographyXRayImageStorageForProcessing",
    "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing",
    "EncapsulatedCDAStorage",
    "EncapsulatedPDFStorage",
    "EnhancedCTImageStorage",
    "EnhancedMRColorImageStorage",
    "EnhancedMRImageStorage",
    "EnhancedPETImageStorage",
    "EnhancedSRStorage",
    "EnhancedUSVolumeStorage",
    "EnhancedXAImageStorage",
    "EnhancedXRFImageStorage",
    "GeneralAudioWaveformStorage",
    "GeneralECGWaveformStorage",
    "GrayscaleSoftcopyPresentationStateStorage",
    "HardcopyColorImageStorage",
    "HardcopyGrayscaleImageStorage",
    "HemodynamicWaveformStorage",
    "ImplantationPlanSRStorage",
    "IntraocularLensCalculationsStorage",
    "IntravascularOpticalCoherenceTomographyImageStorageForPresentation",
    "IntravascularOpticalCoherenceTomographyImageStorageForProcessing",
    "KeratometryMeasurementsStorage",
    "KeyObjectSelectionDocumentStorage",
    "LegacyConvertedEnhancedCTImageStorage",
    "LegacyConvertedEnhancedMRImageStorage",
    "LegacyConvertedEnhancedPETImageStorage",
    "LensometryMeasurementsStorage",
    "MRImageStorage",
    "MRSpectroscopyStorage",
    "MacularGridThicknessAndVolumeReportStorage",
    "MammographyCADSRStorage",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
    "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
    "MultiFrameSingleBitSecondaryCaptureImageStorage",
    "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "NuclearMedicineImageStorage",
    "NuclearMedicineImageStorageRetired",
    "OphthalmicAxialMeasurementsStorage",
    "OphthalmicPhotography16BitImageStorage",
    "OphthalmicPhotography8BitImageStorage",
    "OphthalmicThicknessMapStorage",
    "OphthalmicTomographyImageStorage",
    "OphthalmicVisualFieldStaticPerimetryMeasurementsStorage",
    "PositronEmissionTomographyImageStorage",
    "ProcedureLogStorage",
    "PseudoColorSoftcopyPresentationStateStorage",
    "RTBeamsDeliveryInstructionStorage",
    "RTBeamsTreatmentRecordStorage",
    "RTBrachyTreatmentRecordStorage",
    "RTDoseStorage",
    "RTImageStorage",
    "RTIonBeamsTreatmentRecordStorage",
    "RTIonPlanStorage",
    "RTPlanStorage",
    "RTStructureSetStorage",
    "RTTreatmentSummaryRecordStorage",
    "RawDataStorage",
    "RealWorldValueMappingStorage",
    "RespiratoryWaveformStorage",
    "SecondaryCaptureImageStorage",
    "SegmentationStorage",
    "SpatialFiducialsStorage",
    "SpatialRegistrationStorage",
    "SpectaclePrescriptionReportStorage",
    "StandaloneCurveStorage",
    "StandaloneModalityLUTStorage",
    "StandaloneOverlayStorage",
    "StandalonePETCurveStorage",
    "StandaloneVOILUTStorage",
    "StereometricRelationshipStorage",
    "StoredPrintStorage",
    "SubjectiveRefractionMeasurementsStorage",
    "SurfaceScanMeshStorage",
    "SurfaceScanPointCloudStorage",
    "SurfaceSegmentationStorage",
    "TwelveLeadECGWaveformStorage",
    "UltrasoundImageStorage",
    "UltrasoundImageStorageRetired",
    "UltrasoundMultiFrameImageStorage",
    "UltrasoundMultiFrameImageStorageRetired",
    "VLEndoscopicImageStorage",
    "VLImageStorageTrial",
    "VLMicroscopicImageStorage",
    "VLMultiFrameImageStorageTrial",
    "VLPhotographicImageStorage",
    "VLSlideCoordinatesMicroscopicImageStorage",
    "VLWholeSlideMicroscopyImageStorage",
    "VideoEndoscopicImageStorage",
    "VideoMicroscopicImageStorage",
    "VideoPhotographicImageStorage",
    "VisualAcuityMeasurementsStorage",
    "XAXRFGrayscaleSoftcopyPresentationStateStorage",
    "XRay3DAngiographicImageStorage",
    "XRay3DCraniofacialImageStorage",
    "XRayAngiographicBiPlaneImageStorage",
    "XRayAngiographicImageStorage",
    "XRayRadiationDoseSRStorage",
    "XRayRadiofluoroscopicImageStorage",
)

ApplicationEventLoggingPresentationContexts = _service("ApplicationEventLogging")
BasicWorklistManagementPresentationContexts = _service("BasicWorklistManagement")
ColorPalettePresentationContexts = _service("ColorPaletteQueryRetrieve")
DefinedProcedureProtocolPresentationContexts = _service("DefinedProcedureProtocolQueryRetrieve")
DisplaySystemPresentationContexts = _service("DisplaySystemManagement")
HangingProtocolPresentationContexts = _service("HangingProtocolQueryRetrieve")
ImplantTemplatePresentationContexts = _service("ImplantTemplateQueryRetrieve")
InstanceAvailabilityPresentationContexts = _service("InstanceAvailabilityNotification")
MediaCreationManagementPresentationContexts = _service("MediaCreationManagement")
MediaStoragePresentationContexts = _service("MediaStorage")
ModalityPerformedPresentationContexts = _service("ModalityPerformedProcedureStep")
NonPatientObjectPresentationContexts = _service("NonPatientObjectStorage")
PrintManagementPresentationContexts = _service("Print")
ProcedureStepPresentationContexts = _service("ModalityPerformedProcedureStep")
ProtocolApprovalPresentationContexts = _service("ProtocolApprovalQueryRetrieve")
QueryRetrievePresentationContexts = _service(
    "QueryRetrieveFind", "QueryRetrieveGet", "QueryRetrieveMove"
)
RelevantPatientInformationPresentationContexts = _service("RelevantPatientInformationQuery")
RTMachineVerificationPresentationContexts = _service("RTMachineVerification")
StorageCommitmentPresentationContexts = _service("StorageCommitment")
SubstanceAdministrationPresentationContexts = _service("SubstanceAdministrationQuery")
UnifiedProcedurePresentationContexts = _service("UnifiedProcedureStep")
VerificationPresentationContexts = _service("Verification")
AllStoragePresentationContexts = _contexts(sop_class.STORAGE_SOP_CLASSES)
StoragePresentationContexts = _contexts(sop_class.SOP_CLASSES[name] for name in _COMMON_STORAGE)
