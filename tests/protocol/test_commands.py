"""DIMSE command sets: byte vectors, pynetdicom cross-checks, round trips, malformed input.

Also the status categories of dicombus.protocol.status.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import pytest
from dicombus.protocol import commands as c
from dicombus.protocol import status
from dicombus.protocol.commands import (
    NO_DATASET,
    CommandField,
    CommandSet,
    check_request,
    decode_command_set,
    encode_command_set,
)
from dicombus.protocol.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from dicombus.protocol.limits import MAX_COMMAND_SET_LENGTH
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pynetdicom import dimse_messages, dimse_primitives
from pynetdicom.dsutils import decode as pynetdicom_decode
from pynetdicom.dsutils import encode as pynetdicom_encode

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"  # 25 characters: padded with NUL
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
MPPS = "1.2.840.10008.3.1.2.3.3"
INSTANCE = "1.2.3.4.5"  # 9 characters: padded with NUL

# C-ECHO-RQ, Message ID 1, as PS3.7 Table 9.3-12 lays it out (Implicit VR LE).
C_ECHO_RQ_BYTES = bytes.fromhex(
    # tag         length      value
    "0000 0000   04000000    38000000"  # (0000,0000) UL Command Group Length = 56
    "0000 0200   12000000"  # (0000,0002) UI Affected SOP Class UID, 18 bytes:
    "  312e322e3834302e31303030382e312e31 00"  # "1.2.840.10008.1.1" + NUL pad
    "0000 0001   02000000    3000"  # (0000,0100) US Command Field = 0030H C-ECHO-RQ
    "0000 1001   02000000    0100"  # (0000,0110) US Message ID = 1
    "0000 0008   02000000    0101"  # (0000,0800) US Command Data Set Type = 0101H none
)

# C-STORE-RQ, Message ID 7, CT Image Storage, as PS3.7 Table 9.3-1 lays it out.
C_STORE_RQ_BYTES = bytes.fromhex(
    "0000 0000   04000000    5c000000"  # (0000,0000) UL Command Group Length = 92
    "0000 0200   1a000000"  # (0000,0002) UI Affected SOP Class UID, 26 bytes:
    "  312e322e3834302e31303030382e352e312e342e312e312e32 00"  # CT Image Storage + NUL
    "0000 0001   02000000    0100"  # (0000,0100) US Command Field = 0001H C-STORE-RQ
    "0000 1001   02000000    0700"  # (0000,0110) US Message ID = 7
    "0000 0007   02000000    0000"  # (0000,0700) US Priority = MEDIUM
    "0000 0008   02000000    0100"  # (0000,0800) US Command Data Set Type = 0001H present
    "0000 0010   0a000000"  # (0000,1000) UI Affected SOP Instance UID, 10 bytes:
    "  312e322e332e342e35 00"  # "1.2.3.4.5" + NUL
)


def _element(element: int, value: bytes, group: int = 0) -> bytes:
    return struct.pack("<HHI", group, element, len(value)) + value


def _us(element: int, value: int) -> bytes:
    return _element(element, struct.pack("<H", value))


def _with_group_length(body: bytes) -> bytes:
    return _element(0x0000, struct.pack("<I", len(body))) + body


# ----------------------------------------------------------- byte vectors


def test_c_echo_rq_vector() -> None:
    assert encode_command_set(c.c_echo_rq(1)) == C_ECHO_RQ_BYTES
    decoded = decode_command_set(C_ECHO_RQ_BYTES)
    assert decoded == c.c_echo_rq(1)
    assert decoded.command_field is CommandField.C_ECHO_RQ
    assert not decoded.has_dataset


def test_c_store_rq_vector() -> None:
    command = c.c_store_rq(7, CT_IMAGE_STORAGE, INSTANCE)
    assert encode_command_set(command) == C_STORE_RQ_BYTES
    assert decode_command_set(C_STORE_RQ_BYTES) == command
    assert decode_command_set(memoryview(C_STORE_RQ_BYTES)) == command
    assert decode_command_set(bytearray(C_STORE_RQ_BYTES)) == command
    assert command.has_dataset
    assert command.CommandGroupLength == 92


# ------------------------------------------------ pynetdicom cross-check

_DATASET_BEARING = dimse_messages._DATASET_KEYWORDS


def _pynetdicom_bytes(
    message: str, primitive: type[Any], *, dataset: bool = False, **attrs: Any
) -> bytes:
    """The command set pynetdicom encodes for ``message`` with ``attrs``."""
    prim = primitive()
    for keyword, value in attrs.items():
        setattr(prim, keyword, value)
    if dataset:
        setattr(prim, _DATASET_BEARING[message], BytesIO(b"\x08\x00"))
    msg = getattr(dimse_messages, message)()
    msg.primitive_to_message(prim)
    encoded = pynetdicom_encode(msg.command_set, True, True)
    assert encoded is not None
    return encoded


P = dimse_primitives
CROSS_CHECK_CASES: list[tuple[CommandSet, str, type[Any], bool, dict[str, Any]]] = [
    (
        c.c_echo_rq(1),
        "C_ECHO_RQ",
        P.C_ECHO,
        False,
        {"MessageID": 1, "AffectedSOPClassUID": "1.2.840.10008.1.1"},
    ),
    (
        c.c_echo_rsp(1, 0x0000, error_comment="fine"),
        "C_ECHO_RSP",
        P.C_ECHO,
        False,
        {
            "MessageIDBeingRespondedTo": 1,
            "AffectedSOPClassUID": "1.2.840.10008.1.1",
            "Status": 0,
            "ErrorComment": "fine",
        },
    ),
    (
        c.c_store_rq(65535, CT_IMAGE_STORAGE, INSTANCE, c.Priority.HIGH, "MOVESCU", 12),
        "C_STORE_RQ",
        P.C_STORE,
        True,
        {
            "MessageID": 65535,
            "AffectedSOPClassUID": CT_IMAGE_STORAGE,
            "AffectedSOPInstanceUID": INSTANCE,
            "Priority": 1,
            "MoveOriginatorApplicationEntityTitle": "MOVESCU",
            "MoveOriginatorMessageID": 12,
        },
    ),
    (
        c.c_store_rsp(
            5,
            0xA700,
            CT_IMAGE_STORAGE,
            INSTANCE,
            offending_element=[0x00100010, 0x7FE00010],
            error_comment="Out of disk",
        ),
        "C_STORE_RSP",
        P.C_STORE,
        False,
        {
            "MessageIDBeingRespondedTo": 5,
            "Status": 0xA700,
            "AffectedSOPClassUID": CT_IMAGE_STORAGE,
            "AffectedSOPInstanceUID": INSTANCE,
            "OffendingElement": [0x00100010, 0x7FE00010],
            "ErrorComment": "Out of disk",
        },
    ),
    (
        c.c_find_rq(2, PATIENT_ROOT_FIND, c.Priority.LOW),
        "C_FIND_RQ",
        P.C_FIND,
        True,
        {"MessageID": 2, "AffectedSOPClassUID": PATIENT_ROOT_FIND, "Priority": 2},
    ),
    (
        c.c_find_rsp(2, 0xFF00, PATIENT_ROOT_FIND, has_dataset=True),
        "C_FIND_RSP",
        P.C_FIND,
        True,
        {
            "MessageIDBeingRespondedTo": 2,
            "AffectedSOPClassUID": PATIENT_ROOT_FIND,
            "Status": 0xFF00,
        },
    ),
    (
        c.c_find_rsp(2, 0x0000, PATIENT_ROOT_FIND),
        "C_FIND_RSP",
        P.C_FIND,
        False,
        {"MessageIDBeingRespondedTo": 2, "AffectedSOPClassUID": PATIENT_ROOT_FIND, "Status": 0},
    ),
    (
        c.c_get_rq(3, PATIENT_ROOT_GET),
        "C_GET_RQ",
        P.C_GET,
        True,
        {"MessageID": 3, "AffectedSOPClassUID": PATIENT_ROOT_GET, "Priority": 0},
    ),
    (
        c.c_get_rsp(
            3,
            0xFF00,
            PATIENT_ROOT_GET,
            remaining_suboperations=4,
            completed_suboperations=3,
            failed_suboperations=2,
            warning_suboperations=1,
        ),
        "C_GET_RSP",
        P.C_GET,
        False,
        {
            "MessageIDBeingRespondedTo": 3,
            "AffectedSOPClassUID": PATIENT_ROOT_GET,
            "Status": 0xFF00,
            "NumberOfRemainingSuboperations": 4,
            "NumberOfCompletedSuboperations": 3,
            "NumberOfFailedSuboperations": 2,
            "NumberOfWarningSuboperations": 1,
        },
    ),
    (
        c.c_move_rq(4, PATIENT_ROOT_MOVE, "STORESCP"),
        "C_MOVE_RQ",
        P.C_MOVE,
        True,
        {
            "MessageID": 4,
            "AffectedSOPClassUID": PATIENT_ROOT_MOVE,
            "Priority": 0,
            "MoveDestination": "STORESCP",
        },
    ),
    (
        c.c_move_rsp(
            4,
            0xB000,
            PATIENT_ROOT_MOVE,
            remaining_suboperations=0,
            completed_suboperations=9,
            failed_suboperations=1,
            warning_suboperations=0,
            has_dataset=True,
            error_comment="one failed",
        ),
        "C_MOVE_RSP",
        P.C_MOVE,
        True,
        {
            "MessageIDBeingRespondedTo": 4,
            "AffectedSOPClassUID": PATIENT_ROOT_MOVE,
            "Status": 0xB000,
            "NumberOfRemainingSuboperations": 0,
            "NumberOfCompletedSuboperations": 9,
            "NumberOfFailedSuboperations": 1,
            "NumberOfWarningSuboperations": 0,
            "ErrorComment": "one failed",
        },
    ),
    (
        c.c_cancel_rq(4),
        "C_CANCEL_RQ",
        P.C_CANCEL,
        False,
        {"MessageIDBeingRespondedTo": 4},
    ),
    (
        c.n_event_report_rq(
            5, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, 1, has_dataset=True
        ),
        "N_EVENT_REPORT_RQ",
        P.N_EVENT_REPORT,
        True,
        {
            "MessageID": 5,
            "AffectedSOPClassUID": STORAGE_COMMITMENT,
            "AffectedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
            "EventTypeID": 1,
        },
    ),
    (
        c.n_event_report_rsp(
            5, 0x0113, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, event_type_id=1, error_id=7
        ),
        "N_EVENT_REPORT_RSP",
        P.N_EVENT_REPORT,
        False,
        {
            "MessageIDBeingRespondedTo": 5,
            "Status": 0x0113,
            "AffectedSOPClassUID": STORAGE_COMMITMENT,
            "AffectedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
            "EventTypeID": 1,
            "ErrorID": 7,
        },
    ),
    (
        c.n_get_rq(6, MPPS, INSTANCE, [0x00100010, 0x00100020]),
        "N_GET_RQ",
        P.N_GET,
        False,
        {
            "MessageID": 6,
            "RequestedSOPClassUID": MPPS,
            "RequestedSOPInstanceUID": INSTANCE,
            "AttributeIdentifierList": [0x00100010, 0x00100020],
        },
    ),
    (
        c.n_get_rsp(6, 0x0000, MPPS, INSTANCE, has_dataset=True),
        "N_GET_RSP",
        P.N_GET,
        True,
        {
            "MessageIDBeingRespondedTo": 6,
            "Status": 0,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
        },
    ),
    (
        c.n_set_rq(7, MPPS, INSTANCE),
        "N_SET_RQ",
        P.N_SET,
        True,
        {"MessageID": 7, "RequestedSOPClassUID": MPPS, "RequestedSOPInstanceUID": INSTANCE},
    ),
    (
        c.n_set_rsp(
            7, 0x0107, MPPS, INSTANCE, attribute_identifier_list=[0x00081030], error_comment="x"
        ),
        "N_SET_RSP",
        P.N_SET,
        False,
        {
            "MessageIDBeingRespondedTo": 7,
            "Status": 0x0107,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
            "AttributeIdentifierList": [0x00081030],
            "ErrorComment": "x",
        },
    ),
    (
        c.n_action_rq(8, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, 1, has_dataset=True),
        "N_ACTION_RQ",
        P.N_ACTION,
        True,
        {
            "MessageID": 8,
            "RequestedSOPClassUID": STORAGE_COMMITMENT,
            "RequestedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
            "ActionTypeID": 1,
        },
    ),
    (
        c.n_action_rsp(
            8, 0x0000, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, action_type_id=1
        ),
        "N_ACTION_RSP",
        P.N_ACTION,
        False,
        {
            "MessageIDBeingRespondedTo": 8,
            "Status": 0,
            "AffectedSOPClassUID": STORAGE_COMMITMENT,
            "AffectedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
            "ActionTypeID": 1,
        },
    ),
    (
        c.n_create_rq(9, MPPS, INSTANCE, has_dataset=True),
        "N_CREATE_RQ",
        P.N_CREATE,
        True,
        {"MessageID": 9, "AffectedSOPClassUID": MPPS, "AffectedSOPInstanceUID": INSTANCE},
    ),
    (
        c.n_create_rsp(9, 0x0000, MPPS, INSTANCE, has_dataset=True),
        "N_CREATE_RSP",
        P.N_CREATE,
        True,
        {
            "MessageIDBeingRespondedTo": 9,
            "Status": 0,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
        },
    ),
    (
        c.n_delete_rq(10, MPPS, INSTANCE),
        "N_DELETE_RQ",
        P.N_DELETE,
        False,
        {"MessageID": 10, "RequestedSOPClassUID": MPPS, "RequestedSOPInstanceUID": INSTANCE},
    ),
    (
        c.n_delete_rsp(10, 0x0112, MPPS, INSTANCE, error_comment="gone", error_id=3),
        "N_DELETE_RSP",
        P.N_DELETE,
        False,
        {
            "MessageIDBeingRespondedTo": 10,
            "Status": 0x0112,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
            "ErrorComment": "gone",
            "ErrorID": 3,
        },
    ),
]


def test_cross_check_covers_every_message_type() -> None:
    assert {case[0].command_field for case in CROSS_CHECK_CASES} == set(CommandField)


@pytest.mark.parametrize(
    ("ours", "message", "primitive", "dataset", "attrs"),
    CROSS_CHECK_CASES,
    ids=[f"{case[1]}-{i}" for i, case in enumerate(CROSS_CHECK_CASES)],
)
def test_matches_pynetdicom_byte_for_byte(
    ours: CommandSet, message: str, primitive: type[Any], dataset: bool, attrs: dict[str, Any]
) -> None:
    theirs = _pynetdicom_bytes(message, primitive, dataset=dataset, **attrs)
    encoded = encode_command_set(ours)
    assert encoded == theirs
    assert decode_command_set(theirs) == ours
    assert ours.command_field.message_name == message.replace("_", "-")
    # The pydicom view equals what pydicom itself decodes from our bytes.
    assert ours.to_dataset() == pynetdicom_decode(BytesIO(encoded), True, True)


# ----------------------------------------------------------- decoding


def test_decode_strips_padding_and_skips_retired_elements() -> None:
    body = b"".join(
        [
            _element(0x0001, struct.pack("<I", 99)),  # retired (0000,0001) Length to End
            _element(0x0002, b"1.2.3 \x00\x00 "),  # UI padded with NUL and space
            _us(0x0100, 0x8021),
            _us(0x0120, 4),
            _element(0x0600, b"  DEST  "),  # AE: leading/trailing spaces not significant
            _us(0x0800, NO_DATASET),
            _us(0x0900, 0xA801),
            _element(0x0902, b"caf\xe9 "),  # LO: latin-1 trailing space
            _element(0x4000, b"RETIRED "),  # retired (0000,4000) Dialog Receiver
            _element(0x5010, b"x"),  # retired (0000,5010), odd length
        ]
    )
    command = decode_command_set(_with_group_length(body))
    assert command.AffectedSOPClassUID == "1.2.3"
    assert command.MoveDestination == "DEST"
    assert command.ErrorComment == "café"
    assert command.command_field is CommandField.C_MOVE_RSP
    assert command.Status == 0xA801
    assert command.keys() == [
        "AffectedSOPClassUID",
        "CommandField",
        "MessageIDBeingRespondedTo",
        "MoveDestination",
        "CommandDataSetType",
        "Status",
        "ErrorComment",
    ]


def test_decode_accepts_missing_group_length_any_order_and_empty_values() -> None:
    data = b"".join(
        [
            _us(0x0800, NO_DATASET),
            _us(0x0100, 0x0030),
            _element(0x0002, b""),
            _element(0x1005, b""),
            _us(0x0110, 3),
        ]
    )
    command = decode_command_set(data)
    assert command.MessageID == 3
    assert command.AffectedSOPClassUID == ""
    assert command.AttributeIdentifierList == []


def _remote_error(data: bytes | bytearray) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_command_set(data)
    assert info.value.abort_reason is AbortReason.INVALID_PDU_PARAMETER_VALUE
    return info.value


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (C_ECHO_RQ_BYTES[:-1], "past the end"),
        (C_ECHO_RQ_BYTES[:-10] + b"\x00\x00\x00", "too few for a header"),
        (C_ECHO_RQ_BYTES + _element(0x0010, b"AB", group=0x0008), "outside group 0000"),
        (_with_group_length(_us(0x0100, 1)[:-2] + b"\x02"), "past the end"),
        (_element(0x0100, b"\x30\x00\x00\x00") + _us(0x0800, NO_DATASET), "not 2"),
        (_element(0x0100, b"") + _us(0x0800, NO_DATASET), "not 2"),
        (_element(0x0000, b"\x00\x00") + _us(0x0100, 0x30), "not 4"),
        (_us(0x0100, 0x30) + _element(0x0901, b"\x10\x00\x10\x00\x00\x00"), "multiple of 4"),
        (_us(0x0800, NO_DATASET) + _us(0x0110, 1), "no CommandField"),
        (_us(0x0100, 0x0031), "not a DIMSE command"),
        (_us(0x0100, 0x30) + _us(0x0110, 1) + _us(0x0110, 2), "twice"),
        (_us(0x0100, 0x30) + _element(0x0002, b"1.2.\xff"), "non-ASCII"),
        (_us(0x0100, 0x30) + _element(0x0600, b"\x80AE"), "non-ASCII"),
        (_us(0x0100, 0x30) + _element(0x0600, b"A" * 18), "limit is 16"),
        (_us(0x0100, 0x30) + _element(0x1000, b"1." * 33), "limit is 64"),
        (_us(0x0100, 0x30) + struct.pack("<HHI", 0, 0x0002, 0xFFFFFFFF), "past the end"),
        (b"", "no CommandField"),
    ],
)
def test_decode_rejects_malformed(data: bytes, why: str) -> None:
    assert why in str(_remote_error(data))


def test_decode_rejects_huge_command_set_before_parsing() -> None:
    padding = _element(0x4000, bytes(MAX_COMMAND_SET_LENGTH))
    error = _remote_error(C_ECHO_RQ_BYTES + padding)
    assert "limit" in str(error)


def test_decode_each_truncation_of_a_real_command_set() -> None:
    # Every prefix is either a shorter valid set (cut at an element boundary
    # after CommandField) or a RemoteProtocolError; never anything else.
    for end in range(len(C_STORE_RQ_BYTES)):
        try:
            command = decode_command_set(C_STORE_RQ_BYTES[:end])
        except RemoteProtocolError:
            continue
        assert command.command_field is CommandField.C_STORE_RQ


# ----------------------------------------------------------- encoding


def test_encode_pads_odd_values() -> None:
    command = CommandSet(
        CommandField=CommandField.C_MOVE_RQ, MoveDestination="ABC", ErrorComment="odd"
    )
    data = encode_command_set(command)
    assert _element(0x0600, b"ABC ") in data
    assert _element(0x0902, b"odd ") in data
    assert _element(0x0002, b"1.2.3\x00") in encode_command_set(
        CommandSet(CommandField=1, AffectedSOPClassUID="1.2.3")
    )


@pytest.mark.parametrize(
    ("elements", "why"),
    [
        ({"MessageID": 70000}, "MessageID"),
        ({"MessageID": -1}, "MessageID"),
        ({"MessageID": "1"}, "MessageID"),
        ({"AffectedSOPClassUID": "1." * 33}, "AffectedSOPClassUID"),
        ({"MoveDestination": "A" * 17}, "MoveDestination"),
        ({"ErrorComment": "x" * 65}, "ErrorComment"),
        ({"ErrorComment": "snow ☃"}, "ErrorComment"),
        ({"AffectedSOPInstanceUID": "1.2.é"}, "AffectedSOPInstanceUID"),
        ({"OffendingElement": [1 << 32]}, "OffendingElement"),
        ({"OffendingElement": 0x00100010}, "OffendingElement"),
    ],
)
def test_encode_rejects_bad_values_as_local_errors(elements: dict[str, Any], why: str) -> None:
    with pytest.raises(LocalProtocolError, match=why):
        encode_command_set(CommandSet(CommandField=1, **elements))


# ----------------------------------------------------------- CommandSet


def test_command_set_record_behaviour() -> None:
    command = c.c_store_rsp(3, 0x0000, CT_IMAGE_STORAGE, INSTANCE)
    assert command.ErrorComment is None
    assert "Status" in command
    assert "ErrorComment" not in command
    assert "Nonsense" not in command
    command.ErrorComment = "hello"
    assert "ErrorComment" in command
    command.ErrorComment = None
    assert command == c.c_store_rsp(3, 0x0000, CT_IMAGE_STORAGE, INSTANCE)
    assert command != c.c_store_rsp(3, 0x0001, CT_IMAGE_STORAGE, INSTANCE)
    assert command != "not a command"
    assert repr(command).startswith("CommandSet(AffectedSOPClassUID='1.2.840.10008.5.1.4.1.1.2'")
    with pytest.raises(TypeError):
        hash(command)
    with pytest.raises(TypeError, match="Stauts"):
        CommandSet(Stauts=0)
    with pytest.raises(AttributeError):
        command.Stauts = 0  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        command.CommandGroupLength = 4  # type: ignore[misc]


def test_command_field_property_and_dataset_type() -> None:
    command = CommandSet(CommandField=0x8001, CommandDataSetType=0x0102)
    assert command.command_field is CommandField.C_STORE_RSP
    assert command.has_dataset
    assert not CommandSet().has_dataset
    with pytest.raises(LocalProtocolError):
        _ = CommandSet().command_field
    with pytest.raises(LocalProtocolError):
        _ = CommandSet(CommandField=0x7777).command_field


def test_to_dataset_with_selected_keywords() -> None:
    rsp = c.c_store_rsp(3, 0xC000, error_comment="bad", offending_element=[0x00100010])
    ds = rsp.to_dataset(("Status", "ErrorComment", "OffendingElement", "ErrorID"))
    expected = Dataset()
    expected.Status = 0xC000
    expected.ErrorComment = "bad"
    expected.OffendingElement = [0x00100010]
    assert ds == expected
    assert "CommandGroupLength" not in ds


@pytest.mark.parametrize(
    ("field", "request_", "response", "primitive"),
    [
        (CommandField.C_STORE_RQ, True, False, "C-STORE"),
        (CommandField.C_STORE_RSP, False, True, "C-STORE"),
        (CommandField.C_CANCEL_RQ, True, False, "C-CANCEL"),
        (CommandField.N_EVENT_REPORT_RSP, False, True, "N-EVENT-REPORT"),
    ],
)
def test_command_field_enum(
    field: CommandField, request_: bool, response: bool, primitive: str
) -> None:
    assert field.is_request is request_
    assert field.is_response is response
    assert field.primitive_name == primitive


# ----------------------------------------------------------- check_request


@pytest.mark.parametrize(
    "request_",
    [case[0] for case in CROSS_CHECK_CASES if case[0].command_field.is_request],
    ids=lambda command: command.command_field.message_name,
)
def test_check_request_accepts_built_requests(request_: CommandSet) -> None:
    check_request(request_)


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (CommandSet(CommandField=1, CommandDataSetType=1, Priority=0), "MessageID"),
        (
            CommandSet(
                CommandField=1,
                MessageID=1,
                AffectedSOPClassUID=CT_IMAGE_STORAGE,
                Priority=0,
                CommandDataSetType=1,
            ),
            "AffectedSOPInstanceUID",
        ),
        (
            CommandSet(CommandField=0x30, MessageID=1, AffectedSOPClassUID="1.2"),
            "CommandDataSetType",
        ),
        (
            CommandSet(
                CommandField=CommandField.C_MOVE_RQ,
                MessageID=1,
                AffectedSOPClassUID=PATIENT_ROOT_MOVE,
                Priority=0,
                CommandDataSetType=1,
            ),
            "MoveDestination",
        ),
        (CommandSet(CommandField=0x0FFF, CommandDataSetType=NO_DATASET), "MessageIDBeingResp"),
        (
            CommandSet(
                CommandField=CommandField.N_ACTION_RQ,
                MessageID=1,
                RequestedSOPClassUID=MPPS,
                RequestedSOPInstanceUID=INSTANCE,
                CommandDataSetType=NO_DATASET,
            ),
            "ActionTypeID",
        ),
    ],
)
def test_check_request_rejects_missing_elements(command: CommandSet, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        check_request(command)


def test_check_request_dataset_presence() -> None:
    store = c.c_store_rq(1, CT_IMAGE_STORAGE, INSTANCE)
    store.CommandDataSetType = NO_DATASET
    with pytest.raises(RemoteProtocolError, match="without a data set"):
        check_request(store)
    echo = c.c_echo_rq(1)
    echo.CommandDataSetType = 0x0102
    with pytest.raises(RemoteProtocolError, match="with a data set"):
        check_request(echo)
    with pytest.raises(LocalProtocolError):
        check_request(c.c_echo_rsp(1, 0))


# ----------------------------------------------------------- round trips

_uids = st.from_regex(r"(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){0,15}", fullmatch=True).filter(
    lambda uid: len(uid) <= 64
)
_ae_titles = st.from_regex(r"[A-Z0-9_]([A-Z0-9_ ]{0,14}[A-Z0-9_])?", fullmatch=True)
_long_strings = st.text(
    # No backslash: pydicom reads it in LO as a value separator.
    st.characters(
        min_codepoint=0x20,
        max_codepoint=0xFF,
        categories=("L", "N", "P", "S", "Zs"),
        exclude_characters="\\",
    ),
    max_size=64,
    # PS3.5 6.2: trailing spaces of LO are padding, so a round trip drops them.
).map(lambda text: text.rstrip(" "))
_us_values = st.integers(0, 0xFFFF)
_tags = st.lists(st.integers(0, 0xFFFFFFFF), max_size=8)
_strategy_for_vr = {
    "UI": _uids,
    "AE": _ae_titles,
    "LO": _long_strings,
    "US": _us_values,
    "AT": _tags,
}


@st.composite
def command_sets(draw: st.DrawFn) -> CommandSet:
    elements: dict[str, Any] = {}
    for _, keyword, vr in c._ELEMENTS:
        if keyword == "CommandField":
            elements[keyword] = draw(st.sampled_from(CommandField))
        elif draw(st.booleans()):
            elements[keyword] = draw(_strategy_for_vr[vr])
    return CommandSet(**elements)


@given(command_sets())
@settings(max_examples=300, deadline=None)
def test_round_trip(command: CommandSet) -> None:
    data = encode_command_set(command)
    assert len(data) % 2 == 0
    assert struct.unpack_from("<I", data, 8)[0] == len(data) - 12
    assert decode_command_set(data) == command


@given(command_sets())
@settings(max_examples=60, deadline=None)
def test_pydicom_reads_what_we_write(command: CommandSet) -> None:
    assert (
        pynetdicom_decode(BytesIO(encode_command_set(command)), True, True) == command.to_dataset()
    )


# ----------------------------------------------------------- status


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (status.SUCCESS, "Success"),
        (status.PENDING, "Pending"),
        (status.PENDING_WARNING, "Pending"),
        (status.CANCEL, "Cancel"),
        (0x0001, "Warning"),
        (status.ATTRIBUTE_LIST_ERROR, "Warning"),
        (status.ATTRIBUTE_VALUE_OUT_OF_RANGE, "Warning"),
        (status.COERCION_OF_DATA_ELEMENTS, "Warning"),
        (status.ELEMENTS_DISCARDED, "Warning"),
        (status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING, "Warning"),
        (0xB123, "Warning"),
        (status.OUT_OF_RESOURCES, "Failure"),
        (0xA7FF, "Failure"),
        (status.MOVE_DESTINATION_UNKNOWN, "Failure"),
        (0xA9FF, "Failure"),
        (status.CANNOT_UNDERSTAND, "Failure"),
        (0xCFFF, "Failure"),
        (status.PROCESSING_FAILURE, "Failure"),
        (status.NO_SUCH_SOP_INSTANCE, "Failure"),
        (status.NOT_AUTHORIZED, "Failure"),
        (status.RESOURCE_LIMITATION, "Failure"),
        (status.NO_SUCH_ACTION_TYPE, "Failure"),
        (0x0002, "Unknown"),
        (0xD000, "Unknown"),
        (0x10000, "Unknown"),
        (-1, "Unknown"),
    ],
)
def test_status_category(code: int, category: str) -> None:
    assert status.status_category(code) == category


def test_status_category_agrees_with_pynetdicom() -> None:
    from pynetdicom.status import code_to_category

    assert all(status.status_category(code) == code_to_category(code) for code in range(0x10000))


# ------------------------------------ the C-STORE-RQ fast path (PS3.7 9.3.1.1)


def _general_outcome(data: bytes) -> CommandSet | str:
    """What the general, element-by-element decoder makes of ``data``: the set, or its error."""
    try:
        return c._decode_any(data)
    except RemoteProtocolError as exc:
        return f"{exc} {exc.abort_reason}"


def _outcome(data: bytes) -> CommandSet | str:
    try:
        return decode_command_set(data)
    except RemoteProtocolError as exc:
        return f"{exc} {exc.abort_reason}"


def test_the_c_store_rq_vector_takes_the_fast_path() -> None:
    # C_STORE_RQ_BYTES is the layout DCMTK's storescu and pynetdicom send.
    fast = c._decode_c_store_rq(C_STORE_RQ_BYTES)
    assert fast == c._decode_any(C_STORE_RQ_BYTES) == c.c_store_rq(7, CT_IMAGE_STORAGE, INSTANCE)
    assert fast is not None and fast.command_field is CommandField.C_STORE_RQ


@pytest.mark.parametrize(
    "data",
    [
        C_ECHO_RQ_BYTES,
        encode_command_set(c.c_store_rq(7, CT_IMAGE_STORAGE, INSTANCE, 0, "MOVESCU", 3)),
        C_STORE_RQ_BYTES[12:],  # no group length: the general decoder accepts it
        C_STORE_RQ_BYTES + _us(0x0001, 0),  # a retired element after the last one
    ],
    ids=["c-echo-rq", "move-originator", "no-group-length", "trailing-retired-element"],
)
def test_other_layouts_go_to_the_general_decoder(data: bytes) -> None:
    assert c._decode_c_store_rq(data) is None
    assert decode_command_set(data) == c._decode_any(data)


@given(
    message_id=_us_values,
    class_uid=_uids,
    instance_uid=_uids,
    priority=_us_values,
    originator=st.none() | st.tuples(_ae_titles, _us_values),
)
@settings(max_examples=300, deadline=None)
def test_fast_c_store_rq_decode_equals_the_general_decoder(
    message_id: int,
    class_uid: str,
    instance_uid: str,
    priority: int,
    originator: tuple[str, int] | None,
) -> None:
    command = c.c_store_rq(message_id, class_uid, instance_uid, priority, *(originator or ()))
    data = encode_command_set(command)
    assert decode_command_set(data) == c._decode_any(data) == command


@given(
    command=st.builds(c.c_store_rq, _us_values, _uids, _uids, _us_values),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 200),
)
@settings(max_examples=1000, deadline=None)
def test_a_damaged_c_store_rq_fares_as_in_the_general_decoder(
    command: CommandSet, edits: list[tuple[int, int]], cut: int
) -> None:
    # Bytes changed anywhere (tags, lengths, values, UID characters) and the
    # set cut short: the same command set, or the same error, either way.
    data = bytearray(encode_command_set(command))
    for position, value in edits:
        if position < len(data):
            data[position] = value
    damaged = bytes(data[: max(cut, len(data) - cut)])
    assert _outcome(damaged) == _general_outcome(damaged)
