"""Fragmenting DIMSE messages into P-DATA-TF PDUs and reassembling them.

PS3.8 Annex E / PS3.7 6.3.1: a message is its command set, then its data set
(if any), each cut into presentation data values (PDVs). Every PDV carries a
message control header saying whether it holds command or data set bytes and
whether it is the last fragment of them.

Sending: :func:`fragment_message` yields one P-DATA-TF PDU at a time as a
list of buffers for ``socket.sendmsg``; the data set is sliced with
memoryview, never copied.

Receiving: :class:`MessageAssembler` takes PDVs as the PDU decoder produces
them and returns a :class:`DimseMessage` when one is complete. Data set bytes
go straight into a :class:`DatasetSink` that the runtime supplies (a temp
file, say), so the core never touches files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Final, Protocol

from pydicom.dataset import Dataset

from dicombus.protocol.commands import CommandField, CommandSet, decode_command_set
from dicombus.protocol.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from dicombus.protocol.items import check_context_id
from dicombus.protocol.limits import (
    DEFAULT_MAX_DATASET_IN_MEMORY,
    MAX_COMMAND_SET_LENGTH,
    MAX_PDU_LENGTH_WHEN_UNLIMITED,
    MINIMUM_PDU_LENGTH,
)
from dicombus.protocol.pdus import (
    PDV_HEADER_LENGTH,
    PdvParts,
    PresentationDataValue,
    message_control_header,
    pdata_segments,
)

# PS3.8 E.2: the message control header of each kind of fragment.
_DATASET_FRAGMENT: Final = message_control_header(is_command=False, is_last=False)
_COMMAND_FRAGMENT: Final = message_control_header(is_command=True, is_last=False)
_LAST_DATASET_FRAGMENT: Final = message_control_header(is_command=False, is_last=True)
_LAST_COMMAND_FRAGMENT: Final = message_control_header(is_command=True, is_last=True)


# ---------------------------------------------------------------- sending


def _pdu_body_limit(max_pdu_length: int) -> int:
    # PS3.8 D.1: 0 means the peer set no limit; a PDU must hold a PDV header
    # and at least one byte, so 1..6 cannot be honoured.
    if max_pdu_length == 0:
        return MAX_PDU_LENGTH_WHEN_UNLIMITED
    if max_pdu_length < MINIMUM_PDU_LENGTH:
        raise LocalProtocolError(
            f"max_pdu_length {max_pdu_length} is below {MINIMUM_PDU_LENGTH} and not 0"
        )
    return max_pdu_length


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def fragment_message(
    *,
    context_id: int,
    command: bytes | bytearray | memoryview,
    dataset: bytes | bytearray | memoryview | None,
    max_pdu_length: int,
) -> Iterator[list[bytes | memoryview]]:
    """Yield the P-DATA-TF PDUs of one message, each as a list of buffers.

    A PDU is ``[PDU header, PDV header, data, PDV header, data, ...]``; the
    data are memoryview slices of ``command`` and ``dataset``. The PDU length
    field never exceeds ``max_pdu_length`` (the peer's Maximum Length, PS3.8
    D.1; 0 = unlimited, sent in PDUs of MAX_PDU_LENGTH_WHEN_UNLIMITED).

    Command fragments come first, then data set fragments; the first data set
    PDV shares the last command PDU when there is room, since PS3.8 9.3.5
    allows several PDVs per PDU (one send instead of two), but no PDV mixes
    command and data set bytes. An empty data set is still one last-fragment
    PDV; ``None`` means the message has no data set.
    """
    # Checked here, not at the first next(): the caller's mistake surfaces
    # where it was made.
    check_context_id(context_id)
    limit = _pdu_body_limit(max_pdu_length)
    pieces = [(_byte_view(command), _COMMAND_FRAGMENT, _LAST_COMMAND_FRAGMENT)]
    if dataset is not None:
        pieces.append((_byte_view(dataset), _DATASET_FRAGMENT, _LAST_DATASET_FRAGMENT))
    return _pack_pdus(context_id, limit, pieces)


def _pack_pdus(
    context_id: int, limit: int, pieces: list[tuple[memoryview, int, int]]
) -> Iterator[list[bytes | memoryview]]:
    # Greedy: each PDU takes PDVs until not one more byte fits under limit.
    pdvs: list[PdvParts] = []
    used = 0
    for view, control, last_control in pieces:
        offset, total = 0, len(view)
        while True:
            room = limit - used - PDV_HEADER_LENGTH
            if room < min(total - offset, 1):
                # Not even one byte (or, for an empty piece, the header) fits.
                yield pdata_segments(pdvs)
                pdvs, used = [], 0
                continue
            size = min(room, total - offset)
            is_last = offset + size == total
            pdvs.append(
                (context_id, last_control if is_last else control, view[offset : offset + size])
            )
            used += PDV_HEADER_LENGTH + size
            offset += size
            if is_last:
                break
    yield pdata_segments(pdvs)


# ---------------------------------------------------------------- receiving


class DatasetSink(Protocol):
    """Where the bytes of a received data set go, fragment by fragment.

    ``write`` must copy what it keeps: the view points into the runtime's
    receive buffer, which is reused as soon as ``write`` returns. It may
    raise RemoteProtocolError to refuse the data set (the runtime aborts).
    """

    def write(self, data: memoryview) -> None: ...

    @property
    def size(self) -> int:
        """The number of bytes written so far."""
        ...

    def getvalue(self) -> bytes:
        """A copy of the bytes written (read back from disk if they were spooled)."""
        ...

    def close(self) -> None:
        """Release what the sink holds outside the process's memory (a spool file)."""
        ...


