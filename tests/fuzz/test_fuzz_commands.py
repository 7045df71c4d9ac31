"""Fuzz targets for the DIMSE command set decoder and the DIMSE connection (reassembly, routing).

Invariant: whatever the peer sends, either it parses, or it raises
RemoteProtocolError -- never anything else.
"""

from __future__ import annotations

import struct

from connection_pair import associated_pair
from dicombus.protocol import commands as c
from dicombus.protocol.commands import CommandSet, decode_command_set, encode_command_set
from dicombus.protocol.connection import (
    CancelReceived,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
)
from dicombus.protocol.errors import RemoteProtocolError
from dicombus.protocol.fragments import DatasetSink, DimseMessage, MemoryDatasetSink
from dicombus.protocol.pdus import PDataTF, PresentationDataValue
from hypothesis import given, settings
from hypothesis import strategies as st

_KNOWN_ELEMENTS = [element for element, _, _ in c._ELEMENTS] + [0x0000, 0x0001, 0x4000]

_SEEDS = [
    encode_command_set(c.c_echo_rq(1)),
    encode_command_set(c.c_store_rq(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5")),
    encode_command_set(c.c_find_rsp(2, 0xFF00, "1.2.3", has_dataset=True)),
    encode_command_set(c.n_get_rq(6, "1.2.3", "1.2.3.4", [0x00100010])),
    encode_command_set(c.c_store_rsp(7, 0, offending_element=[0x00100010])),
]


def _parses_or_remote_error(data: bytes) -> CommandSet | None:
    try:
        return decode_command_set(data)
    except RemoteProtocolError:
        return None


@given(st.binary(max_size=300))
@settings(max_examples=1500, deadline=None)
def test_decode_arbitrary_bytes(data: bytes) -> None:
    _parses_or_remote_error(data)


# Element-shaped input reaches past the header checks: group 0000 (mostly),
# known element numbers, lengths that sometimes fit and sometimes lie.
_elements = st.tuples(
    st.sampled_from([0x0000, 0x0000, 0x0000, 0x0008, 0xFFFF]),
    st.sampled_from(_KNOWN_ELEMENTS) | st.integers(0, 0xFFFF),
    st.binary(max_size=20) | st.binary(min_size=60, max_size=70),
    st.sampled_from([None, None, None, 0, 1, 2, 3, 4, 0xFFFFFFFF]),
)


@given(st.lists(_elements, max_size=12))
@settings(max_examples=1500, deadline=None)
def test_decode_element_shaped_bytes(
    elements: list[tuple[int, int, bytes, int | None]],
) -> None:
    data = b"".join(
        struct.pack("<HHI", group, element, len(value) if length is None else length) + value
        for group, element, value, length in elements
    )
    command = _parses_or_remote_error(data)
    if command is not None:
        # Whatever parsed carries a known CommandField and re-encodes (an
        # ErrorComment past 64 characters is accepted but never sent).
        assert command.command_field.value == command.CommandField
        if command.ErrorComment is not None and len(command.ErrorComment) > 64:
            command.ErrorComment = None
        assert decode_command_set(encode_command_set(command)) == command


@given(st.sampled_from(_SEEDS), st.integers(0, 200), st.binary(min_size=1, max_size=4))
@settings(max_examples=1000, deadline=None)
def test_decode_mutated_real_command_sets(seed: bytes, position: int, patch: bytes) -> None:
    position %= len(seed)
    _parses_or_remote_error(seed[:position] + patch + seed[position + len(patch) :])


_pdv_data = st.sampled_from(_SEEDS) | st.binary(max_size=40)
_pdvs = st.builds(
    lambda context_id, is_command, is_last, data: PresentationDataValue(
        context_id=context_id, is_command=is_command, is_last=is_last, data=data
    ),
    st.sampled_from([1, 1, 1, 3]),
    st.booleans(),
    st.booleans(),
    _pdv_data,
)


@given(st.lists(_pdvs, max_size=12), st.integers(0, 100))
@settings(max_examples=1500, deadline=None)
def test_dimse_connection_arbitrary_pdv_sequences(
    pdvs: list[PresentationDataValue], max_dataset_in_memory: int
) -> None:
    """The object production runs, on an association: each PDV arrives as the bytes
    of a P-DATA-TF of its own. A message breaking PS3.7 is a ProtocolViolation,
    after which the connection is closed and reads nothing more."""

    def sink(_command: CommandSet) -> DatasetSink:
        return MemoryDatasetSink(max_size=max_dataset_in_memory)

    _, connection = associated_pair(sink, max_pdu=0)
    for pdv in pdvs:
        connection.receive_data(PDataTF(pdvs=(pdv,)).encode())
        for event in connection.events():
            if isinstance(event, ProtocolViolation):
                assert connection.transport_closed
                continue
            if not isinstance(event, RequestReceived | ResponseReceived | CancelReceived):
                continue  # the abort and close that follow a violation
            message = event.message
            assert isinstance(message, DimseMessage)
            assert message.context_id == pdv.context_id
            assert (message.dataset is not None) == message.command.has_dataset
    connection.close()
    assert connection.next_request() is None
