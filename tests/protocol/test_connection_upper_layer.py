"""The whole DimseConnection, bytes only: a requestor and an acceptor back to back.

Each side's ``data_to_send()`` is the other's ``receive_data()``; no sockets,
threads or clocks (the ARTIM timer's expiry is the call ``timer_expired()``).
What is checked is what PS3.8 9.2 prescribes: association accept and reject,
normal release and release collision (9.2.2), abort in every state a
connection can reach, ARTIM, unexpected and malformed PDUs; and what the DIMSE
provider adds on top: concurrent requests, C-CANCEL, the queue bound, and
spool files released after an abort in the middle of a data set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from connection_pair import (
    CT_IMAGE_STORAGE,
    PATIENT_ROOT_FIND,
    REJECTION,
    associate,
    associate_ac,
    associate_rq,
    associated_pair,
    deliver,
    feed,
    kinds,
    message_pdus,
    new_pair,
    outgoing,
    send_message,
    split_pdus,
)
from dicombus.protocol import commands as c
from dicombus.protocol.commands import CommandSet
from dicombus.protocol.connection import (
    MAX_QUEUED_REQUESTS,
    Aborted,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    CancelReceived,
    ConnectionClosed,
    DimseConnection,
    ProtocolViolation,
    ReleaseConfirmed,
    ReleaseRequested,
    RequestReceived,
    ResponseReceived,
)
from dicombus.protocol.errors import AbortReason, AbortSource, LocalProtocolError
from dicombus.protocol.fragments import DatasetSink
from dicombus.protocol.fsm import State
from dicombus.protocol.pdus import (
    AAbort,
    AAssociateRJ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
)
from dicombus.runtime.spool import SpoolingDatasetSink
from helpers import unhex

DATASET = bytes(range(256)) * 8  # 2 KiB: several P-DATA-TFs at MAX_PDU
SUCCESS = 0x0000
PENDING = 0xFF00
# PS3.8 Table 9-26: what an unexpected PDU is answered with (AA-1, AA-7, AA-8).
UNEXPECTED = AAbort(source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.UNEXPECTED_PDU)
USER_ABORT = AAbort(source=AbortSource.SERVICE_USER, reason=0)


def store(message_id: int) -> tuple[CommandSet, bytes]:
    return c.c_store_rq(message_id, CT_IMAGE_STORAGE, f"1.2.3.{message_id}"), DATASET


def spooling(spool: Path) -> Callable[[CommandSet], DatasetSink]:
    """Every data set goes to a file in ``spool`` at its first byte."""

    def sink(_command: CommandSet) -> DatasetSink:
        return SpoolingDatasetSink(threshold=0, spool_dir=spool)

    return sink


def sent_pdus(connection: DimseConnection) -> list[object]:
    return list(split_pdus(outgoing(connection)))


# ---------------------------------------------------------------------------
# Association: accept, reject


def test_association_accepted_over_bytes() -> None:
    requestor, acceptor = new_pair()
    acceptor.start()
    assert acceptor.state is State.STA2 and acceptor.artim_running
    rq = associate_rq()
    requestor.request_association(rq)
    assert requestor.state is State.STA5
    assert sent_pdus(acceptor) == []
    wire = outgoing(requestor)
    assert split_pdus(wire) == [rq]
    feed(acceptor, wire, range(1, len(wire)))  # one byte at a time
    assert acceptor.events() == [AssociateRequested(rq=rq)]
    assert acceptor.state is State.STA3 and not acceptor.artim_running  # AE-6 stops ARTIM
    ac = associate_ac(rq)
    acceptor.accept(ac)
    deliver(acceptor, requestor)
    assert requestor.events() == [AssociateAccepted(ac=ac)]
    assert requestor.state is State.STA6 and acceptor.state is State.STA6
    assert requestor.can_send_data and acceptor.can_send_data
    assert not (requestor.transport_closed or acceptor.transport_closed)


def test_association_rejected_then_artim_runs_until_the_peer_closes() -> None:
    requestor, acceptor = new_pair()
    acceptor.start()
    requestor.request_association(associate_rq())
    deliver(requestor, acceptor)
    acceptor.events()
    acceptor.reject(REJECTION)
    # AE-8: the RJ is sent and ARTIM bounds how long we wait for the peer to close.
    assert acceptor.state is State.STA13 and acceptor.artim_running
    assert not acceptor.transport_closed
    deliver(acceptor, requestor)
    # AE-4: the requestor learns of the rejection and closes.
    assert requestor.events() == [AssociateRejected(rj=REJECTION), ConnectionClosed()]
    assert requestor.state is State.STA1 and requestor.transport_closed
    assert sent_pdus(requestor) == []
    # AR-5: the peer's close stops ARTIM.
    acceptor.receive_data(b"")
    assert acceptor.events() == [ConnectionClosed()]
    assert acceptor.state is State.STA1 and not acceptor.artim_running
    assert acceptor.transport_closed


def test_after_a_rejection_artim_closes_if_the_peer_never_does() -> None:
    requestor, acceptor = new_pair()
    acceptor.start()
    requestor.request_association(associate_rq())
    deliver(requestor, acceptor)
    acceptor.reject(REJECTION)
    acceptor.events()
    acceptor.timer_expired()  # AA-2
    assert acceptor.events() == [ConnectionClosed()]
    assert acceptor.state is State.STA1 and acceptor.transport_closed
    assert not acceptor.artim_running
    assert sent_pdus(acceptor) == [REJECTION]


# ---------------------------------------------------------------------------
# ARTIM (PS3.8 9.1.5)


def test_artim_runs_from_the_connection_until_the_associate_rq() -> None:
    _, acceptor = new_pair()
    assert not acceptor.artim_running
    acceptor.start()
    assert acceptor.artim_running
    acceptor.timer_expired()  # AA-2: no A-ASSOCIATE-RQ came in time
    assert acceptor.events() == [ConnectionClosed()]
    assert acceptor.state is State.STA1 and acceptor.transport_closed
    assert not acceptor.artim_running
    assert sent_pdus(acceptor) == []


def test_timer_expiry_is_ignored_while_artim_is_not_running() -> None:
    requestor, acceptor = associated_pair()
    acceptor.timer_expired()
    requestor.timer_expired()
    assert acceptor.events() == [] and requestor.events() == []
    assert acceptor.state is State.STA6 and requestor.state is State.STA6


def test_after_release_artim_runs_until_the_peer_closes() -> None:
    requestor, acceptor = associated_pair()
    requestor.release()
    deliver(requestor, acceptor)
    acceptor.respond_to_release()  # AR-4
    assert acceptor.state is State.STA13 and acceptor.artim_running
    acceptor.events()
    acceptor.timer_expired()
    assert acceptor.events() == [ConnectionClosed()]
    assert acceptor.transport_closed and acceptor.state is State.STA1


# ---------------------------------------------------------------------------
# Release (PS3.8 9.2.2)


@pytest.mark.parametrize("releaser", ["requestor", "acceptor"])
def test_normal_release(releaser: str) -> None:
    requestor, acceptor = associated_pair()
    local, peer = (requestor, acceptor) if releaser == "requestor" else (acceptor, requestor)
    local.release()  # AR-1
    assert local.state is State.STA7 and not local.can_send_data
    with pytest.raises(LocalProtocolError):
        send_message(local, c.c_echo_rq(1), None)
    deliver(local, peer)
    assert peer.events() == [ReleaseRequested(answer_now=True)]  # AR-2
    assert peer.state is State.STA8
    peer.respond_to_release()  # AR-4
    assert peer.state is State.STA13 and peer.artim_running
    assert split_pdus(deliver(peer, local)) == [AReleaseRP()]
    # AR-3: confirmed, and the requestor of the release closes the transport.
    assert local.events() == [ReleaseConfirmed(answer_now=False), ConnectionClosed()]
    assert local.state is State.STA1 and local.transport_closed
    peer.receive_data(b"")
    assert peer.events() == [ConnectionClosed()]
    assert peer.state is State.STA1 and not peer.artim_running


def test_data_still_flows_to_the_releaser_until_the_release_rp() -> None:
    """PS3.8 9.2.2: after A-RELEASE-RQ the peer may still send P-DATA (Sta8, AR-7),
    which the releaser still takes (Sta7, AR-6): a pending C-FIND answer is not lost."""
    requestor, acceptor = associated_pair()
    send_message(requestor, c.c_find_rq(1, PATIENT_ROOT_FIND), b"", context_id=5)
    requestor.release()
    deliver(requestor, acceptor)
    request, release = acceptor.events()
    assert isinstance(request, RequestReceived)
    assert release == ReleaseRequested(answer_now=True)
    assert acceptor.state is State.STA8 and acceptor.can_send_data
    send_message(acceptor, c.c_find_rsp(1, PENDING, has_dataset=True), b"\x08\x00", context_id=5)
    send_message(acceptor, c.c_find_rsp(1, SUCCESS), None, context_id=5)
    acceptor.request_answered(1)
    acceptor.respond_to_release()
    deliver(acceptor, requestor)
    pending, final, confirmed, closed = requestor.events()
    assert isinstance(pending, ResponseReceived) and isinstance(final, ResponseReceived)
    assert pending.message.command.Status == PENDING
    assert pending.message.dataset is not None
    assert pending.message.dataset.getvalue() == b"\x08\x00"
    assert final.message.command.Status == SUCCESS
    assert (confirmed, closed) == (ReleaseConfirmed(answer_now=False), ConnectionClosed())


def test_release_collision() -> None:
    """PS3.8 9.2.2: both send A-RELEASE-RQ before receiving the other's. The
    requestor answers first (Sta9 -> Sta11 -> Sta1); the acceptor answers once
    its own request is confirmed (Sta10 -> Sta12 -> Sta13)."""
    requestor, acceptor = associated_pair()
    requestor.release()
    acceptor.release()
    assert requestor.state is State.STA7 and acceptor.state is State.STA7
    to_acceptor, to_requestor = outgoing(requestor), outgoing(acceptor)
    assert split_pdus(to_acceptor) == split_pdus(to_requestor) == [AReleaseRQ()]

    feed(requestor, to_requestor)  # AR-8, requestor side
    assert requestor.state is State.STA9
    assert requestor.events() == [ReleaseRequested(answer_now=True)]
    feed(acceptor, to_acceptor)  # AR-8, acceptor side: answer later
    assert acceptor.state is State.STA10
    assert acceptor.events() == [ReleaseRequested(answer_now=False)]
    with pytest.raises(LocalProtocolError):
        acceptor.respond_to_release()  # not in Sta10 (PS3.8 Table 9-10)
    assert acceptor.state is State.STA10

    requestor.respond_to_release()  # AR-9
    assert requestor.state is State.STA11
    assert split_pdus(deliver(requestor, acceptor)) == [AReleaseRP()]
    # AR-10: the acceptor's own request is confirmed; now it owes its answer.
    assert acceptor.events() == [ReleaseConfirmed(answer_now=True)]
    assert acceptor.state is State.STA12
    acceptor.respond_to_release()  # AR-4
    assert acceptor.state is State.STA13 and acceptor.artim_running
    assert split_pdus(deliver(acceptor, requestor)) == [AReleaseRP()]
    # AR-3: the requestor's release is confirmed; it closes the transport.
    assert requestor.events() == [ReleaseConfirmed(answer_now=False), ConnectionClosed()]
    assert requestor.state is State.STA1 and requestor.transport_closed
    acceptor.receive_data(b"")  # AR-5
    assert acceptor.events() == [ConnectionClosed()]
    assert acceptor.state is State.STA1 and not acceptor.artim_running


# ---------------------------------------------------------------------------
# Concurrent requests, C-CANCEL, the queue bound


def test_concurrent_requests_are_answered_by_message_id_in_any_order() -> None:
    requestor, acceptor = associated_pair()
    send_message(requestor, c.c_find_rq(1, PATIENT_ROOT_FIND), b"", context_id=5)
    send_message(requestor, *store(2), context_id=3)
    send_message(requestor, c.c_echo_rq(3), None)
    deliver(requestor, acceptor)
    assert kinds(acceptor.events()) == [RequestReceived] * 3
    served = [acceptor.next_request() for _ in range(3)]
    assert [m.command.MessageID for m in served if m is not None] == [1, 2, 3]
    assert acceptor.next_request() is None
    # Answered last first: each response names its request.
    send_message(acceptor, c.c_echo_rsp(3, SUCCESS), None)
    send_message(
        acceptor, c.c_store_rsp(2, SUCCESS, CT_IMAGE_STORAGE, "1.2.3.2"), None, context_id=3
    )
    send_message(acceptor, c.c_find_rsp(1, SUCCESS), None, context_id=5)
    deliver(acceptor, requestor)
    responses = requestor.events()
    assert kinds(responses) == [ResponseReceived] * 3
    answered = [
        (event.message.context_id, event.message.command.MessageIDBeingRespondedTo)
        for event in responses
        if isinstance(event, ResponseReceived)
    ]
    assert answered == [(1, 3), (3, 2), (5, 1)]
    assert requestor.next_request() is None


def test_c_cancel_applies_to_the_open_request_it_names() -> None:
    requestor, acceptor = associated_pair()
    send_message(requestor, c.c_find_rq(1, PATIENT_ROOT_FIND), b"", context_id=5)
    send_message(requestor, c.c_find_rq(2, PATIENT_ROOT_FIND), b"", context_id=5)
    send_message(requestor, c.c_cancel_rq(2), None, context_id=5)
    send_message(requestor, c.c_cancel_rq(9), None, context_id=5)  # names nothing open
    deliver(requestor, acceptor)
    *requests, cancel, stray = acceptor.events()
    assert kinds(requests) == [RequestReceived] * 2
    assert isinstance(cancel, CancelReceived) and cancel.applies
    assert isinstance(stray, CancelReceived) and not stray.applies
    assert acceptor.is_cancelled(2) and not acceptor.is_cancelled(1)
    assert not acceptor.is_cancelled(9)
    acceptor.request_answered(2)
    assert not acceptor.is_cancelled(2)


def test_more_queued_requests_than_the_bound_abort_the_association() -> None:
    requestor, acceptor = associated_pair()
    for message_id in range(1, MAX_QUEUED_REQUESTS + 2):
        send_message(requestor, c.c_echo_rq(message_id), None)
    deliver(requestor, acceptor)
    *requests, violation, aborted, closed = acceptor.events()
    assert kinds(requests) == [RequestReceived] * MAX_QUEUED_REQUESTS
    assert isinstance(violation, ProtocolViolation)
    assert (aborted, closed) == (Aborted(abort=None, provider=True), ConnectionClosed())
    abort = AAbort(
        source=AbortSource.SERVICE_PROVIDER, reason=AbortReason.INVALID_PDU_PARAMETER_VALUE
    )
    assert split_pdus(deliver(acceptor, requestor)) == [abort]
    # AA-3: the requestor hears of a provider abort, and closes.
    assert requestor.events() == [Aborted(abort=abort, provider=True), ConnectionClosed()]
    assert requestor.state is State.STA1 and requestor.transport_closed


# ---------------------------------------------------------------------------
# Abort in every state a connection reaches through its API and bytes


@dataclass(frozen=True)
class Reached:
    """``local`` in ``state``, its peer, and whether ``local`` holds a data set cut
    off mid-way (a spool file only close() releases)."""

    local: DimseConnection
    peer: DimseConnection
    cut_off: bool


def _cut_off_store(sender: DimseConnection, receiver: DimseConnection) -> None:
    """``sender`` sends every P-DATA-TF of a C-STORE but the last."""
    for pdu in list(DimseConnection.fragment(3, *store(1), max_pdu_length=256))[:-1]:
        sender.send_pdata(pdu)
    deliver(sender, receiver)


def _reach(state: str, spool: Path) -> Reached:
    """``state``'s local side and its peer, with no event pending (bytes may be)."""
    reached = _drive(state, spool)
    reached.local.events()
    reached.peer.events()
    return reached


