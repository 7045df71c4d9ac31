"""Cutting a byte stream into PDUs (PS3.8 9.3.1), reading straight into place.

:class:`PduFramer` is the one PDU framer: the socket runtime reads into
:meth:`PduFramer.receive_buffer` with ``recv_into`` (no copy), and
:class:`~dicombus.protocol.connection.DimseConnection` uses it for bytes it
is handed. Each header is checked as soon as its 6 bytes are in, so a header
claiming 4 GiB, an unknown PDU type or a P-DATA-TF over the advertised
maximum is refused before a single body byte is waited for or allocated.
"""

from __future__ import annotations

from typing import Final

from dicombus.protocol.errors import LocalProtocolError, RemoteProtocolError
from dicombus.protocol.limits import (
    DEFAULT_MAX_ASSOCIATE_PDU_LENGTH,
    PDU_HEADER_LENGTH,
    UNLIMITED_PDATA_CAP,
)
from dicombus.protocol.pdus import check_pdu_header

__all__ = ["PduFramer"]

# The body buffer a framer starts with, at most; it grows to the largest PDU received.
_INITIAL_BODY_BUFFER: Final = 1 << 20


class PduFramer:
    """One PDU at a time: its header, then its body, each read into place.

    ``max_pdata_length`` is the Maximum Length we advertised (PS3.8 D.1, 0 for
    unlimited, then capped at UNLIMITED_PDATA_CAP). After a RemoteProtocolError
    the stream cannot be resynchronised: the caller aborts, and further calls
    raise LocalProtocolError.
    """

    __slots__ = (
        "_body",
        "_body_length",
        "_broken",
        "_filled",
        "_header",
        "_max_pdata_length",
        "_pdu_type",
        "max_associate_length",
    )

    def __init__(
        self,
        *,
        max_pdata_length: int,
        max_associate_length: int = DEFAULT_MAX_ASSOCIATE_PDU_LENGTH,
    ) -> None:
        self.max_pdata_length = max_pdata_length
        self.max_associate_length = max_associate_length
        self._header = bytearray(PDU_HEADER_LENGTH)
        self._body = bytearray(max(4096, min(max_pdata_length or 65536, _INITIAL_BODY_BUFFER)))
        self._pdu_type = 0
        self._body_length = -1  # -1 while the header is incomplete
        self._filled = 0
        self._broken = False

    @property
    def max_pdata_length(self) -> int:
        return self._max_pdata_length

    @max_pdata_length.setter
    def max_pdata_length(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise LocalProtocolError(f"max_pdata_length must be 0..0xFFFFFFFF, got {value!r}")
        self._max_pdata_length = value

    @property
    def mid_pdu(self) -> bool:
        """True while part of a PDU is in: the peer owes us the rest.

        A caller uses it to bound each PDU by a deadline, and to tell a clean
        close from a connection lost in the middle of a PDU.
        """
        return self._filled > 0 or self._body_length >= 0

    @property
    def header(self) -> memoryview:
        """The header of the PDU received last (valid until the next receive_buffer())."""
        return memoryview(self._header)

    def receive_buffer(self) -> memoryview:
        """Where the next bytes go: the rest of the current header or body, so a read
        never takes bytes of the next PDU."""
        if self._broken:
            raise LocalProtocolError("the stream failed to parse: nothing more can be read")
        if self._body_length < 0:
            return memoryview(self._header)[self._filled :]
        return memoryview(self._body)[self._filled : self._body_length]

    def received(self, count: int) -> tuple[int, memoryview] | None:
        """``count`` bytes were written into receive_buffer(); the PDU's type and body
        when they completed one (the body views a buffer the next PDU reuses), else None.

        Raises RemoteProtocolError for a header outside our caps.
        """
        self._filled += count
        if self._body_length < 0:
            if self._filled < PDU_HEADER_LENGTH:
                return None
            try:
                self._pdu_type, self._body_length = check_pdu_header(
                    memoryview(self._header),
                    max_pdata_length=self._max_pdata_length or UNLIMITED_PDATA_CAP,
                    max_associate_length=self.max_associate_length,
                )
            except RemoteProtocolError:
                self._broken = True
                raise
            self._filled = 0
            if self._body_length > len(self._body):
                # A new buffer, not a resized one: a caller may still view the last body.
                self._body = bytearray(self._body_length)
        if self._filled < self._body_length:
            return None
        length, self._body_length, self._filled = self._body_length, -1, 0
        return self._pdu_type, memoryview(self._body)[:length]
