"""The variable items of A-ASSOCIATE PDUs and the user-information sub-items.

PS3.8 9.3.2 and 9.3.3 define the items (Application Context, Presentation
Context, User Information); PS3.8 Annex D and PS3.7 Annex D.3.3 define the
sub-items of the User Information item. Every item starts with a 4-byte header:
item type (1), reserved (1) and a big-endian 2-byte item length.

Each class is a frozen value that validates itself when constructed (a bad
value there is our caller's bug: ``LocalProtocolError``). ``decode`` takes the
whole item, header included, checks every declared length against the bytes
actually present before slicing, and reports anything malformed as the peer's
fault (``RemoteProtocolError``).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, ParamSpec, Self, TypeAlias, TypeVar

from dicombus.protocol.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from dicombus.protocol.limits import MAX_UID_LENGTH

__all__ = [
    "AbstractSyntaxItem",
    "ApplicationContextItem",
    "AsynchronousOperationsWindowSubItem",
    "ImplementationClassUIDSubItem",
    "ImplementationVersionNameSubItem",
    "MaximumLengthSubItem",
    "PresentationContextACItem",
    "PresentationContextRQItem",
    "PresentationContextResult",
    "SOPClassCommonExtendedNegotiationSubItem",
    "SOPClassExtendedNegotiationSubItem",
    "ScpScuRoleSelectionSubItem",
    "TransferSyntaxItem",
    "UnknownSubItem",
    "UserIdentityACSubItem",
    "UserIdentityRQSubItem",
    "UserInformationItem",
    "UserSubItem",
]

# PS3.8 9.3.1: item type (1), reserved (1), item length (2), big endian.
_ITEM_HEADER = struct.Struct(">BBH")
ITEM_HEADER_LENGTH = _ITEM_HEADER.size
# PS3.8 9.3.1: the item length field is two bytes wide.
MAX_ITEM_LENGTH = 0xFFFF
_UINT16 = struct.Struct(">H")
_UINT32 = struct.Struct(">I")
_ASYNC_WINDOW = struct.Struct(">HH")
# PS3.8 9.3.2.2 and 9.3.3.2: the four bytes before a context's sub-items,
# context ID (1), reserved (1), result/reason (1, AC only, else reserved), reserved (1).
_CONTEXT_FIELDS = struct.Struct(">BBBB")

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")


class PresentationContextResult(IntEnum):
    """PS3.8 Table 9-18: the Result/Reason field of a Presentation Context AC item."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


# ---------------------------------------------------------------------------
# Errors and validation shared with pdus.py


def wire_error(
    message: str, reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE
) -> RemoteProtocolError:
    """Return the error for malformed bytes from the peer (the runtime A-ABORTs)."""
    return RemoteProtocolError(message, abort_reason=reason)


