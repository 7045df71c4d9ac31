"""Association negotiation: first as pure functions of a configuration and a PDU (no
sockets), then between two dicombus AEs over loopback: roles, the unrestricted storage
switch, extended negotiation handlers and the reject reasons."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from dicombus import build_context, build_role, config, evt
from dicombus.acse import Rejection
from dicombus.association import Association
from dicombus.identity import IMPLEMENTATION_CLASS_UID
from dicombus.negotiation import (
    AcceptorConfig,
    Admission,
    NegotiationResult,
    RequestorConfig,
    absorb_associate_ac,
    build_associate_rq,
    negotiate,
)
from dicombus.presentation import PresentationContext
from dicombus.protocol.items import (
    AsynchronousOperationsWindowSubItem,
    PresentationContextResult,
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
    PresentationRejectReason,
    RejectResult,
    RejectSource,
    UserRejectReason,
)
from dicombus.sop_class import CTImageStorage, MRImageStorage, Verification
from helpers import StoreRecorder, small_dataset
from loopback import associate, associated, quick_ae, serving, wait_until
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.9.7433.1.1"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"


# -- negotiate(): the acceptor's decision, without sockets -------------------------------------

SCP_CONFIG = AcceptorConfig(
    ae_title="SCP",
    supported_contexts=(build_context(Verification), build_context(CTImageStorage)),
    require_called_aet=False,
    require_calling_aet=(),
    maximum_associations=2,
    maximum_pdu_size=16384,
    implementation_class_uid=IMPLEMENTATION_CLASS_UID,
    implementation_version_name="SCP_1",
    unrestricted_storage=False,
)


def proposal(
    *abstract_syntaxes: str, ext_neg: tuple[UserSubItem, ...] = (), called: str = "SCP"
) -> RequestorConfig:
    """What a requestor titled SCU proposes: one context per abstract syntax (IDs 1, 3, ...)."""
    return RequestorConfig(
        ae_title="SCU",
        called_ae_title=called,
        maximum_length=32768,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name="SCU_1",
        requested_contexts=tuple(
            PresentationContext(
                context_id=2 * index + 1,
                abstract_syntax=uid,
                transfer_syntax=[ImplicitVRLittleEndian],
            )
            for index, uid in enumerate(abstract_syntaxes or (Verification,))
        ),
        extended_negotiation=ext_neg,
    )


class Handlers:
    """An ``intervene`` callable: answers from a dict, and the calls it got."""

    def __init__(self, answers: dict[evt.InterventionEvent, Callable[..., Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: evt.InterventionEvent, attrs: dict[str, Any]) -> Any:
        self.calls.append((event.name, attrs))
        if event not in self.answers:
            raise evt.NoHandlerBound(event.name)
        return self.answers[event](**attrs)


def rejected_with(result: NegotiationResult) -> tuple[int, int, int]:
    reply = result.reply
    assert isinstance(reply, AAssociateRJ)
    assert result.rejection is not None
    assert result.rejection[:3] == (reply.result, reply.source, reply.reason)
    assert not result.accepted_contexts and not result.rejected_contexts
    return reply.result, reply.source, reply.reason


def test_negotiate_accepts_and_the_requestor_reads_the_same_contexts() -> None:
    offer = proposal(Verification, CTImageStorage)
    result = negotiate(SCP_CONFIG, build_associate_rq(offer))
    assert isinstance(result.reply, AAssociateAC) and result.rejection is None
    assert [c.abstract_syntax for c in result.accepted_contexts] == [Verification, CTImageStorage]
    assert result.requestor is not None
    assert (result.requestor.ae_title, result.requestor.maximum_length) == ("SCU", 32768)
    assert result.requestor.implementation_version_name == "SCU_1"
    assert (result.acceptor.ae_title, result.acceptor.maximum_length) == ("SCP", 16384)
    assert result.outcomes == ()
    # The requestor's side of the same exchange.
    agreed = absorb_associate_ac(offer, result.reply)
    assert [c.context_id for c in agreed.accepted_contexts] == [1, 3]
    assert (agreed.acceptor.maximum_length, agreed.acceptor.implementation_version_name) == (
        16384,
        "SCP_1",
    )
    # The same configuration and request give the same answer: nothing else is read.
    assert negotiate(SCP_CONFIG, build_associate_rq(offer)).reply == result.reply


def test_negotiate_refuses_a_calling_ae_title_outside_the_allow_list() -> None:
    allow = dataclasses.replace(SCP_CONFIG, require_calling_aet=("MODALITY", "OTHER"))
    result = negotiate(allow, build_associate_rq(proposal()))
    assert rejected_with(result) == (
        RejectResult.PERMANENT,
        RejectSource.SERVICE_USER,
        UserRejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED,
    )
    assert result.requestor is not None and result.requestor.ae_title == "SCU"
    assert negotiate(
        dataclasses.replace(allow, require_calling_aet=("OTHER", "SCU")),
        build_associate_rq(proposal()),
    ).accepted_contexts


def test_negotiate_refuses_another_called_ae_title_when_required() -> None:
    strict = dataclasses.replace(SCP_CONFIG, require_called_aet=True)
    result = negotiate(strict, build_associate_rq(proposal(called="ELSEWHERE")))
    assert rejected_with(result) == (
        RejectResult.PERMANENT,
        RejectSource.SERVICE_USER,
        UserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED,
    )
    assert result.rejection is not None and "ELSEWHERE" in result.rejection.explanation
    # Without the requirement the AC echoes the title called; ours is recorded.
    lenient = negotiate(SCP_CONFIG, build_associate_rq(proposal(called="ELSEWHERE")))
    assert isinstance(lenient.reply, AAssociateAC)
    assert (lenient.reply.called_ae_title, lenient.acceptor.ae_title) == ("ELSEWHERE", "SCP")


def test_negotiate_turns_requestors_away_from_a_full_or_refusing_acceptor() -> None:
    rq = build_associate_rq(proposal())
    full = negotiate(SCP_CONFIG, rq, admission=Admission(active_associations=3))
    assert rejected_with(full) == (
        RejectResult.TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
    )
    congestion = Rejection(
        RejectResult.TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        PresentationRejectReason.TEMPORARY_CONGESTION,
        "the event outbox is full",
    )
    refused = negotiate(SCP_CONFIG, rq, admission=Admission(refusal=congestion))
    assert refused.rejection == congestion


def test_negotiate_with_no_context_accepted_still_answers_an_ac() -> None:
    """PS3.8 9.3.3: each context gets its own result; it is the requestor that gives up."""
    offer = proposal(MRImageStorage)
    result = negotiate(SCP_CONFIG, build_associate_rq(offer))
    assert isinstance(result.reply, AAssociateAC)
    assert result.accepted_contexts == ()
    (refused,) = result.rejected_contexts
    assert refused.result == PresentationContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert absorb_associate_ac(offer, result.reply).accepted_contexts == ()


def identity(kind: int = 5, *, positive: bool = True) -> UserIdentityRQSubItem:
    return UserIdentityRQSubItem(
        user_identity_type=kind,
        positive_response_requested=positive,
        primary_field=b"header.payload.signature" if kind == 5 else b"alice",
        secondary_field=b"" if kind == 5 else b"secret",
    )


def test_negotiate_accepts_a_verified_identity_and_answers_last() -> None:
    handlers = Handlers({evt.EVT_USER_ID: lambda **_: (True, b"server token")})
    offer = proposal(ext_neg=(identity(),))
    result = negotiate(SCP_CONFIG, build_associate_rq(offer), intervene=handlers)
    assert isinstance(result.reply, AAssociateAC)
    # PS3.7 D.3.3.7.2: the response is the last sub-item.
    assert result.reply.user_information.sub_items[-1] == UserIdentityACSubItem(
        server_response=b"server token"
    )
    assert handlers.calls == [
        (
            "EVT_USER_ID",
            {
                "user_id_type": 5,
                "primary_field": b"header.payload.signature",
                "secondary_field": b"",
            },
        )
    ]
    (outcome,) = result.outcomes
    assert outcome.event is evt.EVT_USER_ID
    assert outcome.details == {
        "user_identity_type": 5,
        "username": None,
        "positive_response_requested": True,
        "verified": True,
    }
    assert absorb_associate_ac(offer, result.reply).acceptor.user_identity == (
        UserIdentityACSubItem(server_response=b"server token")
    )


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(lambda **_: (False, None), "not verified", id="refused"),
        pytest.param(lambda **_: "yes", "returned no (verified, response)", id="not-a-pair"),
        pytest.param(lambda **_: 1 / 0, "handler failed", id="raising"),
    ],
)
def test_negotiate_rejects_an_identity_the_handler_does_not_verify(
    answer: Callable[..., Any], words: str
) -> None:
    handlers = Handlers({evt.EVT_USER_ID: answer})
    rq = build_associate_rq(proposal(ext_neg=(identity(2),)))
    result = negotiate(SCP_CONFIG, rq, intervene=handlers)
    assert rejected_with(result) == (
        RejectResult.PERMANENT,
        RejectSource.SERVICE_USER,
        UserRejectReason.NO_REASON_GIVEN,
    )
    assert result.rejection is not None and words in result.rejection.explanation
    (outcome,) = result.outcomes
    assert (outcome.details["username"], outcome.details["verified"]) == ("alice", False)
    assert "secret" not in repr(outcome.details)


def test_negotiate_without_an_identity_handler_neither_checks_nor_answers() -> None:
    result = negotiate(SCP_CONFIG, build_associate_rq(proposal(ext_neg=(identity(),))))
    assert isinstance(result.reply, AAssociateAC)
    assert result.reply.user_information.user_identity_ac is None
    (outcome,) = result.outcomes
    assert outcome.details["verified"] is None


def test_negotiate_grants_a_proposed_scp_role_on_a_context_configured_for_it() -> None:
    ct_with_roles = build_context(CTImageStorage)
    ct_with_roles.scu_role = ct_with_roles.scp_role = True
    roles = dataclasses.replace(
        SCP_CONFIG, supported_contexts=(build_context(Verification), ct_with_roles)
    )
    offer = proposal(
        Verification, CTImageStorage, ext_neg=(build_role(CTImageStorage, scp_role=True),)
    )
    result = negotiate(roles, build_associate_rq(offer))
    assert isinstance(result.reply, AAssociateAC)
    assert result.reply.user_information.role_selection == (
        ScpScuRoleSelectionSubItem(sop_class_uid=CTImageStorage, scu_role=False, scp_role=True),
    )
    ours = next(c for c in result.accepted_contexts if c.abstract_syntax == CTImageStorage)
    assert (ours.as_scu, ours.as_scp) == (True, False)
    theirs = next(
        c
        for c in absorb_associate_ac(offer, result.reply).accepted_contexts
        if c.abstract_syntax == CTImageStorage
    )
    assert (theirs.as_scu, theirs.as_scp) == (False, True)
    # Not configured for roles: the proposal is ignored and the default roles stay.
    plain = negotiate(SCP_CONFIG, build_associate_rq(offer))
    assert isinstance(plain.reply, AAssociateAC)
    assert plain.reply.user_information.role_selection == ()


def test_negotiate_asks_the_extended_negotiation_handlers() -> None:
    common = SOPClassCommonExtendedNegotiationSubItem(
        sop_class_uid=CTImageStorage,
        service_class_uid=STORAGE_SERVICE_CLASS,
        related_general_sop_class_uids=(),
    )
    asked = SOPClassExtendedNegotiationSubItem(
        sop_class_uid=CTImageStorage, service_class_application_information=b"\x01\x01"
    )
    handlers = Handlers(
        {
            evt.EVT_ASYNC_OPS: lambda **_: (4, 4),
            evt.EVT_SOP_EXTENDED: lambda app_info: {
                uid: b"\x01" for uid in [*app_info, MRImageStorage]
            },
            evt.EVT_SOP_COMMON: lambda items: items,
        }
    )
    offer = proposal(CTImageStorage, ext_neg=(async_window(4, 4), asked, common))
    result = negotiate(SCP_CONFIG, build_associate_rq(offer), intervene=handlers)
    assert [name for name, _ in handlers.calls] == [
        "EVT_ASYNC_OPS",
        "EVT_SOP_EXTENDED",
        "EVT_SOP_COMMON",
    ]
    assert isinstance(result.reply, AAssociateAC)
    info = result.reply.user_information
    assert info.async_ops_window == async_window(1, 1)  # one operation at a time
    # An answer only for the SOP class asked about (PS3.7 D.3.3.5); none for common (D.3.3.6).
    assert info.sop_class_extended == (
        SOPClassExtendedNegotiationSubItem(
            sop_class_uid=CTImageStorage, service_class_application_information=b"\x01"
        ),
    )
    assert info.sop_class_common_extended == ()
    assert result.acceptor.sop_class_common_extended == {CTImageStorage: common}
    assert [outcome.event for outcome in result.outcomes] == [
        evt.EVT_ASYNC_OPS,
        evt.EVT_SOP_EXTENDED,
        evt.EVT_SOP_COMMON,
    ]
    # Without handlers: no window, no answers, nothing recorded.
    bare = negotiate(SCP_CONFIG, build_associate_rq(offer))
    assert isinstance(bare.reply, AAssociateAC)
    assert bare.reply.user_information.async_ops_window is None
    assert bare.reply.user_information.sop_class_extended == ()
    assert bare.acceptor.sop_class_common_extended == {}


def test_acceptor_config_reads_the_ae_once() -> None:
    ae = quick_ae("SCP", supported=[Verification])
    ae.require_called_aet = True
    ae.require_calling_aet = ["MODALITY"]
    ae.maximum_pdu_size = 0
    taken = AcceptorConfig.of(ae, ae_title="OTHER", supported_contexts=ae.supported_contexts)
    ae.require_called_aet = False
    assert taken.require_called_aet is True
    assert (taken.ae_title, taken.require_calling_aet, taken.maximum_pdu_size) == (
        "OTHER",
        ("MODALITY",),
        0,
    )
    assert [c.abstract_syntax for c in taken.supported_contexts] == [Verification]


# -- over loopback -------------------------------------------------------------------------


def item_types(assoc: Association) -> list[int]:
    """The sub-item types of the A-ASSOCIATE-AC's user information, as the requestor got them."""
    return [item.item_type for item in assoc.acceptor.user_information]