def _drive(state: str, spool: Path) -> Reached:
    requestor, acceptor = new_pair(spooling(spool))
    if state in ("Sta2", "Sta3", "Sta5", "Sta13 rejected"):
        acceptor.start()
        requestor.request_association(associate_rq())
        if state == "Sta2":
            return Reached(local=acceptor, peer=requestor, cut_off=False)
        deliver(requestor, acceptor)
        if state == "Sta5":
            return Reached(local=requestor, peer=acceptor, cut_off=False)
        if state == "Sta13 rejected":
            acceptor.reject(REJECTION)
        return Reached(local=acceptor, peer=requestor, cut_off=False)
    associate(requestor, acceptor)
    # The local side of each state below, and the peer that cut a data set off.
    local, peer = {
        "Sta6 requestor": (requestor, acceptor),
        "Sta6 acceptor": (acceptor, requestor),
        "Sta7": (requestor, acceptor),
        "Sta8": (acceptor, requestor),
        "Sta9": (requestor, acceptor),
        "Sta10": (acceptor, requestor),
        "Sta11": (requestor, acceptor),
        "Sta12": (acceptor, requestor),
        "Sta13 released": (acceptor, requestor),
    }[state]
    _cut_off_store(peer, local)
    if state in ("Sta7", "Sta8", "Sta13 released"):
        releaser = local if state == "Sta7" else peer
        releaser.release()
        if state != "Sta7":
            deliver(peer, local)
        if state == "Sta13 released":
            local.respond_to_release()
    elif state in ("Sta9", "Sta10", "Sta11", "Sta12"):
        requestor.release()
        acceptor.release()
        deliver(peer, local)
        if state == "Sta11":
            local.respond_to_release()
        elif state == "Sta12":
            deliver(local, peer)
            peer.respond_to_release()
            deliver(peer, local)
    return Reached(local=local, peer=peer, cut_off=True)


