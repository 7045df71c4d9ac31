"""The seven Upper Layer PDUs (PS3.8 9.3), their header check and their codec.

Vectors are annotated hex dumps; each is checked against our encoder, our
decoder and pynetdicom (the test-only peer), in both directions.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import FrozenInstanceError, fields
from typing import Any

import pytest
from dicombus.protocol.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from dicombus.protocol.items import (
    ImplementationClassUIDSubItem,
    ImplementationVersionNameSubItem,
    MaximumLengthSubItem,
    PresentationContextACItem,
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
    UnknownSubItem,
    UserIdentityRQSubItem,
    UserInformationItem,
)
from dicombus.protocol.limits import DEFAULT_MAX_ASSOCIATE_PDU_LENGTH
from dicombus.protocol.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
    RejectResult,
    RejectSource,
    check_pdu_header,
    decode_pdu,
    encode_pdu,
)
from helpers import unhex
from hypothesis import given
from hypothesis import strategies as st
from item_strategies import ac_context_items, context_ids, rq_context_items
from pynetdicom import pdu as peer


def decode(encoded: bytes) -> PDU:
    """Decode a whole PDU the way the runtime does: header check, then body."""
    pdu_type, length = check_pdu_header(
        encoded[:6], max_pdata_length=0, max_associate_length=DEFAULT_MAX_ASSOCIATE_PDU_LENGTH
    )
    assert length == len(encoded) - 6
    return decode_pdu(pdu_type, encoded[6:])


VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
DCMTK_364 = "1.2.276.0.7230010.3.0.3.6.4"
USER_INFORMATION = UserInformationItem(
    sub_items=(
        MaximumLengthSubItem(maximum_length=16384),
        ImplementationClassUIDSubItem(uid=DCMTK_364),
        ImplementationVersionNameSubItem(name="OFFIS_DCMTK_364"),
    )
)

# ---------------------------------------------------------------------------
# Byte vectors

USER_INFORMATION_HEX = """
    50 00 00 3a                                      # user information item, length 58
    51 00 00 04 00 00 40 00                          #   maximum length 16384
    52 00 00 1b                                      #   implementation class UID, length 27
    31 2e 32 2e 32 37 36 2e 30 2e 37 32 33 30 30 31  #     "1.2.276.0.723001"
    30 2e 33 2e 30 2e 33 2e 36 2e 34                 #     "0.3.0.3.6.4"
    55 00 00 0f                                      #   implementation version name, length 15
    4f 46 46 49 53 5f 44 43 4d 54 4b 5f 33 36 34     #     "OFFIS_DCMTK_364"
