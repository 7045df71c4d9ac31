"""Who gets in, and what an abusive client cannot do, against a live dicombus server.

Each refusal is checked on the wire (the A-ASSOCIATE-RJ's result, source and reason,
PS3.8 Table 9-21), and after each one a normal C-ECHO still succeeds: the server
keeps serving.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from dicombus import AE, evt
from dicombus.association import Association
from dicombus.protocol.items import UserIdentityRQSubItem
from dicombus.server import AssociationServer
from raw_peers import (
    VERIFICATION_SOP_CLASS,
    RawConnection,
    associate_rq,
    echo_status,
    verification_server,
    wait_until,
)

WAIT = 5.0  # seconds: every wait is bounded
ACSE_TIMEOUT = 1.0  # the server's ARTIM timeout in the abuse tests


def associate(
    port: int,
    *,
    calling: str = "ECHOSCU",
    called: str = "ECHOSCP",
    ext_neg: list[UserIdentityRQSubItem] | None = None,
) -> Association:
    ae = AE(calling)
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae.associate("127.0.0.1", port, ae_title=called, ext_neg=ext_neg)


def rejection(assoc: Association) -> tuple[int, int, int]:
    assert assoc.is_rejected and assoc.rejection is not None
    return assoc.rejection.result, assoc.rejection.source, assoc.rejection.reason


# -- AE titles and the association limit -------------------------------------------------------


def test_a_calling_ae_title_not_on_the_allow_list_is_rejected() -> None:
    with verification_server(require_calling_aet=["MODALITY"]) as server:
        port = server.server_address[1]
        # Permanent, by the service user: calling AE title not recognized.
        assert rejection(associate(port, calling="INTRUDER")) == (1, 1, 3)
        allowed = associate(port, calling="MODALITY")
        assert allowed.send_c_echo().Status == 0x0000
        allowed.release()


def test_a_wrong_called_ae_title_is_rejected_when_required() -> None:
    with verification_server(require_called_aet=True) as server:
        port = server.server_address[1]
        # Permanent, by the service user: called AE title not recognized.
        assert rejection(associate(port, called="SOMEONEELSE")) == (1, 1, 7)
        assert echo_status(port) == 0x0000


def test_associations_beyond_the_maximum_are_rejected_transiently() -> None:
    with verification_server(maximum_associations=1) as server:
        port = server.server_address[1]
        first = associate(port)
        assert first.is_established
        # Transient, by the service provider (presentation): local limit exceeded.
        assert rejection(associate(port)) == (2, 3, 2)
        first.release()
        assert wait_until(lambda: not server.active_associations)
        assert echo_status(port) == 0x0000


def test_a_rejected_user_identity_is_refused() -> None:
    def check(event: evt.Event) -> tuple[bool, None]:
        return event.primary_field == b"alice" and event.secondary_field == b"secret", None

    def identity(password: bytes) -> UserIdentityRQSubItem:
        return UserIdentityRQSubItem(
            user_identity_type=2,
            positive_response_requested=False,
            primary_field=b"alice",
            secondary_field=password,
        )

    with verification_server(evt_handlers=[(evt.EVT_USER_ID, check)]) as server:
        port = server.server_address[1]
        assert rejection(associate(port, ext_neg=[identity(b"guess")])) == (1, 1, 1)
        welcome = associate(port, ext_neg=[identity(b"secret")])
        assert welcome.send_c_echo().Status == 0x0000
        welcome.release()


# -- abusive clients ---------------------------------------------------------------------------


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that never send a byte; all closed when the block ends."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=WAIT))
            for _ in range(count)
        ]


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset is waiting), without blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_a_flood_of_idle_connections_cannot_exhaust_threads(server_threads: int) -> None:
    """200 connections that send nothing: the server keeps at most ``maximum_pending`` of
    them (one thread each) and closes the rest at once, and a real requestor still gets in
    while the flood holds its connections open."""
    with verification_server(acse_timeout=WAIT) as server:
        port, limit = server.server_address[1], server.maximum_pending
        with idle_connections(port, 200) as flood:
            assert wait_until(lambda: sum(map(closed_by_peer, flood)) >= 200 - limit)
            # The closed ones' threads end a moment after their sockets close.
            assert wait_until(lambda: threading.active_count() <= server_threads + limit)
            assert echo_status(port) == 0x0000  # well before the flood's ARTIM expires
            open_ones = [sock for sock in flood if not closed_by_peer(sock)]
            assert len(open_ones) <= limit
        assert echo_status(port) == 0x0000


def test_shutdown_with_connections_still_negotiating_returns_promptly() -> None:
    with (
        verification_server(acse_timeout=60.0) as server,
        idle_connections(server.server_address[1], 20),
    ):
        assert wait_until(lambda: len(server.active_associations) == 20)
        started = time.monotonic()
        server.shutdown()
        # Well before their 60 s ARTIM: shutdown ended them, not their timers.
        assert time.monotonic() - started < 30.0
        assert server.active_associations == []


@pytest.fixture
def server_threads() -> int:
    """Threads in this process before the test's server starts (its accept thread aside)."""
    return threading.active_count() + 1


def test_a_slow_drip_client_is_cut_off_by_the_artim_deadline() -> None:
    """One byte of A-ASSOCIATE-RQ every 50 ms: the whole PDU must arrive within the ARTIM
    timeout, however steadily the bytes come, and other requestors are served meanwhile."""
    with verification_server(acse_timeout=ACSE_TIMEOUT) as server:
        port = server.server_address[1]
        request = associate_rq()
        with RawConnection.connect(port, timeout=WAIT) as raw:
            started = time.monotonic()
            sent = 0
            while sent < len(request) and raw.send(request[sent : sent + 1]):
                sent += 1
                if sent == 10:
                    assert echo_status(port) == 0x0000  # not held up by the drip
                time.sleep(0.05)
                if time.monotonic() - started > ACSE_TIMEOUT + 2:
                    break
            cut_after = time.monotonic() - started
        assert sent < len(request)
        assert cut_after < ACSE_TIMEOUT + 1.5
        assert echo_status(port) == 0x0000


def test_the_pending_limit_follows_maximum_associations() -> None:
    with verification_server(maximum_associations=3) as server:
        assert isinstance(server, AssociationServer)
        assert server.maximum_pending == 3 * 2 + 8
