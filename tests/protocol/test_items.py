"""A-ASSOCIATE variable items and user-information sub-items (PS3.8 9.3, Annex D; PS3.7 D.3.3).

Every vector is an annotated hex dump checked three ways: our encoder
produces it, our decoder reads it back, and pynetdicom (the test-only peer)
reads the same values from it and re-encodes the same bytes.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from typing import Any

import pytest
from dicombus.protocol.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from dicombus.protocol.items import (
    AbstractSyntaxItem,
    ApplicationContextItem,
    AsynchronousOperationsWindowSubItem,
    ImplementationClassUIDSubItem,
    ImplementationVersionNameSubItem,
    MaximumLengthSubItem,
    PresentationContextACItem,
    PresentationContextResult,
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    TransferSyntaxItem,
    UnknownSubItem,
    UserIdentityACSubItem,
    UserIdentityRQSubItem,
    UserInformationItem,
    UserSubItem,
)
from helpers import unhex
from hypothesis import given
from hypothesis import strategies as st
from item_strategies import ac_context_items, rq_context_items
from pynetdicom import pdu_items as peer

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DCMTK_364 = "1.2.276.0.7230010.3.0.3.6.4"

# ---------------------------------------------------------------------------
# Byte vectors

APPLICATION_CONTEXT = unhex(
    """
    10 00 00 15                                      # item type 0x10, reserved, length 21
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 33 2e  # "1.2.840.10008.3."
    31 2e 31 2e 31                                   # "1.1.1"
    """
)
ABSTRACT_SYNTAX = unhex(
    """
    30 00 00 11                                      # item type 0x30, reserved, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  # "1.2.840.10008.1."
    31                                               # "1"  (Verification SOP Class)
    """
)
TRANSFER_SYNTAX = unhex(
    """
    40 00 00 11                                      # item type 0x40, reserved, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  # "1.2.840.10008.1."
    32                                               # "2"  (Implicit VR Little Endian)
    """
)
CONTEXT_RQ = unhex(
    """
    20 00 00 45                                      # item type 0x20, reserved, length 69
    01 00 00 00                                      # context ID 1, 3 reserved bytes
    30 00 00 11                                      # abstract syntax sub-item, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #   "1.2.840.10008.1."
    31                                               #   "1"
    40 00 00 11                                      # transfer syntax sub-item, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #   "1.2.840.10008.1."
    32                                               #   "2"
    40 00 00 13                                      # transfer syntax sub-item, length 19
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #   "1.2.840.10008.1."
    32 2e 31                                         #   "2.1"  (Explicit VR Little Endian)
    """
)
CONTEXT_AC_ACCEPTED = unhex(
    """
    21 00 00 19                                      # item type 0x21, reserved, length 25
    01 00 00 00                                      # context ID 1, reserved, result 0, reserved
    40 00 00 11                                      # transfer syntax sub-item, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #   "1.2.840.10008.1."
    32                                               #   "2"
    """
)
CONTEXT_AC_REJECTED = unhex(
    """
    21 00 00 08                                      # item type 0x21, reserved, length 8
    03 00 03 00                                      # context ID 3, reserved,
                                                     # result 3 (abstract syntax not supported)
    40 00 00 00                                      # empty transfer syntax sub-item
    """
)
MAXIMUM_LENGTH = unhex(
    """
    51 00 00 04                                      # item type 0x51, reserved, length 4
    00 00 40 00                                      # maximum length received 16384
    """
)
IMPLEMENTATION_CLASS_UID = unhex(
    """
    52 00 00 1b                                      # item type 0x52, reserved, length 27
    31 2e 32 2e 32 37 36 2e 30 2e 37 32 33 30 30 31  # "1.2.276.0.723001"
    30 2e 33 2e 30 2e 33 2e 36 2e 34                 # "0.3.0.3.6.4"
    """
)
ASYNC_WINDOW = unhex(
    """
    53 00 00 04                                      # item type 0x53, reserved, length 4
    00 05                                            # maximum operations invoked 5
    00 03                                            # maximum operations performed 3
    """
)
ROLE_SELECTION = unhex(
    """
    54 00 00 1f                                      # item type 0x54, reserved, length 31
    00 1b                                            # UID length 27
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 35 2e  # "1.2.840.10008.5."
    31 2e 34 2e 31 2e 32 2e 32 2e 33                 # "1.4.1.2.2.3"  (Study Root GET)
    01                                               # SCU role: supported
    00                                               # SCP role: not supported
    """
)
VERSION_NAME = unhex(
    """
    55 00 00 0f                                      # item type 0x55, reserved, length 15
    4f 46 46 49 53 5f 44 43 4d 54 4b 5f 33 36 34     # "OFFIS_DCMTK_364"
    """
)
SOP_CLASS_EXTENDED = unhex(
    """
    56 00 00 1f                                      # item type 0x56, reserved, length 31
    00 1b                                            # SOP class UID length 27
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 35 2e  # "1.2.840.10008.5."
    31 2e 34 2e 31 2e 32 2e 31 2e 31                 # "1.4.1.2.1.1"  (Patient Root FIND)
    01 01                                            # service class application information
    """
)
SOP_CLASS_COMMON_EXTENDED = unhex(
    """
    57 00 00 53                                      # item type 0x57, sub-item version 0,
                                                     # length 83
    00 1d                                            # SOP class UID length 29
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 35 2e  # "1.2.840.10008.5."
    31 2e 34 2e 31 2e 31 2e 38 38 2e 34 30           # "1.4.1.1.88.40"  (Procedure Log)
    00 11                                            # service class UID length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 34 2e  # "1.2.840.10008.4."
    32                                               # "2"  (Storage Service Class)
    00 1f                                            # related general SOP class id length 31
    00 1d                                            #   related general SOP class UID length 29
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 35 2e  #   "1.2.840.10008.5."
    31 2e 34 2e 31 2e 31 2e 38 38 2e 32 32           #   "1.4.1.1.88.22"  (Enhanced SR)
    """
)
USER_IDENTITY_RQ = unhex(
    """
    58 00 00 0f                                      # item type 0x58, reserved, length 15
    02                                               # user identity type 2 (username+passcode)
    01                                               # positive response requested
    00 06 70 69 6e 6b 69 65                          # primary field length 6, "pinkie"
    00 03 70 69 65                                   # secondary field length 3, "pie"
    """
)
USER_IDENTITY_AC = unhex(
    """
    59 00 00 04                                      # item type 0x59, reserved, length 4
    00 02 01 02                                      # server response length 2, 01 02
    """
)
UNKNOWN_SUB_ITEM = unhex(
    """
    5a 00 00 04                                      # item type 0x5A (not in PS3.7), length 4
    de ad be ef                                      # opaque value
    """
)
USER_INFORMATION = unhex(
    """
    50 00 00 3a                                      # item type 0x50, reserved, length 58
    51 00 00 04 00 00 40 00                          # maximum length 16384
    52 00 00 1b                                      # implementation class UID, length 27
    31 2e 32 2e 32 37 36 2e 30 2e 37 32 33 30 30 31  #   "1.2.276.0.723001"
    30 2e 33 2e 30 2e 33 2e 36 2e 34                 #   "0.3.0.3.6.4"
    55 00 00 0f                                      # implementation version name, length 15
    4f 46 46 49 53 5f 44 43 4d 54 4b 5f 33 36 34     #   "OFFIS_DCMTK_364"
    """
)

VECTORS: list[tuple[bytes, Any]] = [
    (APPLICATION_CONTEXT, ApplicationContextItem(name="1.2.840.10008.3.1.1.1")),
    (ABSTRACT_SYNTAX, AbstractSyntaxItem(name=VERIFICATION)),
    (TRANSFER_SYNTAX, TransferSyntaxItem(name=IMPLICIT_VR_LE)),
    (
        CONTEXT_RQ,
        PresentationContextRQItem(
            context_id=1,
            abstract_syntax=VERIFICATION,
            transfer_syntaxes=(IMPLICIT_VR_LE, EXPLICIT_VR_LE),
        ),
    ),
    (
        CONTEXT_AC_ACCEPTED,
        PresentationContextACItem(context_id=1, result=0, transfer_syntax=IMPLICIT_VR_LE),
    ),
    (CONTEXT_AC_REJECTED, PresentationContextACItem(context_id=3, result=3, transfer_syntax=None)),
    (MAXIMUM_LENGTH, MaximumLengthSubItem(maximum_length=16384)),
    (IMPLEMENTATION_CLASS_UID, ImplementationClassUIDSubItem(uid=DCMTK_364)),
    (
        ASYNC_WINDOW,
        AsynchronousOperationsWindowSubItem(max_operations_invoked=5, max_operations_performed=3),
    ),
    (
        ROLE_SELECTION,
        ScpScuRoleSelectionSubItem(
            sop_class_uid="1.2.840.10008.5.1.4.1.2.2.3", scu_role=True, scp_role=False
        ),
    ),
    (VERSION_NAME, ImplementationVersionNameSubItem(name="OFFIS_DCMTK_364")),
    (
        SOP_CLASS_EXTENDED,
        SOPClassExtendedNegotiationSubItem(
            sop_class_uid="1.2.840.10008.5.1.4.1.2.1.1",
            service_class_application_information=b"\x01\x01",
        ),
    ),
    (
        SOP_CLASS_COMMON_EXTENDED,
        SOPClassCommonExtendedNegotiationSubItem(
            sop_class_uid="1.2.840.10008.5.1.4.1.1.88.40",
            service_class_uid="1.2.840.10008.4.2",
            related_general_sop_class_uids=("1.2.840.10008.5.1.4.1.1.88.22",),
        ),
    ),
    (
        USER_IDENTITY_RQ,
        UserIdentityRQSubItem(
            user_identity_type=2,
            positive_response_requested=True,
            primary_field=b"pinkie",
            secondary_field=b"pie",
        ),
    ),
    (USER_IDENTITY_AC, UserIdentityACSubItem(server_response=b"\x01\x02")),
    (UNKNOWN_SUB_ITEM, UnknownSubItem(item_type=0x5A, data=b"\xde\xad\xbe\xef")),
    (
        USER_INFORMATION,
        UserInformationItem(
            sub_items=(
                MaximumLengthSubItem(maximum_length=16384),
                ImplementationClassUIDSubItem(uid=DCMTK_364),
                ImplementationVersionNameSubItem(name="OFFIS_DCMTK_364"),
            )
        ),
    ),
]
IDS = [
    type(value).__name__ + ("_rejected" if i == 5 else "") for i, (_, value) in enumerate(VECTORS)
]


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_encode_matches_vector(vector: bytes, value: Any) -> None:
    assert value.encode() == vector


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_decode_vector(vector: bytes, value: Any) -> None:
    assert type(value).decode(vector) == value
    assert type(value).decode(memoryview(vector)) == value


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_every_truncation_is_a_remote_error(vector: bytes, value: Any) -> None:
    for length in range(len(vector)):
        with pytest.raises(RemoteProtocolError) as info:
            type(value).decode(vector[:length])
        assert info.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_trailing_byte_is_a_remote_error(vector: bytes, value: Any) -> None:
    """decode takes exactly one whole item: the header length must match."""
    with pytest.raises(RemoteProtocolError):
        type(value).decode(vector + b"\x00")


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_length_field_past_the_end(vector: bytes, value: Any) -> None:
    overlong = vector[:2] + (len(vector) - 4 + 1).to_bytes(2, "big") + vector[4:]
    with pytest.raises(RemoteProtocolError):
        type(value).decode(overlong)


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_values_are_frozen(vector: bytes, value: Any) -> None:
    with pytest.raises(FrozenInstanceError):
        setattr(value, fields(value)[0].name, None)


def test_wrong_item_type() -> None:
    with pytest.raises(RemoteProtocolError):
        AbstractSyntaxItem.decode(TRANSFER_SYNTAX)


# ---------------------------------------------------------------------------
# Cross-check with pynetdicom


def _peer_fields(item: Any) -> Any:
    """The values pynetdicom reads from a decoded item, in our vocabulary."""
    match item:
        case peer.ApplicationContextItem():
            return item.application_context_name
        case peer.AbstractSyntaxSubItem():
            return item.abstract_syntax_name
        case peer.TransferSyntaxSubItem():
            return item.transfer_syntax_name
        case peer.PresentationContextItemRQ():
            return (item.context_id, item.abstract_syntax, tuple(item.transfer_syntax))
        case peer.PresentationContextItemAC():
            return (item.context_id, item.result, item.transfer_syntax)
        case peer.MaximumLengthSubItem():
            return item.maximum_length_received
        case peer.ImplementationClassUIDSubItem():
            return item.implementation_class_uid
        case peer.AsynchronousOperationsWindowSubItem():
            return (
                item.maximum_number_operations_invoked,
                item.maximum_number_operations_performed,
            )
        case peer.SCP_SCU_RoleSelectionSubItem():
            return (item.sop_class_uid, bool(item.scu_role), bool(item.scp_role))
        case peer.ImplementationVersionNameSubItem():
            return item.implementation_version_name
        case peer.SOPClassExtendedNegotiationSubItem():
            return (item.sop_class_uid, item.service_class_application_information)
        case peer.SOPClassCommonExtendedNegotiationSubItem():
            return (
                item.sop_class_uid,
                item.service_class_uid,
                tuple(item.related_general_sop_class_identification),
            )
        case peer.UserIdentitySubItemRQ():
            return (
                item.user_identity_type,
                bool(item.positive_response_requested),
                item.primary_field,
                item.secondary_field,
            )
        case peer.UserIdentitySubItemAC():
            return item.server_response
        case peer.UserInformationItem():
            return tuple(_peer_fields(sub) for sub in item.user_data)
    raise AssertionError(item)


def _our_fields(value: Any) -> Any:
    match value:
        case ApplicationContextItem() | AbstractSyntaxItem() | TransferSyntaxItem():
            return value.name
        case PresentationContextRQItem():
            return (value.context_id, value.abstract_syntax, value.transfer_syntaxes)
        case PresentationContextACItem():
            return (value.context_id, value.result, value.transfer_syntax)
        case MaximumLengthSubItem():
            return value.maximum_length
        case ImplementationClassUIDSubItem():
            return value.uid
        case AsynchronousOperationsWindowSubItem():
            return (value.max_operations_invoked, value.max_operations_performed)
        case ScpScuRoleSelectionSubItem():
            return (value.sop_class_uid, value.scu_role, value.scp_role)
        case ImplementationVersionNameSubItem():
            return value.name
        case SOPClassExtendedNegotiationSubItem():
            return (value.sop_class_uid, value.service_class_application_information)
        case SOPClassCommonExtendedNegotiationSubItem():
            return (
                value.sop_class_uid,
                value.service_class_uid,
                value.related_general_sop_class_uids,
            )
        case UserIdentityRQSubItem():
            return (
                value.user_identity_type,
                value.positive_response_requested,
                value.primary_field,
                value.secondary_field,
            )
        case UserIdentityACSubItem():
            return value.server_response
        case UserInformationItem():
            return tuple(_our_fields(sub) for sub in value.sub_items)
    raise AssertionError(value)


PEER_CLASSES = {
    0x10: peer.ApplicationContextItem,
    0x20: peer.PresentationContextItemRQ,
    0x21: peer.PresentationContextItemAC,
    0x30: peer.AbstractSyntaxSubItem,
    0x40: peer.TransferSyntaxSubItem,
    0x50: peer.UserInformationItem,
    0x51: peer.MaximumLengthSubItem,
    0x52: peer.ImplementationClassUIDSubItem,
    0x53: peer.AsynchronousOperationsWindowSubItem,
    0x54: peer.SCP_SCU_RoleSelectionSubItem,
    0x55: peer.ImplementationVersionNameSubItem,
    0x56: peer.SOPClassExtendedNegotiationSubItem,
    0x57: peer.SOPClassCommonExtendedNegotiationSubItem,
    0x58: peer.UserIdentitySubItemRQ,
    0x59: peer.UserIdentitySubItemAC,
}
PEER_VECTORS = [(vector, value) for vector, value in VECTORS if vector[0] in PEER_CLASSES]


@pytest.mark.parametrize(
    ("vector", "value"), PEER_VECTORS, ids=[type(v).__name__ for _, v in PEER_VECTORS]
)
def test_pynetdicom_reads_our_bytes_and_writes_the_same(vector: bytes, value: Any) -> None:
    item = PEER_CLASSES[vector[0]]()
    item.decode(vector)
    assert _peer_fields(item) == _our_fields(value)
    if vector is not CONTEXT_AC_REJECTED:  # pynetdicom cannot encode an empty TS sub-item
        assert item.encode() == vector


# ---------------------------------------------------------------------------
# Tolerance the standard or real peers require


def test_uid_nul_and_space_padding_is_stripped() -> None:
    """PS3.5 9.1 forbids padding in PDUs, but DCMTK pads odd UIDs with NUL."""
    padded = unhex(
        """
        52 00 00 1c                                  # implementation class UID, length 28
        31 2e 32 2e 32 37 36 2e 30 2e 37 32 33 30 30 31
        30 2e 33 2e 30 2e 33 2e 36 2e 34 00           # "...3.6.4" + NUL pad
        """
    )
    assert ImplementationClassUIDSubItem.decode(padded).uid == DCMTK_364
    spaced = b"\x40\x00\x00\x12" + IMPLICIT_VR_LE.encode() + b" "
    assert TransferSyntaxItem.decode(spaced).name == IMPLICIT_VR_LE


def test_rejected_context_transfer_syntax_is_not_tested() -> None:
    """PS3.8 9.3.3.2: for a non-zero result the sub-item is not significant."""
    absent = unhex("21 00 00 04  05 00 04 00   # context 5, result 4, no sub-item")
    assert PresentationContextACItem.decode(absent) == PresentationContextACItem(
        context_id=5, result=4, transfer_syntax=None
    )
    garbage = unhex("21 00 00 0a  05 00 02 00  40 00 00 02 ff fe   # non-ASCII TS")
    assert PresentationContextACItem.decode(garbage).transfer_syntax is None
    named = unhex("21 00 00 0b  07 00 01 00  40 00 00 03 31 2e 32   # TS '1.2'")
    assert PresentationContextACItem.decode(named).transfer_syntax == "1.2"


def test_accepted_context_needs_its_transfer_syntax() -> None:
    for vector in ("21 00 00 04  01 00 00 00", "21 00 00 08  01 00 00 00  40 00 00 00"):
        with pytest.raises(RemoteProtocolError):
            PresentationContextACItem.decode(unhex(vector))


def test_context_result_out_of_table() -> None:
    with pytest.raises(RemoteProtocolError):
        PresentationContextACItem.decode(unhex("21 00 00 08  01 00 05 00  40 00 00 00"))


def test_context_rq_sub_item_rules() -> None:
    # No abstract syntax, only a transfer syntax.
    missing = b"\x20\x00\x00\x19\x01\x00\x00\x00" + TRANSFER_SYNTAX
    with pytest.raises(RemoteProtocolError) as info:
        PresentationContextRQItem.decode(missing)
    assert info.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    # Two abstract syntaxes.
    body = b"\x01\x00\x00\x00" + ABSTRACT_SYNTAX * 2 + TRANSFER_SYNTAX
    with pytest.raises(RemoteProtocolError) as info:
        PresentationContextRQItem.decode(b"\x20\x00" + len(body).to_bytes(2, "big") + body)
    assert info.value.abort_reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    # An item type PS3.8 does not define.
    body = b"\x01\x00\x00\x00" + ABSTRACT_SYNTAX + TRANSFER_SYNTAX + b"\x77\x00\x00\x00"
    with pytest.raises(RemoteProtocolError) as info:
        PresentationContextRQItem.decode(b"\x20\x00" + len(body).to_bytes(2, "big") + body)
    assert info.value.abort_reason == AbortReason.UNRECOGNIZED_PDU_PARAMETER
    # An even context ID.
    with pytest.raises(RemoteProtocolError):
        PresentationContextRQItem.decode(CONTEXT_RQ[:4] + b"\x02" + CONTEXT_RQ[5:])


def test_unknown_sub_items_are_kept_and_ignored() -> None:
    """PS3.8 D.2: an unrecognised user-information sub-item is never an error."""
    value = USER_INFORMATION[4:] + UNKNOWN_SUB_ITEM + unhex("ff 00 00 00   # type 0xFF, empty")
    item = UserInformationItem.decode(b"\x50\x00" + len(value).to_bytes(2, "big") + value)
    assert item.maximum_length == 16384
    assert item.implementation_class_uid == DCMTK_364
    assert item.sub_items[-2:] == (
        UnknownSubItem(item_type=0x5A, data=b"\xde\xad\xbe\xef"),
        UnknownSubItem(item_type=0xFF, data=b""),
    )


def test_malformed_known_sub_item_is_an_error() -> None:
    short_max_length = unhex("50 00 00 07  51 00 00 03 00 40 00   # maximum length of 3 bytes")
    with pytest.raises(RemoteProtocolError):
        UserInformationItem.decode(short_max_length)
    past_end = unhex("50 00 00 06  52 00 00 09 31 2e   # sub-item claims 9, has 2")
    with pytest.raises(RemoteProtocolError):
        UserInformationItem.decode(past_end)
    bad_role = ROLE_SELECTION[:-1] + b"\x02"  # PS3.7 D.3.3.4: 0 or 1
    with pytest.raises(RemoteProtocolError):
        ScpScuRoleSelectionSubItem.decode(bad_role)
    truncated_header = unhex("50 00 00 02  51 00")
    with pytest.raises(RemoteProtocolError):
        UserInformationItem.decode(truncated_header)


def test_user_information_properties() -> None:
    roles = (
        ScpScuRoleSelectionSubItem(sop_class_uid="1.2.3", scu_role=False, scp_role=True),
        ScpScuRoleSelectionSubItem(sop_class_uid="1.2.4", scu_role=True, scp_role=True),
    )
    window = AsynchronousOperationsWindowSubItem(
        max_operations_invoked=0, max_operations_performed=1
    )
    identity_rq = UserIdentityRQSubItem(
        user_identity_type=1,
        positive_response_requested=False,
        primary_field=b"u",
        secondary_field=b"",
    )
    identity_ac = UserIdentityACSubItem(server_response=b"")
    extended = SOPClassExtendedNegotiationSubItem(
        sop_class_uid="1.2.3", service_class_application_information=b""
    )
    common = SOPClassCommonExtendedNegotiationSubItem(
        sop_class_uid="1.2.3", service_class_uid="1.2.5", related_general_sop_class_uids=()
    )
    item = UserInformationItem(
        sub_items=(
            MaximumLengthSubItem(maximum_length=0),
            MaximumLengthSubItem(maximum_length=99),  # a repeat: the first one wins
            ImplementationVersionNameSubItem(name="V1"),
            window,
            *roles,
            extended,
            common,
            identity_rq,
            identity_ac,
        )
    )
    assert item.maximum_length == 0
    assert item.implementation_class_uid is None
    assert item.implementation_version_name == "V1"
    assert item.async_ops_window == window
    assert item.role_selection == roles
    assert item.sop_class_extended == (extended,)
    assert item.sop_class_common_extended == (common,)
    assert item.user_identity_rq == identity_rq
    assert item.user_identity_ac == identity_ac
    empty = UserInformationItem(sub_items=())
    assert empty.maximum_length is None
    assert empty.role_selection == ()
    assert empty.encode() == b"\x50\x00\x00\x00"


def test_common_extended_reserved_tail_is_ignored() -> None:
    """Bytes after the related general SOP class field, or a later sub-item
    version, still read (forward compatibility)."""
    value = SOP_CLASS_COMMON_EXTENDED[4:] + b"\x00\x00"
    later = b"\x57\x01" + len(value).to_bytes(2, "big") + value
    assert SOPClassCommonExtendedNegotiationSubItem.decode(later) == VECTORS[12][1]


def test_common_extended_related_field_overrun() -> None:
    value = bytearray(SOP_CLASS_COMMON_EXTENDED[4:])
    value[52] = 0x40  # related UID claims 64 bytes inside a 31-byte field
    with pytest.raises(RemoteProtocolError):
        SOPClassCommonExtendedNegotiationSubItem.decode(b"\x57\x00\x00\x53" + bytes(value))


def test_non_ascii_uid_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError):
        AbstractSyntaxItem.decode(b"\x30\x00\x00\x02\xc3\xa9")
    with pytest.raises(RemoteProtocolError):
        AbstractSyntaxItem.decode(b"\x30\x00\x00\x00")  # empty
    with pytest.raises(RemoteProtocolError):
        AbstractSyntaxItem.decode(b"\x30\x00\x00\x41" + b"1" * 65)  # PS3.5 9.1: over 64


def test_unknown_sub_item_decode_of_a_known_type_is_an_error() -> None:
    with pytest.raises(RemoteProtocolError):
        UnknownSubItem.decode(MAXIMUM_LENGTH)


# ---------------------------------------------------------------------------
# Validation on construction (our own misuse)


@pytest.mark.parametrize(
    "build",
    [
        lambda: PresentationContextRQItem(
            context_id=2, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_VR_LE,)
        ),
        lambda: PresentationContextRQItem(
            context_id=257, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_VR_LE,)
        ),
        lambda: PresentationContextRQItem(
            context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=()
        ),
        lambda: PresentationContextRQItem(
            context_id=1, abstract_syntax="1" * 65, transfer_syntaxes=(IMPLICIT_VR_LE,)
        ),
        lambda: PresentationContextACItem(context_id=1, result=0, transfer_syntax=None),
        lambda: PresentationContextACItem(context_id=1, result=5, transfer_syntax=None),
        lambda: AbstractSyntaxItem(name=""),
        lambda: AbstractSyntaxItem(name="1.2 3"),
        lambda: TransferSyntaxItem(name="1.2.é"),
        lambda: ApplicationContextItem(name="1" * 65),
        lambda: MaximumLengthSubItem(maximum_length=-1),
        lambda: MaximumLengthSubItem(maximum_length=1 << 32),
        lambda: AsynchronousOperationsWindowSubItem(
            max_operations_invoked=65536, max_operations_performed=0
        ),
        lambda: ScpScuRoleSelectionSubItem(sop_class_uid="1.2", scu_role=1, scp_role=True),  # type: ignore[arg-type]
        lambda: ImplementationVersionNameSubItem(name=""),
        lambda: ImplementationVersionNameSubItem(name="X" * 17),
        lambda: ImplementationVersionNameSubItem(name="TRAILING "),
        lambda: ImplementationVersionNameSubItem(name="TAB\t"),
        lambda: UserIdentityRQSubItem(
            user_identity_type=0,
            positive_response_requested=False,
            primary_field=b"",
            secondary_field=b"",
        ),
        lambda: UserIdentityRQSubItem(
            user_identity_type=1,
            positive_response_requested=False,
            primary_field=b"x" * 65536,
            secondary_field=b"",
        ),
        lambda: UnknownSubItem(item_type=0x51, data=b""),
        lambda: UnknownSubItem(item_type=256, data=b""),
        lambda: UserInformationItem(sub_items=[]),  # type: ignore[arg-type]
        lambda: SOPClassCommonExtendedNegotiationSubItem(
            sop_class_uid="1.2",
            service_class_uid="1.3",
            related_general_sop_class_uids=["1.4"],  # type: ignore[arg-type]
        ),
    ],
)
def test_construction_rejects_bad_values(build: Any) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_item_too_long_for_its_length_field() -> None:
    many = tuple(MaximumLengthSubItem(maximum_length=n) for n in range(8192))  # 64 KiB of items
    with pytest.raises(LocalProtocolError):
        UserInformationItem(sub_items=many).encode()


def test_result_enum_names_table_9_18() -> None:
    assert [int(result) for result in PresentationContextResult] == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------
# Property-based round trips

uids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)
dicom_uids = (
    st.lists(st.integers(0, 99999), min_size=2, max_size=12)
    .map(lambda parts: ".".join(map(str, parts)))
    .filter(lambda uid: len(uid) <= 64)
)
short_bytes = st.binary(max_size=300)

sub_items: st.SearchStrategy[UserSubItem] = st.one_of(
    st.builds(MaximumLengthSubItem, maximum_length=st.integers(0, 0xFFFFFFFF)),
    st.builds(ImplementationClassUIDSubItem, uid=uids),
    st.builds(
        AsynchronousOperationsWindowSubItem,
        max_operations_invoked=st.integers(0, 0xFFFF),
        max_operations_performed=st.integers(0, 0xFFFF),
    ),
    st.builds(
        ScpScuRoleSelectionSubItem,
        sop_class_uid=uids,
        scu_role=st.booleans(),
        scp_role=st.booleans(),
    ),
    st.builds(
        ImplementationVersionNameSubItem,
        name=st.text(
            alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=16
        ).filter(lambda name: not name.endswith(" ")),
    ),
    st.builds(
        SOPClassExtendedNegotiationSubItem,
        sop_class_uid=uids,
        service_class_application_information=short_bytes,
    ),
    st.builds(
        SOPClassCommonExtendedNegotiationSubItem,
        sop_class_uid=dicom_uids,
        service_class_uid=dicom_uids,
        related_general_sop_class_uids=st.lists(dicom_uids, max_size=4).map(tuple),
    ),
    st.builds(
        UserIdentityRQSubItem,
        user_identity_type=st.integers(1, 255),
        positive_response_requested=st.booleans(),
        primary_field=short_bytes,
        secondary_field=short_bytes,
    ),
    st.builds(UserIdentityACSubItem, server_response=short_bytes),
    st.builds(
        UnknownSubItem,
        item_type=st.integers(0, 255).filter(lambda kind: not 0x51 <= kind <= 0x59),
        data=short_bytes,
    ),
)

items: st.SearchStrategy[Any] = st.one_of(
    st.builds(ApplicationContextItem, name=uids),
    st.builds(AbstractSyntaxItem, name=uids),
    st.builds(TransferSyntaxItem, name=uids),
    rq_context_items(uids, max_syntaxes=5),
    ac_context_items(uids),
    st.builds(UserInformationItem, sub_items=st.lists(sub_items, max_size=8).map(tuple)),
    sub_items,
)


@given(items)
def test_decode_of_encode_is_identity(value: Any) -> None:
    encoded = value.encode()
    assert type(value).decode(encoded) == value
    assert type(value).decode(encoded).encode() == encoded


@given(items, st.data())
def test_truncated_encoding_is_a_remote_error(value: Any, data: st.DataObject) -> None:
    encoded = value.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(RemoteProtocolError):
        type(value).decode(encoded[:cut])


def _peer_reads(sub: UserSubItem) -> bool:
    """Values pynetdicom 3.0 cannot read back: an empty user identity primary
    field (it then misreads the secondary length) and a backslash in a
    version name (which PS3.7 D.3.3.2 allows)."""
    match sub:
        case UnknownSubItem():
            return False
        case UserIdentityRQSubItem():
            return bool(sub.primary_field)
        case ImplementationVersionNameSubItem():
            return "\\" not in sub.name
    return True


@given(st.builds(UserInformationItem, sub_items=st.lists(sub_items, max_size=8).map(tuple)))
def test_pynetdicom_reads_our_user_information(value: UserInformationItem) -> None:
    known = tuple(sub for sub in value.sub_items if _peer_reads(sub))
    mine = UserInformationItem(sub_items=known)
    item = peer.UserInformationItem()
    item.decode(mine.encode())
    assert len(item.user_data) == len(known)
    assert item.encode() == mine.encode()
