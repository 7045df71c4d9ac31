"""DIMSE command sets (PS3.7 sections 9 and 10, Annex E).

A DIMSE message is a command set, optionally followed by a data set. The
command set is a short list of group 0000 elements, always encoded Implicit VR
Little Endian (PS3.7 6.3.1). Its handful of elements have fixed VRs, so this
module carries its own codec instead of going through pydicom: a command set
is encoded in one pass and decoded with every length checked before slicing.

:class:`CommandSet` holds the elements under their pydicom keywords (the names
pynetdicom users know); the ``c_*`` / ``n_*`` builders make each request and
response with CommandDataSetType set as PS3.7 prescribes; :func:`check_request`
checks that a received request carries the elements its table marks M.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from enum import IntEnum
from typing import Final, TypeAlias

from pydicom.dataset import Dataset

from dicombus.protocol.errors import LocalProtocolError, RemoteProtocolError
from dicombus.protocol.limits import AE_TITLE_LENGTH, MAX_COMMAND_SET_LENGTH, MAX_UID_LENGTH


class CommandField(IntEnum):
    """PS3.7 E.1: values of (0000,0100) Command Field."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF

    @property
    def is_response(self) -> bool:
        # PS3.7 E.1: responses are the requests' codes with bit 15 set.
        return bool(self.value & 0x8000)

    @property
    def is_request(self) -> bool:
        return not self.value & 0x8000

    @property
    def primitive_name(self) -> str:
        """The DIMSE service, e.g. ``"C-STORE"`` or ``"N-EVENT-REPORT"``."""
        return self.name.rsplit("_", 1)[0].replace("_", "-")

    @property
    def message_name(self) -> str:
        """The message, e.g. ``"C-STORE-RQ"``."""
        return self.name.replace("_", "-")


# CommandSet has an attribute named CommandField; inside its body this alias
# names the enum.
_Field = CommandField
_COMMAND_FIELDS: Final[dict[int | None, CommandField]] = {f.value: f for f in CommandField}


class Priority(IntEnum):
    """PS3.7 E.1: values of (0000,0700) Priority."""

    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


# PS3.7 E.1: CommandDataSetType 0101H means "no data set"; any other value
# means one follows. We send 0001H, as pynetdicom does.
NO_DATASET: Final = 0x0101
DATASET_PRESENT: Final = 0x0001

VERIFICATION_SOP_CLASS: Final = "1.2.840.10008.1.1"

# PS3.5 Table 6.2-1: LO holds at most 64 characters.
_LO_MAX_LENGTH: Final = 64

# PS3.7 E.1 (Table E.1-1): the command elements we read and write, in
# ascending tag order (the order PS3.5 7.1 requires on the wire). Retired
# elements are absent on purpose: decode skips them, encode never writes them.
_ELEMENTS: Final[tuple[tuple[int, str, str], ...]] = (
    (0x0002, "AffectedSOPClassUID", "UI"),
    (0x0003, "RequestedSOPClassUID", "UI"),
    (0x0100, "CommandField", "US"),
    (0x0110, "MessageID", "US"),
    (0x0120, "MessageIDBeingRespondedTo", "US"),
    (0x0600, "MoveDestination", "AE"),
    (0x0700, "Priority", "US"),
    (0x0800, "CommandDataSetType", "US"),
    (0x0900, "Status", "US"),
    (0x0901, "OffendingElement", "AT"),
    (0x0902, "ErrorComment", "LO"),
    (0x0903, "ErrorID", "US"),
    (0x1000, "AffectedSOPInstanceUID", "UI"),
    (0x1001, "RequestedSOPInstanceUID", "UI"),
    (0x1002, "EventTypeID", "US"),
    (0x1005, "AttributeIdentifierList", "AT"),
    (0x1008, "ActionTypeID", "US"),
    (0x1020, "NumberOfRemainingSuboperations", "US"),
    (0x1021, "NumberOfCompletedSuboperations", "US"),
    (0x1022, "NumberOfFailedSuboperations", "US"),
    (0x1023, "NumberOfWarningSuboperations", "US"),
    (0x1030, "MoveOriginatorApplicationEntityTitle", "AE"),
    (0x1031, "MoveOriginatorMessageID", "US"),
)

_KEYWORDS: Final = tuple(keyword for _, keyword, _ in _ELEMENTS)
_KEYWORD_SET: Final = frozenset(_KEYWORDS)

# The Python types of element values; None means "not present".
CommandValue: TypeAlias = str | int | list[int] | None