class MemoryDatasetSink:
    """A data set held in memory, refused past ``max_size`` bytes."""

    __slots__ = ("_buffer", "_max_size")

    def __init__(self, *, max_size: int = DEFAULT_MAX_DATASET_IN_MEMORY) -> None:
        self._buffer = bytearray()
        self._max_size = max_size

    def write(self, data: memoryview) -> None:
        if len(self._buffer) + data.nbytes > self._max_size:
            raise RemoteProtocolError(
                f"data set exceeds the {self._max_size}-byte in-memory limit",
                abort_source=AbortSource.SERVICE_PROVIDER,
                abort_reason=AbortReason.NOT_SPECIFIED,
            )
        self._buffer += data

    @property
    def size(self) -> int:
        return len(self._buffer)

    def getvalue(self) -> bytes:
        """A copy of the data set."""
        return bytes(self._buffer)

    def view(self) -> memoryview:
        """The data set without a copy; write nothing more while it is held."""
        return memoryview(self._buffer)

    def close(self) -> None:
        """Nothing to release: the buffer goes with the last reference (an
        EVT_DIMSE_RECV handler may still hold the message)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DimseMessage:
    """A complete received DIMSE message."""

    context_id: int
    command: CommandSet
    dataset: DatasetSink | None

    @property
    def command_field(self) -> CommandField:
        return self.command.command_field

    @property
    def message_id(self) -> int | None:
        """(0000,0110) MessageID, set in requests."""
        return self.command.MessageID

    @property
    def message_id_being_responded_to(self) -> int | None:
        """(0000,0120) MessageIDBeingRespondedTo, set in responses and C-CANCEL."""
        return self.command.MessageIDBeingRespondedTo

    # pynetdicom's DIMSEMessage attributes, which its users' EVT_DIMSE_RECV /
    # EVT_DIMSE_SENT handlers read.

    @property
    def command_set(self) -> Dataset:
        """The command set as a pydicom Dataset, CommandGroupLength included."""
        return self.command.to_dataset()

    @property
    def data_set(self) -> BytesIO:
        """The data set's encoded bytes (empty without one); a spooled one is read back."""
        return BytesIO(self.dataset.getvalue() if self.dataset is not None else b"")


def _unexpected(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, abort_reason=AbortReason.UNEXPECTED_PDU_PARAMETER)


