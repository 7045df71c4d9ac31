"""Fuzz the PDU codec and the connection that reads PDUs off the wire.

The codec's invariant: decoding arbitrary bytes either returns a value or
raises RemoteProtocolError, never any other exception. A value that does
decode re-encodes to bytes that decode to the same value.

The connection's: whatever bytes a peer sends, ``DimseConnection.receive_data``
raises nothing. It answers them with events, or with a ProtocolViolation and
a provider A-ABORT that closes the transport; it sends whole PDUs only, and
nothing once the transport is closed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from connection_pair import associated_pair, memory_sink, split_pdus
from dicombus.protocol import items
from dicombus.protocol.connection import (
    Aborted,
    ConnectionClosed,
    DimseConnection,
    ProtocolViolation,
)
from dicombus.protocol.errors import AbortSource, RemoteProtocolError
from dicombus.protocol.framing import PduFramer
from dicombus.protocol.fsm import State
from dicombus.protocol.pdus import (
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
    decode_pdu,
)
from hypothesis import given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=400, deadline=None)

ITEM_CLASSES: list[Any] = [
    items.ApplicationContextItem,
    items.AbstractSyntaxItem,
    items.TransferSyntaxItem,
    items.PresentationContextRQItem,
    items.PresentationContextACItem,
    items.UserInformationItem,
    items.MaximumLengthSubItem,
    items.ImplementationClassUIDSubItem,
    items.AsynchronousOperationsWindowSubItem,
    items.ScpScuRoleSelectionSubItem,
    items.ImplementationVersionNameSubItem,
    items.SOPClassExtendedNegotiationSubItem,
    items.SOPClassCommonExtendedNegotiationSubItem,
    items.UserIdentityRQSubItem,
    items.UserIdentityACSubItem,
    items.UnknownSubItem,
]
ITEM_TYPES = [0x10, 0x20, 0x21, 0x30, 0x40, 0x50, *range(0x51, 0x5A), 0x5A, 0x00, 0xFF]

SEEDS: list[PDU] = [
    AAssociateRQ(
        called_ae_title="ANY-SCP",
        calling_ae_title="STORESCU",
        presentation_contexts=(
            items.PresentationContextRQItem(
                context_id=1,
                abstract_syntax="1.2.840.10008.5.1.4.1.1.2",
                transfer_syntaxes=("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"),
            ),
        ),
        user_information=items.UserInformationItem(
            sub_items=(
                items.MaximumLengthSubItem(maximum_length=16384),
                items.ImplementationClassUIDSubItem(uid="1.2.3.4"),
                items.ImplementationVersionNameSubItem(name="FUZZ"),
                items.ScpScuRoleSelectionSubItem(
                    sop_class_uid="1.2.3", scu_role=True, scp_role=False
                ),
                items.SOPClassCommonExtendedNegotiationSubItem(
                    sop_class_uid="1.2.3",
                    service_class_uid="1.2.4",
                    related_general_sop_class_uids=("1.2.5",),
                ),
                items.UserIdentityRQSubItem(
                    user_identity_type=2,
                    positive_response_requested=True,
                    primary_field=b"user",
                    secondary_field=b"pass",
                ),
            )
        ),
    ),
    AAssociateAC(
        called_ae_title="ANY-SCP",
        calling_ae_title="STORESCU",
        presentation_contexts=(
            items.PresentationContextACItem(
                context_id=1, result=0, transfer_syntax="1.2.840.10008.1.2"
            ),
            items.PresentationContextACItem(context_id=3, result=4, transfer_syntax=None),
        ),
        user_information=items.UserInformationItem(
            sub_items=(
                items.MaximumLengthSubItem(maximum_length=0),
                items.AsynchronousOperationsWindowSubItem(
                    max_operations_invoked=1, max_operations_performed=1
                ),
                items.UserIdentityACSubItem(server_response=b"ok"),
            )
        ),
    ),
    AAssociateRJ(result=1, source=1, reason=7),
    PDataTF(
        pdvs=(
            PresentationDataValue(context_id=1, is_command=True, is_last=True, data=b"\x00" * 12),
            PresentationDataValue(context_id=3, is_command=False, is_last=False, data=b"data"),
        )
    ),
    AReleaseRQ(),
    AAbort(source=2, reason=6),
]


def parse_stream(data: bytes, chunk: int) -> list[PDU]:
    """Run bytes through the framer and decoder, ``chunk`` bytes per read; return the
    PDUs or raise RemoteProtocolError."""
    framer = PduFramer(max_pdata_length=4096, max_associate_length=4096)
    received: list[PDU] = []
    for start in range(0, len(data), chunk):
        view = memoryview(data)[start : start + chunk]
        while view:
            target = framer.receive_buffer()
            count = min(len(target), len(view))
            target[:count] = view[:count]
            view = view[count:]
            if (pdu := framer.received(count)) is not None:
                received.append(decode_pdu(*pdu))
    return received


def holds_invariant(decode: Callable[[], Any]) -> Any:
    """Decode; a value must re-encode stably, an error must be RemoteProtocolError."""
    try:
        value = decode()
    except RemoteProtocolError:
        return None
    return value


def assert_stable(pdu: PDU) -> None:
    encoded = pdu.encode()
    assert parse_stream(encoded, len(encoded)) == [pdu]


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 64))
def test_arbitrary_bytes_through_the_parser(data: bytes, chunk: int) -> None:
    for pdu in holds_invariant(lambda: parse_stream(data, chunk)) or []:
        assert_stable(pdu)


@FUZZ
@given(st.integers(0, 9), st.binary(max_size=400))
def test_arbitrary_body_for_each_pdu_type(pdu_type: int, body: bytes) -> None:
    pdu = holds_invariant(lambda: decode_pdu(pdu_type, body))
    if pdu is not None:
        assert_stable(pdu)


@FUZZ
@given(st.sampled_from(ITEM_CLASSES), st.binary(max_size=200))
def test_arbitrary_bytes_for_each_item(kind: Any, data: bytes) -> None:
    value = holds_invariant(lambda: kind.decode(data))
    if value is not None:
        assert kind.decode(value.encode()) == value


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


leaf_items = st.builds(_item, st.sampled_from(ITEM_TYPES), st.binary(max_size=24))
uid_like = st.sampled_from([b"1.2.840.10008.1.2", b"1.2.3\x00", b"", b"\xff", b"1" * 65])
uid_items = st.builds(_item, st.sampled_from([0x10, 0x30, 0x40, 0x52, 0x55]), uid_like)
context_items = st.builds(
    lambda kind, head, subs: _item(kind, head + b"".join(subs)),
    st.sampled_from([0x20, 0x21]),
    st.binary(min_size=4, max_size=4),
    st.lists(uid_items | leaf_items, max_size=4),
)
user_items = st.builds(
    lambda subs: _item(0x50, b"".join(subs)), st.lists(leaf_items | uid_items, max_size=5)
)


@FUZZ
@given(
    st.sampled_from([0x01, 0x02]),
    st.binary(min_size=68, max_size=68),
    st.lists(uid_items | context_items | user_items | leaf_items, max_size=6),
)
def test_structured_associate_bodies(pdu_type: int, fixed: bytes, variable: list[bytes]) -> None:
    body = fixed + b"".join(variable)
    pdu = holds_invariant(lambda: decode_pdu(pdu_type, body))
    if pdu is not None:
        assert_stable(pdu)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 10_000),
    st.integers(1, 512),
)
def test_mutated_valid_pdus(
    seed: PDU, mutations: list[tuple[int, int]], cut: int, chunk: int
) -> None:
    data = bytearray(seed.encode())
    for position, value in mutations:
        data[position % len(data)] = value
    truncated = bytes(data[: max(cut, 6)])
    for pdu in holds_invariant(lambda: parse_stream(truncated, chunk)) or []:
        assert_stable(pdu)


# ---------------------------------------------------------------------------
# The same bytes through a whole connection


def _listening() -> DimseConnection:
    """An acceptor in Sta2: a peer connected and owes its A-ASSOCIATE-RQ."""
    acceptor = DimseConnection(
        is_requestor=False,
        dataset_sink_factory=memory_sink,
        max_pdata_length=4096,
        max_associate_length=4096,
    )
    acceptor.start()
    return acceptor


def _established(role: str) -> DimseConnection:
    """One side of an association in Sta6."""
    requestor, acceptor = associated_pair(max_pdu=4096)
    return requestor if role == "requestor" else acceptor


def assert_answered(connection: DimseConnection, data: bytes, chunk: int) -> None:
    """Feed ``data`` in ``chunk``-byte reads; it raises nothing and is answered."""
    state = connection.state
    sent = b""
    for start in range(0, len(data), chunk):
        was_closed = connection.transport_closed
        connection.receive_data(data[start : start + chunk])
        out = b"".join(bytes(buffer) for buffer in connection.data_to_send())
        assert not (was_closed and out), "bytes sent after the transport closed"
        sent += out
    events = connection.events()
    pdus = split_pdus(sent)  # whole PDUs only
    assert isinstance(connection.state, State)
    if any(isinstance(event, ProtocolViolation) for event in events):
        # EVT19: a provider A-ABORT, unless there was no association (Sta13) to abort.
        assert connection.transport_closed and events[-1] == ConnectionClosed()
        if state is not State.STA13:
            assert isinstance(pdus[-1], AAbort)
            assert pdus[-1].source == AbortSource.SERVICE_PROVIDER
        if state is not State.STA2:
            assert any(isinstance(event, Aborted) and event.provider for event in events)
    # Once closed, nothing more goes out, whatever else arrives.
    if connection.transport_closed:
        connection.receive_data(data or b"\x07")
        assert connection.data_to_send() == [] and connection.events() == []
    connection.close()


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 64))
def test_arbitrary_bytes_to_a_listening_acceptor(data: bytes, chunk: int) -> None:
    assert_answered(_listening(), data, chunk)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["requestor", "acceptor"]), st.binary(max_size=600), st.integers(1, 64))
def test_arbitrary_bytes_on_an_association(role: str, data: bytes, chunk: int) -> None:
    assert_answered(_established(role), data, chunk)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["listening", "requestor", "acceptor"]),
    st.lists(st.sampled_from(SEEDS), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    st.integers(1, 512),
)
def test_mutated_pdu_streams_through_a_connection(
    where: str, seeds: list[PDU], mutations: list[tuple[int, int]], chunk: int
) -> None:
    """Valid PDUs, in any order and lightly mutated: they reach the state machine,
    whose every (state, PDU) answer must hold the same invariant."""
    data = bytearray(b"".join(seed.encode() for seed in seeds))
    for position, value in mutations:
        data[position % len(data)] = value
    connection = _listening() if where == "listening" else _established(where)
    assert_answered(connection, bytes(data), chunk)