class CommandSet:
    """The group 0000 elements of one DIMSE message, by pydicom keyword.

    Unset elements read as ``None``; setting one to ``None`` removes it.
    Values: UI / AE / LO as ``str`` (without padding), US as ``int``, AT as
    ``list[int]`` of 32-bit tags. CommandGroupLength is not stored: it is
    computed whenever the set is encoded.
    """

    __slots__ = _KEYWORDS

    AffectedSOPClassUID: str | None
    RequestedSOPClassUID: str | None
    CommandField: int | None
    MessageID: int | None
    MessageIDBeingRespondedTo: int | None
    MoveDestination: str | None
    Priority: int | None
    CommandDataSetType: int | None
    Status: int | None
    OffendingElement: list[int] | None
    ErrorComment: str | None
    ErrorID: int | None
    AffectedSOPInstanceUID: str | None
    RequestedSOPInstanceUID: str | None
    EventTypeID: int | None
    AttributeIdentifierList: list[int] | None
    ActionTypeID: int | None
    NumberOfRemainingSuboperations: int | None
    NumberOfCompletedSuboperations: int | None
    NumberOfFailedSuboperations: int | None
    NumberOfWarningSuboperations: int | None
    MoveOriginatorApplicationEntityTitle: str | None
    MoveOriginatorMessageID: int | None

    def __init__(self, **elements: CommandValue) -> None:
        for keyword in _KEYWORDS:
            setattr(self, keyword, None)
        for keyword, value in elements.items():
            if keyword not in _KEYWORD_SET:
                raise TypeError(f"{keyword!r} is not a command set element")
            setattr(self, keyword, value)

    @property
    def CommandGroupLength(self) -> int:
        """PS3.7 E.1: the length of the encoded group after this element."""
        return len(encode_command_set(self)) - _GROUP_LENGTH_ELEMENT_LENGTH

    @property
    def command_field(self) -> _Field:
        field = _COMMAND_FIELDS.get(self.CommandField)
        if field is None:
            raise LocalProtocolError(f"CommandField {self.CommandField!r} is not a DIMSE command")
        return field

    @property
    def has_dataset(self) -> bool:
        """PS3.7 E.1: whether a data set follows this command set."""
        return self.CommandDataSetType is not None and self.CommandDataSetType != NO_DATASET

    def keys(self) -> list[str]:
        """The keywords of the set elements, in tag order."""
        return [keyword for keyword in _KEYWORDS if getattr(self, keyword) is not None]

    def items(self) -> list[tuple[str, str | int | list[int]]]:
        """``(keyword, value)`` of the set elements, in tag order."""
        pairs = ((keyword, getattr(self, keyword)) for keyword in _KEYWORDS)
        return [(keyword, value) for keyword, value in pairs if value is not None]

    def __contains__(self, keyword: object) -> bool:
        return keyword in _KEYWORD_SET and getattr(self, str(keyword)) is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CommandSet):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in _KEYWORDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a Dataset

    def __repr__(self) -> str:
        fields = ", ".join(f"{keyword}={value!r}" for keyword, value in self.items())
        return f"CommandSet({fields})"

    def to_dataset(self, keywords: Iterable[str] | None = None) -> Dataset:
        """A pydicom view of this command set, or of the named elements only.

        With no ``keywords`` the result equals what pydicom decodes from
        :func:`encode_command_set`, CommandGroupLength included. With
        ``keywords`` (e.g. ``("Status", "ErrorComment")`` for the status
        Dataset that ``send_c_store`` returns) unset ones are left out.
        """
        ds = Dataset()
        if keywords is None:
            ds.CommandGroupLength = self.CommandGroupLength
            keywords = _KEYWORDS
        for keyword in keywords:
            value = getattr(self, keyword)
            if value is None:
                continue
            setattr(ds, keyword, _pydicom_value(value))
        return ds


def _pydicom_value(value: str | int | list[int]) -> str | int | list[int] | None:
    # The values pydicom itself produces when it reads the element: IntEnum
    # members (CommandField, Priority) as plain ints, an empty AT as None.
    if isinstance(value, list):
        return list(value) or None
    return value if isinstance(value, str) else int(value)


# ---------------------------------------------------------------- encoding

_UL: Final = struct.Struct("<I")
_US: Final = struct.Struct("<H")
# PS3.5 7.1.1 / 6.2: a tag, and an AT value, is the group then the element
# number, each a little-endian US.
_TAG: Final = struct.Struct("<HH")
_ELEMENT_HEADER: Final = struct.Struct("<HHI")

# (0000,0000) UL, length 4: tag (4) + length (4) + value (4).
_GROUP_LENGTH_ELEMENT_LENGTH: Final = 12
_GROUP_LENGTH_HEADER: Final = _ELEMENT_HEADER.pack(0x0000, 0x0000, 4)

