"""The seven Upper Layer PDUs of PS3.8 9.3, their header check and their codec.

Every PDU starts with a 6-byte header: PDU type (1), reserved (1) and a
big-endian 4-byte length of the body that follows. The runtime reads the
header, calls :func:`check_pdu_header` before it reads or allocates the body,
then hands the body to :func:`decode_pdu`.

P-DATA-TF is the hot path: decoding slices the body with memoryview (no copy
of the data), ``encode()`` copies each PDV's data once, and
``encode_segments()`` hands the caller's buffers to ``socket.sendmsg`` as they
are.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self, TypeAlias, TypeVar

from dicombus.protocol.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from dicombus.protocol.items import (
    ApplicationContextItem,
    PresentationContextACItem,
    PresentationContextRQItem,
    UserInformationItem,
    WireReader,
    check_context_id,
    check_int,
    check_uid,
    exactly_one,
    iter_items,
    unexpected_item,
    wire_error,
    wire_input,
    wire_text,
)
from dicombus.protocol.limits import (
    AE_TITLE_LENGTH,
    MAX_PRESENTATION_CONTEXTS,
    PDU_HEADER_LENGTH,
)

__all__ = [
    "PDU",
    "PDV_HEADER_LENGTH",
    "AAbort",
    "AAssociateAC",
    "AAssociateRJ",
    "AAssociateRQ",
    "AReleaseRP",
    "AReleaseRQ",
    "AcseRejectReason",
    "PDataTF",
    "PdvParts",
    "PresentationDataValue",
    "PresentationRejectReason",
    "RejectResult",
    "RejectSource",
    "UserRejectReason",
    "check_pdu_header",
    "decode_pdu",
    "encode_pdu",
    "message_control_header",
    "pdata_segments",
]

# PS3.8 9.3.1: PDU type (1), reserved (1), PDU length (4), big endian.
_PDU_HEADER = struct.Struct(">BBI")
# PS3.8 9.3.2: protocol version (2), reserved (2), called AE title (16),
# calling AE title (16), reserved (32); the variable items follow.
_ASSOCIATE_FIXED = struct.Struct(">HH16s16s32s")
# PS3.8 9.3.5.1: PDV item length (4), presentation context ID (1), message
# control header (1); the PDV data follows. The item length counts the last
# two fields and the data.
_PDV_HEADER = struct.Struct(">IBB")
PDV_HEADER_LENGTH = _PDV_HEADER.size
# The PDU header and the first PDV header, packed together for one send.
_PDATA_FIRST_HEADERS = struct.Struct(">BBIIBB")
# PS3.8 9.3.4, 9.3.6, 9.3.7, 9.3.8: the 4-byte body of the fixed-size PDUs.
_FOUR_BYTES = struct.Struct(">BBBB")
_MAX_UINT32 = 0xFFFFFFFF
# PS3.8 E.2: message control header bit 0 set = command, bit 1 set = last fragment.
_COMMAND_BIT = 0x01
_LAST_BIT = 0x02
_C = TypeVar("_C", PresentationContextRQItem, PresentationContextACItem)


class RejectResult(IntEnum):
    """PS3.8 Table 9-21: the Result field of an A-ASSOCIATE-RJ."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """PS3.8 Table 9-21: the Source field of an A-ASSOCIATE-RJ."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class UserRejectReason(IntEnum):
    """PS3.8 Table 9-21: Reason/Diag. when the source is the UL service-user (4-6, 8-10
    are reserved)."""

    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AE_TITLE_NOT_RECOGNIZED = 3
    CALLED_AE_TITLE_NOT_RECOGNIZED = 7


class AcseRejectReason(IntEnum):
    """PS3.8 Table 9-21: Reason/Diag. when the source is the UL service-provider (ACSE
    related function)."""

    NO_REASON_GIVEN = 1
    PROTOCOL_VERSION_NOT_SUPPORTED = 2


class PresentationRejectReason(IntEnum):
    """PS3.8 Table 9-21: Reason/Diag. when the source is the UL service-provider
    (presentation related function); 0 and 3-7 are reserved."""

    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


