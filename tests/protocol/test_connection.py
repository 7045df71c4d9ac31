"""DimseConnection driven by bytes alone: what an association's DIMSE provider decides.

Every message is built with ``data_to_send`` (the P-DATA-TFs production
sends), joined into the byte stream a peer would send, cut into PDUs by the
PDU parser and handed over PDU by PDU -- whole, one byte at a time, or at
random split points. Sinks are real spooling sinks in a temp folder, so
"released" means the spool file is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from dicombus.protocol import commands as c
from dicombus.protocol.commands import CommandSet
from dicombus.protocol.connection import (
    MAX_QUEUED_REQUESTS,
    CancelReceived,
    DimseConnection,
    DimseEvent,
    NeedData,
    RequestReceived,
    ResponseReceived,
)
from dicombus.protocol.errors import RemoteProtocolError
from dicombus.protocol.fragments import DatasetSink
from dicombus.protocol.pdu_parser import PduParser
from dicombus.protocol.pdus import PDataTF
from dicombus.runtime.spool import SpoolingDatasetSink
from hypothesis import given, settings
from hypothesis import strategies as st

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
MAX_PDU = 256  # small PDUs, so one message spans several
DATASET = bytes(range(256)) * 8  # 2 KiB: eight or more P-DATA-TFs


def pdus(command: CommandSet, dataset: bytes | None) -> list[bytes]:
    """The P-DATA-TFs of one message on context 1, each as bytes."""
    return [
        b"".join(bytes(segment) for segment in pdu)
        for pdu in DimseConnection.data_to_send(1, command, dataset, max_pdu_length=MAX_PDU)
    ]


def wire(*messages: tuple[CommandSet, bytes | None]) -> bytes:
    """The byte stream of ``messages`` sent one after the other."""
    return b"".join(b"".join(pdus(*message)) for message in messages)


def feed(connection: DimseConnection, data: bytes, cuts: Iterable[int] = ()) -> None:
    """Hand ``data`` over as a peer's socket would deliver it, cut at ``cuts``."""
    parser = PduParser(max_pdata_length=MAX_PDU)
    start = 0
    for end in [*sorted(cuts), len(data)]:
        parser.receive_data(data[start:end])
        start = end
        while (pdu := parser.next_pdu()) is not None:
            assert isinstance(pdu, PDataTF)
            connection.receive_pdata(pdu)


def events(connection: DimseConnection) -> list[DimseEvent]:
    taken = []
    while not isinstance(event := connection.next_event(), NeedData):
        taken.append(event)
    return taken


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path


def spooling(spool: Path) -> DimseConnection:
    """A connection whose every data set goes to a file in ``spool`` at its first byte."""

    def sink(_command: CommandSet) -> DatasetSink:
        return SpoolingDatasetSink(threshold=0, spool_dir=spool)

    return DimseConnection(dataset_sink_factory=sink)


def store(message_id: int) -> tuple[CommandSet, bytes]:
    return c.c_store_rq(message_id, CT_IMAGE_STORAGE, f"1.2.3.{message_id}"), DATASET


def test_a_request_is_an_event_then_waits_in_the_queue(spool: Path) -> None:
    connection = spooling(spool)
    feed(connection, wire(store(7)))
    (event,) = events(connection)
    assert isinstance(event, RequestReceived)
    message = connection.next_request()
    assert message is event.message
    assert message.command.MessageID == 7
    assert message.dataset is not None and message.dataset.getvalue() == DATASET
    assert connection.next_request() is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(wire(store(1), store(2)))), max_size=12))
def test_any_split_of_the_stream_gives_the_same_messages(cuts: list[int]) -> None:
    connection = DimseConnection(dataset_sink_factory=_memory)
    feed(connection, wire(store(1), store(2)), cuts)
    received = [connection.next_request(), connection.next_request()]
    assert [m.command.MessageID for m in received if m is not None] == [1, 2]
    assert all(m is not None and m.dataset is not None for m in received)
    assert all(m.dataset.getvalue() == DATASET for m in received if m and m.dataset)


def test_one_byte_at_a_time(spool: Path) -> None:
    data = wire(store(3))
    connection = spooling(spool)
    feed(connection, data, range(1, len(data)))
    message = connection.next_request()
    assert message is not None and message.dataset is not None
    assert message.dataset.getvalue() == DATASET