# PS3.5 6.2: the character repertoire, padding byte and maximum length of
# the text VRs. Values have even length, UI padded with NUL, others with space.
_TEXT_VRS: Final = {
    "UI": ("ascii", b"\x00", MAX_UID_LENGTH),
    "AE": ("ascii", b" ", AE_TITLE_LENGTH),
    "LO": ("latin-1", b" ", _LO_MAX_LENGTH),
}


def _encode_text(tag: bytes, vr: str, text: str) -> bytes:
    encoding, pad, max_length = _TEXT_VRS[vr]
    raw = text.encode(encoding)
    if len(raw) > max_length:
        raise ValueError(f"{len(raw)} characters, {vr} allows {max_length}")
    if len(raw) & 1:
        raw += pad
    return tag + _UL.pack(len(raw)) + raw


def _encode_element(tag: bytes, vr: str, value: str | int | list[int]) -> bytes:
    if vr == "US" and isinstance(value, int):
        return tag + b"\x02\x00\x00\x00" + _US.pack(value)
    if vr == "AT" and isinstance(value, list):
        raw = b"".join(_TAG.pack(t >> 16, t & 0xFFFF) for t in value)
        return tag + _UL.pack(len(raw)) + raw
    if vr in _TEXT_VRS and isinstance(value, str):
        return _encode_text(tag, vr, value)
    raise TypeError(f"{type(value).__name__} is not a value for VR {vr}")


_ENCODE_TABLE: Final = tuple(
    (keyword, _TAG.pack(0x0000, element), vr) for element, keyword, vr in _ELEMENTS
)


def encode_command_set(command: CommandSet) -> bytes:
    """Encode ``command`` Implicit VR Little Endian, group length first.

    The elements are encoded once; PS3.7 E.1's (0000,0000) CommandGroupLength
    (the byte count of the rest of the group) is then prefixed.
    """
    parts: list[bytes] = []
    keyword = ""
    try:
        for keyword, tag, vr in _ENCODE_TABLE:
            value = getattr(command, keyword)
            if value is not None:
                parts.append(_encode_element(tag, vr, value))
    except (struct.error, ValueError, TypeError) as exc:
        raise LocalProtocolError(f"cannot encode {keyword}: {exc}") from exc
    body = b"".join(parts)
    return _GROUP_LENGTH_HEADER + _UL.pack(len(body)) + body


# ---------------------------------------------------------------- decoding

_DECODE_TABLE: Final = {element: (keyword, vr) for element, keyword, vr in _ELEMENTS}
_FIXED_LENGTHS: Final = {"US": 2, "UL": 4}


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed command set: {message}")


def _decode_ascii(raw: bytes | bytearray | memoryview, vr: str) -> str:
    try:
        return str(raw, "ascii")
    except UnicodeDecodeError:
        raise _malformed(f"non-ASCII {vr} value") from None


def _decode_text(raw: bytes | bytearray | memoryview, vr: str) -> str:
    if vr == "LO":
        # LO (ErrorComment) carries no Specific Character Set in a command
        # set; latin-1 never fails, and an odd or long comment is no reason
        # to abort.
        return str(raw, "latin-1").rstrip(" ")
    if vr == "UI":
        # PS3.5 9.1: UIDs are padded with NUL; some peers pad with space.
        text = _decode_ascii(raw, vr).rstrip("\x00 ")
    else:
        # PS3.5 Table 6.2-1: AE leading and trailing spaces are not significant.
        text = _decode_ascii(raw, vr).strip(" ")
    # Over-long UIDs and AE titles are refused here, so that whatever decodes
    # can be echoed back in a response (encode refuses them too).
    limit = _TEXT_VRS[vr][2]
    if len(text) > limit:
        raise _malformed(f"{vr} value of {len(text)} characters, the limit is {limit}")
    return text


def _decode_value(
    data: bytes | bytearray | memoryview, offset: int, length: int, vr: str
) -> str | int | list[int]:
    if vr == "US":
        return int(_US.unpack_from(data, offset)[0])
    raw = data[offset : offset + length]
    if vr == "AT":
        return [(group << 16) | element for group, element in _TAG.iter_unpack(raw)]
    return _decode_text(raw, vr)


def _check_length(keyword: str, vr: str, length: int) -> None:
    fixed = _FIXED_LENGTHS.get(vr)
    if fixed is not None and length != fixed:
        raise _malformed(f"{keyword} ({vr}) has length {length}, not {fixed}")
    if vr == "AT" and length % 4:
        raise _malformed(f"{keyword} (AT) has length {length}, not a multiple of 4")


