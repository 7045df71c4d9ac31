"""Fragmenting DIMSE messages into P-DATA-TF PDUs and reassembling them."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Iterator

import pytest
from dicombus.dataset_codec import decode_dataset
from dicombus.protocol import commands as c
from dicombus.protocol.commands import CommandField, CommandSet, encode_command_set
from dicombus.protocol.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from dicombus.protocol.fragments import (
    DatasetSink,
    DimseMessage,
    MemoryDatasetSink,
    MessageAssembler,
    fragment_message,
)
from dicombus.protocol.limits import MAX_COMMAND_SET_LENGTH, MAX_PDU_LENGTH_WHEN_UNLIMITED
from dicombus.protocol.pdus import PDataTF, PresentationDataValue
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.uid import ImplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ECHO = encode_command_set(c.c_echo_rq(1))  # 68 bytes
STORE = encode_command_set(c.c_store_rq(7, CT_IMAGE_STORAGE, "1.2.3.4.5"))  # 104 bytes

# C-ECHO-RQ on presentation context 1 as one P-DATA-TF (PS3.8 9.3.5, Annex E).
C_ECHO_RQ_PDU = (
    bytes.fromhex(
        "04 00 0000004a"  # PDU type 04H P-DATA-TF, reserved, PDU length 74
        "00000046 01 03"  # PDV item length 70, context ID 1, control 03H: command, last
    )
    + ECHO  # the 68-byte command set of tests/protocol/test_commands.py
)

# C-STORE-RQ and a 4-byte data set packed into one P-DATA-TF.
C_STORE_RQ_PDU = (
    bytes.fromhex(
        "04 00 00000078"  # P-DATA-TF, PDU length 120 = (6 + 104) + (6 + 4)
        "0000006a 03 03"  # PDV item length 106, context ID 3, control 03H: command, last
    )
    + STORE
    + bytes.fromhex(
        "00000006 03 02"  # PDV item length 6, context ID 3, control 02H: data set, last
        "08000500"  # the data set bytes
    )
)


def _pdus(generator: Iterable[list[bytes | memoryview]]) -> list[bytes]:
    return [b"".join(segments) for segments in generator]


def _pdvs(pdu: bytes) -> tuple[PresentationDataValue, ...]:
    pdu_type, reserved, length = struct.unpack_from(">BBI", pdu)
    assert (pdu_type, reserved, length) == (0x04, 0, len(pdu) - 6)
    return PDataTF.decode_body(pdu[6:]).pdvs


def _reassemble(pdus: list[bytes], context_id: int) -> tuple[bytes, bytes | None]:
    """Check the PS3.8 Annex E ordering rules and return (command, data set)."""
    pdvs = [pdv for pdu in pdus for pdv in _pdvs(pdu)]
    assert {pdv.context_id for pdv in pdvs} == {context_id}
    flags = [(pdv.is_command, pdv.is_last) for pdv in pdvs]
    n_command = sum(1 for is_command, _ in flags if is_command)
    assert all(is_command for is_command, _ in flags[:n_command])
    assert [last for _, last in flags[:n_command]] == [False] * (n_command - 1) + [True]
    dataset_flags = [last for _, last in flags[n_command:]]
    if dataset_flags:
        assert dataset_flags == [False] * (len(dataset_flags) - 1) + [True]
    command = b"".join(bytes(pdv.data) for pdv in pdvs[:n_command])
    dataset = b"".join(bytes(pdv.data) for pdv in pdvs[n_command:]) if dataset_flags else None
    return command, dataset


# ----------------------------------------------------------- fragment_message


def test_c_echo_rq_one_pdu() -> None:
    pdus = list(fragment_message(context_id=1, command=ECHO, dataset=None, max_pdu_length=16382))
    assert len(pdus) == 1
    assert b"".join(pdus[0]) == C_ECHO_RQ_PDU
    # The PDU header and the PDV header in one segment (pdus.pdata_segments), then the data.
    assert [len(segment) for segment in pdus[0]] == [12, 68]


def test_command_and_dataset_share_a_pdu_without_copying() -> None:
    dataset = bytearray(b"\x08\x00\x05\x00")
    (segments,) = fragment_message(
        context_id=3, command=STORE, dataset=dataset, max_pdu_length=16382
    )
    assert b"".join(segments) == C_STORE_RQ_PDU
    assert [len(segment) for segment in segments] == [12, 104, 6, 4]
    data_view = segments[3]
    assert isinstance(data_view, memoryview)
    assert data_view.obj is dataset


def test_dataset_starts_a_new_pdu_when_the_command_fills_one() -> None:
    limit = 6 + len(STORE)  # exactly one command PDV
    pdus = _pdus(fragment_message(context_id=1, command=STORE, dataset=b"x", max_pdu_length=limit))
    assert len(pdus) == 2
    assert _reassemble(pdus, 1) == (STORE, b"x")


def test_empty_dataset_is_one_last_pdv() -> None:
    pdus = _pdus(fragment_message(context_id=1, command=STORE, dataset=b"", max_pdu_length=0))
    assert len(pdus) == 1
    (_, dataset_pdv) = _pdvs(pdus[0])
    assert (dataset_pdv.is_command, dataset_pdv.is_last, bytes(dataset_pdv.data)) == (
        False,
        True,
        b"",
    )
    # An empty data set needs only a PDV header of room after the command.
    pdus = _pdus(
        fragment_message(context_id=1, command=STORE, dataset=b"", max_pdu_length=12 + len(STORE))
    )
    assert len(pdus) == 1


def test_smallest_pdu_carries_one_byte_per_pdv() -> None:
    pdus = _pdus(fragment_message(context_id=5, command=ECHO, dataset=b"ab", max_pdu_length=7))
    assert len(pdus) == len(ECHO) + 2
    assert all(len(pdu) == 6 + 7 for pdu in pdus)
    assert _reassemble(pdus, 5) == (ECHO, b"ab")


def test_unlimited_pdu_length_is_capped() -> None:
    dataset = bytes(3 * MAX_PDU_LENGTH_WHEN_UNLIMITED)
    pdus = list(fragment_message(context_id=1, command=STORE, dataset=dataset, max_pdu_length=0))
    lengths = [struct.unpack_from(">I", segments[0], 2)[0] for segments in pdus]
    assert max(lengths) == MAX_PDU_LENGTH_WHEN_UNLIMITED
    assert len(pdus) == 4
    data_segments = [segment for pdu in pdus for segment in pdu[1::2]]
    views = [s for s in data_segments if isinstance(s, memoryview) and s.obj is dataset]
    assert sum(len(view) for view in views) == len(dataset)


@pytest.mark.parametrize("max_pdu_length", [1, 6, -1])
def test_rejects_pdu_length_too_small(max_pdu_length: int) -> None:
    with pytest.raises(LocalProtocolError):
        fragment_message(context_id=1, command=ECHO, dataset=None, max_pdu_length=max_pdu_length)


@pytest.mark.parametrize("context_id", [0, 2, 256])
def test_rejects_bad_context_id(context_id: int) -> None:
    with pytest.raises(LocalProtocolError):
        fragment_message(context_id=context_id, command=ECHO, dataset=None, max_pdu_length=0)


@given(
    command=st.binary(min_size=1, max_size=300),
    dataset=st.none() | st.binary(max_size=5000),
    max_pdu_length=st.sampled_from([0, 7, 8, 13, 16382, 16384]) | st.integers(7, 2000),
    context_id=st.integers(0, 127).map(lambda n: 2 * n + 1),
)
@settings(max_examples=300, deadline=None)
def test_fragments_respect_the_limit_and_reassemble(
    command: bytes, dataset: bytes | None, max_pdu_length: int, context_id: int
) -> None:
    limit = max_pdu_length or MAX_PDU_LENGTH_WHEN_UNLIMITED
    pdus = _pdus(
        fragment_message(
            context_id=context_id, command=command, dataset=dataset, max_pdu_length=max_pdu_length
        )
    )
    assert all(len(pdu) - 6 <= limit for pdu in pdus)
    # Greedy packing: every PDU but the last is too full for another PDV.
    assert all(len(pdu) - 6 > limit - 7 for pdu in pdus[:-1])
    assert _reassemble(pdus, context_id) == (command, dataset)


# ----------------------------------------------------------- MessageAssembler


def _message_pdvs(
    command: bytes, dataset: bytes | None, max_pdu_length: int = 0, context_id: int = 1
) -> list[PresentationDataValue]:
    generator = fragment_message(
        context_id=context_id, command=command, dataset=dataset, max_pdu_length=max_pdu_length
    )
    return [pdv for segments in generator for pdv in _pdvs(b"".join(segments))]


def _feed(assembler: MessageAssembler, pdvs: Iterable[PresentationDataValue]) -> list[DimseMessage]:
    results = [assembler.add_pdv(pdv) for pdv in pdvs]
    assert all(result is None for result in results[:-1])
    return [result for result in results if result is not None]


def _pdv(data: bytes, *, command: bool, last: bool, context_id: int = 1) -> PresentationDataValue:
    return PresentationDataValue(context_id=context_id, is_command=command, is_last=last, data=data)


def test_assembles_a_message_without_dataset() -> None:
    (message,) = _feed(MessageAssembler(), _message_pdvs(ECHO, None))
    assert message.context_id == 1
    assert message.command == c.c_echo_rq(1)
    assert message.dataset is None
    assert message.command_field is CommandField.C_ECHO_RQ
    assert message.message_id == 1
    assert message.message_id_being_responded_to is None


@pytest.mark.parametrize("max_pdu_length", [0, 7, 64, 16382])
def test_assembles_a_c_store(max_pdu_length: int) -> None:
    dataset = bytes(range(256)) * 20
    pdvs = _message_pdvs(STORE, dataset, max_pdu_length, context_id=9)
    (message,) = _feed(MessageAssembler(), pdvs)
    assert message.context_id == 9
    assert message.command_field is CommandField.C_STORE_RQ
    assert isinstance(message.dataset, MemoryDatasetSink)
    assert message.dataset.getvalue() == dataset
    assert bytes(message.dataset.view()) == dataset
    assert message.dataset.size == len(dataset)


def test_message_offers_pynetdicoms_command_set_and_data_set() -> None:
    """``event.message`` handlers written for pynetdicom read these two."""
    dataset = bytes(range(256)) * 4
    (store,) = _feed(MessageAssembler(), _message_pdvs(STORE, dataset))
    # What pydicom decodes from the command bytes, as pynetdicom's command_set is.
    assert store.command_set == decode_dataset(STORE, ImplicitVRLittleEndian)
    assert store.command_set.CommandField == 0x0001
    assert store.data_set.getvalue() == dataset
    (echo,) = _feed(MessageAssembler(), _message_pdvs(ECHO, None))
    assert echo.data_set.getvalue() == b""


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [data]


@given(
    command_cuts=st.lists(st.integers(0, 1000), max_size=10),
    dataset=st.binary(max_size=2000),
    dataset_cuts=st.lists(st.integers(0, 5000), max_size=10),
)
@settings(max_examples=200, deadline=None)
def test_assembles_at_random_split_points(
    command_cuts: list[int], dataset: bytes, dataset_cuts: list[int]
) -> None:
    command_parts = _split(STORE, command_cuts)
    dataset_parts = _split(dataset, dataset_cuts)
    pdvs = [
        _pdv(part, command=True, last=i == len(command_parts) - 1)
        for i, part in enumerate(command_parts)
    ] + [
        _pdv(part, command=False, last=i == len(dataset_parts) - 1)
        for i, part in enumerate(dataset_parts)
    ]
    (message,) = _feed(MessageAssembler(), pdvs)
    assert isinstance(message.dataset, MemoryDatasetSink)
    assert message.dataset.getvalue() == dataset
    assert message.command.AffectedSOPInstanceUID == "1.2.3.4.5"


def test_assembler_copies_what_it_keeps() -> None:
    # The runtime decodes PDVs as views of one receive buffer and reuses it.
    receive_buffer = bytearray(4096)
    dataset = b"pixel data" * 100
    assembler = MessageAssembler()
    results = []
    for pdv in _message_pdvs(STORE, dataset, max_pdu_length=50):
        size = len(pdv.data)
        receive_buffer[:size] = pdv.data
        view = memoryview(receive_buffer)[:size]
        results.append(
            assembler.add_pdv(
                PresentationDataValue(
                    context_id=pdv.context_id,
                    is_command=pdv.is_command,
                    is_last=pdv.is_last,
                    data=view,
                )
            )
        )
        view.release()
        receive_buffer[:size] = b"\xff" * size
    message = results[-1]
    assert message is not None
    assert message.command == c.c_store_rq(7, CT_IMAGE_STORAGE, "1.2.3.4.5")
    assert isinstance(message.dataset, MemoryDatasetSink)
    assert message.dataset.getvalue() == dataset


class ListSink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: memoryview) -> None:
        self.chunks.append(bytes(data))

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)


def test_sink_factory_called_once_when_the_command_completes() -> None:
    calls: list[CommandSet] = []
    sinks: list[ListSink] = []

    def factory(command: CommandSet) -> DatasetSink:
        calls.append(command)
        sinks.append(ListSink())
        return sinks[-1]

    assembler = MessageAssembler(dataset_sink_factory=factory)
    pdvs = _message_pdvs(STORE, b"abcdefgh" * 10, max_pdu_length=20)
    first_dataset_pdv = next(i for i, pdv in enumerate(pdvs) if not pdv.is_command)
    for pdv in pdvs[:first_dataset_pdv]:
        assert assembler.add_pdv(pdv) is None
    assert len(calls) == 1
    assert calls[0].command_field is CommandField.C_STORE_RQ
    (message,) = _feed(assembler, pdvs[first_dataset_pdv:])
    assert len(calls) == 1
    assert message.dataset is sinks[0]
    assert b"".join(sinks[0].chunks) == b"abcdefgh" * 10
    # The next message (no data set) does not call the factory.
    _feed(assembler, _message_pdvs(ECHO, None))
    assert len(calls) == 1


def test_consecutive_messages_on_different_contexts() -> None:
    assembler = MessageAssembler()
    pdvs = _message_pdvs(ECHO, None, 7, context_id=1) + _message_pdvs(STORE, b"ds", 7, context_id=3)
    messages = [m for m in (assembler.add_pdv(pdv) for pdv in pdvs) if m is not None]
    assert [(m.context_id, m.command_field) for m in messages] == [
        (1, CommandField.C_ECHO_RQ),
        (3, CommandField.C_STORE_RQ),
    ]


def _unexpected(pdvs: Iterator[PresentationDataValue] | list[PresentationDataValue]) -> None:
    assembler = MessageAssembler()
    with pytest.raises(RemoteProtocolError) as info:
        for pdv in pdvs:
            assembler.add_pdv(pdv)
    assert info.value.abort_reason is AbortReason.UNEXPECTED_PDU_PARAMETER


def test_rejects_dataset_pdv_before_the_command() -> None:
    _unexpected([_pdv(b"ds", command=False, last=True)])
    _unexpected([_pdv(STORE[:10], command=True, last=False), _pdv(b"ds", command=False, last=True)])


def test_rejects_command_pdv_while_dataset_expected() -> None:
    _unexpected([_pdv(STORE, command=True, last=True), _pdv(ECHO, command=True, last=True)])


def test_rejects_context_change_mid_message() -> None:
    _unexpected(
        [
            _pdv(STORE[:10], command=True, last=False),
            _pdv(STORE[10:], command=True, last=True, context_id=3),
        ]
    )
    _unexpected(
        [_pdv(STORE, command=True, last=True), _pdv(b"ds", command=False, last=True, context_id=3)]
    )


def test_rejects_command_set_over_the_limit_before_buffering_it() -> None:
    assembler = MessageAssembler()
    chunk = bytes(MAX_COMMAND_SET_LENGTH // 2)
    assembler.add_pdv(_pdv(chunk, command=True, last=False))
    assembler.add_pdv(_pdv(chunk, command=True, last=False))
    with pytest.raises(RemoteProtocolError, match="longer than"):
        assembler.add_pdv(_pdv(b"\x00", command=True, last=True))


def test_rejects_malformed_or_incomplete_commands() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        MessageAssembler().add_pdv(_pdv(ECHO[:-1], command=True, last=True))
    assert info.value.abort_reason is AbortReason.INVALID_PDU_PARAMETER_VALUE
    no_type = c.c_echo_rq(1)
    no_type.CommandDataSetType = None
    with pytest.raises(RemoteProtocolError, match="CommandDataSetType"):
        MessageAssembler().add_pdv(_pdv(encode_command_set(no_type), command=True, last=True))


def test_in_memory_dataset_is_bounded() -> None:
    assembler = MessageAssembler(max_dataset_in_memory=10)
    assembler.add_pdv(_pdv(STORE, command=True, last=True))
    assembler.add_pdv(_pdv(b"0123456789", command=False, last=False))
    with pytest.raises(RemoteProtocolError) as info:
        assembler.add_pdv(_pdv(b"!", command=False, last=True))
    assert info.value.abort_source is AbortSource.SERVICE_PROVIDER
    assert info.value.abort_reason is AbortReason.NOT_SPECIFIED


def test_memory_sink_alone() -> None:
    sink = MemoryDatasetSink(max_size=4)
    sink.write(memoryview(b"ab"))
    sink.write(memoryview(b"cd"))
    assert (sink.size, sink.getvalue()) == (4, b"abcd")
    with pytest.raises(RemoteProtocolError):
        sink.write(memoryview(b"e"))
