"""PduChannel over real sockets: whole PDUs in, segment lists out, with deadlines.

Every stream goes in whole, one byte per send and at random split points,
from a sender thread on the other end of a ``socket.socketpair()``. Timing
tests use deadlines of a few tenths of a second; each file run stays under 3 s.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import struct
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import trustme
from dicombus.protocol.errors import AbortReason, RemoteProtocolError
from dicombus.protocol.items import (
    ImplementationClassUIDSubItem,
    MaximumLengthSubItem,
    PresentationContextRQItem,
    UserInformationItem,
)
from dicombus.protocol.pdus import (
    AAbort,
    AAssociateRQ,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
)
from dicombus.runtime.transport import (
    READ_AHEAD,
    ConnectionClosed,
    DeadlineExpired,
    PduChannel,
    configure_socket,
)
from dicombus.scatter_gather import advance

MAX_PDATA = 64 * 1024
MAX_ASSOCIATE = 1 << 20
# Bounds every join: a sender thread that is still running after this is a bug.
JOIN_TIMEOUT = 5.0
# A deadline no test means to reach: what ends a read before it is the behaviour.
LONG = 30.0


def header(pdu_type: int, length: int) -> bytes:
    """PS3.8 9.3.1: type, reserved, 4-byte big-endian length."""
    return struct.pack(">BBI", pdu_type, 0, length)


def p_data(size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    pdv = PresentationDataValue(context_id=1, is_command=False, is_last=True, data=data)
    return PDataTF(pdvs=(pdv,)).encode()


ASSOCIATE_RQ = AAssociateRQ(
    called_ae_title="STORESCP",
    calling_ae_title="STORESCU",
    presentation_contexts=(
        PresentationContextRQItem(
            context_id=1,
            abstract_syntax="1.2.840.10008.1.1",
            transfer_syntaxes=("1.2.840.10008.1.2",),
        ),
    ),
    user_information=UserInformationItem(
        sub_items=(
            MaximumLengthSubItem(maximum_length=MAX_PDATA),
            ImplementationClassUIDSubItem(uid="1.2.3.4"),
        )
    ),
).encode()
# An A-ASSOCIATE-RQ, a P-DATA-TF larger than the channel's first body buffer,
# an A-RELEASE-RQ and an A-ABORT, back to back.
STREAM_PDUS = [ASSOCIATE_RQ, p_data(MAX_PDATA - 6), AReleaseRQ().encode(), AAbort().encode()]
STREAM = b"".join(STREAM_PDUS)


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


class Pair:
    """A PduChannel on one end of a socketpair and the raw peer socket on the other."""

    def __init__(self, channel_socket: socket.socket, peer: socket.socket) -> None:
        self.channel = PduChannel(
            channel_socket, max_pdata_length=MAX_PDATA, max_associate_length=MAX_ASSOCIATE
        )
        self.peer = peer
        self.threads: list[threading.Thread] = []

    def feed(self, chunks: Sequence[bytes], *, delay: float = 0.0, close: bool = False) -> None:
        """Send ``chunks`` from a thread, ``delay`` seconds apart; optionally close after."""

        def run() -> None:
            try:
                for index, chunk in enumerate(chunks):
                    if delay and index:
                        time.sleep(delay)
                    self.peer.sendall(chunk)
                if close:
                    self.peer.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the test is over and closed the socket under us

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def read(self, *, idle: float | None = 2.0, pdu_timeout: float | None = 2.0) -> bytes:
        """One whole PDU, header included, as bytes."""
        idle_deadline = None if idle is None else time.monotonic() + idle
        pdu_type, body, head = self.channel.read_pdu(
            idle_deadline=idle_deadline, pdu_timeout=pdu_timeout
        )
        assert pdu_type == head[0]
        return bytes(head) + bytes(body)

    def close(self) -> None:
        self.channel.close()
        self.peer.close()
        for thread in self.threads:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive()


@pytest.fixture
def pair() -> Iterator[Pair]:
    ours, theirs = socket.socketpair()
    created = Pair(ours, theirs)
    yield created
    created.close()


# -- reading whole PDUs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "split",
    [
        pytest.param(lambda data: [data], id="whole"),
        pytest.param(byte_by_byte, id="byte-by-byte"),
        *(
            pytest.param(lambda data, seed=seed: random_splits(data, seed), id=f"random-{seed}")
            for seed in range(3)
        ),
    ],
)
def test_pdus_arrive_whole_however_the_stream_is_split(
    pair: Pair, split: Callable[[bytes], list[bytes]]
) -> None:
    pair.feed(split(STREAM))
    assert [pair.read() for _ in STREAM_PDUS] == STREAM_PDUS
    assert pair.channel.bytes_received == len(STREAM)


def test_body_buffer_grows_for_a_large_pdu_and_is_reused() -> None:
    ours, theirs = socket.socketpair()
    # 0 = unlimited (PS3.8 D.1): the first buffer is 64 KiB and must grow.
    channel = PduChannel(ours, max_pdata_length=0, max_associate_length=MAX_ASSOCIATE)
    large, small = p_data(300_000, seed=1), p_data(10, seed=2)
    sender = threading.Thread(target=theirs.sendall, args=(large + small,), daemon=True)
    sender.start()
    try:
        _, body, _ = channel.read_pdu(idle_deadline=None, pdu_timeout=5)
        assert bytes(body) == large[6:]
        _, body, _ = channel.read_pdu(idle_deadline=None, pdu_timeout=5)
        assert bytes(body) == small[6:]
    finally:
        sender.join(JOIN_TIMEOUT)
        channel.close()
        theirs.close()


class CountingSocket(socket.socket):
    """A real socket that counts its reads: how many system calls a PDU costs."""

    reads = 0

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self.reads += 1
        return super().recv_into(*args, **kwargs)


def test_pdus_already_sent_are_read_with_one_recv_and_reported_as_input() -> None:
    # A C-STORE's command PDU and its small data set PDU, as storescu sends
    # them, then a release request, all in the socket before the first read.
    ours, theirs = socket.socketpair()
    counting = CountingSocket(ours.family, ours.type, fileno=ours.detach())
    channel = PduChannel(counting, max_pdata_length=MAX_PDATA, max_associate_length=MAX_ASSOCIATE)
    pdus = [p_data(150, seed=1), p_data(2048, seed=2), AReleaseRQ().encode()]
    theirs.sendall(b"".join(pdus))
    try:
        received = []
        for _ in pdus:
            _, body, head = channel.read_pdu(idle_deadline=None, pdu_timeout=LONG)
            received.append(bytes(head) + bytes(body))
            assert channel.has_read_ahead == (len(received) < len(pdus))
        assert received == pdus
        assert counting.reads == 1
    finally:
        channel.close()
        theirs.close()


def test_a_body_longer_than_the_read_ahead_is_read_into_place() -> None:
    ours, theirs = socket.socketpair()
    counting = CountingSocket(ours.family, ours.type, fileno=ours.detach())
    channel = PduChannel(counting, max_pdata_length=0, max_associate_length=MAX_ASSOCIATE)
    large = p_data(4 * READ_AHEAD, seed=3)
    sender = threading.Thread(target=theirs.sendall, args=(large,), daemon=True)
    sender.start()
    try:
        _, body, head = channel.read_pdu(idle_deadline=None, pdu_timeout=LONG)
        assert bytes(head) + bytes(body) == large
        assert not channel.has_read_ahead
    finally:
        sender.join(JOIN_TIMEOUT)
        channel.close()
        theirs.close()


# -- the header is judged before the body is read ----------------------------------------------


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        # A P-DATA-TF claiming 4 GiB: pynetdicom would try to buffer it.
        (header(0x04, 0xFFFFFFFF), AbortReason.INVALID_PDU_PARAMETER_VALUE),
        (header(0x04, MAX_PDATA + 1), AbortReason.INVALID_PDU_PARAMETER_VALUE),
        (header(0x01, MAX_ASSOCIATE + 1), AbortReason.INVALID_PDU_PARAMETER_VALUE),
        (header(0x05, 5), AbortReason.INVALID_PDU_PARAMETER_VALUE),
        (header(0x09, 4), AbortReason.UNRECOGNIZED_PDU),
    ],
)
def test_bad_header_raises_before_any_body_byte(
    pair: Pair, head: bytes, reason: AbortReason
) -> None:
    pair.feed([head])  # and nothing more: reading a body would block until the deadline
    started = time.monotonic()
    with pytest.raises(RemoteProtocolError) as raised:
        pair.read(idle=LONG, pdu_timeout=LONG)
    assert time.monotonic() - started < LONG / 2  # the header decided, not a deadline
    assert raised.value.abort_reason == reason


# -- deadlines ---------------------------------------------------------------------------------


def test_idle_deadline_expires_between_pdus(pair: Pair) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExpired) as raised:
        pair.read(idle=0.15, pdu_timeout=LONG)
    assert 0.1 < time.monotonic() - started < LONG / 2
    assert raised.value.mid_pdu is False


def test_idle_deadline_in_the_past_expires_at_once(pair: Pair) -> None:
    with pytest.raises(DeadlineExpired) as raised:
        pair.channel.read_pdu(idle_deadline=time.monotonic() - 1, pdu_timeout=5.0)
    assert raised.value.mid_pdu is False


def test_a_started_pdu_is_not_cut_by_the_idle_deadline(pair: Pair) -> None:
    """Once a PDU has begun it gets its own deadline, however close the idle one was."""
    release = AReleaseRQ().encode()
    pair.peer.sendall(release[:3])  # the PDU starts well before the idle deadline
    pair.feed([b"", release[3:]], delay=0.3)  # and ends after it
    assert pair.read(idle=0.15, pdu_timeout=2.0) == release


def test_a_drip_feeding_peer_is_cut_off_mid_pdu(pair: Pair) -> None:
    """Each byte comes well within the timeout, but the PDU as a whole does not."""
    drip = byte_by_byte(p_data(40))
    pair.feed(drip, delay=0.1)  # the whole PDU would take over 5 s
    started = time.monotonic()
    with pytest.raises(DeadlineExpired) as raised:
        pair.read(idle=LONG, pdu_timeout=0.25)
    # Cut at its PDU deadline: before the drip could have ended (or the idle one).
    assert 0.2 < time.monotonic() - started < 0.1 * (len(drip) - 1)
    assert raised.value.mid_pdu is True


def test_a_peer_that_stops_inside_the_header_is_cut_off_mid_pdu(pair: Pair) -> None:
    pair.feed([header(0x05, 4)[:3]])
    with pytest.raises(DeadlineExpired) as raised:
        pair.read(idle=None, pdu_timeout=0.15)
    assert raised.value.mid_pdu is True


# -- end of stream -----------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [0, 3, 6, 8], ids=["nothing", "half-header", "header", "body"])
def test_eof_is_connection_closed(pair: Pair, sent: int) -> None:
    pair.feed([AReleaseRQ().encode()[:sent]], close=True)
    with pytest.raises(ConnectionClosed):
        pair.read()


def test_shutdown_wakes_a_blocked_reader(pair: Pair) -> None:
    outcome: list[BaseException] = []

    def reader() -> None:
        try:
            pair.read(idle=None, pdu_timeout=None)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.05)  # let it block in recv
    pair.channel.shutdown()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosed)


# -- sending -----------------------------------------------------------------------------------


class RecordingSocket(socket.socket):
    """A socket that records, per sendmsg call, (bytes offered, bytes sent)."""

    calls: list[tuple[int, int]]

    def sendmsg(self, buffers: object, *args: object) -> int:
        assert isinstance(buffers, list)
        sent = super().sendmsg(buffers, *args)  # type: ignore[arg-type]
        self.calls.append((sum(view.nbytes for view in buffers), sent))
        return sent


def drain(sock: socket.socket, expected: int, into: bytearray) -> threading.Thread:
    """Read ``expected`` bytes in small slow gulps, so the sender's buffer fills up."""

    def run() -> None:
        while len(into) < expected:
            chunk = sock.recv(4096)
            if not chunk:
                return
            into.extend(chunk)
            time.sleep(0.0005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_send_segments_survives_partial_sends_and_many_segments() -> None:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    recorder = RecordingSocket(ours.family, ours.type, fileno=ours.detach())
    recorder.calls = []
    channel = PduChannel(recorder, max_pdata_length=MAX_PDATA, max_associate_length=MAX_ASSOCIATE)
    rng = random.Random(7)
    # More segments than IOV_MAX (1024 on Linux), of every buffer kind, some empty.
    segments: list[bytes | bytearray | memoryview] = []
    for index in range(3000):
        data = rng.randbytes(rng.choice([0, 1, 5, 300]))
        segments.append([bytes, bytearray, memoryview][index % 3](data))
    wide = array("H", range(20_000))  # a memoryview of 2-byte items is sent as its bytes
    segments.append(memoryview(wide))
    expected = b"".join(bytes(segment) for segment in segments)
    received = bytearray()
    reader = drain(theirs, len(expected), received)
    try:
        channel.send_segments(segments, timeout=5.0)
        reader.join(JOIN_TIMEOUT)
    finally:
        channel.close()
        theirs.close()
    assert bytes(received) == expected
    assert channel.bytes_sent == len(expected)
    assert len(recorder.calls) > 3
    assert any(sent < offered for offered, sent in recorder.calls), "no partial send happened"


@pytest.mark.parametrize(
    ("sizes", "sent", "left"),
    [
        ([3, 4], 0, [3, 4]),
        ([3, 4], 2, [1, 4]),
        ([3, 4], 3, [4]),
        ([3, 4], 5, [2]),
        ([3, 4], 7, []),
    ],
)
def test_advance_drops_what_was_sent(sizes: list[int], sent: int, left: list[int]) -> None:
    segments = [memoryview(bytes(range(size))) for size in sizes]
    stream = b"".join(bytes(segment) for segment in segments)
    remaining = advance(segments, sent)
    assert [len(segment) for segment in remaining] == left
    assert b"".join(bytes(segment) for segment in remaining) == stream[sent:]


def test_send_to_a_closed_peer_is_connection_closed(pair: Pair) -> None:
    pair.peer.close()
    with pytest.raises(ConnectionClosed):
        pair.channel.send_segments([b"x" * 1_000_000], timeout=2.0)


def test_send_to_a_peer_that_never_reads_expires(pair: Pair) -> None:
    pair.channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with pytest.raises(DeadlineExpired) as raised:
        pair.channel.send_segments([b"x" * 4_000_000], timeout=0.2)
    assert raised.value.mid_pdu is True


def test_configure_socket_disables_nagle_on_tcp_only() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        configure_socket(tcp)
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    ours, theirs = socket.socketpair()
    with ours, theirs:
        configure_socket(ours)  # AF_UNIX has no Nagle; nothing to set, nothing raised


# -- TLS: no sendmsg on an SSLSocket, segments are joined -------------------------------------


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    authority.configure_trust(client)
    return server, client


def tls_pair(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """(client, server): the two ends of a socket pair after their TLS handshake."""
    server_context, client_context = tls_contexts
    plain_server, plain_client = socket.socketpair()
    wrapped: list[ssl.SSLSocket] = []
    handshake = threading.Thread(
        target=lambda: wrapped.append(server_context.wrap_socket(plain_server, server_side=True)),
        daemon=True,
    )
    handshake.start()
    client = client_context.wrap_socket(plain_client, server_hostname="localhost")
    handshake.join(JOIN_TIMEOUT)
    return client, wrapped[0]


def test_tls_channels_exchange_segmented_pdus(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client, server = tls_pair(tls_contexts)
    sending = PduChannel(client, max_pdata_length=MAX_PDATA, max_associate_length=MAX_ASSOCIATE)
    reading = PduChannel(server, max_pdata_length=MAX_PDATA, max_associate_length=MAX_ASSOCIATE)
    pdu = p_data(50_000, seed=3)
    segments = [pdu[:6], memoryview(pdu)[6:12], bytearray(pdu[12:])]
    try:
        sender = threading.Thread(
            target=sending.send_segments, args=(segments,), kwargs={"timeout": 5.0}, daemon=True
        )
        sender.start()
        pdu_type, body, _ = reading.read_pdu(idle_deadline=None, pdu_timeout=5.0)
        sender.join(JOIN_TIMEOUT)
        assert (pdu_type, bytes(body)) == (0x04, pdu[6:])
        assert sending.bytes_sent == reading.bytes_received == len(pdu)
    finally:
        sending.close()
        reading.close()


def test_decrypted_bytes_held_by_openssl_are_input_and_asked_under_the_tls_lock(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client, server = tls_pair(tls_contexts)
    reading = PduChannel(server, max_pdata_length=MAX_PDATA, max_associate_length=MAX_ASSOCIATE)
    try:
        assert not reading.tls_holds_input
        client.sendall(b"x" * 100)  # one TLS record
        first = bytearray(10)
        deadline = time.monotonic() + JOIN_TIMEOUT
        while True:  # the record may still be on its way: a bounded wait for it
            try:
                assert reading.sock.recv_into(first) == 10
                break
            except ssl.SSLWantReadError:
                assert time.monotonic() < deadline
                select.select([reading.sock], [], [], 0.1)
        # The other 90 bytes were decrypted with the record: the socket shows nothing.
        assert reading.tls_holds_input
        # A sending thread inside OpenSSL holds the lock: the question waits for it.
        asked: list[bool] = []
        tls = reading._tls
        assert tls is not None
        with tls.lock:
            asking = threading.Thread(
                target=lambda: asked.append(reading.tls_holds_input), daemon=True
            )
            asking.start()
            asking.join(0.2)
            assert asked == []
        asking.join(JOIN_TIMEOUT)
        assert asked == [True]
        rest = bytearray(100)
        assert reading.sock.recv_into(rest) == 90
        assert not reading.tls_holds_input
    finally:
        client.close()
        reading.close()