def _decode_elements(data: bytes | bytearray | memoryview) -> dict[str, str | int | list[int]]:
    values: dict[str, str | int | list[int]] = {}
    end = len(data)
    offset = 0
    while offset < end:
        if end - offset < _ELEMENT_HEADER.size:
            raise _malformed(f"{end - offset} bytes left at offset {offset}, too few for a header")
        group, element, length = _ELEMENT_HEADER.unpack_from(data, offset)
        if group != 0x0000:
            raise _malformed(f"element ({group:04X},{element:04X}) is outside group 0000")
        offset += _ELEMENT_HEADER.size
        if length > end - offset:
            raise _malformed(f"(0000,{element:04X}) length {length} runs past the end")
        if element == 0x0000:
            # PS3.7 E.1: the group length is recomputed on encode; the PDV
            # boundaries, not this value, delimit the command set.
            _check_length("CommandGroupLength", "UL", length)
        elif (spec := _DECODE_TABLE.get(element)) is not None:
            keyword, vr = spec
            _check_length(keyword, vr, length)
            if keyword in values:
                raise _malformed(f"{keyword} occurs twice")
            values[keyword] = _decode_value(data, offset, length, vr)
        # Other elements are the retired ones of PS3.7 Table E.2-1 that old
        # peers still send, e.g. (0000,0001) Length to End: skipped.
        offset += length
    return values


def decode_command_set(data: bytes | bytearray | memoryview) -> CommandSet:
    """Decode an Implicit VR Little Endian command set.

    Raises :class:`RemoteProtocolError` (A-ABORT, invalid PDU parameter
    value) for anything malformed; unknown group 0000 elements are skipped.
    """
    if len(data) > MAX_COMMAND_SET_LENGTH:
        raise _malformed(f"{len(data)} bytes, the limit is {MAX_COMMAND_SET_LENGTH}")
    return _decode_c_store_rq(data) or _decode_any(data)


def _decode_any(data: bytes | bytearray | memoryview) -> CommandSet:
    """The general decoder: any command set, element by element."""
    values = _decode_elements(data)
    field = values.get("CommandField")
    if not isinstance(field, int):
        raise _malformed("no CommandField (0000,0100)")
    command_field = _COMMAND_FIELDS.get(field)
    if command_field is None:
        raise _malformed(f"CommandField 0x{field:04X} is not a DIMSE command")
    values["CommandField"] = command_field
    return CommandSet(**values)


# The C-STORE-RQ as DCMTK, pynetdicom and dicombus encode it (PS3.7 Table
# 9.3-1, elements in tag order, no optional ones): (0000,0000) UL, (0000,0002)
# UI, then (0000,0100), (0000,0110), (0000,0700), (0000,0800) US, then
# (0000,1000) UI. Each tag is read as one little-endian 32-bit number, the
# element number in its high half (PS3.5 7.1.1).
_TAG_AND_LENGTH: Final = struct.Struct("<II")
_GROUP_LENGTH_ELEMENT: Final = struct.Struct("<III")
_FOUR_US_ELEMENTS: Final = struct.Struct("<IIHIIHIIHIIH")
_AFFECTED_SOP_CLASS_UID: Final = 0x0002 << 16
_C_STORE_RQ_US_TAGS: Final = (0x0100 << 16, 0x0110 << 16, 0x0700 << 16, 0x0800 << 16)
_AFFECTED_SOP_INSTANCE_UID: Final = 0x1000 << 16
_SHORTEST_C_STORE_RQ: Final = (
    _GROUP_LENGTH_ELEMENT.size + 2 * _TAG_AND_LENGTH.size + _FOUR_US_ELEMENTS.size
)


def _decode_c_store_rq(data: bytes | bytearray | memoryview) -> CommandSet | None:
    """A C-STORE-RQ in the layout above, decoded in a few unpacks; None for any
    other command set or layout, which the general decoder then takes.

    It returns what the general decoder would, or None: a value it cannot take
    as is (a length that runs past the end, say) is left to that decoder,
    whose error is the one the peer hears.
    """
    end = len(data)
    if end < _SHORTEST_C_STORE_RQ or _GROUP_LENGTH_ELEMENT.unpack_from(data)[:2] != (0, 4):
        return None
    offset = _GROUP_LENGTH_ELEMENT.size
    tag, class_length = _TAG_AND_LENGTH.unpack_from(data, offset)
    offset += _TAG_AND_LENGTH.size
    class_end = offset + class_length
    if tag != _AFFECTED_SOP_CLASS_UID or class_end + _FOUR_US_ELEMENTS.size > end:
        return None
    class_uid = data[offset:class_end]
    (
        field_tag, field_length, field,
        id_tag, id_length, message_id,
        priority_tag, priority_length, priority,
        type_tag, type_length, dataset_type,
    ) = _FOUR_US_ELEMENTS.unpack_from(data, class_end)  # fmt: skip
    offset = class_end + _FOUR_US_ELEMENTS.size
    if (
        (field_tag, id_tag, priority_tag, type_tag) != _C_STORE_RQ_US_TAGS
        or (field_length, id_length, priority_length, type_length) != (2, 2, 2, 2)
        or field != CommandField.C_STORE_RQ
        or end - offset < _TAG_AND_LENGTH.size
    ):
        return None
    tag, instance_length = _TAG_AND_LENGTH.unpack_from(data, offset)
    offset += _TAG_AND_LENGTH.size
    if tag != _AFFECTED_SOP_INSTANCE_UID or offset + instance_length != end:
        return None
    return CommandSet(
        AffectedSOPClassUID=_decode_text(class_uid, "UI"),
        CommandField=CommandField.C_STORE_RQ,
        MessageID=message_id,
        Priority=priority,
        CommandDataSetType=dataset_type,
        AffectedSOPInstanceUID=_decode_text(data[offset:end], "UI"),
    )