def test_a_response_goes_to_the_requester_not_the_queue() -> None:
    connection = DimseConnection(dataset_sink_factory=_memory)
    feed(connection, wire((c.c_echo_rsp(5, 0x0000), None)))
    (event,) = events(connection)
    assert isinstance(event, ResponseReceived)
    assert event.message.command.MessageIDBeingRespondedTo == 5
    assert connection.next_request() is None


def test_concurrent_requests_queue_in_order_of_arrival() -> None:
    connection = DimseConnection(dataset_sink_factory=_memory)
    find = (c.c_find_rq(1, PATIENT_ROOT_FIND), b"")
    feed(connection, wire(find, store(2), (c.c_echo_rq(3), None)))
    assert [type(e) for e in events(connection)] == [RequestReceived] * 3
    served = [connection.next_request() for _ in range(3)]
    assert [m.command.MessageID for m in served if m is not None] == [1, 2, 3]


def test_a_cancel_applies_to_an_open_request_only() -> None:
    connection = DimseConnection(dataset_sink_factory=_memory)
    feed(connection, wire((c.c_find_rq(1, PATIENT_ROOT_FIND), b""), (c.c_cancel_rq(1), None)))
    request, cancel = events(connection)
    assert isinstance(request, RequestReceived)
    assert isinstance(cancel, CancelReceived) and cancel.applies
    assert connection.is_cancelled(1)
    # PS3.7 9.3.2.3: after the final response the cancel is moot, and a later
    # request reusing the ID is not cancelled by a late C-CANCEL.
    connection.request_answered(1)
    assert not connection.is_cancelled(1)
    feed(connection, wire((c.c_cancel_rq(1), None)))
    (late,) = events(connection)
    assert isinstance(late, CancelReceived) and not late.applies
    feed(connection, wire((c.c_find_rq(1, PATIENT_ROOT_FIND), b"")))
    assert not connection.is_cancelled(1)


def test_a_flood_of_requests_is_refused_and_its_sink_released(spool: Path) -> None:
    connection = spooling(spool)
    feed(connection, wire(*(store(i) for i in range(1, MAX_QUEUED_REQUESTS + 1))))
    with pytest.raises(RemoteProtocolError, match=f"more than {MAX_QUEUED_REQUESTS} requests"):
        feed(connection, wire(store(MAX_QUEUED_REQUESTS + 1)))
    assert len(list(spool.iterdir())) == MAX_QUEUED_REQUESTS  # the refused one left no file
    connection.close()
    assert list(spool.iterdir()) == []


def test_interleaved_messages_are_refused() -> None:
    """PS3.7 6.3.1: a command PDV in the middle of another message's data set."""
    connection = DimseConnection(dataset_sink_factory=_memory)
    first = pdus(*store(1))
    interleaved = [*first[:3], wire((c.c_echo_rq(2), None)), *first[3:]]
    with pytest.raises(RemoteProtocolError, match="command PDV while the data set"):
        feed(connection, b"".join(interleaved))


def test_close_releases_a_data_set_cut_off_and_the_requests_never_served(spool: Path) -> None:
    connection = spooling(spool)
    # The second data set's last PDU never comes.
    feed(connection, wire(store(1)) + b"".join(pdus(*store(2))[:-1]))
    assert len(list(spool.iterdir())) == 2
    connection.close()
    assert list(spool.iterdir()) == []
    assert connection.next_request() is None
    assert isinstance(connection.next_event(), NeedData)
    feed(connection, wire(store(3)))  # after the end: ignored, nothing spooled
    assert list(spool.iterdir()) == []
    connection.close()  # idempotent


def test_data_to_send_keeps_every_pdu_within_the_peers_maximum_length() -> None:
    command, dataset = store(1)
    pdus = list(DimseConnection.data_to_send(1, command, dataset, max_pdu_length=MAX_PDU))
    assert len(pdus) > 1
    assert all(sum(len(segment) for segment in pdu) - 6 <= MAX_PDU for pdu in pdus)


def _memory(command: CommandSet) -> DatasetSink:
    return SpoolingDatasetSink(spool_dir=None)