class MessageAssembler:
    """Reassembles PDVs into DIMSE messages (PS3.8 Annex E, PS3.7 6.3.1).

    Command fragments are collected until the last one, then decoded. If the
    command announces a data set, ``dataset_sink_factory(command)`` is called
    at once -- before any data set byte arrives, so the runtime can open its
    file (or refuse) knowing the SOP class and instance -- and each data set
    fragment is written to that sink as it comes. Without a factory, a
    :class:`MemoryDatasetSink` bounded by ``max_dataset_in_memory`` is used.

    Anything out of order raises RemoteProtocolError; the runtime then aborts
    the association and drops the assembler.
    """

    __slots__ = ("_command_buffer", "_context_id", "_make_sink", "_pending")

    def __init__(
        self,
        *,
        dataset_sink_factory: Callable[[CommandSet], DatasetSink] | None = None,
        max_dataset_in_memory: int = DEFAULT_MAX_DATASET_IN_MEMORY,
    ) -> None:
        if dataset_sink_factory is None:

            def dataset_sink_factory(command: CommandSet) -> DatasetSink:
                return MemoryDatasetSink(max_size=max_dataset_in_memory)

        self._make_sink = dataset_sink_factory
        # The context of the message under way; 0 between messages (PS3.8
        # 9.3.2.2: context IDs are odd, 1..255, so 0 is never one).
        self._context_id = 0
        self._command_buffer = bytearray()
        # The decoded command and its sink while the data set arrives.
        self._pending: tuple[CommandSet, DatasetSink] | None = None

    def add_pdv(self, pdv: PresentationDataValue) -> DimseMessage | None:
        """Take one PDV; return the message it completes, else None."""
        if self._context_id == 0:
            self._context_id = pdv.context_id
        elif pdv.context_id != self._context_id:
            # PS3.8 E.2 / PS3.7 6.3.1: all fragments of a message use one
            # presentation context, and messages are not interleaved.
            raise _unexpected(
                f"PDV on presentation context {pdv.context_id} in the middle of a message "
                f"on context {self._context_id}"
            )
        if self._pending is None:
            return self._add_command_fragment(pdv)
        return self._add_dataset_fragment(pdv, *self._pending)

    def abandon(self) -> DatasetSink | None:
        """Drop the message under way (the association ended); return its sink, if any,
        for the runtime to release (a spool file is the runtime's to remove)."""
        pending, self._pending = self._pending, None
        self._context_id = 0
        self._command_buffer = bytearray()
        return pending[1] if pending is not None else None

    def _add_command_fragment(self, pdv: PresentationDataValue) -> DimseMessage | None:
        if not pdv.is_command:
            raise _unexpected("data set PDV before the command set was complete")
        data: bytes | bytearray | memoryview = pdv.data
        if len(self._command_buffer) + len(data) > MAX_COMMAND_SET_LENGTH:
            raise RemoteProtocolError(f"command set longer than {MAX_COMMAND_SET_LENGTH} bytes")
        if not pdv.is_last:
            self._command_buffer += data
            return None
        if self._command_buffer:
            self._command_buffer += data
            data, self._command_buffer = self._command_buffer, bytearray()
        # A one-PDV command (the usual case) is decoded in place: the decoded
        # values are new objects, nothing refers to the receive buffer.
        command = decode_command_set(data)
        if command.CommandDataSetType is None:
            raise RemoteProtocolError(
                "command set without CommandDataSetType (0000,0800): "
                "cannot tell whether a data set follows"
            )
        if not command.has_dataset:
            return self._complete(command, None)
        self._pending = (command, self._make_sink(command))
        return None

    def _add_dataset_fragment(
        self, pdv: PresentationDataValue, command: CommandSet, sink: DatasetSink
    ) -> DimseMessage | None:
        if pdv.is_command:
            raise _unexpected("command PDV while the data set was expected")
        data = pdv.data
        sink.write(data if isinstance(data, memoryview) else memoryview(data))
        if not pdv.is_last:
            return None
        self._pending = None
        return self._complete(command, sink)

    def _complete(self, command: CommandSet, sink: DatasetSink | None) -> DimseMessage:
        context_id, self._context_id = self._context_id, 0
        return DimseMessage(context_id=context_id, command=command, dataset=sink)