# ---------------------------------------------------------------- validation

# PS3.7 Tables 9.3-1 .. 9.3-12 and 10.3-1 .. 10.3-12: the elements a request
# must carry (M), and whether its data set is required (True), forbidden
# (False) or optional (None).
_REQUEST_RULES: Final[dict[CommandField, tuple[tuple[str, ...], bool | None]]] = {
    CommandField.C_STORE_RQ: (
        ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority"),
        True,
    ),
    CommandField.C_FIND_RQ: (("MessageID", "AffectedSOPClassUID", "Priority"), True),
    CommandField.C_GET_RQ: (("MessageID", "AffectedSOPClassUID", "Priority"), True),
    CommandField.C_MOVE_RQ: (
        ("MessageID", "AffectedSOPClassUID", "Priority", "MoveDestination"),
        True,
    ),
    CommandField.C_ECHO_RQ: (("MessageID", "AffectedSOPClassUID"), False),
    CommandField.C_CANCEL_RQ: (("MessageIDBeingRespondedTo",), False),
    CommandField.N_EVENT_REPORT_RQ: (
        ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "EventTypeID"),
        None,
    ),
    CommandField.N_GET_RQ: (
        ("MessageID", "RequestedSOPClassUID", "RequestedSOPInstanceUID"),
        False,
    ),
    CommandField.N_SET_RQ: (
        ("MessageID", "RequestedSOPClassUID", "RequestedSOPInstanceUID"),
        True,
    ),
    CommandField.N_ACTION_RQ: (
        ("MessageID", "RequestedSOPClassUID", "RequestedSOPInstanceUID", "ActionTypeID"),
        None,
    ),
    CommandField.N_CREATE_RQ: (("MessageID", "AffectedSOPClassUID"), None),
    CommandField.N_DELETE_RQ: (
        ("MessageID", "RequestedSOPClassUID", "RequestedSOPInstanceUID"),
        False,
    ),
}


def check_request(command: CommandSet) -> None:
    """PS3.7 9.3 / 10.3: raise RemoteProtocolError if a received request
    lacks an element its table marks mandatory, or has or lacks a data set
    against the table. ``command`` must be a request (LocalProtocolError)."""
    field = command.command_field
    rules = _REQUEST_RULES.get(field)
    if rules is None:
        raise LocalProtocolError(f"{field.message_name} is not a request")
    required, dataset_rule = rules
    missing = [keyword for keyword in required if getattr(command, keyword) is None]
    if command.CommandDataSetType is None:
        missing.append("CommandDataSetType")
    if missing:
        raise RemoteProtocolError(f"{field.message_name} without {', '.join(missing)}")
    if dataset_rule is not None and command.has_dataset != dataset_rule:
        presence = "without" if dataset_rule else "with"
        raise RemoteProtocolError(f"{field.message_name} {presence} a data set")


# ---------------------------------------------------------------- builders
#
# One function per message, named after it. Each sets CommandDataSetType as
# the message's table in PS3.7 9.3 / 10.3 says; where the data set is
# conditional, the caller says whether one follows with ``has_dataset``.
# Every request carries MessageID, every response MessageIDBeingRespondedTo
# and Status: _request and _response set those, each builder names the rest.


def _request(
    field: CommandField, message_id: int, has_dataset: bool, **elements: CommandValue
) -> CommandSet:
    return CommandSet(
        CommandField=field,
        MessageID=message_id,
        CommandDataSetType=DATASET_PRESENT if has_dataset else NO_DATASET,
        **elements,
    )