# Every state reachable through the API and bytes. Sta1 has no connection, and
# Sta4 (awaiting the transport's connect) never outlives request_association().
REACHABLE = [
    "Sta2",
    "Sta3",
    "Sta5",
    "Sta6 requestor",
    "Sta6 acceptor",
    "Sta7",
    "Sta8",
    "Sta9",
    "Sta10",
    "Sta11",
    "Sta12",
    "Sta13 rejected",
    "Sta13 released",
]
# PS3.8 Table 9-10: in Sta2 and Sta13 there is no association to abort (AA-2).
NO_ASSOCIATION = (State.STA2, State.STA13)


@pytest.mark.parametrize("name", REACHABLE)
def test_each_scenario_reaches_its_state(name: str, tmp_path: Path) -> None:
    reached = _reach(name, tmp_path)
    assert reached.local.state.name.title() == name.split()[0]
    assert len(list(tmp_path.iterdir())) == int(reached.cut_off)


@pytest.mark.parametrize("source", [AbortSource.SERVICE_USER, AbortSource.SERVICE_PROVIDER])
@pytest.mark.parametrize("name", REACHABLE)
def test_a_peers_abort_in_every_state(name: str, source: AbortSource, tmp_path: Path) -> None:
    reached = _reach(name, tmp_path)
    local = reached.local
    state = local.state
    local.data_to_send()  # what was in flight: the A-ABORT overtakes nothing we check
    abort = AAbort(source=source, reason=0)
    feed(local, abort.encode())
    if state in NO_ASSOCIATION:
        assert local.events() == [ConnectionClosed()]  # AA-2
    else:
        # AA-3: A-ABORT if the peer's user aborted, A-P-ABORT if its provider did.
        assert local.events() == [
            Aborted(abort=abort, provider=source == AbortSource.SERVICE_PROVIDER),
            ConnectionClosed(),
        ]
    assert local.state is State.STA1 and local.transport_closed
    assert not local.artim_running
    assert local.data_to_send() == []
    local.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", REACHABLE)
