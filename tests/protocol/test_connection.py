"""DimseConnection's DIMSE provider driven by bytes alone, on a negotiated association.

A requestor and an acceptor negotiate over bytes (``connection_pair``); then
each message is built with ``DimseConnection.fragment`` (the P-DATA-TFs
production sends), joined into the byte stream a peer would send, and handed
to ``receive_data`` whole, one byte at a time, or at random split points.
Sinks are real spooling sinks in a temp folder, so "released" means the spool
file is gone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from connection_pair import (
    CT_IMAGE_STORAGE,
    MAX_PDU,
    PATIENT_ROOT_FIND,
    associated_pair,
    deliver,
    feed,
    message_pdus,
    send_message,
    split_pdus,
)
from dicombus.protocol import commands as c
from dicombus.protocol.commands import CommandSet
from dicombus.protocol.connection import (
    MAX_QUEUED_REQUESTS,
    Aborted,
    CancelReceived,
    ConnectionClosed,
    DimseConnection,
    DimseEvent,
    NeedData,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
)
from dicombus.protocol.errors import AbortReason, AbortSource
from dicombus.protocol.fragments import DatasetSink
from dicombus.protocol.fsm import State
from dicombus.protocol.pdus import AAbort
from dicombus.runtime.spool import SpoolingDatasetSink
from hypothesis import given, settings
from hypothesis import strategies as st

DATASET = bytes(range(256)) * 8  # 2 KiB: eight or more P-DATA-TFs


def wire(*messages: tuple[CommandSet, bytes | None]) -> bytes:
    """The byte stream of ``messages`` sent one after the other."""
    return b"".join(b"".join(message_pdus(*message)) for message in messages)


def events(connection: DimseConnection) -> list[DimseEvent]:
    """The DIMSE events taken with next_event() until NEED_DATA (nothing else may come)."""
    taken = []
    while not isinstance(event := connection.next_event(), NeedData):
        assert isinstance(event, RequestReceived | ResponseReceived | CancelReceived), event
        taken.append(event)
    return taken


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path


def spooling(spool: Path) -> DimseConnection:
    """An acceptor in Sta6 whose every data set goes to a file in ``spool`` at its first byte."""

    def sink(_command: CommandSet) -> DatasetSink:
        return SpoolingDatasetSink(threshold=0, spool_dir=spool)

    return associated_pair(sink)[1]


def acceptor() -> DimseConnection:
    """An acceptor in Sta6 that holds data sets in memory."""
    return associated_pair(_memory)[1]


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
    connection = acceptor()
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
    requestor, acceptor = associated_pair(_memory)
    send_message(requestor, c.c_echo_rq(5), None)
    deliver(requestor, acceptor)
    (request,) = events(acceptor)
    assert isinstance(request, RequestReceived)
    assert acceptor.next_request() is request.message
    send_message(acceptor, c.c_echo_rsp(5, 0x0000), None)
    acceptor.request_answered(5)
    deliver(acceptor, requestor)
    (event,) = events(requestor)
    assert isinstance(event, ResponseReceived)
    assert event.message.command.MessageIDBeingRespondedTo == 5
    assert requestor.next_request() is None


def test_concurrent_requests_queue_in_order_of_arrival() -> None:
    connection = acceptor()
    find = (c.c_find_rq(1, PATIENT_ROOT_FIND), b"")
    feed(connection, wire(find, store(2), (c.c_echo_rq(3), None)))
    assert [type(e) for e in events(connection)] == [RequestReceived] * 3
    served = [connection.next_request() for _ in range(3)]
    assert [m.command.MessageID for m in served if m is not None] == [1, 2, 3]


def test_a_cancel_applies_to_an_open_request_only() -> None:
    connection = acceptor()
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
    assert len(events(connection)) == MAX_QUEUED_REQUESTS
    feed(connection, wire(store(MAX_QUEUED_REQUESTS + 1)))
    violation, aborted, closed = connection.events()
    assert isinstance(violation, ProtocolViolation)
    assert f"more than {MAX_QUEUED_REQUESTS} requests" in str(violation.error)
    assert aborted == Aborted(abort=None, provider=True)
    assert closed == ConnectionClosed()
    assert split_pdus(b"".join(map(bytes, connection.data_to_send()))) == [
        AAbort(source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.INVALID_PDU_PARAMETER_VALUE)
    ]
    assert len(list(spool.iterdir())) == MAX_QUEUED_REQUESTS  # the refused one left no file
    connection.close()
    assert list(spool.iterdir()) == []


def test_interleaved_messages_are_refused() -> None:
    """PS3.7 6.3.1: a command PDV in the middle of another message's data set."""
    connection = acceptor()
    first = message_pdus(*store(1))
    interleaved = [*first[:3], wire((c.c_echo_rq(2), None)), *first[3:]]
    feed(connection, b"".join(interleaved))
    violation, aborted, _closed = connection.events()
    assert isinstance(violation, ProtocolViolation)
    assert "command PDV while the data set" in str(violation.error)
    assert aborted == Aborted(abort=None, provider=True)
    assert connection.transport_closed and connection.state is State.STA1


def test_close_releases_a_data_set_cut_off_and_the_requests_never_served(spool: Path) -> None:
    connection = spooling(spool)
    # The second data set's last PDU never comes.
    feed(connection, wire(store(1)) + b"".join(message_pdus(*store(2))[:-1]))
    assert len(list(spool.iterdir())) == 2
    connection.close()
    assert list(spool.iterdir()) == []
    assert connection.next_request() is None
    connection.events()  # see the next test
    feed(connection, wire(store(3)))  # after the end: ignored, nothing spooled
    assert list(spool.iterdir()) == []
    assert connection.events() == []
    connection.close()  # idempotent


def test_close_drops_the_events_of_the_requests_it_released(spool: Path) -> None:
    connection = spooling(spool)
    feed(connection, wire(store(1)))
    connection.close()
    assert isinstance(connection.next_event(), NeedData)


def test_fragment_keeps_every_pdu_within_the_peers_maximum_length() -> None:
    command, dataset = store(1)
    pdus = list(DimseConnection.fragment(1, command, dataset, max_pdu_length=MAX_PDU))
    assert len(pdus) > 1
    assert all(sum(len(segment) for segment in pdu) - 6 <= MAX_PDU for pdu in pdus)


def _memory(command: CommandSet) -> DatasetSink:
    return SpoolingDatasetSink(spool_dir=None)