def wire_input(decode: Callable[_P, _R]) -> Callable[_P, _R]:
    """Report a value that fails validation while decoding as the peer's error.

    Constructors raise ``LocalProtocolError`` for bad values because, when our
    own code builds an item, a bad value is our bug; when ``decode`` builds it,
    the bad value came off the wire.
    """

    @functools.wraps(decode)
    def decode_from_wire(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return decode(*args, **kwargs)
        except LocalProtocolError as exc:
            raise wire_error(str(exc)) from exc

    return decode_from_wire


def check_int(value: int, what: str, low: int, high: int) -> None:
    """Raise LocalProtocolError unless ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LocalProtocolError(f"{what} must be an int in {low}..{high}, got {value!r}")


def check_context_id(value: int) -> None:
    """PS3.8 9.3.2.2: a presentation context ID is an odd integer 1..255."""
    check_int(value, "presentation context ID", 1, 255)
    if value % 2 == 0:
        raise LocalProtocolError(f"presentation context ID must be odd, got {value}")


def check_uid(value: str, what: str) -> None:
    """PS3.5 9.1: a UID is 1..64 characters; we accept any visible ASCII, as peers do."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_UID_LENGTH:
        raise LocalProtocolError(f"{what} must be a str of 1..{MAX_UID_LENGTH} chars: {value!r}")
    if not all("!" <= char <= "~" for char in value):
        raise LocalProtocolError(f"{what} must be visible ASCII without spaces: {value!r}")


def _check_bool(value: bool, what: str) -> None:
    if not isinstance(value, bool):
        raise LocalProtocolError(f"{what} must be a bool, got {value!r}")


def _check_bytes(value: bytes, what: str, max_length: int) -> None:
    if not isinstance(value, bytes) or len(value) > max_length:
        raise LocalProtocolError(f"{what} must be bytes of at most {max_length} bytes")


# ---------------------------------------------------------------------------
# Reading and writing the wire format


class WireReader:
    """Reads fields front to back, checking each length before it slices."""

    __slots__ = ("_offset", "_view", "_what")

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self._view = memoryview(data)
        self._offset = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._view) - self._offset

    def take(self, length: int, field: str) -> memoryview:
        """Return the next ``length`` bytes, or raise if fewer are present."""
        if length > self.remaining:
            raise wire_error(
                f"{self._what}: {field} needs {length} bytes but {self.remaining} remain"
            )
        start = self._offset
        self._offset += length
        return self._view[start : self._offset]

    def uint8(self, field: str) -> int:
        return self.take(1, field)[0]

    def uint16(self, field: str) -> int:
        value: int = _UINT16.unpack(self.take(2, field))[0]
        return value

    def uint32(self, field: str) -> int:
        value: int = _UINT32.unpack(self.take(4, field))[0]
        return value

    def flag(self, field: str) -> bool:
        """PS3.7 D.3.3.4 and D.3.3.7: one-byte flags are 0 or 1."""
        value = self.uint8(field)
        if value > 1:
            raise wire_error(f"{self._what}: {field} must be 0 or 1, got {value}")
        return value == 1

    def field16(self, field: str) -> memoryview:
        """A field preceded by its own 2-byte length (PS3.7 Annex D.3.3)."""
        return self.take(self.uint16(f"{field} length"), field)

    def rest(self) -> memoryview:
        return self.take(self.remaining, "rest")

    def finish(self) -> None:
        """Raise if bytes are left over after the last field."""
        if self.remaining:
            raise wire_error(f"{self._what}: {self.remaining} unexpected trailing bytes")


def item_value(data: bytes | memoryview, item_type: int, what: str) -> WireReader:
    """Check the header of one whole item and return a reader over its value."""
    view = memoryview(data)
    if len(view) < ITEM_HEADER_LENGTH:
        raise wire_error(f"{what}: truncated item header ({len(view)} bytes)")
    found_type, _reserved, length = _ITEM_HEADER.unpack_from(view)
    if found_type != item_type:
        raise wire_error(f"{what}: item type 0x{found_type:02X}, expected 0x{item_type:02X}")
    if length != len(view) - ITEM_HEADER_LENGTH:
        raise wire_error(
            f"{what}: item length {length} but {len(view) - ITEM_HEADER_LENGTH} bytes present"
        )
    return WireReader(view[ITEM_HEADER_LENGTH:], what)


def iter_items(data: bytes | memoryview, what: str) -> Iterator[tuple[int, memoryview]]:
    """Yield (item type, whole item) for consecutive items, checking each length."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        if len(view) - offset < ITEM_HEADER_LENGTH:
            raise wire_error(f"{what}: truncated item header at offset {offset}")
        item_type, _reserved, length = _ITEM_HEADER.unpack_from(view, offset)
        end = offset + ITEM_HEADER_LENGTH + length
        if end > len(view):
            raise wire_error(f"{what}: item 0x{item_type:02X} of {length} bytes runs past the end")
        yield item_type, view[offset:end]
        offset = end


def encode_item(item_type: int, value: bytes, first_reserved: int = 0) -> bytes:
    """Prefix ``value`` with an item header."""
    if len(value) > MAX_ITEM_LENGTH:
        raise LocalProtocolError(
            f"item 0x{item_type:02X} of {len(value)} bytes exceeds {MAX_ITEM_LENGTH} bytes"
        )
    return _ITEM_HEADER.pack(item_type, first_reserved, len(value)) + value


def _field16(value: bytes) -> bytes:
    if len(value) > MAX_ITEM_LENGTH:
        raise LocalProtocolError(f"field of {len(value)} bytes exceeds {MAX_ITEM_LENGTH} bytes")
    return _UINT16.pack(len(value)) + value


def wire_text(raw: bytes | memoryview, what: str) -> str:
    """Decode an ASCII field, reporting non-ASCII bytes as the peer's error."""
    try:
        return bytes(raw).decode("ascii")
    except UnicodeDecodeError as exc:
        raise wire_error(f"{what} is not ASCII: {bytes(raw)!r}") from exc