# PS3.8 Table 9-21: the Reason/Diag. values for each source, reserved ones
# included (a peer may send them; they still mean "rejected").
_REJECT_REASONS: dict[int, range] = {
    RejectSource.SERVICE_USER: range(1, 11),
    RejectSource.SERVICE_PROVIDER_ACSE: range(1, 3),
    RejectSource.SERVICE_PROVIDER_PRESENTATION: range(0, 8),
}


# ---------------------------------------------------------------------------
# AE titles


def _check_ae_title(value: str, what: str) -> None:
    """PS3.5 Table 6.2-1 (AE) and PS3.8 9.3.2: 1..16 characters, no backslash or
    control characters, not all spaces; leading and trailing spaces are not
    significant, so we require callers to strip them."""
    if not isinstance(value, str) or not 0 < len(value) <= AE_TITLE_LENGTH:
        raise LocalProtocolError(f"{what} must be a str of 1..16 characters: {value!r}")
    if not all(" " <= char <= "~" and char != "\\" for char in value):
        raise LocalProtocolError(f"{what} must be ASCII without backslash or controls: {value!r}")
    if value != value.strip(" "):
        raise LocalProtocolError(f"{what} must not have leading or trailing spaces: {value!r}")


def _encode_ae_title(value: str) -> bytes:
    return value.encode("ascii").ljust(AE_TITLE_LENGTH, b" ")


def _wire_ae_title(raw: bytes, what: str) -> str:
    """PS3.8 9.3.2: leading and trailing spaces are not significant."""
    return wire_text(raw, what).strip(" \x00")


def _echoed_ae_title(raw: bytes, what: str) -> str:
    """PS3.8 9.3.3: in an A-ASSOCIATE-AC the AE title fields are reserved, echo
    the request, and are not tested; whatever does not read as one becomes ""."""
    try:
        title = _wire_ae_title(raw, what)
        _check_ae_title(title, what)
    except (LocalProtocolError, RemoteProtocolError):
        return ""
    return title


# ---------------------------------------------------------------------------
# A-ASSOCIATE-RQ and A-ASSOCIATE-AC


def _check_associate(
    protocol_version: int, application_context_name: str, contexts: tuple[_C, ...], what: str
) -> None:
    check_int(protocol_version, "protocol version", 0, 0xFFFF)
    check_uid(application_context_name, "application context name")
    if not isinstance(contexts, tuple) or len(contexts) > MAX_PRESENTATION_CONTEXTS:
        raise LocalProtocolError(
            f"{what} needs a tuple of at most {MAX_PRESENTATION_CONTEXTS} presentation contexts"
        )
    ids = [context.context_id for context in contexts]
    if len(set(ids)) != len(ids):
        raise LocalProtocolError(f"{what} repeats a presentation context ID: {ids}")


def _encode_associate(
    pdu_type: int,
    fixed: tuple[int, str, str],
    application_context_name: str,
    contexts: tuple[_C, ...],
    user_information: UserInformationItem,
) -> bytes:
    protocol_version, called, calling = fixed
    body = b"".join(
        (
            _ASSOCIATE_FIXED.pack(
                protocol_version, 0, _encode_ae_title(called), _encode_ae_title(calling), b""
            ),
            ApplicationContextItem(name=application_context_name).encode(),
            *(context.encode() for context in contexts),
            user_information.encode(),
        )
    )
    return _PDU_HEADER.pack(pdu_type, 0, len(body)) + body