def test_a_local_abort_in_every_state(name: str, tmp_path: Path) -> None:
    reached = _reach(name, tmp_path)
    local, peer = reached.local, reached.peer
    state = local.state
    in_flight = outgoing(local)
    local.abort()
    sent = outgoing(local)
    assert local.transport_closed and not local.artim_running
    assert local.events() == [ConnectionClosed()]
    if state in NO_ASSOCIATION:
        assert sent == b""
    else:
        assert split_pdus(sent) == [USER_ABORT]  # AA-1
        assert local.state is State.STA13
        # The peer hears of it: AA-3, or AA-2 where it has no association.
        feed(peer, in_flight)
        peer.events()
        peer_state = peer.state
        feed(peer, sent)
        expected = (
            [] if peer_state in NO_ASSOCIATION else [Aborted(abort=USER_ABORT, provider=False)]
        )
        assert peer.events() == [*expected, ConnectionClosed()]
        assert peer.state is State.STA1 and peer.transport_closed
    # Nothing more goes out, whatever comes in or is asked.
    feed(local, AReleaseRQ().encode())
    local.abort()
    local.timer_expired()
    assert local.data_to_send() == [] and local.events() == []
    with pytest.raises(LocalProtocolError):
        send_message(local, c.c_echo_rq(1), None)
    local.close()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# Unexpected PDUs (PS3.8 Table 9-10: AA-1, AA-6, AA-7, AA-8)