def wire_padded_text(raw: bytes | memoryview, what: str) -> str:
    """ASCII text without trailing padding.

    PS3.5 9.1: UIDs go on the wire unpadded, yet DCMTK pads odd-length UIDs
    with NUL and some peers pad names with spaces; neither is significant.
    """
    return wire_text(bytes(raw).rstrip(b"\x00 "), what)


def unexpected_item(item_type: int, where: str) -> RemoteProtocolError:
    """An item out of place: PS3.8 9.3.1 tells unknown types from misplaced known ones."""
    if item_type in _KNOWN_ITEM_TYPES:
        return wire_error(
            f"{where}: unexpected item 0x{item_type:02X}", AbortReason.UNEXPECTED_PDU_PARAMETER
        )
    return wire_error(
        f"{where}: unrecognized item 0x{item_type:02X}", AbortReason.UNRECOGNIZED_PDU_PARAMETER
    )


def exactly_one(found: list[_T], what: str) -> _T:
    """PS3.8 9.3.2: items the standard requires once."""
    if not found:
        raise wire_error(f"missing {what}")
    if len(found) > 1:
        raise wire_error(
            f"{len(found)} {what}s, expected one", AbortReason.UNEXPECTED_PDU_PARAMETER
        )
    return found[0]


# ---------------------------------------------------------------------------
# Items holding one UID


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationContextItem:
    """PS3.8 9.3.2.1: the application context name (a UID)."""

    item_type: ClassVar[int] = 0x10
    name: str

    def __post_init__(self) -> None:
        check_uid(self.name, "application context name")

    def encode(self) -> bytes:
        return encode_item(self.item_type, self.name.encode("ascii"))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "Application Context Item")
        return cls(name=wire_padded_text(reader.rest(), "application context name"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AbstractSyntaxItem:
    """PS3.8 9.3.2.2.1: the abstract syntax (SOP class UID) of a proposed context."""

    item_type: ClassVar[int] = 0x30
    name: str

    def __post_init__(self) -> None:
        check_uid(self.name, "abstract syntax name")

    def encode(self) -> bytes:
        return encode_item(self.item_type, self.name.encode("ascii"))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "Abstract Syntax Sub-item")
        return cls(name=wire_padded_text(reader.rest(), "abstract syntax name"))


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSyntaxItem:
    """PS3.8 9.3.2.2.2: one transfer syntax UID of a presentation context."""

    item_type: ClassVar[int] = 0x40
    name: str

    def __post_init__(self) -> None:
        check_uid(self.name, "transfer syntax name")

    def encode(self) -> bytes:
        return encode_item(self.item_type, self.name.encode("ascii"))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "Transfer Syntax Sub-item")
        return cls(name=wire_padded_text(reader.rest(), "transfer syntax name"))