def _response(
    field: CommandField,
    message_id_being_responded_to: int,
    status: int,
    has_dataset: bool,
    **elements: CommandValue,
) -> CommandSet:
    return CommandSet(
        CommandField=field,
        MessageIDBeingRespondedTo=message_id_being_responded_to,
        CommandDataSetType=DATASET_PRESENT if has_dataset else NO_DATASET,
        Status=status,
        **elements,
    )


def _affected(class_uid: str | None, instance_uid: str | None = None) -> dict[str, CommandValue]:
    return {"AffectedSOPClassUID": class_uid, "AffectedSOPInstanceUID": instance_uid}


def _requested(class_uid: str, instance_uid: str) -> dict[str, CommandValue]:
    return {"RequestedSOPClassUID": class_uid, "RequestedSOPInstanceUID": instance_uid}


def _error(comment: str | None, error_id: int | None = None) -> dict[str, CommandValue]:
    return {"ErrorComment": comment, "ErrorID": error_id}


def c_echo_rq(message_id: int, affected_sop_class_uid: str = VERIFICATION_SOP_CLASS) -> CommandSet:
    """PS3.7 Table 9.3-12."""
    return _request(CommandField.C_ECHO_RQ, message_id, False, **_affected(affected_sop_class_uid))


def c_echo_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = VERIFICATION_SOP_CLASS,
    *,
    error_comment: str | None = None,
) -> CommandSet:
    """PS3.7 Table 9.3-13."""
    return _response(
        CommandField.C_ECHO_RSP,
        message_id_being_responded_to,
        status,
        False,
        **_affected(affected_sop_class_uid),
        **_error(error_comment),
    )


def c_store_rq(
    message_id: int,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str,
    priority: int = Priority.MEDIUM,
    move_originator_ae_title: str | None = None,
    move_originator_message_id: int | None = None,
) -> CommandSet:
    """PS3.7 Table 9.3-1; the move originator is set for C-MOVE sub-operations."""
    return _request(
        CommandField.C_STORE_RQ,
        message_id,
        True,
        **_affected(affected_sop_class_uid, affected_sop_instance_uid),
        Priority=priority,
        MoveOriginatorApplicationEntityTitle=move_originator_ae_title,
        MoveOriginatorMessageID=move_originator_message_id,
    )


def c_store_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    affected_sop_instance_uid: str | None = None,
    *,
    offending_element: list[int] | None = None,
    error_comment: str | None = None,
) -> CommandSet:
    """PS3.7 Table 9.3-2."""
    return _response(
        CommandField.C_STORE_RSP,
        message_id_being_responded_to,
        status,
        False,
        **_affected(affected_sop_class_uid, affected_sop_instance_uid),
        OffendingElement=offending_element,
        **_error(error_comment),
    )


def _query_rq(
    field: CommandField, message_id: int, affected_sop_class_uid: str, priority: int
) -> CommandSet:
    # C-FIND, C-GET and C-MOVE requests: the Identifier data set always follows.
    return _request(field, message_id, True, **_affected(affected_sop_class_uid), Priority=priority)


def c_find_rq(
    message_id: int, affected_sop_class_uid: str, priority: int = Priority.MEDIUM
) -> CommandSet:
    """PS3.7 Table 9.3-3; the Identifier data set always follows."""
    return _query_rq(CommandField.C_FIND_RQ, message_id, affected_sop_class_uid, priority)


def c_find_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    *,
    has_dataset: bool = False,
    offending_element: list[int] | None = None,
    error_comment: str | None = None,
) -> CommandSet:
    """PS3.7 Table 9.3-4; Pending responses carry an Identifier."""
    return _response(
        CommandField.C_FIND_RSP,
        message_id_being_responded_to,
        status,
        has_dataset,
        **_affected(affected_sop_class_uid),
        OffendingElement=offending_element,
        **_error(error_comment),
    )


def c_get_rq(
    message_id: int, affected_sop_class_uid: str, priority: int = Priority.MEDIUM
) -> CommandSet:
    """PS3.7 Table 9.3-6; the Identifier data set always follows."""
    return _query_rq(CommandField.C_GET_RQ, message_id, affected_sop_class_uid, priority)


def _retrieve_rsp(
    field: CommandField,
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None,
    suboperations: tuple[int | None, int | None, int | None, int | None],
    has_dataset: bool,
    offending_element: list[int] | None,
    error_comment: str | None,
) -> CommandSet:
    # C-GET and C-MOVE responses differ only in their command field.
    remaining, completed, failed, warning = suboperations
    return _response(
        field,
        message_id_being_responded_to,
        status,
        has_dataset,
        **_affected(affected_sop_class_uid),
        OffendingElement=offending_element,
        **_error(error_comment),
        NumberOfRemainingSuboperations=remaining,
        NumberOfCompletedSuboperations=completed,
        NumberOfFailedSuboperations=failed,
        NumberOfWarningSuboperations=warning,
    )