def test_an_associate_rq_on_an_established_association_is_aborted() -> None:
    requestor, acceptor = associated_pair()
    feed(acceptor, associate_rq().encode())
    # AA-8: A-ABORT (provider, unexpected PDU), A-P-ABORT indicated, ARTIM started.
    assert acceptor.events() == [Aborted(abort=None, provider=True)]
    assert acceptor.state is State.STA13 and acceptor.artim_running
    assert not acceptor.transport_closed
    assert split_pdus(deliver(acceptor, requestor)) == [UNEXPECTED]
    assert requestor.events() == [Aborted(abort=UNEXPECTED, provider=True), ConnectionClosed()]
    acceptor.receive_data(b"")  # AR-5
    assert acceptor.events() == [ConnectionClosed()]
    assert acceptor.state is State.STA1 and not acceptor.artim_running


@pytest.mark.parametrize(
    "pdu",
    [associate_ac(associate_rq()), REJECTION, AReleaseRP()],
    ids=["A-ASSOCIATE-AC", "A-ASSOCIATE-RJ", "A-RELEASE-RP"],
)
def test_other_unexpected_pdus_in_sta6(pdu: object) -> None:
    requestor, _ = associated_pair()
    feed(requestor, pdu.encode())  # type: ignore[attr-defined]
    assert requestor.events() == [Aborted(abort=None, provider=True)]
    assert split_pdus(outgoing(requestor)) == [UNEXPECTED]
    assert requestor.state is State.STA13


