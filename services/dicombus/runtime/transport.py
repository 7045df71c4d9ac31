"""Reading whole PDUs from a socket and writing them, with deadlines.

Each PDU is read into place by the protocol core's framer: the 6-byte
header first, checked against our caps before anything is allocated, then
the body with ``recv_into`` into a buffer reused for the life of the
association. A PDU must arrive whole before its deadline,
so a peer that drips one byte a second is cut off instead of holding a thread
forever (a per-read timeout would never fire).

The socket is put in non-blocking mode once: each read or write is tried at
once and waits in ``poll()`` for the time left only when the peer has nothing
for us (or no room). A socket timeout would cost a mode switch and a ``poll()``
before every ``recv_into``, several per C-STORE, and over TLS it flipped the
descriptor's mode under a call in the other thread. A TLS socket's calls into
OpenSSL also take one lock per channel (:class:`_TlsIo`). Platforms without
``poll()`` keep socket timeouts.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dicombus.protocol.errors import DicombusError
from dicombus.protocol.framing import PduFramer
from dicombus.protocol.limits import PDU_HEADER_LENGTH
from dicombus.scatter_gather import IOV_MAX, advance

Buffer = bytes | bytearray | memoryview

# Peers with Nagle's algorithm on (pynetdicom's and DCMTK's default) hold a
# small write until the previous one is ACKed, and a delayed ACK waits ~40 ms:
# every message boundary stalls. ACKing at once (Linux's TCP_QUICKACK) removes
# that stall on our side of the conversation; measured with DCMTK storescu as
# the sender, 2 KB instances went from about 22 to 850 per second.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

# A header, or a body with less than this left to come, is read through a
# read-ahead buffer of this size: one recv then takes what the peer has sent,
# often a C-STORE's command PDU and its small data set PDU together (one
# system call instead of four). A larger body is read straight into place.
READ_AHEAD = 16 * 1024
# A TLS write hands OpenSSL this much at a time (it makes records of 16 KiB).
_TLS_WRITE_CHUNK = 256 * 1024
# How long a TLS write that must first read waits before it tries again.
_TLS_RETRY = 0.05


class ConnectionClosed(DicombusError, ConnectionError):
    """The peer closed the connection (EOF), or it was reset."""


class DeadlineExpired(DicombusError, TimeoutError):
    """The peer did not deliver (a whole PDU) before the deadline."""

    def __init__(self, message: str, *, mid_pdu: bool) -> None:
        super().__init__(message)
        self.mid_pdu = mid_pdu


def configure_socket(sock: socket.socket) -> None:
    """Disable Nagle: a DIMSE exchange is request/response, and each message
    boundary would otherwise wait about 40 ms for a delayed ACK."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PduChannel:
    """Whole PDUs in, segment lists out, over one connected socket."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_pdata_length: int,
        max_associate_length: int,
    ) -> None:
        self.sock = sock
        self.framer = PduFramer(
            max_pdata_length=max_pdata_length, max_associate_length=max_associate_length
        )
        is_tls = isinstance(sock, ssl.SSLSocket)
        self._can_sendmsg = not is_tls
        is_tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._quickack = _QUICKACK if is_tcp else None
        # One poll object per direction: the reader thread and a sending thread
        # may wait at the same time.
        self._readable: select.poll | None = None
        self._writable: select.poll | None = None
        # OpenSSL's connection object is not safe for a read in one thread and a
        # write in another at the same time (reads failed as a false end of stream
        # now and then). Every call into it takes this lock; the socket is
        # non-blocking, so no call waits for the peer while holding it.
        self._tls: _TlsIo | None = None
        if hasattr(select, "poll"):
            # Non-blocking once and for all: a timeout set per call would also flip
            # the descriptor's mode under a call in the other thread.
            sock.setblocking(False)
            self._readable, self._writable = select.poll(), select.poll()
            self._readable.register(sock, select.POLLIN)
            self._writable.register(sock, select.POLLOUT)
            if is_tls:
                self._tls = _TlsIo(threading.Lock(), self._readable, self._writable)
        # Whether the last read took less than it asked for: the socket was empty.
        self._drained = False
        self._read_ahead = memoryview(bytearray(READ_AHEAD))
        # What the last read-ahead took that the framer has not: the start of the next PDU.
        self._ahead = self._read_ahead[:0]
        self.bytes_received = 0
        self.bytes_sent = 0

    @property
    def has_read_ahead(self) -> bool:
        """Whether bytes already read wait here for the next read_pdu (a poll of the
        socket does not see them)."""
        return bool(self._ahead)

    @property
    def tls_holds_input(self) -> bool:
        """Whether OpenSSL holds decrypted bytes that a poll of the socket does not see.
        Asked under the channel's TLS lock: a sending thread may be inside OpenSSL."""
        sock = self.sock
        if not isinstance(sock, ssl.SSLSocket):
            return False
        if self._tls is None:  # no poll(): a blocking socket, no lock (see __init__)
            return sock.pending() > 0
        with self._tls.lock:
            return sock.pending() > 0

    def read_pdu(
        self, *, idle_deadline: float | None, pdu_timeout: float | None
    ) -> tuple[int, memoryview, memoryview]:
        """Block until one whole PDU is in; return (type, body view, header view).

        ``idle_deadline`` bounds the wait for the PDU to start (ARTIM or the
        network timeout); once its first byte is in, the whole PDU must arrive
        within ``pdu_timeout`` seconds. The framer reads the header, checks it
        against our caps, then reads the body into place (a short one through
        the read-ahead buffer); the views are valid until the next call.
        """
        framer = self.framer
        deadline = idle_deadline
        started = framer.mid_pdu
        if started:
            deadline = None if pdu_timeout is None else time.monotonic() + pdu_timeout
        while True:
            target = framer.receive_buffer()
            ahead = self._ahead
            if not ahead and len(target) >= READ_AHEAD:
                count = self._recv_some(target, deadline, mid_pdu=started)
            else:
                if not ahead:
                    read_ahead = self._read_ahead
                    ahead = read_ahead[: self._recv_some(read_ahead, deadline, mid_pdu=started)]
                count = min(len(target), len(ahead))
                target[:count] = ahead[:count]
                self._ahead = ahead[count:]
            if not started:
                # The rest of this PDU now has its own deadline, however long
                # the association was idle before it started.
                started = True
                deadline = None if pdu_timeout is None else time.monotonic() + pdu_timeout
            pdu = framer.received(count)
            if pdu is not None:
                pdu_type, body = pdu
                self.bytes_received += PDU_HEADER_LENGTH + len(body)
                return pdu_type, body, framer.header

    def _recv_some(self, view: memoryview, deadline: float | None, *, mid_pdu: bool) -> int:
        if self._quickack is not None:
            # Linux leaves quick-ACK mode on its own; re-arm it before every
            # read, also mid-PDU: a peer that writes a PDU's header and body
            # separately holds the body until the header is ACKed.
            self.sock.setsockopt(socket.IPPROTO_TCP, self._quickack, 1)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise DeadlineExpired("the peer did not send in time", mid_pdu=mid_pdu)
        readable = self._readable
        try:
            if self._tls is not None:
                count = self._tls.recv_into(self.sock, view, deadline)
            elif readable is None:
                self.sock.settimeout(remaining)
                count = self.sock.recv_into(view)
            else:
                if self._drained:
                    # The last read emptied the socket: waiting first saves a
                    # read that would find nothing (most of a large body's reads).
                    _wait(readable, deadline)
                while True:
                    try:
                        count = self.sock.recv_into(view)
                        break
                    except BlockingIOError:
                        _wait(readable, deadline)
                self._drained = count < len(view)
        except TimeoutError as exc:
            raise DeadlineExpired("the peer did not send in time", mid_pdu=mid_pdu) from exc
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError) as exc:
            raise ConnectionClosed(str(exc)) from exc
        if count == 0:
            raise ConnectionClosed("peer closed the connection")
        return count

    def send_segments(self, segments: Sequence[Buffer], *, timeout: float | None) -> None:
        """Send one PDU given as segments (scatter-gather, no joining on plain TCP)."""
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            if self._tls is not None:
                data = b"".join(segments)
                self._tls.send(self.sock, data, deadline)
                self.bytes_sent += len(data)
                return
            if not self._can_sendmsg:
                self.sock.settimeout(timeout)
                data = b"".join(segments)
                self.sock.sendall(data)
                self.bytes_sent += len(data)
                return
            writable = self._writable
            if writable is None:
                self.sock.settimeout(timeout)
            pending = [memoryview(segment).cast("B") for segment in segments if len(segment)]
            while pending:
                try:
                    sent = self.sock.sendmsg(pending[:IOV_MAX])
                except BlockingIOError:
                    if writable is None:
                        raise
                    _wait(writable, deadline)
                    continue
                self.bytes_sent += sent
                pending = advance(pending, sent)
        except TimeoutError as exc:
            raise DeadlineExpired("peer did not accept our data in time", mid_pdu=True) from exc
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    def shutdown(self) -> None:
        """Stop both directions; a reader blocked in recv wakes with EOF."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


def _wait(poller: select.poll, deadline: float | None) -> None:
    """Wait until ``poller``'s socket is ready, or raise TimeoutError at ``deadline``."""
    if deadline is None:
        poller.poll()
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not poller.poll(remaining * 1000):
        raise TimeoutError


@dataclass(frozen=True, slots=True)
class _TlsIo:
    """Reads and writes on a non-blocking TLS socket, each call into OpenSSL under
    ``lock``, every wait for the socket outside it."""

    lock: threading.Lock
    readable: select.poll
    writable: select.poll

    def recv_into(self, sock: socket.socket, view: memoryview, deadline: float | None) -> int:
        """One read into ``view``. It is tried before any wait: OpenSSL may hold
        decrypted bytes that the socket no longer shows."""
        while True:
            try:
                with self.lock:
                    return sock.recv_into(view)
            except ssl.SSLWantReadError:
                _wait(self.readable, deadline)
            except ssl.SSLWantWriteError:  # a TLS message of its own to send first
                _wait(self.writable, deadline)

    def send(self, sock: socket.socket, data: bytes, deadline: float | None) -> None:
        """All of ``data``. A write that could not finish is tried again with the same
        bytes, as OpenSSL requires."""
        pending = memoryview(data)
        while pending:
            chunk = pending[:_TLS_WRITE_CHUNK]
            try:
                with self.lock:
                    sent = sock.send(chunk)
            except ssl.SSLWantWriteError:
                _wait(self.writable, deadline)
                continue
            except ssl.SSLWantReadError:
                # A TLS message of the peer's to read first. The reader thread may
                # take those bytes meanwhile: a short wait, then the write again.
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError from None
                self.readable.poll(_TLS_RETRY * 1000)
                continue
            pending = pending[sent:]