def async_window(invoked: int, performed: int) -> AsynchronousOperationsWindowSubItem:
    return AsynchronousOperationsWindowSubItem(
        max_operations_invoked=invoked, max_operations_performed=performed
    )


# -- SCP/SCU role selection (PS3.7 D.3.3.4) -----------------------------------------------------


def test_requestor_proposes_scp_role_and_acceptor_grants_it() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scp.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
    scu = quick_ae("SCU")
    contexts = [build_context(Verification), build_context(CTImageStorage)]
    role = build_role(CTImageStorage, scp_role=True)
    with (
        serving(scp) as server,
        associated(scu, server, contexts=contexts, ext_neg=[role]) as assoc,
    ):
        assert assoc.is_established
        ct = next(c for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage)
        assert (ct.as_scu, ct.as_scp) == (False, True)
        assert assoc.acceptor.role_selection == {
            CTImageStorage: ScpScuRoleSelectionSubItem(
                sop_class_uid=CTImageStorage, scu_role=False, scp_role=True
            )
        }
        served = server.active_associations[0]
        theirs = next(c for c in served.accepted_contexts if c.abstract_syntax == CTImageStorage)
        assert (theirs.as_scu, theirs.as_scp) == (True, False)
        # Having given up the SCU role, we may not send a C-STORE on the context.
        with pytest.raises(ValueError, match="SCU role"):
            assoc.send_c_store(small_dataset())