"""
A_ASSOCIATE_RQ = unhex(
    """
    01 00 00 00 00 cd                                # PDU type 1, reserved, PDU length 205
    00 01 00 00                                      # protocol version 1, reserved
    41 4e 59 2d 53 43 50 20 20 20 20 20 20 20 20 20  # called AE title "ANY-SCP", space padded
    45 43 48 4f 53 43 55 20 20 20 20 20 20 20 20 20  # calling AE title "ECHOSCU"
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # 32 reserved bytes
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
    10 00 00 15                                      # application context item, length 21
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 33 2e  #   "1.2.840.10008.3."
    31 2e 31 2e 31                                   #   "1.1.1"
    20 00 00 2e                                      # presentation context (RQ), length 46
    01 00 00 00                                      #   context ID 1, 3 reserved bytes
    30 00 00 11                                      #   abstract syntax, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #     "1.2.840.10008.1."
    31                                               #     "1" (Verification)
    40 00 00 11                                      #   transfer syntax, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #     "1.2.840.10008.1."
    32                                               #     "2" (Implicit VR Little Endian)
    """
    + USER_INFORMATION_HEX
)
A_ASSOCIATE_AC = unhex(
    """
    02 00 00 00 00 c4                                # PDU type 2, reserved, PDU length 196
    00 01 00 00                                      # protocol version 1, reserved
    41 4e 59 2d 53 43 50 20 20 20 20 20 20 20 20 20  # reserved: echoes called AE "ANY-SCP"
    45 43 48 4f 53 43 55 20 20 20 20 20 20 20 20 20  # reserved: echoes calling AE "ECHOSCU"
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # 32 reserved bytes
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
    10 00 00 15                                      # application context item, length 21
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 33 2e  #   "1.2.840.10008.3."
    31 2e 31 2e 31                                   #   "1.1.1"
    21 00 00 19                                      # presentation context (AC), length 25
    01 00 00 00                                      #   context ID 1, result 0 (acceptance)
    40 00 00 11                                      #   transfer syntax, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #     "1.2.840.10008.1."
    32                                               #     "2"
    21 00 00 08                                      # presentation context (AC), length 8
    03 00 03 00                                      #   context ID 3, result 3
                                                     #   (abstract syntax not supported)
    40 00 00 00                                      #   empty transfer syntax, not significant
    """
    + USER_INFORMATION_HEX
)
A_ASSOCIATE_RJ = unhex(
    """
    03 00 00 00 00 04                                # PDU type 3, reserved, PDU length 4
    00                                               # reserved
    01                                               # result 1: rejected-permanent
    01                                               # source 1: service-user
    07                                               # reason 7: called-AE-title-not-recognized
    """
)
P_DATA_TF = unhex(
    """
    04 00 00 00 00 1c                                # PDU type 4, reserved, PDU length 28
    00 00 00 0e                                      # PDV item length 14
    01                                               #   presentation context ID 1
    03                                               #   message control: command, last
    00 00 00 00 04 00 00 00 38 00 00 00              #   (0000,0000) UL 56: command group length
    00 00 00 06                                      # PDV item length 6
    03                                               #   presentation context ID 3
    00                                               #   message control: data set, not last
    de ad be ef                                      #   data set fragment
    """
)
A_RELEASE_RQ = unhex("05 00 00 00 00 04  00 00 00 00   # PDU type 5, length 4, reserved")
A_RELEASE_RP = unhex("06 00 00 00 00 04  00 00 00 00   # PDU type 6, length 4, reserved")
A_ABORT = unhex(
    """
    07 00 00 00 00 04                                # PDU type 7, reserved, PDU length 4
    00 00                                            # reserved, reserved
    02                                               # source 2: service-provider
    06                                               # reason 6: invalid-PDU-parameter-value
    """
)

VECTORS: list[tuple[bytes, PDU]] = [
    (
        A_ASSOCIATE_RQ,
        AAssociateRQ(
            called_ae_title="ANY-SCP",
            calling_ae_title="ECHOSCU",
            presentation_contexts=(
                PresentationContextRQItem(
                    context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_VR_LE,)
                ),
            ),
            user_information=USER_INFORMATION,
        ),
    ),
    (
        A_ASSOCIATE_AC,
        AAssociateAC(
            called_ae_title="ANY-SCP",
            calling_ae_title="ECHOSCU",
            presentation_contexts=(
                PresentationContextACItem(context_id=1, result=0, transfer_syntax=IMPLICIT_VR_LE),
                PresentationContextACItem(context_id=3, result=3, transfer_syntax=None),
            ),
            user_information=USER_INFORMATION,
        ),
    ),
    (A_ASSOCIATE_RJ, AAssociateRJ(result=1, source=1, reason=7)),
    (
        P_DATA_TF,
        PDataTF(
            pdvs=(
                PresentationDataValue(
                    context_id=1,
                    is_command=True,
                    is_last=True,
                    data=bytes.fromhex("000000000400000038000000"),
                ),
                PresentationDataValue(
                    context_id=3, is_command=False, is_last=False, data=b"\xde\xad\xbe\xef"
                ),
            )
        ),
    ),
    (A_RELEASE_RQ, AReleaseRQ()),
    (A_RELEASE_RP, AReleaseRP()),
    (A_ABORT, AAbort(source=2, reason=6)),
]
IDS = [type(value).__name__ for _, value in VECTORS]


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_encode_matches_vector(vector: bytes, value: PDU) -> None:
    assert value.encode() == vector
    assert encode_pdu(value) == vector


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_decode_vector(vector: bytes, value: PDU) -> None:
    assert decode(vector) == value
    assert type(value).decode_body(memoryview(vector)[6:]) == value


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_every_truncated_body_is_a_remote_error(vector: bytes, value: PDU) -> None:
    pdv_boundary = 6 + 18  # P-DATA-TF: the first PDV alone is a valid PDU
    for length in range(6, len(vector)):
        if vector is P_DATA_TF and length == pdv_boundary:
            continue
        with pytest.raises(RemoteProtocolError):
            decode_pdu(vector[0], vector[6:length])


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_pdus_are_frozen(vector: bytes, value: PDU) -> None:
    for field in fields(value):  # the release PDUs have none
        with pytest.raises(FrozenInstanceError):
            setattr(value, field.name, None)


# ---------------------------------------------------------------------------
# Cross-check with pynetdicom


def _peer_pdu(vector: bytes) -> Any:
    kind = {
        1: peer.A_ASSOCIATE_RQ,
        2: peer.A_ASSOCIATE_AC,
        3: peer.A_ASSOCIATE_RJ,
        4: peer.P_DATA_TF,
        5: peer.A_RELEASE_RQ,
        6: peer.A_RELEASE_RP,
        7: peer.A_ABORT_RQ,
    }[vector[0]]
    pdu = kind()
    pdu.decode(vector)
    return pdu


def test_pynetdicom_reads_our_associate_rq() -> None:
    pdu = _peer_pdu(A_ASSOCIATE_RQ)
    assert (pdu.called_ae_title, pdu.calling_ae_title) == ("ANY-SCP", "ECHOSCU")
    assert pdu.application_context_name == "1.2.840.10008.3.1.1.1"
    [context] = pdu.presentation_context
    assert (context.context_id, context.abstract_syntax) == (1, VERIFICATION)
    assert context.transfer_syntax == [IMPLICIT_VR_LE]
    assert pdu.encode() == A_ASSOCIATE_RQ


def test_pynetdicom_reads_our_associate_ac() -> None:
    pdu = _peer_pdu(A_ASSOCIATE_AC)
    assert pdu.reserved_aet == "ANY-SCP"
    results = [(c.context_id, c.result, c.transfer_syntax) for c in pdu.presentation_context]
    assert results == [(1, 0, IMPLICIT_VR_LE), (3, 3, None)]
    user_data = pdu.user_information.user_data
    assert user_data[0].maximum_length_received == 16384
    assert user_data[1].implementation_class_uid == DCMTK_364


def test_pynetdicom_reads_our_small_pdus() -> None:
    rj = _peer_pdu(A_ASSOCIATE_RJ)
    assert (rj.result, rj.source, rj.reason_diagnostic) == (1, 1, 7)
    pdata = _peer_pdu(P_DATA_TF)
    assert [
        (i.presentation_context_id, i.presentation_data_value)
        for i in pdata.presentation_data_value_items
    ] == [
        (1, bytes.fromhex("03000000000400000038000000")),
        (3, b"\x00\xde\xad\xbe\xef"),
    ]
    abort = _peer_pdu(A_ABORT)
    assert (abort.source, abort.reason_diagnostic) == (2, 6)
    for vector in (A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT):
        assert _peer_pdu(vector).encode() == vector


def test_we_read_pynetdicom_associate_built_from_primitives() -> None:
    """pynetdicom builds the PDU from its own primitive; we read its bytes."""
    primitive = _peer_pdu(A_ASSOCIATE_RQ).to_primitive()
    primitive.calling_ae_title = "STORESCU"
    encoded = peer.A_ASSOCIATE_RQ(primitive).encode()
    pdu = decode(encoded)
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.calling_ae_title == "STORESCU"
    assert pdu.presentation_contexts == VECTORS[0][1].presentation_contexts  # type: ignore[union-attr]
    assert pdu.user_information.maximum_length == 16384
    assert pdu.user_information.implementation_class_uid == DCMTK_364


# Captured from DCMTK 3.6.7 `echoscu -aet ECHOSCU -aec ANY-SCP`. Note the
# 0xFF that DCMTK leaves in a reserved byte of the presentation context item.
DCMTK_ECHOSCU_RQ = unhex(
    """
    01 00 00 00 00 cd                                # A-ASSOCIATE-RQ, PDU length 205
    00 01 00 00                                      # protocol version 1, reserved
    41 4e 59 2d 53 43 50 20 20 20 20 20 20 20 20 20  # called AE title "ANY-SCP"
    45 43 48 4f 53 43 55 20 20 20 20 20 20 20 20 20  # calling AE title "ECHOSCU"
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # 32 reserved bytes
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
    10 00 00 15                                      # application context item, length 21
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 33 2e  #   "1.2.840.10008.3."
    31 2e 31 2e 31                                   #   "1.1.1"
    20 00 00 2e                                      # presentation context (RQ), length 46
    01 00 ff 00                                      #   context ID 1, reserved 00 ff 00
    30 00 00 11                                      #   abstract syntax, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #     "1.2.840.10008.1."
    31                                               #     "1"
    40 00 00 11                                      #   transfer syntax, length 17
    31 2e 32 2e 38 34 30 2e 31 30 30 30 38 2e 31 2e  #     "1.2.840.10008.1."
    32                                               #     "2"
    50 00 00 3a                                      # user information item, length 58
    51 00 00 04 00 00 40 00                          #   maximum length 16384
    52 00 00 1b                                      #   implementation class UID, length 27
    31 2e 32 2e 32 37 36 2e 30 2e 37 32 33 30 30 31  #     "1.2.276.0.723001"
    30 2e 33 2e 30 2e 33 2e 36 2e 37                 #     "0.3.0.3.6.7"
    55 00 00 0f                                      #   implementation version name, length 15
    4f 46 46 49 53 5f 44 43 4d 54 4b 5f 33 36 37     #     "OFFIS_DCMTK_367"
    """
)


def test_dcmtk_request_reads_and_reserved_bytes_are_not_tested() -> None:
    pdu = decode(DCMTK_ECHOSCU_RQ)
    assert isinstance(pdu, AAssociateRQ)
    assert (pdu.called_ae_title, pdu.calling_ae_title) == ("ANY-SCP", "ECHOSCU")
    assert pdu.presentation_contexts == (
        PresentationContextRQItem(
            context_id=1, abstract_syntax=VERIFICATION, transfer_syntaxes=(IMPLICIT_VR_LE,)
        ),
    )
    assert pdu.user_information.implementation_version_name == "OFFIS_DCMTK_367"
    # We send reserved bytes as zero, so only that byte differs.
    assert pdu.encode() == DCMTK_ECHOSCU_RQ.replace(b"\x01\x00\xff\x00", b"\x01\x00\x00\x00")


# ---------------------------------------------------------------------------
# A-ASSOCIATE details


def test_ae_titles_leading_and_trailing_spaces_are_not_significant() -> None:
    """PS3.8 9.3.2: leading spaces are not significant."""
    shifted = bytearray(A_ASSOCIATE_RQ)
    shifted[10:26] = b"  ANY-SCP       "
    pdu = decode(bytes(shifted))
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.called_ae_title == "ANY-SCP"


@pytest.mark.parametrize(
    "title",
    [b" " * 16, b"AE\\TITLE        ", b"AE\x01TITLE        ", b"\xc3\xa9" + b" " * 14],
    ids=["spaces", "backslash", "control", "non-ascii"],
)
def test_bad_calling_ae_title_in_rq(title: bytes) -> None:
    bad = A_ASSOCIATE_RQ[:26] + title + A_ASSOCIATE_RQ[42:]
    with pytest.raises(RemoteProtocolError) as info:
        decode(bad)
    assert info.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_ac_ae_titles_are_reserved_and_not_tested() -> None:
    """PS3.8 9.3.3: AC title fields echo the request but are not tested."""
    garbage = A_ASSOCIATE_AC[:10] + b"\x00" * 16 + b"\xff" * 16 + A_ASSOCIATE_AC[42:]
    pdu = decode(garbage)
    assert isinstance(pdu, AAssociateAC)
    assert (pdu.called_ae_title, pdu.calling_ae_title) == ("", "")
    assert pdu.encode()[10:42] == b" " * 32


def test_items_may_come_in_any_order() -> None:
    rq = VECTORS[0][1]
    assert isinstance(rq, AAssociateRQ)
    body = A_ASSOCIATE_RQ[6:74] + rq.user_information.encode() + A_ASSOCIATE_RQ[74:-62]
    assert AAssociateRQ.decode_body(body) == rq


def _with_items(vector: bytes, extra: bytes) -> bytes:
    return vector[6:] + extra


def test_unknown_item_in_associate_is_unrecognized_parameter() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        AAssociateRQ.decode_body(_with_items(A_ASSOCIATE_RQ, b"\x60\x00\x00\x00"))
    assert info.value.abort_reason == AbortReason.UNRECOGNIZED_PDU_PARAMETER
    assert info.value.abort_source == AbortSource.SERVICE_PROVIDER


def test_misplaced_known_item_is_unexpected_parameter() -> None:
    ac_context = PresentationContextACItem(context_id=5, result=1, transfer_syntax=None).encode()
    with pytest.raises(RemoteProtocolError) as info:
        AAssociateRQ.decode_body(_with_items(A_ASSOCIATE_RQ, ac_context))
    assert info.value.abort_reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    # A sub-item at the PDU level is misplaced too.
    with pytest.raises(RemoteProtocolError) as info:
        AAssociateRQ.decode_body(_with_items(A_ASSOCIATE_RQ, b"\x51\x00\x00\x04\x00\x00\x00\x00"))
    assert info.value.abort_reason == AbortReason.UNEXPECTED_PDU_PARAMETER


def test_repeated_or_missing_mandatory_items() -> None:
    app = A_ASSOCIATE_RQ[74:99]
    with pytest.raises(RemoteProtocolError) as info:
        AAssociateRQ.decode_body(_with_items(A_ASSOCIATE_RQ, app))
    assert info.value.abort_reason == AbortReason.UNEXPECTED_PDU_PARAMETER
    without_user_information = A_ASSOCIATE_RQ[6:-62]
    with pytest.raises(RemoteProtocolError) as info:
        AAssociateRQ.decode_body(without_user_information)
    assert info.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    without_application_context = A_ASSOCIATE_RQ[6:74] + A_ASSOCIATE_RQ[99:]
    with pytest.raises(RemoteProtocolError):
        AAssociateRQ.decode_body(without_application_context)


def test_repeated_context_id_is_an_error() -> None:
    context = A_ASSOCIATE_RQ[99:149]
    with pytest.raises(RemoteProtocolError):
        AAssociateRQ.decode_body(_with_items(A_ASSOCIATE_RQ, context))


def test_protocol_version_is_carried_for_the_acceptor_to_judge() -> None:
    """PS3.8 9.3.2: an unsupported version is an A-ASSOCIATE-RJ, not a parse error."""
    version_2 = A_ASSOCIATE_RQ[:6] + b"\x00\x02" + A_ASSOCIATE_RQ[8:]
    pdu = decode(version_2)
    assert isinstance(pdu, AAssociateRQ)
    assert pdu.protocol_version == 2


def test_user_information_with_unknown_sub_items_is_accepted() -> None:
    user = UserInformationItem(
        sub_items=(
            *USER_INFORMATION.sub_items,
            UnknownSubItem(item_type=0x70, data=b"future"),
            UserIdentityRQSubItem(
                user_identity_type=1,
                positive_response_requested=True,
                primary_field=b"alice",
                secondary_field=b"",
            ),
            ScpScuRoleSelectionSubItem(sop_class_uid="1.2.3", scu_role=True, scp_role=True),
        )
    )
    rq = AAssociateRQ(
        called_ae_title="A",
        calling_ae_title="B",
        presentation_contexts=(),
        user_information=user,
    )
    decoded = decode(rq.encode())
    assert decoded == rq
    assert isinstance(decoded, AAssociateRQ)
    assert decoded.user_information.user_identity_rq is not None
    assert decoded.user_information.maximum_length == 16384


# ---------------------------------------------------------------------------
# P-DATA-TF


def test_pdata_decode_does_not_copy() -> None:
    body = P_DATA_TF[6:]
    pdu = PDataTF.decode_body(body)
    for pdv in pdu.pdvs:
        assert isinstance(pdv.data, memoryview)
        assert pdv.data.obj is body


def test_pdata_encode_segments_do_not_copy() -> None:
    data = bytes(range(256)) * 1024
    view = memoryview(bytearray(b"x" * 100))
    pdu = PDataTF(
        pdvs=(
            PresentationDataValue(context_id=1, is_command=False, is_last=False, data=data),
            PresentationDataValue(context_id=1, is_command=False, is_last=True, data=view),
        )
    )
    segments = pdu.encode_segments()
    assert segments[1] is data
    assert segments[3] is view
    assert segments[0] == unhex("04 00 00 04 00 70  00 04 00 02 01 00")
    assert segments[2] == unhex("00 00 00 66 01 02")
    assert b"".join(segments) == pdu.encode()


def test_pdata_encode_copies_the_data_once() -> None:
    data = bytes(256 * 1024)
    pdu = PDataTF(
        pdvs=(PresentationDataValue(context_id=1, is_command=False, is_last=True, data=data),)
    )
    tracemalloc.start()
    try:
        encoded = pdu.encode()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(encoded) == len(data) + 12
    assert peak < 1.5 * len(data)


@pytest.mark.parametrize(
    "body",
    [
        unhex("00 00 00 00 01 00   # PDV item length 0"),
        unhex("00 00 00 01 01 00   # PDV item length 1"),
        unhex("00 00 00 07 01 00 aa   # PDV item length 7, 3 bytes present"),
        unhex("ff ff ff ff 01 00 aa   # PDV item length 0xFFFFFFFF"),
        unhex("00 00 00 03 01 02 aa  00 00 00   # trailing partial PDV header"),
        unhex("00 00 00 03 02 02 aa   # even presentation context ID"),
        b"",
    ],
    ids=["length-0", "length-1", "past-end", "huge", "trailing", "even-context", "no-pdv"],
)
def test_bad_pdv(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        PDataTF.decode_body(body)
    assert info.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_empty_pdv_data_and_reserved_control_bits() -> None:
    """PS3.8 E.2: bits 2-7 of the message control header are not tested."""
    pdu = PDataTF.decode_body(unhex("00 00 00 02 01 fd   # no data, reserved bits set"))
    [pdv] = pdu.pdvs
    assert (pdv.context_id, pdv.is_command, pdv.is_last, bytes(pdv.data)) == (1, True, False, b"")
    assert pdv.message_control_header == 0x01


def test_pdata_needs_a_pdv() -> None:
    with pytest.raises(LocalProtocolError):
        PDataTF(pdvs=())


# ---------------------------------------------------------------------------
# The header check


def _check(header: bytes | memoryview, max_pdata_length: int = 16384) -> tuple[int, int]:
    return check_pdu_header(header, max_pdata_length=max_pdata_length, max_associate_length=1 << 20)


@pytest.mark.parametrize(("vector", "value"), VECTORS, ids=IDS)
def test_header_of_every_vector(vector: bytes, value: PDU) -> None:
    assert _check(vector[:6]) == (value.pdu_type, len(vector) - 6)
    assert _check(memoryview(vector)[:6]) == (value.pdu_type, len(vector) - 6)


INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (unhex("00 00 00 00 00 04"), AbortReason.UNRECOGNIZED_PDU),
        (unhex("08 00 00 00 00 04"), AbortReason.UNRECOGNIZED_PDU),
        (b"GET / ", AbortReason.UNRECOGNIZED_PDU),
        (unhex("16 03 01 02 00 01   # a TLS ClientHello"), AbortReason.UNRECOGNIZED_PDU),
        (unhex("04 00 ff ff ff ff   # P-DATA-TF of 4 GiB"), INVALID),
        (unhex("01 00 ff ff ff ff   # A-ASSOCIATE-RQ of 4 GiB"), INVALID),
        (unhex("04 00 00 00 40 01   # P-DATA-TF one byte over 16384"), INVALID),
        (unhex("01 00 00 10 00 01   # A-ASSOCIATE-RQ one byte over 1 MiB"), INVALID),
        (unhex("02 00 00 00 00 43   # A-ASSOCIATE-AC shorter than its fixed fields"), INVALID),
        (unhex("03 00 00 00 00 05   # A-ASSOCIATE-RJ is 4 bytes"), INVALID),
        (unhex("05 00 00 00 00 00   # A-RELEASE-RQ is 4 bytes"), INVALID),
        (unhex("06 00 00 00 00 08   # A-RELEASE-RP is 4 bytes"), INVALID),
        (unhex("07 00 00 00 00 03   # A-ABORT is 4 bytes"), INVALID),
        (unhex("04 00 00 00 00 05   # P-DATA-TF too short for a PDV"), INVALID),
    ],
)  # fmt: skip
def test_header_errors(header: bytes, reason: AbortReason) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        _check(header)
    assert info.value.abort_reason == reason
    assert info.value.abort_source == AbortSource.SERVICE_PROVIDER


def test_header_limits_are_inclusive_and_zero_is_unlimited() -> None:
    assert _check(unhex("04 00 00 00 40 00")) == (4, 16384)
    assert _check(unhex("04 00 ff ff ff ff"), max_pdata_length=0) == (4, 0xFFFFFFFF)
    assert _check(unhex("01 00 00 10 00 00")) == (1, 1 << 20)


def test_header_of_wrong_size_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        _check(b"\x04\x00\x00\x00")


def test_decode_pdu_of_unknown_type() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_pdu(0x47, b"ET / HTTP/1.1\r\n")
    assert info.value.abort_reason == AbortReason.UNRECOGNIZED_PDU


# ---------------------------------------------------------------------------
# RJ, abort, release


def test_reject_values_follow_table_9_21() -> None:
    assert AAssociateRJ(
        result=RejectResult.TRANSIENT, source=RejectSource.SERVICE_PROVIDER_PRESENTATION, reason=2
    )
    for result, source, reason in [(3, 1, 1), (1, 4, 1), (1, 2, 3), (1, 1, 0), (1, 3, 8)]:
        with pytest.raises(LocalProtocolError):
            AAssociateRJ(result=result, source=source, reason=reason)
        with pytest.raises(RemoteProtocolError):
            AAssociateRJ.decode_body(bytes((0, result, source, reason)))


def test_abort_values_follow_table_9_26() -> None:
    assert AAbort() == AAbort(source=0, reason=0)
    assert AAbort.decode_body(b"\x00\x00\x00\x2a").reason == 42  # service-user: not significant
    for source, reason in [(3, 0), (2, 7)]:
        with pytest.raises(RemoteProtocolError):
            AAbort.decode_body(bytes((0, 0, source, reason)))


def test_release_reserved_bytes_are_not_tested() -> None:
    assert AReleaseRQ.decode_body(b"\xff\xff\xff\xff") == AReleaseRQ()
    assert AReleaseRP.decode_body(b"\x01\x02\x03\x04") == AReleaseRP()
    with pytest.raises(RemoteProtocolError):
        AReleaseRP.decode_body(b"\x00\x00\x00")


_ASSOCIATE_DEFAULTS: dict[str, Any] = {
    "called_ae_title": "A",
    "calling_ae_title": "B",
    "presentation_contexts": (),
    "user_information": USER_INFORMATION,
}


def _rq(**fields: Any) -> AAssociateRQ:
    return AAssociateRQ(**(_ASSOCIATE_DEFAULTS | fields))


def _ac(**fields: Any) -> AAssociateAC:
    return AAssociateAC(**(_ASSOCIATE_DEFAULTS | fields))


@pytest.mark.parametrize(
    "build",
    [
        lambda: _rq(called_ae_title=""),
        lambda: _rq(called_ae_title="A" * 17),
        lambda: _rq(called_ae_title=" A"),
        lambda: _rq(calling_ae_title="B\\"),
        lambda: _rq(calling_ae_title="é"),
        lambda: _rq(presentation_contexts=[]),
        lambda: _rq(protocol_version=0x10000),
        lambda: _rq(application_context_name=""),
        lambda: _ac(called_ae_title="A\t"),
        lambda: PresentationDataValue(context_id=1, is_command=True, is_last=True, data="text"),  # type: ignore[arg-type]
        lambda: PresentationDataValue(context_id=0, is_command=True, is_last=True, data=b""),
        lambda: PresentationDataValue(context_id=1, is_command=1, is_last=True, data=b""),  # type: ignore[arg-type]
        lambda: AAbort(source=2, reason=7),
    ],
)
def test_construction_rejects_bad_values(build: Any) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_too_many_presentation_contexts() -> None:
    contexts = tuple(
        PresentationContextRQItem(context_id=1, abstract_syntax="1.2", transfer_syntaxes=("1.2",))
        for _ in range(129)
    )
    with pytest.raises(LocalProtocolError):
        AAssociateRQ(
            called_ae_title="A",
            calling_ae_title="B",
            presentation_contexts=contexts,
            user_information=USER_INFORMATION,
        )


# ---------------------------------------------------------------------------
# Property-based round trips

uids = st.lists(st.integers(0, 99999), min_size=2, max_size=10).map(
    lambda parts: ".".join(map(str, parts))
)
ae_titles = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"),
    min_size=1,
    max_size=16,
).filter(lambda title: title == title.strip(" ") and title != "")
user_information = st.lists(
    st.one_of(
        st.builds(MaximumLengthSubItem, maximum_length=st.integers(0, 0xFFFFFFFF)),
        st.builds(ImplementationClassUIDSubItem, uid=uids),
        st.builds(
            ScpScuRoleSelectionSubItem,
            sop_class_uid=uids,
            scu_role=st.booleans(),
            scp_role=st.booleans(),
        ),
        st.builds(UnknownSubItem, item_type=st.integers(0x5A, 0xFF), data=st.binary(max_size=20)),
    ),
    max_size=5,
).map(lambda subs: UserInformationItem(sub_items=tuple(subs)))


def _unique_contexts(contexts: list[Any]) -> tuple[Any, ...]:
    return tuple({context.context_id: context for context in contexts}.values())


rq_contexts = st.lists(rq_context_items(uids, max_syntaxes=3), max_size=6).map(_unique_contexts)
ac_contexts = st.lists(ac_context_items(uids), max_size=6).map(_unique_contexts)
pdvs = st.builds(
    PresentationDataValue,
    context_id=context_ids,
    is_command=st.booleans(),
    is_last=st.booleans(),
    data=st.binary(max_size=64),
)
pdata = st.lists(pdvs, min_size=1, max_size=4).map(lambda items: PDataTF(pdvs=tuple(items)))
reject_triples = st.sampled_from(
    [
        (result, source, reason)
        for result in (1, 2)
        for source, reasons in ((1, range(1, 11)), (2, range(1, 3)), (3, range(8)))
        for reason in reasons
    ]
)
pdus: st.SearchStrategy[PDU] = st.one_of(
    st.builds(
        AAssociateRQ,
        protocol_version=st.integers(0, 0xFFFF),
        called_ae_title=ae_titles,
        calling_ae_title=ae_titles,
        application_context_name=uids,
        presentation_contexts=rq_contexts,
        user_information=user_information,
    ),
    st.builds(
        AAssociateAC,
        protocol_version=st.integers(0, 0xFFFF),
        called_ae_title=ae_titles | st.just(""),
        calling_ae_title=ae_titles | st.just(""),
        application_context_name=uids,
        presentation_contexts=ac_contexts,
        user_information=user_information,
    ),
    reject_triples.map(lambda rj: AAssociateRJ(result=rj[0], source=rj[1], reason=rj[2])),
    pdata,
    st.just(AReleaseRQ()),
    st.just(AReleaseRP()),
    st.builds(AAbort, source=st.sampled_from([0, 1]), reason=st.integers(0, 255)),
    st.builds(AAbort, source=st.just(2), reason=st.integers(0, 6)),
)  # fmt: skip


@given(pdus)
def test_decode_of_encode_is_identity(pdu: PDU) -> None:
    encoded = pdu.encode()
    decoded = decode(encoded)
    assert decoded == pdu
    assert decoded.encode() == encoded


@given(pdata)
def test_segments_join_to_the_encoding(pdu: PDataTF) -> None:
    assert b"".join(pdu.encode_segments()) == pdu.encode()


@given(pdus)
def test_pynetdicom_reads_what_we_write(pdu: PDU) -> None:
    if isinstance(pdu, AAssociateRQ | AAssociateAC):
        return  # covered field by field above; pynetdicom validates UIDs differently
    assert _peer_pdu(pdu.encode()).encode() == pdu.encode()


@given(pdata)
def test_decoded_pdvs_are_what_the_public_constructor_builds(pdu: PDataTF) -> None:
    # decode_body builds its PDVs without the constructor's checks (it made them):
    # the same fields, of the same types, as a PDV built field by field.
    for decoded, built in zip(PDataTF.decode_body(pdu.encode()[6:]).pdvs, pdu.pdvs, strict=True):
        rebuilt = PresentationDataValue(
            context_id=decoded.context_id,
            is_command=decoded.is_command,
            is_last=decoded.is_last,
            data=decoded.data,
        )
        assert decoded == rebuilt == built
        assert [type(getattr(decoded, f.name)) for f in fields(decoded)] == [
            int,
            bool,
            bool,
            memoryview,
        ]


@pytest.mark.parametrize("context_id", [0, 2, 254])
def test_an_even_context_id_is_refused_as_the_constructor_refuses_it(context_id: int) -> None:
    with pytest.raises(LocalProtocolError) as built:
        PresentationDataValue(context_id=context_id, is_command=True, is_last=True, data=b"")
    body = bytes([0, 0, 0, 2, context_id, 3])  # PS3.8 9.3.5.1: length 2, context, control
    with pytest.raises(RemoteProtocolError) as decoded:
        PDataTF.decode_body(body)
    assert str(decoded.value) == str(built.value)
    assert decoded.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE
