"""A requestor and an acceptor DimseConnection driven by random intents and random delivery.

Hypothesis picks what each side's user does (send requests, serve them,
cancel, release, answer a release, abort, let ARTIM expire), how the bytes in
flight arrive (any chunk size, at any time), and whether the connection is
lost. Between steps it checks what must always hold: each side is in a
PS3.8 state, ``data_to_send()`` holds whole PDUs only, nothing is sent once
the transport is closed, ``ConnectionClosed`` is the last event and comes
exactly when ``transport_closed``, ARTIM runs only in Sta2 and Sta13. At the
end every byte is delivered and every owed answer given; then both sides
must agree: both closed or both still associated, every message one sent the
other received, and no abort or confirmation the peer did not cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from connection_pair import (
    CT_IMAGE_STORAGE,
    REJECTION,
    associate_ac,
    associate_rq,
    split_pdus,
)
from dicombus.protocol import commands as c
from dicombus.protocol.commands import CommandField, CommandSet
from dicombus.protocol.connection import (
    MAX_QUEUED_REQUESTS,
    Aborted,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    CancelReceived,
    ConnectionClosed,
    ConnectionEvent,
    DimseConnection,
    ProtocolViolation,
    ReleaseConfirmed,
    RequestReceived,
    ResponseReceived,
)
from dicombus.protocol.errors import AbortSource
from dicombus.protocol.fragments import DimseMessage, MemoryDatasetSink
from dicombus.protocol.fsm import ARTIM_RUNNING_STATES, State
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

MAX_PDU = 128  # small PDUs: a C-STORE of a few hundred bytes spans several
SUCCESS = 0x0000
# (command field, message ID or ID answered, data set) of one DIMSE message.
Sent = tuple[CommandField, int, bytes | None]


class TrackedSink(MemoryDatasetSink):
    """A memory sink that remembers whether it was closed."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


@dataclass
class Side:
    """One connection and what its user did and saw."""

    connection: DimseConnection
    sinks: list[TrackedSink] = field(default_factory=list)
    # Bytes the peer sent that have not arrived yet, and whether its close follows them.
    inbox: bytearray = field(default_factory=bytearray)
    eof_follows: bool = False
    closed_seen: bool = False
    events: list[ConnectionEvent] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    received: list[Sent] = field(default_factory=list)
    # Requests we sent and no final response has come for.
    open_requests: list[int] = field(default_factory=list)
    next_message_id: int = 1
    # Requests taken off our queue with next_request().
    served: int = 0
    aborted: bool = False
    responded_to_release: bool = False

    def new_sink(self, _command: CommandSet) -> TrackedSink:
        sink = TrackedSink()
        self.sinks.append(sink)
        return sink


def _side(*, is_requestor: bool) -> Side:
    side = Side(connection=None)  # type: ignore[arg-type]
    side.connection = DimseConnection(
        is_requestor=is_requestor, dataset_sink_factory=side.new_sink, max_pdata_length=MAX_PDU
    )
    return side


def _record(message: DimseMessage) -> Sent:
    command = message.command
    message_id = command.MessageID if command.MessageID is not None else 0
    if command.command_field.is_response or command.command_field is CommandField.C_CANCEL_RQ:
        message_id = command.MessageIDBeingRespondedTo or 0
    dataset = message.dataset.getvalue() if message.dataset is not None else None
    return command.command_field, message_id, dataset


sides = st.sampled_from(["requestor", "acceptor"])
# What ends an association early happens in one of RARELY's draws, so most runs
# get far before it does.
RARELY = st.integers(0, 20)
HAPPENS = 13  # not a bound, which Hypothesis favours
# PS3.8 9.2.2: the states where the local user owes an A-RELEASE response.
OWING = (State.STA8, State.STA9, State.STA12)


class ConnectionPair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.requestor = _side(is_requestor=True)
        self.acceptor = _side(is_requestor=False)
        # Whether something other than the users' normal exchange ended it: a lost
        # connection, an abort, an ARTIM expiry. Then messages may be cut off.
        self.lost = False
        self.disturbed = False
        self.accepted = False
        self.rejected = False
        self.acceptor.connection.start()
        self.requestor.connection.request_association(associate_rq(MAX_PDU))
        self.pump()

    # -- plumbing ------------------------------------------------------------------

    def pair(self, name: str) -> tuple[Side, Side]:
        if name == "requestor":
            return self.requestor, self.acceptor
        return self.acceptor, self.requestor

    def either(self, holds: Callable[[Side], object]) -> bool:
        return bool(holds(self.requestor) or holds(self.acceptor))

    def pump(self) -> None:
        """Collect what each side sent into the other's inbox, and its events."""
        for side, peer in ((self.requestor, self.acceptor), (self.acceptor, self.requestor)):
            connection = side.connection
            data = b"".join(bytes(buffer) for buffer in connection.data_to_send())
            assert not (side.closed_seen and data), "bytes sent after the transport closed"
            split_pdus(data)  # whole PDUs only
            if not self.lost:
                peer.inbox += data
            for event in connection.events():
                self.observe(side, event)
            if connection.transport_closed and not side.closed_seen:
                side.closed_seen = True
                peer.eof_follows = not self.lost

    def observe(self, side: Side, event: ConnectionEvent) -> None:
        assert not side.events or side.events[-1] != ConnectionClosed(), (
            f"{event} after ConnectionClosed"
        )
        side.events.append(event)
        assert not isinstance(event, ProtocolViolation), event
        if isinstance(event, RequestReceived):
            side.received.append(_record(event.message))
        elif isinstance(event, ResponseReceived):
            message = event.message
            side.received.append(_record(message))
            if message.command.MessageIDBeingRespondedTo in side.open_requests:
                side.open_requests.remove(message.command.MessageIDBeingRespondedTo)
            if message.dataset is not None:
                message.dataset.close()  # the caller's now
        elif isinstance(event, CancelReceived):
            side.received.append(_record(event.message))

    def send(self, side: Side, command: CommandSet, dataset: bytes | None, context_id: int) -> None:
        connection = side.connection
        for pdu in connection.fragment(context_id, command, dataset, max_pdu_length=MAX_PDU):
            connection.send_pdata(pdu)
        message_id = command.MessageID or 0
        if command.command_field.is_response or command.command_field is CommandField.C_CANCEL_RQ:
            message_id = command.MessageIDBeingRespondedTo or 0
        side.sent.append((command.command_field, message_id, dataset))

    def unserved(self, side: Side, peer: Side) -> int:
        """Requests ``side`` sent that ``peer`` has not taken off its queue yet (at most)."""
        requests = [
            sent
            for sent in side.sent
            if not sent[0].is_response and sent[0] is not CommandField.C_CANCEL_RQ
        ]
        return len(requests) - peer.served

    @initialize(negotiate=st.booleans())
    def start(self, negotiate: bool) -> None:
        """Half the runs start associated, so most of the steps exercise Sta6 and on."""
        if negotiate:
            self.deliver("acceptor", 1 << 20)
            self.answer_association(accept=True)
            self.deliver("requestor", 1 << 20)

    # -- rules: delivery -----------------------------------------------------------

    @precondition(lambda self: self.either(lambda side: side.inbox or side.eof_follows))
    @rule(name=sides, size=st.integers(1, 400))
    def deliver(self, name: str, size: int) -> None:
        side, _ = self.pair(name)
        connection = side.connection
        if side.inbox:
            chunk = bytes(side.inbox[:size])
            del side.inbox[:size]
            if not connection.transport_closed:  # a closed socket reads nothing more
                connection.receive_data(chunk)
        elif side.eof_follows:
            side.eof_follows = False
            connection.receive_data(b"")
        self.pump()

    @precondition(lambda self: not self.lost)
    @rule(dice=RARELY)
    def lose_connection(self, dice: int) -> None:
        """The network drops the connection: what was in flight is gone, both see EOF."""
        if dice != HAPPENS:
            return
        self.lost = self.disturbed = True
        for side in (self.requestor, self.acceptor):
            side.inbox.clear()
            side.eof_follows = False
            side.connection.connection_lost()
        self.pump()

    # -- rules: the users ----------------------------------------------------------

    @precondition(lambda self: self.acceptor.connection.state is State.STA3)
    @rule(accept=st.booleans())
    def answer_association(self, accept: bool) -> None:
        rq = next(e.rq for e in self.acceptor.events if isinstance(e, AssociateRequested))
        if accept:
            self.accepted = True
            self.acceptor.connection.accept(associate_ac(rq, MAX_PDU))
        else:
            self.rejected = True
            self.acceptor.connection.reject(REJECTION)
        self.pump()

    @precondition(lambda self: self.either(lambda side: side.connection.can_send_data))
    @rule(name=sides, size=st.integers(0, 600) | st.none())
    def send_request(self, name: str, size: int | None) -> None:
        side, peer = self.pair(name)
        if not side.connection.can_send_data or self.unserved(side, peer) >= MAX_QUEUED_REQUESTS:
            return
        message_id = side.next_message_id
        side.next_message_id += 1
        if size is None:
            self.send(side, c.c_echo_rq(message_id), None, 1)
        else:
            store = c.c_store_rq(message_id, CT_IMAGE_STORAGE, f"1.2.3.{message_id}")
            self.send(side, store, bytes(range(256)) * (size // 256) + bytes(size % 256), 3)
        side.open_requests.append(message_id)
        self.pump()

    @precondition(lambda self: self.either(lambda side: side.received))
    @rule(name=sides)
    def serve_request(self, name: str) -> None:
        side, _ = self.pair(name)
        connection = side.connection
        message = connection.next_request()
        if message is None:
            return
        side.served += 1
        if message.dataset is not None:
            message.dataset.close()  # the caller's now
        message_id = message.command.MessageID or 0
        if connection.can_send_data:
            if message.command.command_field is CommandField.C_STORE_RQ:
                response = c.c_store_rsp(message_id, SUCCESS, CT_IMAGE_STORAGE)
                self.send(side, response, None, message.context_id)
            else:
                self.send(side, c.c_echo_rsp(message_id, SUCCESS), None, message.context_id)
        connection.request_answered(message_id)
        self.pump()

    @precondition(lambda self: self.either(lambda side: side.open_requests))
    @rule(name=sides, data=st.data())
    def cancel(self, name: str, data: st.DataObject) -> None:
        side, _ = self.pair(name)
        if not side.open_requests or not side.connection.can_send_data:
            return
        message_id = data.draw(st.sampled_from(side.open_requests))
        self.send(side, c.c_cancel_rq(message_id), None, 1)
        self.pump()

    @precondition(lambda self: self.either(lambda side: side.connection.state is State.STA6))
    @rule(name=sides)
    def release(self, name: str) -> None:
        side, _ = self.pair(name)
        if side.connection.state is State.STA6 and not side.connection.transport_closed:
            side.connection.release()
            self.pump()

    @precondition(lambda self: self.either(lambda side: side.connection.state in OWING))
    @rule(name=sides)
    def respond_to_release(self, name: str) -> None:
        side, _ = self.pair(name)
        connection = side.connection
        if connection.state in OWING:
            assert not connection.transport_closed
            connection.respond_to_release()
            side.responded_to_release = True
            self.pump()

    @rule(name=sides, dice=RARELY)
    def abort(self, name: str, dice: int) -> None:
        if dice != HAPPENS:
            return
        side, _ = self.pair(name)
        side.connection.abort()
        if not side.closed_seen:
            side.aborted = self.disturbed = True
        assert side.connection.transport_closed
        self.pump()

    @rule(name=sides, dice=RARELY)
    def artim_expires(self, name: str, dice: int) -> None:
        side, _ = self.pair(name)
        if side.connection.artim_running and dice == HAPPENS:
            self.disturbed = True
            side.connection.timer_expired()
            assert side.connection.transport_closed
            self.pump()

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def each_side_is_in_a_state(self) -> None:
        for side in (self.requestor, self.acceptor):
            connection = side.connection
            assert isinstance(connection.state, State)
            assert connection.transport_closed == (ConnectionClosed() in side.events)
            if connection.artim_running:
                assert connection.state in ARTIM_RUNNING_STATES
                assert not connection.transport_closed
            if connection.can_send_data:
                assert connection.state in (State.STA6, State.STA8)

    # -- the end -------------------------------------------------------------------

    def settle(self) -> None:
        """Give every owed answer and deliver every byte, until nothing moves."""
        for _ in range(1000):
            if self.acceptor.connection.state is State.STA3 and not self.acceptor.closed_seen:
                self.answer_association(accept=True)
            for name in ("requestor", "acceptor"):
                self.respond_to_release(name)
            moving = [
                name
                for name in ("requestor", "acceptor")
                if self.pair(name)[0].inbox or self.pair(name)[0].eof_follows
            ]
            if not moving:
                return
            for name in moving:
                self.deliver(name, 1 << 20)
        raise AssertionError("the connections never settled")

    def teardown(self) -> None:
        self.settle()
        requestor, acceptor = self.requestor, self.acceptor
        both = (requestor, acceptor)
        closed = [side.connection.transport_closed for side in both]
        states = [side.connection.state for side in both]
        if closed == [False, False]:
            assert states == [State.STA6, State.STA6], states
        else:
            assert closed == [True, True], (states, closed)
            assert not any(side.connection.artim_running for side in both)
        self.check_agreement()
        for side in both:
            side.connection.close()
            assert all(sink.closed for sink in side.sinks), "a sink outlived close()"

    def check_agreement(self) -> None:
        requestor, acceptor = self.requestor, self.acceptor
        if any(isinstance(e, AssociateAccepted) for e in requestor.events):
            assert self.accepted
        if any(isinstance(e, AssociateRejected) for e in requestor.events):
            assert self.rejected
        for side, peer in ((requestor, acceptor), (acceptor, requestor)):
            for event in side.events:
                if isinstance(event, Aborted) and event.abort is not None:
                    # Only the peer's user aborts: no side here breaks the protocol.
                    assert event.abort.source == AbortSource.SERVICE_USER
                    assert peer.aborted
                if isinstance(event, ReleaseConfirmed):
                    assert peer.responded_to_release
            if not self.disturbed:
                # Nothing cut the association short: every message arrived, in order.
                assert peer.received == side.sent
                assert not any(isinstance(e, Aborted) for e in side.events)


ConnectionPair.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_connection_pair = ConnectionPair.TestCase