def test_acceptor_without_role_configuration_keeps_the_default_roles() -> None:
    scp = quick_ae("SCP", supported=[CTImageStorage])
    scu = quick_ae("SCU")
    role = build_role(CTImageStorage, scu_role=True, scp_role=True)
    with (
        serving(scp) as server,
        associated(scu, server, contexts=[build_context(CTImageStorage)], ext_neg=[role]) as assoc,
    ):
        (ct,) = assoc.accepted_contexts
        assert (ct.as_scu, ct.as_scp) == (True, False)
        assert assoc.acceptor.role_selection == {}


def test_a_context_where_no_role_remains_is_rejected() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scp.add_supported_context(CTImageStorage, scu_role=False, scp_role=False)
    scu = quick_ae("SCU")
    contexts = [build_context(Verification), build_context(CTImageStorage)]
    role = build_role(CTImageStorage, scu_role=True)
    with serving(scp) as server, associated(scu, server, contexts=contexts, ext_neg=[role]) as a:
        assert [c.abstract_syntax for c in a.accepted_contexts] == [Verification]
        (rejected,) = a.rejected_contexts
        assert (rejected.abstract_syntax, rejected.result) == (CTImageStorage, 1)  # user reject


# -- _config.UNRESTRICTED_STORAGE_SERVICE ----------------------------------------------------