def _decode_associate(
    body: bytes | memoryview, context_type: type[_C], what: str
) -> tuple[int, bytes, bytes, str, tuple[_C, ...], UserInformationItem]:
    """Split an A-ASSOCIATE-RQ/AC body into its fields; items may come in any order."""
    reader = WireReader(body, what)
    version, _reserved, called, calling, _reserved2 = _ASSOCIATE_FIXED.unpack(
        reader.take(_ASSOCIATE_FIXED.size, "fixed fields")
    )
    names: list[str] = []
    contexts: list[_C] = []
    user_information: list[UserInformationItem] = []
    for item_type, item in iter_items(reader.rest(), what):
        if item_type == ApplicationContextItem.item_type:
            names.append(ApplicationContextItem.decode(item).name)
        elif item_type == context_type.item_type:
            contexts.append(context_type.decode(item))
        elif item_type == UserInformationItem.item_type:
            user_information.append(UserInformationItem.decode(item))
        else:
            raise unexpected_item(item_type, what)
    return (
        version,
        called,
        calling,
        exactly_one(names, "Application Context Item"),
        tuple(contexts),
        exactly_one(user_information, "User Information Item"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AAssociateRQ:
    """PS3.8 9.3.2: a request to open an association.

    The protocol version is carried as received; PS3.8 9.3.2 leaves rejecting
    an unsupported version (A-ASSOCIATE-RJ) to the acceptor, not to the codec.
    """

    pdu_type: ClassVar[int] = 0x01
    protocol_version: int = 1
    called_ae_title: str
    calling_ae_title: str
    application_context_name: str = "1.2.840.10008.3.1.1.1"
    presentation_contexts: tuple[PresentationContextRQItem, ...]
    user_information: UserInformationItem

    def __post_init__(self) -> None:
        _check_ae_title(self.called_ae_title, "called AE title")
        _check_ae_title(self.calling_ae_title, "calling AE title")
        _check_associate(
            self.protocol_version,
            self.application_context_name,
            self.presentation_contexts,
            "A-ASSOCIATE-RQ",
        )

    def encode(self) -> bytes:
        return _encode_associate(
            self.pdu_type,
            (self.protocol_version, self.called_ae_title, self.calling_ae_title),
            self.application_context_name,
            self.presentation_contexts,
            self.user_information,
        )

    @classmethod
    @wire_input
    def decode_body(cls, body: bytes | memoryview) -> Self:
        version, called, calling, name, contexts, user = _decode_associate(
            body, PresentationContextRQItem, "A-ASSOCIATE-RQ"
        )
        return cls(
            protocol_version=version,
            called_ae_title=_wire_ae_title(called, "called AE title"),
            calling_ae_title=_wire_ae_title(calling, "calling AE title"),
            application_context_name=name,
            presentation_contexts=contexts,
            user_information=user,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AAssociateAC:
    """PS3.8 9.3.3: the acceptance of an association.

    The AE title fields are reserved here and shall echo the request (PS3.8
    9.3.3); "" stands for a field that did not hold a valid AE title, which the
    receiver must tolerate, and encodes as 16 spaces.
    """

    pdu_type: ClassVar[int] = 0x02
    protocol_version: int = 1
    called_ae_title: str
    calling_ae_title: str
    application_context_name: str = "1.2.840.10008.3.1.1.1"
    presentation_contexts: tuple[PresentationContextACItem, ...]
    user_information: UserInformationItem

    def __post_init__(self) -> None:
        if self.called_ae_title != "":
            _check_ae_title(self.called_ae_title, "called AE title")
        if self.calling_ae_title != "":
            _check_ae_title(self.calling_ae_title, "calling AE title")
        _check_associate(
            self.protocol_version,
            self.application_context_name,
            self.presentation_contexts,
            "A-ASSOCIATE-AC",
        )

    def encode(self) -> bytes:
        return _encode_associate(
            self.pdu_type,
            (self.protocol_version, self.called_ae_title, self.calling_ae_title),
            self.application_context_name,
            self.presentation_contexts,
            self.user_information,
        )

    @classmethod
    @wire_input
    def decode_body(cls, body: bytes | memoryview) -> Self:
        version, called, calling, name, contexts, user = _decode_associate(
            body, PresentationContextACItem, "A-ASSOCIATE-AC"
        )
        return cls(
            protocol_version=version,
            called_ae_title=_echoed_ae_title(called, "called AE title"),
            calling_ae_title=_echoed_ae_title(calling, "calling AE title"),
            application_context_name=name,
            presentation_contexts=contexts,
            user_information=user,
        )


# ---------------------------------------------------------------------------
# A-ASSOCIATE-RJ


@dataclass(frozen=True, slots=True, kw_only=True)
class AAssociateRJ:
    """PS3.8 9.3.4: the rejection of an association (Table 9-21 values)."""

    pdu_type: ClassVar[int] = 0x03
    result: int
    source: int
    reason: int

    def __post_init__(self) -> None:
        check_int(self.result, "A-ASSOCIATE-RJ result", min(RejectResult), max(RejectResult))
        check_int(self.source, "A-ASSOCIATE-RJ source", min(RejectSource), max(RejectSource))
        reasons = _REJECT_REASONS[self.source]
        check_int(self.reason, "A-ASSOCIATE-RJ reason", reasons.start, reasons.stop - 1)

    def encode(self) -> bytes:
        return _PDU_HEADER.pack(self.pdu_type, 0, _FOUR_BYTES.size) + _FOUR_BYTES.pack(
            0, self.result, self.source, self.reason
        )

    @classmethod
    @wire_input
    def decode_body(cls, body: bytes | memoryview) -> Self:
        _reserved, result, source, reason = _fixed_body(body, "A-ASSOCIATE-RJ")
        return cls(result=result, source=source, reason=reason)


def _fixed_body(body: bytes | memoryview, what: str) -> tuple[int, int, int, int]:
    if len(body) != _FOUR_BYTES.size:
        raise wire_error(f"{what} body must be {_FOUR_BYTES.size} bytes, got {len(body)}")
    fields: tuple[int, int, int, int] = _FOUR_BYTES.unpack(body)
    return fields


# ---------------------------------------------------------------------------
# P-DATA-TF


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationDataValue:
    """PS3.8 9.3.5.1 and Annex E: one fragment of a command or data set."""

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes | memoryview

    def __post_init__(self) -> None:
        check_context_id(self.context_id)
        if not isinstance(self.is_command, bool) or not isinstance(self.is_last, bool):
            raise LocalProtocolError("is_command and is_last must be bools")
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"PDV data must be bytes or memoryview, not {self.data!r}")
        if _nbytes(self.data) > _MAX_UINT32 - 2 - _PDV_HEADER.size:
            raise LocalProtocolError("PDV data does not fit a 4-byte PDU length")

    @property
    def message_control_header(self) -> int:
        return message_control_header(is_command=self.is_command, is_last=self.is_last)

    @classmethod
    def _decoded(cls, context_id: int, control: int, data: memoryview) -> Self:
        """A PDV that :meth:`PDataTF.decode_body` framed: its fields need no check
        but the context ID's (odd; one byte, so at most 255), which the caller made."""
        pdv = object.__new__(cls)
        set_field = object.__setattr__
        set_field(pdv, "context_id", context_id)
        set_field(pdv, "is_command", bool(control & _COMMAND_BIT))
        set_field(pdv, "is_last", bool(control & _LAST_BIT))
        set_field(pdv, "data", data)
        return pdv


def message_control_header(*, is_command: bool, is_last: bool) -> int:
    """PS3.8 E.2: bit 0 command, bit 1 last fragment; bits 2-7 are 0."""
    return (_COMMAND_BIT if is_command else 0) | (_LAST_BIT if is_last else 0)


def _nbytes(data: bytes | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class PDataTF:
    """PS3.8 9.3.5: one or more presentation data values."""

    pdu_type: ClassVar[int] = 0x04
    pdvs: tuple[PresentationDataValue, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.pdvs, tuple) or not self.pdvs:
            raise LocalProtocolError("a P-DATA-TF needs a non-empty tuple of PDVs")
        if self.body_length > _MAX_UINT32:
            raise LocalProtocolError("P-DATA-TF does not fit a 4-byte PDU length")

    @property
    def body_length(self) -> int:
        """The PDU length field: every PDV item with its 4-byte length."""
        return sum(_PDV_HEADER.size + _nbytes(pdv.data) for pdv in self.pdvs)

    def encode_segments(self) -> list[bytes | memoryview]:
        """The PDU as buffers for ``socket.sendmsg`` (see :func:`pdata_segments`)."""
        return pdata_segments(
            [(pdv.context_id, pdv.message_control_header, pdv.data) for pdv in self.pdvs]
        )

    def encode(self) -> bytes:
        return b"".join(self.encode_segments())

    @classmethod
    @wire_input
    def decode_body(cls, body: bytes | memoryview) -> Self:
        """Each PDV's data is a memoryview slice of ``body``, never a copy.

        The hot path of every C-STORE: the bounds are checked here, once, so
        the PDVs and the PDU are built without the public constructors'
        checks, which would repeat them.
        """
        view = memoryview(body)
        size = len(view)
        pdvs: list[PresentationDataValue] = []
        decoded = PresentationDataValue._decoded
        offset = 0
        while offset < size:
            if size - offset < _PDV_HEADER.size:
                raise wire_error(f"P-DATA-TF: truncated PDV header at offset {offset}")
            length, context_id, control = _PDV_HEADER.unpack_from(view, offset)
            # PS3.8 9.3.5.1: the item length counts the context ID and the
            # message control header, so it is at least 2.
            if length < 2:
                raise wire_error(f"P-DATA-TF: PDV item length {length} is below 2")
            end = offset + 4 + length
            if end > size:
                raise wire_error(f"P-DATA-TF: PDV item of {length} bytes runs past the PDU")
            if not context_id & 1:
                check_context_id(context_id)  # raises: PS3.8 9.3.2.2, odd IDs only
            pdvs.append(decoded(context_id, control, view[offset + _PDV_HEADER.size : end]))
            offset = end
        if not pdvs:
            raise wire_error("P-DATA-TF without a presentation data value")
        pdu = object.__new__(cls)
        object.__setattr__(pdu, "pdvs", tuple(pdvs))
        return pdu


# One PDV as it is framed: presentation context ID, message control header, data.
PdvParts: TypeAlias = tuple[int, int, bytes | memoryview]


def pdata_segments(pdvs: Sequence[PdvParts]) -> list[bytes | memoryview]:
    """PS3.8 9.3.5: a P-DATA-TF of ``pdvs`` as buffers for ``socket.sendmsg``.

    The one place P-DATA is framed (:meth:`PDataTF.encode_segments` and
    :func:`dicombus.protocol.fragments.fragment_message` call it): the PDU
    header and the first PDV header packed as one small bytes, each later PDV
    header as another, and every PDV's data as the caller's own buffer, never
    copied. The caller keeps the PDU within the peer's Maximum Length and
    ``pdvs`` non-empty.
    """
    body_length = sum(_PDV_HEADER.size + _nbytes(data) for _, _, data in pdvs)
    segments: list[bytes | memoryview] = []
    for context_id, control, data in pdvs:
        segments.append(_PDV_HEADER.pack(2 + _nbytes(data), context_id, control))
        segments.append(data)
    context_id, control, data = pdvs[0]
    segments[0] = _PDATA_FIRST_HEADERS.pack(
        PDataTF.pdu_type, 0, body_length, 2 + _nbytes(data), context_id, control
    )
    return segments


# ---------------------------------------------------------------------------
# A-RELEASE-RQ, A-RELEASE-RP and A-ABORT


@dataclass(frozen=True, slots=True, kw_only=True)
class AReleaseRQ:
    """PS3.8 9.3.6: a request to release the association; 4 reserved bytes."""

    pdu_type: ClassVar[int] = 0x05

    def encode(self) -> bytes:
        return _PDU_HEADER.pack(self.pdu_type, 0, _FOUR_BYTES.size) + bytes(_FOUR_BYTES.size)

    @classmethod
    def decode_body(cls, body: bytes | memoryview) -> Self:
        _fixed_body(body, "A-RELEASE-RQ")  # PS3.8 9.3.6: reserved, not tested
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class AReleaseRP:
    """PS3.8 9.3.7: the reply to a release request; 4 reserved bytes."""

    pdu_type: ClassVar[int] = 0x06

    def encode(self) -> bytes:
        return _PDU_HEADER.pack(self.pdu_type, 0, _FOUR_BYTES.size) + bytes(_FOUR_BYTES.size)

    @classmethod
    def decode_body(cls, body: bytes | memoryview) -> Self:
        _fixed_body(body, "A-RELEASE-RP")  # PS3.8 9.3.7: reserved, not tested
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class AAbort:
    """PS3.8 9.3.8: an abort; Table 9-26 source and reason.

    The reason is significant only when the source is the service provider
    (2); otherwise any byte is carried as received.
    """

    pdu_type: ClassVar[int] = 0x07
    source: int = int(AbortSource.SERVICE_USER)
    reason: int = int(AbortReason.NOT_SPECIFIED)

    def __post_init__(self) -> None:
        check_int(self.source, "A-ABORT source", min(AbortSource), max(AbortSource))
        top = max(AbortReason) if self.source == AbortSource.SERVICE_PROVIDER else 0xFF
        check_int(self.reason, "A-ABORT reason", 0, top)

    def encode(self) -> bytes:
        return _PDU_HEADER.pack(self.pdu_type, 0, _FOUR_BYTES.size) + _FOUR_BYTES.pack(
            0, 0, self.source, self.reason
        )

    @classmethod
    @wire_input
    def decode_body(cls, body: bytes | memoryview) -> Self:
        _reserved, _reserved2, source, reason = _fixed_body(body, "A-ABORT")
        return cls(source=source, reason=reason)


PDU: TypeAlias = (
    AAssociateRQ | AAssociateAC | AAssociateRJ | PDataTF | AReleaseRQ | AReleaseRP | AAbort
)

_DECODERS: dict[int, Callable[[bytes | memoryview], PDU]] = {
    kind.pdu_type: kind.decode_body
    for kind in (AAssociateRQ, AAssociateAC, AAssociateRJ, PDataTF, AReleaseRQ, AReleaseRP, AAbort)
}
PDU_NAMES = {
    AAssociateRQ.pdu_type: "A-ASSOCIATE-RQ",
    AAssociateAC.pdu_type: "A-ASSOCIATE-AC",
    AAssociateRJ.pdu_type: "A-ASSOCIATE-RJ",
    PDataTF.pdu_type: "P-DATA-TF",
    AReleaseRQ.pdu_type: "A-RELEASE-RQ",
    AReleaseRP.pdu_type: "A-RELEASE-RP",
    AAbort.pdu_type: "A-ABORT",
}
# The smallest body of each PDU: the A-ASSOCIATE fixed fields, one PDV item
# with no data, the 4 bytes of the fixed-size PDUs.
_MIN_BODY = {
    AAssociateRQ.pdu_type: _ASSOCIATE_FIXED.size,
    AAssociateAC.pdu_type: _ASSOCIATE_FIXED.size,
    AAssociateRJ.pdu_type: _FOUR_BYTES.size,
    PDataTF.pdu_type: _PDV_HEADER.size,
    AReleaseRQ.pdu_type: _FOUR_BYTES.size,
    AReleaseRP.pdu_type: _FOUR_BYTES.size,
    AAbort.pdu_type: _FOUR_BYTES.size,
}


# ---------------------------------------------------------------------------
# Entry points for the runtime


def check_pdu_header(
    header: bytes | memoryview, *, max_pdata_length: int, max_associate_length: int
) -> tuple[int, int]:
    """Validate a 6-byte PDU header and return ``(pdu_type, body_length)``.

    Called before the body is read or allocated, so that a header claiming
    4 GiB costs nothing. ``max_pdata_length`` is the Maximum Length we
    advertised, 0 meaning unlimited (PS3.8 D.1).
    """
    if len(header) != PDU_HEADER_LENGTH:
        raise LocalProtocolError(f"a PDU header is {PDU_HEADER_LENGTH} bytes, got {len(header)}")
    pdu_type, _reserved, length = _PDU_HEADER.unpack(header)
    name = PDU_NAMES.get(pdu_type)
    if name is None:
        raise wire_error(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)
    if pdu_type == PDataTF.pdu_type:
        limit = max_pdata_length or _MAX_UINT32
    elif pdu_type in (AAssociateRQ.pdu_type, AAssociateAC.pdu_type):
        limit = max_associate_length
    else:
        limit = _MIN_BODY[pdu_type]  # PS3.8 9.3.4, 9.3.6-9.3.8: fixed size
    if not _MIN_BODY[pdu_type] <= length <= limit:
        raise wire_error(f"{name} PDU length {length} outside {_MIN_BODY[pdu_type]}..{limit}")
    return pdu_type, length


def decode_pdu(pdu_type: int, body: bytes | memoryview) -> PDU:
    """Decode the body of a PDU whose header :func:`check_pdu_header` accepted."""
    decode = _DECODERS.get(pdu_type)
    if decode is None:
        raise wire_error(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)
    return decode(body)


def encode_pdu(pdu: PDU) -> bytes:
    """Encode any PDU, header included."""
    return pdu.encode()
