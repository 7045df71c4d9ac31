"""Timeouts and failures of the association runtime, with real sockets on 127.0.0.1.

Each test sets a timeout of half a second and checks that the association gives
up after about that long (never hangs, never gives up much earlier), says why in
the log, and ends aborted. Broken peers are raw sockets playing a script: one
that never answers, one that stops in the middle of a PDU, one that never
releases.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from dicombus import AE, evt
from helpers import free_port
from pydicom.dataset import Dataset
from raw_peers import (
    VERIFICATION_SOP_CLASS,
    WAIT,
    RawConnection,
    RawScript,
    accept_association,
    verification_server,
    wait_idle,
    wait_until,
)

TIMEOUT = 0.5
# How late a timeout may fire before we call it a hang: a watchdog, not a timing
# claim, so that no loaded machine trips it. The tests' behaviour is the lower bound
# (nothing gave up before its timeout) and which timeout ended the wait.
SLACK = 10.0
# A timeout the tests never mean to reach: a wait that ends before it was ended by
# something else (a refused connection, a shorter timeout).
NEVER = 60.0

# PS3.8 9.3.8: the A-ABORT an association sends when its reader's timer runs out,
#   07 00 00000004 | 00 00 | 02 service-provider | 00 reason not specified
# or when the user's thread gives up waiting (source 00, service-user).
PROVIDER_ABORT = bytes.fromhex("0700 00000004 0000 0200")
USER_ABORT = bytes.fromhex("0700 00000004 0000 0000")
# PS3.8 9.3.6: 05 00 00000004 | 00000000
RELEASE_RQ = bytes.fromhex("0500 00000004 00000000")

T = TypeVar("T")


def requestor(**timeouts: float) -> AE:
    """Our SCU, proposing Verification, with the given timeouts."""
    ae = AE("SCU")
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    for name, value in timeouts.items():
        setattr(ae, name, value)
    return ae


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """What ``call()`` returned, and how many seconds it took."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def logged(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.ERROR) -> bool:
    return any(text in record.getMessage() and record.levelno >= level for record in caplog.records)


def test_connection_refused_returns_at_once(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    assoc, elapsed = timed(lambda: requestor(acse_timeout=NEVER).associate("127.0.0.1", port))
    assert elapsed < NEVER - SLACK  # the refusal ended it, not the ACSE timeout
    assert not assoc.is_established
    assert assoc.is_aborted
    assert logged(caplog, f"unable to connect to 127.0.0.1:{port}")


def test_silent_acceptor_is_given_up_after_the_acse_timeout(
    raw_peer: Callable[[RawScript], int], caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that accepts the connection and never answers the A-ASSOCIATE-RQ."""
    received: list[bytes] = []

    def silent(conn: RawConnection) -> None:
        received.append(conn.read_pdu())
        received.append(conn.read_until_closed())

    port = raw_peer(silent)
    assoc, elapsed = timed(lambda: requestor(acse_timeout=TIMEOUT).associate("127.0.0.1", port))
    assert TIMEOUT - 0.05 < elapsed < TIMEOUT + SLACK
    assert not assoc.is_established
    assert assoc.is_aborted
    assert logged(caplog, "ACSE timeout")
    assert wait_until(lambda: len(received) == 2)
    assert received[0][0] == 0x01  # the A-ASSOCIATE-RQ, left unanswered
    assert received[1] == PROVIDER_ABORT


def test_slow_scp_handler_meets_the_dimse_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """The SCP's C-ECHO handler takes longer than the SCU's DIMSE timeout: the SCU gets an
    empty Dataset and aborts; the SCP, once its handler returns, ends the association."""
    release_handler = threading.Event()

    def slow_echo(_event: evt.Event) -> int:
        release_handler.wait(NEVER)
        return 0x0000

    with verification_server(evt_handlers=[(evt.EVT_C_ECHO, slow_echo)]) as server:
        assoc = requestor(dimse_timeout=TIMEOUT).associate("127.0.0.1", server.server_address[1])
        assert assoc.is_established
        response, elapsed = timed(assoc.send_c_echo)
        release_handler.set()
        assert TIMEOUT - 0.05 < elapsed < TIMEOUT + SLACK
        assert response == Dataset()
        assert assoc.is_aborted
        assert logged(caplog, "within the DIMSE timeout")
        wait_idle(server)
    assert not logged(caplog, "unexpected error")


def test_scp_aborted_while_its_handler_runs_drops_the_late_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server shut down (here: its association aborted) while a handler runs: when
    the handler returns there is no association to answer on, and that is no error."""
    handler_running, release_handler = threading.Event(), threading.Event()

    def slow_echo(_event: evt.Event) -> int:
        handler_running.set()
        release_handler.wait(WAIT)
        return 0x0000

    with verification_server(evt_handlers=[(evt.EVT_C_ECHO, slow_echo)]) as server:
        assoc = requestor(dimse_timeout=WAIT).associate("127.0.0.1", server.server_address[1])
        echo = threading.Thread(target=assoc.send_c_echo, daemon=True)
        echo.start()
        assert handler_running.wait(WAIT)
        (served,) = server.active_associations
        # abort() waits for the association's thread, which is in the handler.
        abort = threading.Thread(target=served.abort, daemon=True)
        abort.start()
        assert wait_until(lambda: served.is_aborted)
        release_handler.set()
        abort.join(WAIT)
        echo.join(WAIT)
        wait_idle(server)
    assert assoc.is_aborted
    assert logged(caplog, "the C_ECHO_RQ got no response", level=logging.WARNING)
    assert not logged(caplog, "unexpected error")


def test_requestor_that_stops_mid_pdu_is_cut_off_at_the_network_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Our SCP's side: the peer sends 10 bytes of a P-DATA-TF and then nothing."""
    with verification_server(network_timeout=TIMEOUT) as server:
        with RawConnection.connect(server.server_address[1]) as conn:
            assert conn.associate()[0] == 0x02
            started = time.monotonic()
            # 04 00 00000050 | 0000004C 01 03 | 0000...: the header promises 0x50 bytes
            conn.send(bytes.fromhex("0400 00000050 0000004C 0103 0000"))
            assert conn.read_until_closed() == PROVIDER_ABORT
            elapsed = time.monotonic() - started
        assert TIMEOUT - 0.05 < elapsed < TIMEOUT + SLACK
        assert logged(caplog, "network timeout in the middle of a PDU")
        wait_idle(server)


def test_acceptor_that_stops_mid_pdu_is_cut_off_at_the_network_timeout(
    raw_peer: Callable[[RawScript], int],
) -> None:
    """Our SCU's side: the acceptor answers the C-ECHO with half a P-DATA-TF. The SCU
    gives up at its network timeout, long before its DIMSE timeout."""
    received: list[bytes] = []

    def stalls(conn: RawConnection) -> None:
        accept_association(conn)
        request = conn.read_pdu()
        conn.send(request[:10])  # the start of an answer that never ends
        received.append(conn.read_until_closed())

    port = raw_peer(stalls)
    assoc = requestor(network_timeout=TIMEOUT, dimse_timeout=NEVER).associate("127.0.0.1", port)
    assert assoc.is_established
    response, elapsed = timed(assoc.send_c_echo)
    assert TIMEOUT - 0.05 < elapsed < TIMEOUT + SLACK
    assert response == Dataset()
    assert assoc.is_aborted
    assert wait_until(lambda: received == [PROVIDER_ABORT])


def test_release_the_peer_never_answers_ends_in_abort(
    raw_peer: Callable[[RawScript], int], caplog: pytest.LogCaptureFixture
) -> None:
    received: list[bytes] = []

    def never_releases(conn: RawConnection) -> None:
        accept_association(conn)
        received.append(conn.read_until_closed())

    port = raw_peer(never_releases)
    assoc = requestor(acse_timeout=TIMEOUT).associate("127.0.0.1", port)
    assert assoc.is_established
    _, elapsed = timed(assoc.release)
    assert TIMEOUT - 0.05 < elapsed < TIMEOUT + SLACK
    assert assoc.is_aborted
    assert not assoc.is_released
    assert logged(caplog, "ACSE timeout")
    assert wait_until(lambda: len(received) == 1)
    assert received[0][:10] == RELEASE_RQ
    assert received[0][10:] in (USER_ABORT, PROVIDER_ABORT)