def test_unrestricted_storage_accepts_and_serves_a_private_sop_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "UNRESTRICTED_STORAGE_SERVICE", True)  # restored after the test
    recorder = StoreRecorder()
    scp = quick_ae("SCP")
    scp.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    scu = quick_ae("SCU")
    contexts = [build_context(PRIVATE_SOP_CLASS, ImplicitVRLittleEndian)]
    instance = small_dataset(sop_class=PRIVATE_SOP_CLASS)
    with (
        serving(scp, [(evt.EVT_C_STORE, recorder)]) as server,
        associated(scu, server, contexts=contexts) as assoc,
    ):
        (private,) = assoc.accepted_contexts
        assert private.abstract_syntax == PRIVATE_SOP_CLASS
        assert private.transfer_syntax == [ImplicitVRLittleEndian]
        assert assoc.send_c_store(instance).Status == 0x0000
    assert list(recorder.by_uid()) == [instance.SOPInstanceUID]


def test_without_unrestricted_storage_a_private_sop_class_is_refused() -> None:
    assert config.UNRESTRICTED_STORAGE_SERVICE is False
    scp = quick_ae("SCP", supported=[Verification, CTImageStorage])
    scu = quick_ae("SCU")
    contexts = [build_context(Verification), build_context(PRIVATE_SOP_CLASS)]
    with serving(scp) as server, associated(scu, server, contexts=contexts) as assoc:
        (refused,) = assoc.rejected_contexts
        assert (refused.abstract_syntax, refused.result) == (PRIVATE_SOP_CLASS, 3)


