"""Association negotiation between two dicombus AEs over loopback: roles, the
unrestricted storage switch, extended negotiation handlers and the reject reasons."""

from __future__ import annotations

from typing import Any

import pytest
from dicombus import build_context, build_role, config, evt
from dicombus.association import Association
from dicombus.protocol.items import (
    AsynchronousOperationsWindowSubItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
)
from dicombus.sop_class import CTImageStorage, MRImageStorage, Verification
from helpers import StoreRecorder, small_dataset
from loopback import associate, associated, quick_ae, serving, wait_until
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.9.7433.1.1"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"


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
