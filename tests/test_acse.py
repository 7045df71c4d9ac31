"""acse: the reasons to reject an association request, and the user information we send."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from dicombus.acse import (
    DICOM_APPLICATION_CONTEXT,
    REJECT_REASONS,
    Rejection,
    ServiceUser,
    build_user_information,
    check_association_request,
    describe_rejection,
    presentation_items,
)
from dicombus.protocol.items import (
    AsynchronousOperationsWindowSubItem,
    ImplementationClassUIDSubItem,
    ImplementationVersionNameSubItem,
    MaximumLengthSubItem,
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityRQSubItem,
    UserInformationItem,
)
from dicombus.protocol.pdus import AAssociateRQ, RejectResult, RejectSource

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"

ASYNC = AsynchronousOperationsWindowSubItem(max_operations_invoked=5, max_operations_performed=3)
ROLE_CT = ScpScuRoleSelectionSubItem(sop_class_uid=CT_IMAGE_STORAGE, scu_role=True, scp_role=True)
ROLE_MR = ScpScuRoleSelectionSubItem(sop_class_uid=MR_IMAGE_STORAGE, scu_role=False, scp_role=True)
EXTENDED = SOPClassExtendedNegotiationSubItem(
    sop_class_uid=CT_IMAGE_STORAGE, service_class_application_information=b"\x02\x00\x00"
)
COMMON = SOPClassCommonExtendedNegotiationSubItem(
    sop_class_uid=CT_IMAGE_STORAGE,
    service_class_uid=STORAGE_SERVICE_CLASS,
    related_general_sop_class_uids=(MR_IMAGE_STORAGE,),
)
IDENTITY = UserIdentityRQSubItem(
    user_identity_type=2,
    positive_response_requested=True,
    primary_field=b"user",
    secondary_field=b"secret",
)

REQUEST = AAssociateRQ(
    called_ae_title="STORESCP",
    calling_ae_title="MODALITY",
    presentation_contexts=(
        PresentationContextRQItem(
            context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=("1.2.840.10008.1.2",)
        ),
    ),
    user_information=UserInformationItem(
        sub_items=(
            MaximumLengthSubItem(maximum_length=16384),
            ImplementationClassUIDSubItem(uid="1.2.3.4"),
        )
    ),
)

# The acceptor's settings under which REQUEST is accepted.
ACCEPTING: dict[str, Any] = {
    "ae_title": "STORESCP",
    "require_called_aet": True,
    "require_calling_aet": ["MODALITY", "OTHER"],
    "active_associations": 1,
    "maximum_associations": 1,
}


def check(rq: AAssociateRQ = REQUEST, **settings: Any) -> Rejection | None:
    return check_association_request(rq, **(ACCEPTING | settings))


def test_a_request_within_every_rule_is_accepted() -> None:
    assert check() is None


@pytest.mark.parametrize(
    ("changes", "settings", "codes", "words"),
    [
        pytest.param(
            {"protocol_version": 2}, {}, (1, 2, 2), "protocol version 2", id="protocol-version"
        ),
        pytest.param(
            {"application_context_name": "1.2.3.4"},
            {},
            (1, 1, 2),
            "application context 1.2.3.4",
            id="application-context",
        ),
        pytest.param(
            {"called_ae_title": "SOMEONE"},
            {},
            (1, 1, 7),
            "called AE title 'SOMEONE'",
            id="called-ae-title",
        ),
        pytest.param(
            {"calling_ae_title": "STRANGER"},
            {},
            (1, 1, 3),
            "calling AE title 'STRANGER'",
            id="calling-ae-title",
        ),
        pytest.param(
            {},
            {"active_associations": 3, "maximum_associations": 2},
            (2, 3, 2),
            "2 associations are active, the limit is 2",
            id="local-limit",
        ),
    ],
)
def test_each_reject_reason(
    changes: dict[str, Any], settings: dict[str, Any], codes: tuple[int, int, int], words: str
) -> None:
    rejection = check(dataclasses.replace(REQUEST, **changes), **settings)
    assert rejection is not None
    assert (rejection.result, rejection.source, rejection.reason) == codes
    assert words in rejection.explanation
    assert describe_rejection(*codes).endswith(REJECT_REASONS[codes[1], codes[2]])


def test_protocol_version_needs_only_bit_0() -> None:
    """PS3.8 9.3.2: version 1 is bit 0; a later version that keeps bit 0 is accepted."""
    assert check(dataclasses.replace(REQUEST, protocol_version=3)) is None


def test_called_title_is_not_checked_unless_required() -> None:
    other = dataclasses.replace(REQUEST, called_ae_title="SOMEONE")
    assert check(other, require_called_aet=False) is None


def test_an_empty_calling_list_accepts_anyone() -> None:
    other = dataclasses.replace(REQUEST, calling_ae_title="STRANGER")
    assert check(other, require_calling_aet=[]) is None


def test_calling_titles_compare_without_padding() -> None:
    assert check(require_calling_aet=["  MODALITY "]) is None


def test_the_first_failed_check_in_ps38_order_wins() -> None:
    everything_wrong = dataclasses.replace(
        REQUEST,
        protocol_version=2,
        application_context_name="1.2.3.4",
        called_ae_title="SOMEONE",
        calling_ae_title="STRANGER",
    )
    rejection = check(everything_wrong, active_associations=5)
    assert rejection is not None and rejection.source == RejectSource.SERVICE_PROVIDER_ACSE
    rejection = check(dataclasses.replace(everything_wrong, protocol_version=1))
    assert rejection is not None and rejection.reason == 2  # application context


# -- describe_rejection: PS3.8 Table 9-21 in words ------------------------------------------


TABLE_9_21 = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


def test_reject_reasons_are_table_9_21() -> None:
    assert REJECT_REASONS == TABLE_9_21


@pytest.mark.parametrize("result", list(RejectResult))
@pytest.mark.parametrize(("source", "reason"), list(TABLE_9_21))
def test_describe_every_defined_code(result: int, source: int, reason: int) -> None:
    kind = {RejectResult.PERMANENT: "permanent", RejectResult.TRANSIENT: "transient"}[result]
    who = {
        1: "the service user",
        2: "the service provider (ACSE)",
        3: "the service provider (presentation)",
    }[source]
    assert (
        describe_rejection(result, source, reason)
        == f"{kind}, by {who}: " + TABLE_9_21[source, reason]
    )


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ((1, 1, 5), "permanent, by the service user: reason 5"),  # reserved
        ((2, 3, 0), "transient, by the service provider (presentation): reason 0"),
        ((3, 1, 1), "result 3, by the service user: no reason given"),
        ((1, 4, 1), "permanent, by the source 4: reason 1"),
    ],
)
def test_describe_reserved_and_unknown_codes(codes: tuple[int, int, int], expected: str) -> None:
    assert describe_rejection(*codes) == expected


# -- build_user_information -----------------------------------------------------------------


def test_user_information_order() -> None:
    """PS3.7 D.3.3: maximum length, implementation class UID, asynchronous operations
    window, role selections, implementation version name, then the other negotiation
    items, whatever order the caller gave them in."""
    info = build_user_information(
        maximum_length=32768,
        implementation_class_uid="1.2.3.4",
        implementation_version_name="DICOMBUS_TEST",
        extended=[ROLE_CT, EXTENDED, ASYNC, COMMON, ROLE_MR, IDENTITY],
    )
    assert info.sub_items == (
        MaximumLengthSubItem(maximum_length=32768),
        ImplementationClassUIDSubItem(uid="1.2.3.4"),
        ASYNC,
        ROLE_CT,
        ROLE_MR,
        ImplementationVersionNameSubItem(name="DICOMBUS_TEST"),
        EXTENDED,
        COMMON,
        IDENTITY,
    )
    assert UserInformationItem.decode(info.encode()) == info


def test_user_information_without_version_name_or_negotiation() -> None:
    info = build_user_information(
        maximum_length=0, implementation_class_uid="1.2.3.4", implementation_version_name=None
    )
    assert info.sub_items == (
        MaximumLengthSubItem(maximum_length=0),
        ImplementationClassUIDSubItem(uid="1.2.3.4"),
    )


# -- ServiceUser ------------------------------------------------------------------------------


def test_absorb_records_what_the_peer_said() -> None:
    user = ServiceUser(ae_title="MODALITY")
    info = build_user_information(
        maximum_length=32768,
        implementation_class_uid="1.2.3.4",
        implementation_version_name="PEER_1",
        extended=[ASYNC, ROLE_CT, ROLE_MR, EXTENDED, COMMON, IDENTITY],
    )
    user.absorb(info)
    assert user.ae_title == "MODALITY"
    assert user.maximum_length == 32768
    assert user.implementation_class_uid == "1.2.3.4"
    assert user.implementation_version_name == "PEER_1"
    assert user.asynchronous_operations == (5, 3)
    assert user.role_selection == {CT_IMAGE_STORAGE: ROLE_CT, MR_IMAGE_STORAGE: ROLE_MR}
    assert user.sop_class_extended == {CT_IMAGE_STORAGE: b"\x02\x00\x00"}
    assert user.sop_class_common_extended == {CT_IMAGE_STORAGE: COMMON}
    assert user.user_identity == IDENTITY
    assert user.user_information == info.sub_items
    assert user.extended_negotiation == [ASYNC, ROLE_CT, ROLE_MR, EXTENDED, COMMON, IDENTITY]


def test_absorb_of_a_minimal_item_keeps_the_defaults() -> None:
    user = ServiceUser()
    user.absorb(UserInformationItem(sub_items=()))
    assert user.maximum_length == 0
    assert user.implementation_class_uid == ""
    assert user.implementation_version_name is None
    assert user.asynchronous_operations == (1, 1)  # PS3.7 D.3.3.3: no item means (1, 1)
    assert user.role_selection == user.sop_class_extended == user.sop_class_common_extended == {}
    assert user.user_identity is None
    assert user.extended_negotiation == []


def test_presentation_items_from_triples() -> None:
    items = presentation_items(
        [(1, VERIFICATION, ["1.2.840.10008.1.2"]), (3, CT_IMAGE_STORAGE, ("1.2.840.10008.1.2.1",))]
    )
    assert items == (
        PresentationContextRQItem(
            context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=("1.2.840.10008.1.2",)
        ),
        PresentationContextRQItem(
            context_id=3,
            abstract_syntax=CT_IMAGE_STORAGE,
            transfer_syntaxes=("1.2.840.10008.1.2.1",),
        ),
    )


def test_dicom_application_context_name() -> None:
    assert DICOM_APPLICATION_CONTEXT == REQUEST.application_context_name == "1.2.840.10008.3.1.1.1"