# -- extended negotiation handlers -----------------------------------------------------------


def test_async_ops_handler_sees_the_proposal_and_the_window_stays_one() -> None:
    seen: dict[str, Any] = {}

    def on_async_ops(event: evt.Event) -> tuple[int, int]:
        seen.update(invoked=event.invoked, performed=event.performed)
        return 2, 3

    window = async_window(5, 4)
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    with (
        serving(scp, [(evt.EVT_ASYNC_OPS, on_async_ops)]) as server,
        associated(scu, server, ext_neg=[window]) as assoc,
    ):
        assert seen == {"invoked": 5, "performed": 4}
        # The handler sees the proposal, but dicombus serves one operation at a
        # time, so (as pynetdicom) the window it answers is (1, 1).
        assert assoc.acceptor.asynchronous_operations == (1, 1)
        assert async_window(1, 1) in assoc.acceptor.user_information
        assert server.active_associations[0].requestor.asynchronous_operations == (5, 4)


@pytest.mark.parametrize("bound", ["none", "raising"])
def test_async_ops_without_a_working_handler_sends_no_window(bound: str) -> None:
    def broken(event: evt.Event) -> tuple[int, int]:
        raise RuntimeError("handler bug")

    handlers = [(evt.EVT_ASYNC_OPS, broken)] if bound == "raising" else []
    window = async_window(5, 4)
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    with serving(scp, handlers) as server, associated(scu, server, ext_neg=[window]) as assoc:
        assert assoc.is_established
        assert AsynchronousOperationsWindowSubItem.item_type not in item_types(assoc)
        assert assoc.acceptor.asynchronous_operations == (1, 1)


def test_sop_extended_handler_answers_per_sop_class() -> None:
    seen: dict[str, bytes] = {}

    def on_sop_extended(event: evt.Event) -> dict[str, bytes | None]:
        seen.update(event.app_info)
        # An answer for a SOP class nobody asked about, and a None, are both dropped.
        return {CTImageStorage: b"\x01", MRImageStorage: b"\x01", Verification: None}

    asked = [
        SOPClassExtendedNegotiationSubItem(
            sop_class_uid=uid, service_class_application_information=b"\x01\x01\x01"
        )
        for uid in (CTImageStorage, Verification)
    ]
    scp = quick_ae("SCP", supported=[CTImageStorage, Verification])
    scu = quick_ae("SCU", requested=[CTImageStorage, Verification])
    with (
        serving(scp, [(evt.EVT_SOP_EXTENDED, on_sop_extended)]) as server,
        associated(scu, server, ext_neg=asked) as assoc,
    ):
        assert seen == {CTImageStorage: b"\x01\x01\x01", Verification: b"\x01\x01\x01"}
        assert assoc.acceptor.sop_class_extended == {CTImageStorage: b"\x01"}
        assert item_types(assoc).count(SOPClassExtendedNegotiationSubItem.item_type) == 1