# ---------------------------------------------------------------------------
# Presentation context items


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationContextRQItem:
    """PS3.8 9.3.2.2: one proposed presentation context."""

    item_type: ClassVar[int] = 0x20
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    def __post_init__(self) -> None:
        check_context_id(self.context_id)
        check_uid(self.abstract_syntax, "abstract syntax name")
        if not isinstance(self.transfer_syntaxes, tuple) or not self.transfer_syntaxes:
            raise LocalProtocolError("a proposed context needs a tuple of transfer syntaxes")
        for name in self.transfer_syntaxes:
            check_uid(name, "transfer syntax name")

    def encode(self) -> bytes:
        parts = [
            _CONTEXT_FIELDS.pack(self.context_id, 0, 0, 0),
            AbstractSyntaxItem(name=self.abstract_syntax).encode(),
            *(TransferSyntaxItem(name=name).encode() for name in self.transfer_syntaxes),
        ]
        return encode_item(self.item_type, b"".join(parts))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        what = "Presentation Context Item (RQ)"
        reader = item_value(data, cls.item_type, what)
        context_id = reader.uint8("presentation context ID")
        reader.take(3, "reserved")  # PS3.8 9.3.2.2: reserved, not tested
        abstract: list[str] = []
        transfer: list[str] = []
        for item_type, item in iter_items(reader.rest(), what):
            if item_type == AbstractSyntaxItem.item_type:
                abstract.append(AbstractSyntaxItem.decode(item).name)
            elif item_type == TransferSyntaxItem.item_type:
                transfer.append(TransferSyntaxItem.decode(item).name)
            else:
                raise unexpected_item(item_type, what)
        return cls(
            context_id=context_id,
            abstract_syntax=exactly_one(abstract, "Abstract Syntax Sub-item"),
            transfer_syntaxes=tuple(transfer),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationContextACItem:
    """PS3.8 9.3.3.2: the acceptor's answer to one proposed presentation context.

    ``transfer_syntax`` is required when ``result`` is acceptance. For any other
    result PS3.8 9.3.3.2 says the sub-item is not significant and not tested:
    we keep its value when it reads as a UID and use None when it is absent
    (some acceptors omit it), empty or garbage. None encodes as an empty
    sub-item, which keeps the one Transfer Syntax Sub-item that Table 9-18
    requires; DCMTK 3.6.7 (which itself echoes a proposed syntax) and
    pynetdicom 3.0 read it.
    """

    item_type: ClassVar[int] = 0x21
    context_id: int
    result: int
    transfer_syntax: str | None

    def __post_init__(self) -> None:
        check_context_id(self.context_id)
        check_int(self.result, "presentation context result", 0, max(PresentationContextResult))
        if self.transfer_syntax is not None:
            check_uid(self.transfer_syntax, "transfer syntax name")
        elif self.result == PresentationContextResult.ACCEPTANCE:
            raise LocalProtocolError("an accepted presentation context needs a transfer syntax")

    def encode(self) -> bytes:
        name = (self.transfer_syntax or "").encode("ascii")
        fields = _CONTEXT_FIELDS.pack(self.context_id, 0, self.result, 0)
        return encode_item(self.item_type, fields + encode_item(TransferSyntaxItem.item_type, name))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        what = "Presentation Context Item (AC)"
        reader = item_value(data, cls.item_type, what)
        context_id, _reserved, result, _reserved2 = _CONTEXT_FIELDS.unpack(
            reader.take(_CONTEXT_FIELDS.size, "context ID and result")
        )
        transfer: list[memoryview] = []
        for item_type, item in iter_items(reader.rest(), what):
            if item_type != TransferSyntaxItem.item_type:
                raise unexpected_item(item_type, what)
            transfer.append(item)
        if result != PresentationContextResult.ACCEPTANCE:
            if len(transfer) > 1:
                raise wire_error(f"{what}: {len(transfer)} Transfer Syntax Sub-items")
            name = _insignificant_transfer_syntax(transfer[0]) if transfer else None
            return cls(context_id=context_id, result=result, transfer_syntax=name)
        accepted = exactly_one(transfer, "Transfer Syntax Sub-item")
        name = TransferSyntaxItem.decode(accepted).name
        return cls(context_id=context_id, result=result, transfer_syntax=name)


def _insignificant_transfer_syntax(item: memoryview) -> str | None:
    """PS3.8 9.3.3.2: a rejected context's transfer syntax is not tested."""
    try:
        return TransferSyntaxItem.decode(item).name
    except RemoteProtocolError:
        return None


# ---------------------------------------------------------------------------
# User information sub-items (PS3.8 Annex D, PS3.7 Annex D.3.3)


@dataclass(frozen=True, slots=True, kw_only=True)
class MaximumLengthSubItem:
    """PS3.8 D.1: the largest P-DATA-TF variable field the sender will receive.

    Zero means no limit.
    """

    item_type: ClassVar[int] = 0x51
    maximum_length: int

    def __post_init__(self) -> None:
        check_int(self.maximum_length, "maximum length", 0, 0xFFFFFFFF)

    def encode(self) -> bytes:
        return encode_item(self.item_type, _UINT32.pack(self.maximum_length))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "Maximum Length Sub-item")
        maximum_length = reader.uint32("maximum length")
        reader.finish()
        return cls(maximum_length=maximum_length)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImplementationClassUIDSubItem:
    """PS3.7 D.3.3.2: the UID that names the sender's implementation."""

    item_type: ClassVar[int] = 0x52
    uid: str

    def __post_init__(self) -> None:
        check_uid(self.uid, "implementation class UID")

    def encode(self) -> bytes:
        return encode_item(self.item_type, self.uid.encode("ascii"))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "Implementation Class UID Sub-item")
        return cls(uid=wire_padded_text(reader.rest(), "implementation class UID"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AsynchronousOperationsWindowSubItem:
    """PS3.7 D.3.3.3: outstanding operations the sender may invoke and perform."""

    item_type: ClassVar[int] = 0x53
    max_operations_invoked: int
    max_operations_performed: int

    def __post_init__(self) -> None:
        check_int(self.max_operations_invoked, "maximum operations invoked", 0, 0xFFFF)
        check_int(self.max_operations_performed, "maximum operations performed", 0, 0xFFFF)

    def encode(self) -> bytes:
        value = _ASYNC_WINDOW.pack(self.max_operations_invoked, self.max_operations_performed)
        return encode_item(self.item_type, value)

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "Asynchronous Operations Window Sub-item")
        invoked = reader.uint16("maximum operations invoked")
        performed = reader.uint16("maximum operations performed")
        reader.finish()
        return cls(max_operations_invoked=invoked, max_operations_performed=performed)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScpScuRoleSelectionSubItem:
    """PS3.7 D.3.3.4: the roles proposed or accepted for one SOP class."""

    item_type: ClassVar[int] = 0x54
    sop_class_uid: str
    scu_role: bool
    scp_role: bool

    def __post_init__(self) -> None:
        check_uid(self.sop_class_uid, "SOP class UID")
        _check_bool(self.scu_role, "SCU role")
        _check_bool(self.scp_role, "SCP role")

    def encode(self) -> bytes:
        value = _field16(self.sop_class_uid.encode("ascii"))
        return encode_item(self.item_type, value + bytes((self.scu_role, self.scp_role)))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "SCP/SCU Role Selection Sub-item")
        uid = wire_padded_text(reader.field16("SOP class UID"), "SOP class UID")
        scu_role = reader.flag("SCU role")
        scp_role = reader.flag("SCP role")
        reader.finish()
        return cls(sop_class_uid=uid, scu_role=scu_role, scp_role=scp_role)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImplementationVersionNameSubItem:
    """PS3.7 D.3.3.2: 1 to 16 characters naming the sender's version."""

    item_type: ClassVar[int] = 0x55
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 16:
            raise LocalProtocolError(
                f"implementation version name must be 1..16 chars: {self.name!r}"
            )
        if not all(" " <= char <= "~" for char in self.name) or self.name.endswith(" "):
            raise LocalProtocolError(
                f"implementation version name must be printable ASCII: {self.name!r}"
            )

    def encode(self) -> bytes:
        return encode_item(self.item_type, self.name.encode("ascii"))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "Implementation Version Name Sub-item")
        return cls(name=wire_padded_text(reader.rest(), "implementation version name"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SOPClassExtendedNegotiationSubItem:
    """PS3.7 D.3.3.5: service-class specific negotiation bytes for one SOP class."""

    item_type: ClassVar[int] = 0x56
    sop_class_uid: str
    service_class_application_information: bytes

    def __post_init__(self) -> None:
        check_uid(self.sop_class_uid, "SOP class UID")
        _check_bytes(
            self.service_class_application_information,
            "service class application information",
            MAX_ITEM_LENGTH,
        )

    def encode(self) -> bytes:
        value = _field16(self.sop_class_uid.encode("ascii"))
        return encode_item(self.item_type, value + self.service_class_application_information)

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "SOP Class Extended Negotiation Sub-item")
        uid = wire_padded_text(reader.field16("SOP class UID"), "SOP class UID")
        information = bytes(reader.rest())
        return cls(sop_class_uid=uid, service_class_application_information=information)


@dataclass(frozen=True, slots=True, kw_only=True)
class SOPClassCommonExtendedNegotiationSubItem:
    """PS3.7 D.3.3.6: the service class and related general SOP classes of a SOP class.

    Unlike the other items, byte 2 of the header is the sub-item version (0).
    Bytes after the related general SOP class field are ignored on decode, so
    that a later sub-item version with more fields still reads.
    """

    item_type: ClassVar[int] = 0x57
    sub_item_version: ClassVar[int] = 0
    sop_class_uid: str
    service_class_uid: str
    related_general_sop_class_uids: tuple[str, ...]

    def __post_init__(self) -> None:
        check_uid(self.sop_class_uid, "SOP class UID")
        check_uid(self.service_class_uid, "service class UID")
        if not isinstance(self.related_general_sop_class_uids, tuple):
            raise LocalProtocolError("related general SOP class UIDs must be a tuple")
        for uid in self.related_general_sop_class_uids:
            check_uid(uid, "related general SOP class UID")

    def encode(self) -> bytes:
        related = b"".join(
            _field16(uid.encode("ascii")) for uid in self.related_general_sop_class_uids
        )
        value = b"".join(
            (
                _field16(self.sop_class_uid.encode("ascii")),
                _field16(self.service_class_uid.encode("ascii")),
                _field16(related),
            )
        )
        return encode_item(self.item_type, value, first_reserved=self.sub_item_version)

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        what = "SOP Class Common Extended Negotiation Sub-item"
        reader = item_value(data, cls.item_type, what)
        sop_class_uid = wire_padded_text(reader.field16("SOP class UID"), "SOP class UID")
        service_class_uid = wire_padded_text(
            reader.field16("service class UID"), "service class UID"
        )
        related = WireReader(reader.field16("related general SOP class identification"), what)
        uids: list[str] = []
        while related.remaining:
            field = "related general SOP class UID"
            uids.append(wire_padded_text(related.field16(field), field))
        return cls(
            sop_class_uid=sop_class_uid,
            service_class_uid=service_class_uid,
            related_general_sop_class_uids=tuple(uids),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UserIdentityRQSubItem:
    """PS3.7 D.3.3.7.1: the requestor's user identity.

    The meaning of ``user_identity_type`` (1 username, 2 username and passcode,
    3 Kerberos, 4 SAML, 5 JWT) is left to user identity negotiation, which may
    reject a type it does not support; the codec carries any non-zero value.
    """

    item_type: ClassVar[int] = 0x58
    user_identity_type: int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes

    def __post_init__(self) -> None:
        check_int(self.user_identity_type, "user identity type", 1, 255)
        _check_bool(self.positive_response_requested, "positive response requested")
        _check_bytes(self.primary_field, "primary field", MAX_ITEM_LENGTH)
        _check_bytes(self.secondary_field, "secondary field", MAX_ITEM_LENGTH)

    def encode(self) -> bytes:
        value = b"".join(
            (
                bytes((self.user_identity_type, self.positive_response_requested)),
                _field16(self.primary_field),
                _field16(self.secondary_field),
            )
        )
        return encode_item(self.item_type, value)

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "User Identity Sub-item (RQ)")
        identity_type = reader.uint8("user identity type")
        positive = reader.flag("positive response requested")
        primary = bytes(reader.field16("primary field"))
        secondary = bytes(reader.field16("secondary field"))
        reader.finish()
        return cls(
            user_identity_type=identity_type,
            positive_response_requested=positive,
            primary_field=primary,
            secondary_field=secondary,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UserIdentityACSubItem:
    """PS3.7 D.3.3.7.2: the acceptor's server response to a user identity."""

    item_type: ClassVar[int] = 0x59
    server_response: bytes

    def __post_init__(self) -> None:
        _check_bytes(self.server_response, "server response", MAX_ITEM_LENGTH - 2)

    def encode(self) -> bytes:
        return encode_item(self.item_type, _field16(self.server_response))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        reader = item_value(data, cls.item_type, "User Identity Sub-item (AC)")
        response = bytes(reader.field16("server response"))
        reader.finish()
        return cls(server_response=response)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownSubItem:
    """A user-information sub-item this implementation does not know.

    PS3.8 D.2: unrecognised sub-items are ignored, never an error; we keep the
    value opaque so that it can be logged or echoed.
    """

    item_type: int
    data: bytes

    def __post_init__(self) -> None:
        check_int(self.item_type, "sub-item type", 0, 255)
        if self.item_type in _KNOWN_SUB_ITEMS:
            raise LocalProtocolError(f"sub-item type 0x{self.item_type:02X} is a known sub-item")
        _check_bytes(self.data, "sub-item data", MAX_ITEM_LENGTH)

    def encode(self) -> bytes:
        return encode_item(self.item_type, self.data)

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        view = memoryview(data)
        if len(view) < ITEM_HEADER_LENGTH:
            raise wire_error(f"user information sub-item: truncated header ({len(view)} bytes)")
        item_type = view[0]
        reader = item_value(view, item_type, "user information sub-item")
        return cls(item_type=item_type, data=bytes(reader.rest()))


UserSubItem: TypeAlias = (
    MaximumLengthSubItem
    | ImplementationClassUIDSubItem
    | AsynchronousOperationsWindowSubItem
    | ScpScuRoleSelectionSubItem
    | ImplementationVersionNameSubItem
    | SOPClassExtendedNegotiationSubItem
    | SOPClassCommonExtendedNegotiationSubItem
    | UserIdentityRQSubItem
    | UserIdentityACSubItem
    | UnknownSubItem
)

_KNOWN_SUB_ITEMS: dict[int, Callable[[memoryview], UserSubItem]] = {
    kind.item_type: kind.decode
    for kind in (
        MaximumLengthSubItem,
        ImplementationClassUIDSubItem,
        AsynchronousOperationsWindowSubItem,
        ScpScuRoleSelectionSubItem,
        ImplementationVersionNameSubItem,
        SOPClassExtendedNegotiationSubItem,
        SOPClassCommonExtendedNegotiationSubItem,
        UserIdentityRQSubItem,
        UserIdentityACSubItem,
    )
}


# ---------------------------------------------------------------------------
# The user information item


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInformationItem:
    """PS3.8 9.3.2.3: the user information sub-items, in the order received.

    The properties pick the sub-items the standard allows once (the first one
    wins if a peer repeats them) or collect those it allows per SOP class.
    """

    item_type: ClassVar[int] = 0x50
    sub_items: tuple[UserSubItem, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.sub_items, tuple):
            raise LocalProtocolError("user information sub-items must be a tuple")

    def encode(self) -> bytes:
        return encode_item(self.item_type, b"".join(item.encode() for item in self.sub_items))

    @classmethod
    @wire_input
    def decode(cls, data: bytes | memoryview) -> Self:
        what = "User Information Item"
        reader = item_value(data, cls.item_type, what)
        sub_items: list[UserSubItem] = []
        for item_type, item in iter_items(reader.rest(), what):
            decode = _KNOWN_SUB_ITEMS.get(item_type, UnknownSubItem.decode)
            sub_items.append(decode(item))
        return cls(sub_items=tuple(sub_items))

    def _first(self, kind: type[_T]) -> _T | None:
        return next((item for item in self.sub_items if isinstance(item, kind)), None)

    def _every(self, kind: type[_T]) -> tuple[_T, ...]:
        return tuple(item for item in self.sub_items if isinstance(item, kind))

    @property
    def maximum_length(self) -> int | None:
        item = self._first(MaximumLengthSubItem)
        return None if item is None else item.maximum_length

    @property
    def implementation_class_uid(self) -> str | None:
        item = self._first(ImplementationClassUIDSubItem)
        return None if item is None else item.uid

    @property
    def implementation_version_name(self) -> str | None:
        item = self._first(ImplementationVersionNameSubItem)
        return None if item is None else item.name

    @property
    def async_ops_window(self) -> AsynchronousOperationsWindowSubItem | None:
        return self._first(AsynchronousOperationsWindowSubItem)

    @property
    def role_selection(self) -> tuple[ScpScuRoleSelectionSubItem, ...]:
        return self._every(ScpScuRoleSelectionSubItem)

    @property
    def sop_class_extended(self) -> tuple[SOPClassExtendedNegotiationSubItem, ...]:
        return self._every(SOPClassExtendedNegotiationSubItem)

    @property
    def sop_class_common_extended(self) -> tuple[SOPClassCommonExtendedNegotiationSubItem, ...]:
        return self._every(SOPClassCommonExtendedNegotiationSubItem)

    @property
    def user_identity_rq(self) -> UserIdentityRQSubItem | None:
        return self._first(UserIdentityRQSubItem)

    @property
    def user_identity_ac(self) -> UserIdentityACSubItem | None:
        return self._first(UserIdentityACSubItem)


# PS3.8 9.3 and Annex D: every item type the standard defines, so that a
# misplaced known item is "unexpected" and anything else "unrecognized".
_KNOWN_ITEM_TYPES = frozenset(
    {
        ApplicationContextItem.item_type,
        PresentationContextRQItem.item_type,
        PresentationContextACItem.item_type,
        AbstractSyntaxItem.item_type,
        TransferSyntaxItem.item_type,
        UserInformationItem.item_type,
        *_KNOWN_SUB_ITEMS,
    }
)