def c_get_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    *,
    remaining_suboperations: int | None = None,
    completed_suboperations: int | None = None,
    failed_suboperations: int | None = None,
    warning_suboperations: int | None = None,
    has_dataset: bool = False,
    offending_element: list[int] | None = None,
    error_comment: str | None = None,
) -> CommandSet:
    """PS3.7 Table 9.3-7; a data set (Failed SOP Instance UID List) is conditional."""
    counts = (
        remaining_suboperations,
        completed_suboperations,
        failed_suboperations,
        warning_suboperations,
    )
    return _retrieve_rsp(
        CommandField.C_GET_RSP,
        message_id_being_responded_to,
        status,
        affected_sop_class_uid,
        counts,
        has_dataset,
        offending_element,
        error_comment,
    )


def c_move_rq(
    message_id: int,
    affected_sop_class_uid: str,
    move_destination: str,
    priority: int = Priority.MEDIUM,
) -> CommandSet:
    """PS3.7 Table 9.3-9; the Identifier data set always follows."""
    command = _query_rq(CommandField.C_MOVE_RQ, message_id, affected_sop_class_uid, priority)
    command.MoveDestination = move_destination
    return command


def c_move_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    *,
    remaining_suboperations: int | None = None,
    completed_suboperations: int | None = None,
    failed_suboperations: int | None = None,
    warning_suboperations: int | None = None,
    has_dataset: bool = False,
    offending_element: list[int] | None = None,
    error_comment: str | None = None,
) -> CommandSet:
    """PS3.7 Table 9.3-10; a data set (Failed SOP Instance UID List) is conditional."""
    command = c_get_rsp(
        message_id_being_responded_to,
        status,
        affected_sop_class_uid,
        remaining_suboperations=remaining_suboperations,
        completed_suboperations=completed_suboperations,
        failed_suboperations=failed_suboperations,
        warning_suboperations=warning_suboperations,
        has_dataset=has_dataset,
        offending_element=offending_element,
        error_comment=error_comment,
    )
    command.CommandField = CommandField.C_MOVE_RSP
    return command


def c_cancel_rq(message_id_being_responded_to: int) -> CommandSet:
    """PS3.7 Tables 9.3-5 (C-FIND), 9.3-8 (C-GET) and 9.3-11 (C-MOVE)."""
    return CommandSet(
        CommandField=CommandField.C_CANCEL_RQ,
        MessageIDBeingRespondedTo=message_id_being_responded_to,
        CommandDataSetType=NO_DATASET,
    )


def n_event_report_rq(
    message_id: int,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str,
    event_type_id: int,
    *,
    has_dataset: bool = False,
) -> CommandSet:
    """PS3.7 Table 10.3-1; Event Information is optional."""
    return _request(
        CommandField.N_EVENT_REPORT_RQ,
        message_id,
        has_dataset,
        **_affected(affected_sop_class_uid, affected_sop_instance_uid),
        EventTypeID=event_type_id,
    )


def _n_rsp(
    field: CommandField,
    message_id_being_responded_to: int,
    status: int,
    affected: tuple[str | None, str | None],
    has_dataset: bool,
    error: tuple[str | None, int | None],
    **optional: CommandValue,
) -> CommandSet:
    # Every N-* response may name the affected instance and carry an error.
    return _response(
        field,
        message_id_being_responded_to,
        status,
        has_dataset,
        **_affected(*affected),
        **_error(*error),
        **optional,
    )


def n_event_report_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    affected_sop_instance_uid: str | None = None,
    *,
    event_type_id: int | None = None,
    has_dataset: bool = False,
    error_comment: str | None = None,
    error_id: int | None = None,
) -> CommandSet:
    """PS3.7 Table 10.3-2; Event Reply is optional."""
    affected = (affected_sop_class_uid, affected_sop_instance_uid)
    error = (error_comment, error_id)
    return _n_rsp(
        CommandField.N_EVENT_REPORT_RSP,
        message_id_being_responded_to,
        status,
        affected,
        has_dataset,
        error,
        EventTypeID=event_type_id,
    )


def n_get_rq(
    message_id: int,
    requested_sop_class_uid: str,
    requested_sop_instance_uid: str,
    attribute_identifier_list: list[int] | None = None,
) -> CommandSet:
    """PS3.7 Table 10.3-3; no list means all attributes."""
    command = n_delete_rq(message_id, requested_sop_class_uid, requested_sop_instance_uid)
    command.CommandField = CommandField.N_GET_RQ
    command.AttributeIdentifierList = attribute_identifier_list
    return command