def test_sop_extended_without_a_handler_answers_nothing() -> None:
    asked = SOPClassExtendedNegotiationSubItem(
        sop_class_uid=CTImageStorage, service_class_application_information=b"\x01"
    )
    scp = quick_ae("SCP", supported=[CTImageStorage])
    scu = quick_ae("SCU", requested=[CTImageStorage])
    with serving(scp) as server, associated(scu, server, ext_neg=[asked]) as assoc:
        assert assoc.is_established
        assert assoc.acceptor.sop_class_extended == {}


def test_sop_common_handler_decides_what_the_acceptor_keeps() -> None:
    """PS3.7 D.3.3.6: the item has no A-ASSOCIATE-AC counterpart; the acceptor only
    records which proposals it accepted."""
    ct = SOPClassCommonExtendedNegotiationSubItem(
        sop_class_uid=CTImageStorage,
        service_class_uid=STORAGE_SERVICE_CLASS,
        related_general_sop_class_uids=(),
    )
    mr = SOPClassCommonExtendedNegotiationSubItem(
        sop_class_uid=MRImageStorage,
        service_class_uid=STORAGE_SERVICE_CLASS,
        related_general_sop_class_uids=(CTImageStorage,),
    )
    served: list[Association] = []

    def on_sop_common(event: evt.Event) -> dict[str, Any]:
        served.append(event.assoc)
        assert event.items == {CTImageStorage: ct, MRImageStorage: mr}
        return {CTImageStorage: ct, MRImageStorage: "not an item"}

    scp = quick_ae("SCP", supported=[CTImageStorage, MRImageStorage])
    scu = quick_ae("SCU", requested=[CTImageStorage, MRImageStorage])
    with (
        serving(scp, [(evt.EVT_SOP_COMMON, on_sop_common)]) as server,
        associated(scu, server, ext_neg=[ct, mr]) as assoc,
    ):
        assert assoc.is_established
        assert served[0].acceptor.sop_class_common_extended == {CTImageStorage: ct}
        assert SOPClassCommonExtendedNegotiationSubItem.item_type not in item_types(assoc)


# -- rejections ------------------------------------------------------------------------------


def test_maximum_associations_gives_a_transient_local_limit_reject() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scp.maximum_associations = 1
    scu = quick_ae("SCU", requested=[Verification])
    with serving(scp) as server:
        with associated(scu, server) as first:
            assert first.is_established
            second = associate(scu, server)
            assert second.is_rejected and not second.is_established
            assert second.rejection is not None
            assert second.rejection[:3] == (2, 3, 2)
            assert second.rejection.explanation.endswith("local limit exceeded")
        wait_until(lambda: not server.active_associations)
        with associated(scu, server) as third:
            assert third.is_established


@pytest.mark.parametrize(
    ("scp_settings", "scu_title", "called", "codes"),
    [
        pytest.param({"require_called_aet": True}, "SCU", "ELSEWHERE", (1, 1, 7), id="called"),
        pytest.param(
            {"require_calling_aet": ["ALLOWED", "ALSO"]}, "SCU", "SCP", (1, 1, 3), id="calling"
        ),
    ],
)
def test_ae_title_requirements_reject(
    scp_settings: dict[str, Any], scu_title: str, called: str, codes: tuple[int, int, int]
) -> None:
    scp = quick_ae("SCP", supported=[Verification])
    for name, value in scp_settings.items():
        setattr(scp, name, value)
    scu = quick_ae(scu_title, requested=[Verification])
    with serving(scp) as server:
        assoc = associate(scu, server, ae_title=called)
        assert assoc.is_rejected
        assert assoc.rejection is not None and assoc.rejection[:3] == codes


@pytest.mark.parametrize(
    ("scp_settings", "scu_title"),
    [
        pytest.param({"require_called_aet": True}, "SCU", id="called"),
        pytest.param({"require_calling_aet": ["ALLOWED", "SCU"]}, "SCU", id="calling"),
    ],
)
def test_ae_title_requirements_met(scp_settings: dict[str, Any], scu_title: str) -> None:
    scp = quick_ae("SCP", supported=[Verification])
    for name, value in scp_settings.items():
        setattr(scp, name, value)
    scu = quick_ae(scu_title, requested=[Verification])
    with serving(scp) as server, associated(scu, server) as assoc:
        assert assoc.is_established