def test_pdata_before_the_associate_rq_is_aborted() -> None:
    """AA-1 in Sta2: no association yet, so nothing is indicated; ARTIM restarts."""
    _, acceptor = new_pair()
    acceptor.start()
    feed(acceptor, b"".join(message_pdus(c.c_echo_rq(1), None)))
    assert acceptor.events() == []
    assert split_pdus(outgoing(acceptor)) == [UNEXPECTED]
    assert acceptor.state is State.STA13 and acceptor.artim_running


def test_a_release_rq_while_the_user_decides_is_aborted() -> None:
    requestor, acceptor = new_pair()
    acceptor.start()
    requestor.request_association(associate_rq())
    deliver(requestor, acceptor)
    acceptor.events()
    feed(acceptor, AReleaseRQ().encode())  # AA-8 in Sta3
    assert acceptor.events() == [Aborted(abort=None, provider=True)]
    assert split_pdus(outgoing(acceptor)) == [UNEXPECTED]
    with pytest.raises(LocalProtocolError):
        acceptor.accept(associate_ac(associate_rq()))  # too late: Sta13


def test_sta13_ignores_pdata_and_answers_an_associate_rq_with_an_abort() -> None:
    requestor, acceptor = associated_pair()
    requestor.release()
    deliver(requestor, acceptor)
    acceptor.respond_to_release()
    acceptor.data_to_send()
    acceptor.events()
    feed(acceptor, b"".join(message_pdus(c.c_echo_rq(1), None)))  # AA-6
    assert acceptor.events() == [] and acceptor.data_to_send() == []
    feed(acceptor, associate_rq().encode())  # AA-7
    assert acceptor.events() == []
    assert split_pdus(outgoing(acceptor)) == [UNEXPECTED]
    assert acceptor.state is State.STA13 and acceptor.artim_running


# ---------------------------------------------------------------------------
# Malformed bytes: ProtocolViolation and a provider A-ABORT (EVT19)


MALFORMED = [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", AbortReason.UNRECOGNIZED_PDU),
    (unhex("05 00 00 00 00 05  00 00 00 00 00   # A-RELEASE-RQ of 5 bytes"),
     AbortReason.INVALID_PDU_PARAMETER_VALUE),
    (unhex("04 00 ff ff ff ff   # P-DATA-TF claiming 4 GiB"),
     AbortReason.INVALID_PDU_PARAMETER_VALUE),
    (unhex("04 00 00 00 00 06  00 00 00 01 01 00   # PDV item length 1"),
     AbortReason.INVALID_PDU_PARAMETER_VALUE),
    (unhex("07 00 00 00 00 04  00 00 09 00   # A-ABORT, source 9"),
     AbortReason.INVALID_PDU_PARAMETER_VALUE),
]  # fmt: skip


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_bytes_on_an_association(data: bytes, reason: AbortReason) -> None:
    requestor, acceptor = associated_pair()
    feed(acceptor, data, range(1, len(data)))
    violation, aborted, closed = acceptor.events()
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.abort_reason == reason
    assert (aborted, closed) == (Aborted(abort=None, provider=True), ConnectionClosed())
    assert acceptor.state is State.STA1 and acceptor.transport_closed
    abort = AAbort(source=AbortSource.SERVICE_PROVIDER, reason=reason)
    assert split_pdus(deliver(acceptor, requestor)) == [abort]
    assert requestor.events() == [Aborted(abort=abort, provider=True), ConnectionClosed()]
    # The stream is given up: nothing after the violation is read.
    feed(acceptor, AReleaseRQ().encode())
    assert acceptor.events() == [] and acceptor.data_to_send() == []


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_bytes_before_the_associate_rq(data: bytes, reason: AbortReason) -> None:
    _, acceptor = new_pair()
    acceptor.start()
    feed(acceptor, data)
    violation, closed = acceptor.events()  # AA-1: no association to indicate an abort to
    assert isinstance(violation, ProtocolViolation) and closed == ConnectionClosed()
    assert split_pdus(outgoing(acceptor)) == [
        AAbort(source=AbortSource.SERVICE_PROVIDER, reason=reason)
    ]
    assert acceptor.transport_closed and not acceptor.artim_running


