"""Incremental PDU parser: bytes in as they arrive, whole PDUs out.

The caller feeds whatever the socket returned to :meth:`PduParser.receive_data`
and then calls :meth:`PduParser.next_pdu` until it returns None (more bytes
needed). The header is checked as soon as its 6 bytes are in, so a header
claiming 4 GiB, an unknown PDU type or a P-DATA-TF over the advertised
maximum raises before a single body byte is waited for or buffered.
"""

from __future__ import annotations

from dicombus.protocol.errors import LocalProtocolError, RemoteProtocolError
from dicombus.protocol.limits import DEFAULT_MAX_ASSOCIATE_PDU_LENGTH, PDU_HEADER_LENGTH
from dicombus.protocol.pdus import PDU, check_pdu_header, decode_pdu

__all__ = ["PduParser"]


class PduParser:
    """Splits a byte stream into PDUs (PS3.8 9.3.1).

    ``max_pdata_length`` is the Maximum Length we advertised (PS3.8 D.1, 0 for
    unlimited); the caller updates it once the association is negotiated.
    After a RemoteProtocolError the stream cannot be resynchronised: the
    runtime aborts, and further calls raise LocalProtocolError.
    """

    __slots__ = ("_broken", "_buffer", "_header", "_max_pdata_length", "max_associate_length")

    def __init__(
        self,
        *,
        max_pdata_length: int,
        max_associate_length: int = DEFAULT_MAX_ASSOCIATE_PDU_LENGTH,
    ) -> None:
        self.max_pdata_length = max_pdata_length
        self.max_associate_length = max_associate_length
        self._buffer = bytearray()
        # (pdu_type, body_length) of the PDU being received, once checked.
        self._header: tuple[int, int] | None = None
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
    def has_partial_pdu(self) -> bool:
        """True while part of a PDU is buffered: the peer owes us bytes.

        A caller uses it to bound each PDU by a deadline, and to tell a clean
        close from a connection lost in the middle of a PDU.
        """
        return bool(self._buffer)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer."""
        self._buffer += data

    def next_pdu(self) -> PDU | None:
        """Return the next complete PDU, or None if more bytes are needed."""
        if self._broken:
            raise LocalProtocolError("next_pdu() called after the stream failed to parse")
        try:
            return self._next_pdu()
        except RemoteProtocolError:
            self._broken = True
            raise

    def _next_pdu(self) -> PDU | None:
        buffer = self._buffer
        if self._header is None:
            if len(buffer) < PDU_HEADER_LENGTH:
                return None
            self._header = check_pdu_header(
                bytes(buffer[:PDU_HEADER_LENGTH]),
                max_pdata_length=self._max_pdata_length,
                max_associate_length=self.max_associate_length,
            )
        pdu_type, body_length = self._header
        end = PDU_HEADER_LENGTH + body_length
        if len(buffer) < end:
            return None
        with memoryview(buffer) as view:
            body = bytes(view[PDU_HEADER_LENGTH:end])
        del buffer[:end]
        self._header = None
        return decode_pdu(pdu_type, body)