def n_get_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    affected_sop_instance_uid: str | None = None,
    *,
    has_dataset: bool = False,
    attribute_identifier_list: list[int] | None = None,
    error_comment: str | None = None,
    error_id: int | None = None,
) -> CommandSet:
    """PS3.7 Table 10.3-4; the Attribute List follows on success."""
    affected = (affected_sop_class_uid, affected_sop_instance_uid)
    return _n_rsp(
        CommandField.N_GET_RSP,
        message_id_being_responded_to,
        status,
        affected,
        has_dataset,
        (error_comment, error_id),
        AttributeIdentifierList=attribute_identifier_list,
    )


def n_set_rq(
    message_id: int, requested_sop_class_uid: str, requested_sop_instance_uid: str
) -> CommandSet:
    """PS3.7 Table 10.3-5; the Modification List data set always follows."""
    requested = _requested(requested_sop_class_uid, requested_sop_instance_uid)
    return _request(CommandField.N_SET_RQ, message_id, True, **requested)


def n_set_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    affected_sop_instance_uid: str | None = None,
    *,
    has_dataset: bool = False,
    attribute_identifier_list: list[int] | None = None,
    error_comment: str | None = None,
    error_id: int | None = None,
) -> CommandSet:
    """PS3.7 Table 10.3-6; the Attribute List is optional."""
    command = n_get_rsp(
        message_id_being_responded_to,
        status,
        affected_sop_class_uid,
        affected_sop_instance_uid,
        has_dataset=has_dataset,
        attribute_identifier_list=attribute_identifier_list,
        error_comment=error_comment,
        error_id=error_id,
    )
    command.CommandField = CommandField.N_SET_RSP
    return command


def n_action_rq(
    message_id: int,
    requested_sop_class_uid: str,
    requested_sop_instance_uid: str,
    action_type_id: int,
    *,
    has_dataset: bool = False,
) -> CommandSet:
    """PS3.7 Table 10.3-7; Action Information is optional."""
    requested = _requested(requested_sop_class_uid, requested_sop_instance_uid)
    return _request(
        CommandField.N_ACTION_RQ, message_id, has_dataset, **requested, ActionTypeID=action_type_id
    )


def n_action_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    affected_sop_instance_uid: str | None = None,
    *,
    action_type_id: int | None = None,
    has_dataset: bool = False,
    error_comment: str | None = None,
    error_id: int | None = None,
) -> CommandSet:
    """PS3.7 Table 10.3-8; Action Reply is optional."""
    command = n_event_report_rsp(
        message_id_being_responded_to,
        status,
        affected_sop_class_uid,
        affected_sop_instance_uid,
        has_dataset=has_dataset,
        error_comment=error_comment,
        error_id=error_id,
    )
    command.CommandField = CommandField.N_ACTION_RSP
    command.ActionTypeID = action_type_id
    return command


def n_create_rq(
    message_id: int,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str | None = None,
    *,
    has_dataset: bool = False,
) -> CommandSet:
    """PS3.7 Table 10.3-9; without an instance UID the SCP assigns one."""
    affected = _affected(affected_sop_class_uid, affected_sop_instance_uid)
    return _request(CommandField.N_CREATE_RQ, message_id, has_dataset, **affected)


def n_create_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    affected_sop_instance_uid: str | None = None,
    *,
    has_dataset: bool = False,
    error_comment: str | None = None,
    error_id: int | None = None,
) -> CommandSet:
    """PS3.7 Table 10.3-10; the Attribute List is optional."""
    affected = (affected_sop_class_uid, affected_sop_instance_uid)
    error = (error_comment, error_id)
    return _n_rsp(
        CommandField.N_CREATE_RSP,
        message_id_being_responded_to,
        status,
        affected,
        has_dataset,
        error,
    )


def n_delete_rq(
    message_id: int, requested_sop_class_uid: str, requested_sop_instance_uid: str
) -> CommandSet:
    """PS3.7 Table 10.3-11."""
    requested = _requested(requested_sop_class_uid, requested_sop_instance_uid)
    return _request(CommandField.N_DELETE_RQ, message_id, False, **requested)


def n_delete_rsp(
    message_id_being_responded_to: int,
    status: int,
    affected_sop_class_uid: str | None = None,
    affected_sop_instance_uid: str | None = None,
    *,
    error_comment: str | None = None,
    error_id: int | None = None,
) -> CommandSet:
    """PS3.7 Table 10.3-12."""
    affected = (affected_sop_class_uid, affected_sop_instance_uid)
    error = (error_comment, error_id)
    return _n_rsp(
        CommandField.N_DELETE_RSP, message_id_being_responded_to, status, affected, False, error
    )