def test_a_broken_dimse_message_aborts_and_close_releases_its_spool_file(
    tmp_path: Path,
) -> None:
    """A peer starts a C-STORE, then sends a command where its data set should go on."""
    _, acceptor = associated_pair(spooling(tmp_path))
    first = message_pdus(*store(1), context_id=3)
    feed(acceptor, b"".join(first[:2]))
    assert len(list(tmp_path.iterdir())) == 1
    feed(acceptor, b"".join(message_pdus(c.c_echo_rq(2), None, context_id=3)))
    violation, *_ = acceptor.events()
    assert isinstance(violation, ProtocolViolation)
    assert "command PDV while the data set" in str(violation.error)
    acceptor.close()
    assert list(tmp_path.iterdir()) == []


def test_a_pdata_tf_over_our_maximum_length_is_refused_before_its_body() -> None:
    _, acceptor = associated_pair()
    big = PDataTF(
        pdvs=(PresentationDataValue(context_id=1, is_command=False, is_last=True, data=bytes(300)),)
    )
    feed(acceptor, big.encode()[:6])  # its header alone is enough
    violation, *_ = acceptor.events()
    assert isinstance(violation, ProtocolViolation)
    assert acceptor.transport_closed


def test_eof_mid_association_is_a_provider_abort() -> None:
    """AA-4: the transport closed under an established association."""
    _, acceptor = associated_pair()
    feed(acceptor, AReleaseRQ().encode()[:3])
    assert acceptor.mid_pdu
    acceptor.receive_data(b"")
    assert acceptor.events() == [Aborted(abort=None, provider=True), ConnectionClosed()]
    assert acceptor.state is State.STA1 and acceptor.data_to_send() == []


def test_an_unknown_reject_is_refused_not_indicated() -> None:
    """An A-ASSOCIATE-RJ with a result outside PS3.8 Table 9-21 is malformed."""
    requestor, acceptor = new_pair()
    acceptor.start()
    requestor.request_association(associate_rq())
    deliver(requestor, acceptor)
    bad = bytearray(AAssociateRJ(result=1, source=1, reason=1).encode())
    bad[7] = 9  # result 9
    feed(requestor, bytes(bad))
    violation, aborted, closed = requestor.events()
    assert isinstance(violation, ProtocolViolation)
    assert (aborted, closed) == (Aborted(abort=None, provider=True), ConnectionClosed())


# ---------------------------------------------------------------------------
# A closed connection


def test_a_closed_connection_refuses_p_data() -> None:
    _, acceptor = associated_pair()
    acceptor.abort()
    with pytest.raises(LocalProtocolError):
        send_message(acceptor, c.c_echo_rq(1), None)
    assert acceptor.data_to_send() == [USER_ABORT.encode()]


@pytest.mark.parametrize("intent", ["request_association", "start"])
def test_a_closed_connection_refuses_to_start_again(intent: str) -> None:
    requestor, acceptor = new_pair()
    acceptor.start()
    requestor.request_association(associate_rq())
    deliver(requestor, acceptor)
    acceptor.reject(REJECTION)
    deliver(acceptor, requestor)  # AE-4: the requestor closes, back in Sta1
    acceptor.timer_expired()  # AA-2: the acceptor closes, back in Sta1
    closed = requestor if intent == "request_association" else acceptor
    assert closed.transport_closed and closed.state is State.STA1
    with pytest.raises(LocalProtocolError):
        if intent == "start":
            closed.start()
        else:
            closed.request_association(associate_rq())
    assert closed.data_to_send() == [] and not closed.artim_running
