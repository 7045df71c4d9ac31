"""Hostile and malformed PDUs against a live dicombus server, over raw sockets.

For each one the server must answer as PS3.8 says (an A-ABORT from the service
provider with the reason that fits, or an A-ASSOCIATE-RJ), hang up within a
bounded time, and serve the next well-behaved association as if nothing had
happened. Well-formed PDUs are built with dicombus's encoders; malformed ones
are written out as annotated hex.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest
from dicombus.protocol.commands import c_echo_rq, decode_command_set, encode_command_set
from dicombus.protocol.items import UnknownSubItem
from dicombus.protocol.pdus import PDataTF
from dicombus.server import AssociationServer
from raw_peers import RawConnection, associate_rq, echo_status, p_data, verification_server

MAX_PDU = 16384  # the Maximum Length the server advertises (PS3.8 D.1)
SUCCESS = 0x0000

# Two servers, told apart by their ARTIM timer (how long they wait for a silent peer).
# Input answered at once goes to the one whose timer is long: closing well inside it
# shows the server reacted to the bytes, not to a timer, however loaded the machine.
LONG_ARTIM = 30.0
IMMEDIATELY = LONG_ARTIM - 5.0
# Cases that must wait for the timer go to the one whose timer is short: they end no
# sooner than it (a behaviour), and within a watchdog that only catches a hang.
SHORT_ARTIM = 1.0
WATCHDOG = 20.0

# The A-ABORTs the server sends (PS3.8 9.3.8, Table 9-26):
#   07 00        PDU type A-ABORT, reserved
#   00000004     PDU length
#   00 00        reserved, reserved
#   02           source: DICOM UL service-provider
#   0N           reason/diag.
ABORT_UNRECOGNIZED_PDU = bytes.fromhex("0700 00000004 0000 02 01")
ABORT_UNEXPECTED_PDU = bytes.fromhex("0700 00000004 0000 02 02")
ABORT_UNEXPECTED_PARAMETER = bytes.fromhex("0700 00000004 0000 02 05")
ABORT_INVALID_PARAMETER = bytes.fromhex("0700 00000004 0000 02 06")


@pytest.fixture(scope="module")
def server() -> Iterator[AssociationServer]:
    """One server for the whole file: it must survive every case in turn."""
    with verification_server(acse_timeout=LONG_ARTIM, maximum_pdu_size=MAX_PDU) as live:
        yield live


@pytest.fixture(scope="module")
def artim_server() -> Iterator[AssociationServer]:
    """The server for the cases that end when its (short) ARTIM timer runs out."""
    with verification_server(acse_timeout=SHORT_ARTIM, maximum_pdu_size=MAX_PDU) as live:
        yield live


def truncated_associate_rq() -> bytes:
    """A valid A-ASSOCIATE-RQ with its last 10 bytes cut off and the PDU length fixed up
    to match: the PDU is whole, but its User Information item claims 10 bytes that are
    not there."""
    whole = associate_rq()
    body = whole[6:-10]
    return whole[:2] + len(body).to_bytes(4, "big") + body


ECHO_COMMAND = encode_command_set(c_echo_rq(1))


@dataclass(frozen=True)
class Hostile:
    payload: bytes
    answer: bytes
    # PS3.8 AA-1, AA-8: a PDU that is well-formed but out of place leaves the server
    # in Sta13 waiting for the peer to close; without our FIN, its ARTIM timer ends it.
    waits_for_artim: bool = False
    established_first: bool = False
    half_close: bool = False  # the peer sends FIN after its payload, as a requestor would


HOSTILE = {
    "truncated A-ASSOCIATE-RQ": Hostile(truncated_associate_rq(), ABORT_INVALID_PARAMETER),
    # 01 00 FFFFFFFF: an A-ASSOCIATE-RQ claiming 4 GiB, then 4 MiB of zeros; the
    # header alone is refused, nothing is allocated for the body.
    "A-ASSOCIATE-RQ length 0xFFFFFFFF": Hostile(
        bytes.fromhex("0100 FFFFFFFF") + bytes(4 << 20), ABORT_INVALID_PARAMETER
    ),
    # 01 00 00100001: one byte over the 1 MiB cap on A-ASSOCIATE PDUs (as DCMTK's).
    "A-ASSOCIATE-RQ over the 1 MiB cap": Hostile(
        bytes.fromhex("0100 00100001") + bytes((1 << 20) + 1), ABORT_INVALID_PARAMETER
    ),
    # 04 00 00004001 | 00003FFD 01 00 | 00...: a P-DATA-TF one byte longer than the
    # Maximum Length we advertised, holding one well-formed data set PDV. Refused at
    # its header; were it read, the PDV would be refused as out of place (reason 5).
    "P-DATA-TF over our maximum PDU length": Hostile(
        bytes.fromhex("0400 00004001 00003FFD 01 00") + bytes(MAX_PDU + 1 - 6),
        ABORT_INVALID_PARAMETER,
        established_first=True,
    ),
    # 04 00 00000006 | 00000000 01 03: a PDV item length of 0, shorter than its own
    # context ID and message control header.
    "PDV item length 0": Hostile(
        bytes.fromhex("0400 00000006 00000000 01 03"),
        ABORT_INVALID_PARAMETER,
        established_first=True,
    ),
    # 04 00 00000006 | 00000001 01 03: a PDV item length of 1 (the minimum is 2).
    "PDV item length 1": Hostile(
        bytes.fromhex("0400 00000006 00000001 01 03"),
        ABORT_INVALID_PARAMETER,
        established_first=True,
    ),
    # 04 00 00000008 | 00000010 01 03 0000: a PDV item claiming 16 bytes in a PDU
    # that has 4 left for it.
    "PDV item past the end of the PDU": Hostile(
        bytes.fromhex("0400 00000008 00000010 01 03 0000"),
        ABORT_INVALID_PARAMETER,
        established_first=True,
    ),
    # 09 00 00000004 | 00000000: PDU type 0x09 does not exist.
    "unknown PDU type": Hostile(bytes.fromhex("0900 00000004 00000000"), ABORT_UNRECOGNIZED_PDU),
    # "G" (0x47) is no PDU type either.
    "HTTP request": Hostile(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ABORT_UNRECOGNIZED_PDU),
    "P-DATA-TF before association": Hostile(
        p_data(is_command=True, is_last=True, data=ECHO_COMMAND),
        ABORT_UNEXPECTED_PDU,
        waits_for_artim=True,
    ),
    # 05 00 00000004 | 00000000: an A-RELEASE-RQ before association.
    "A-RELEASE-RQ before association": Hostile(
        bytes.fromhex("0500 00000004 00000000"), ABORT_UNEXPECTED_PDU, half_close=True
    ),
    "second A-ASSOCIATE-RQ": Hostile(
        associate_rq(), ABORT_UNEXPECTED_PDU, established_first=True, half_close=True
    ),
    # A last data set fragment (control header 0x02) before any command:
    #   0800 1600 | 02000000 | 3100    (0008,0016) SOP Class UID, length 2, "1\0"
    "data set PDV before the command": Hostile(
        p_data(is_command=False, is_last=True, data=bytes.fromhex("08001600 02000000 3100")),
        ABORT_UNEXPECTED_PARAMETER,
        established_first=True,
    ),
    # A last command fragment (control header 0x03) of 20 bytes that are no command
    # set: read as implicit VR LE they make an element (ADDE,EFBE) outside group 0000.
    "command set of garbage": Hostile(
        p_data(is_command=True, is_last=True, data=bytes.fromhex("DEADBEEF" * 5)),
        ABORT_INVALID_PARAMETER,
        established_first=True,
    ),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_pdu_is_aborted_and_the_server_goes_on(
    server: AssociationServer,
    artim_server: AssociationServer,
    case: Hostile,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = (artim_server if case.waits_for_artim else server).server_address[1]
    with RawConnection.connect(port) as conn:
        if case.established_first:
            assert conn.associate()[0] == 0x02  # A-ASSOCIATE-AC
        started = time.monotonic()
        conn.send(case.payload)  # may stop early: the server hangs up mid-flood
        if case.half_close:
            conn.half_close()
        reply = conn.read_until_closed()
        elapsed = time.monotonic() - started
    assert reply == case.answer
    if case.waits_for_artim:
        assert SHORT_ARTIM - 0.1 < elapsed < WATCHDOG
    else:
        assert elapsed < IMMEDIATELY
    # One line in the log per hostile peer, not one per 6 bytes of its flood.
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) <= 1
    assert echo_status(port) == SUCCESS


# A-ASSOCIATE-RJ PDUs (PS3.8 9.3.4, Table 9-21):
#   03 00 00000004 | 00 | 01 permanent | source | reason
REJECTIONS = {
    # source 2 (service-provider, ACSE), reason 2: protocol version not supported.
    "protocol version 2": (
        associate_rq(protocol_version=2),
        bytes.fromhex("0300 00000004 00010202"),
    ),
    # source 1 (service-user), reason 2: application context name not supported.
    "foreign application context": (
        associate_rq(application_context="1.2.3.4"),
        bytes.fromhex("0300 00000004 00010102"),
    ),
}


@pytest.mark.parametrize(("rq", "rejection"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_unacceptable_associate_rq_is_rejected(
    server: AssociationServer, rq: bytes, rejection: bytes
) -> None:
    port = server.server_address[1]
    with RawConnection.connect(port) as conn:
        started = time.monotonic()
        assert conn.associate(rq) == rejection
        # PS3.8 AE-8: the acceptor then waits for the requestor to close (or for
        # ARTIM); our FIN must end that wait at once.
        conn.half_close()
        assert conn.read_until_closed() == b""
        assert time.monotonic() - started < IMMEDIATELY
    assert echo_status(port) == SUCCESS


def test_peer_that_stops_mid_associate_rq_is_cut_off_at_artim(
    artim_server: AssociationServer,
) -> None:
    """The PDU length promises a whole A-ASSOCIATE-RQ; only 40 bytes come, and the peer
    keeps the connection open. PS3.8 EVT18 in Sta2 (AA-2): close, send nothing."""
    port = artim_server.server_address[1]
    with RawConnection.connect(port) as conn:
        started = time.monotonic()
        conn.send(associate_rq()[:40])
        assert conn.read_until_closed() == b""
        elapsed = time.monotonic() - started
    assert SHORT_ARTIM - 0.1 < elapsed < WATCHDOG
    assert echo_status(port) == SUCCESS


def test_drip_fed_associate_rq_is_cut_off_at_artim(artim_server: AssociationServer) -> None:
    """One byte every 0.2 s: each read makes progress, but the whole PDU must arrive
    within the ARTIM timeout, so the server hangs up after its 1 s timer, not after the
    40 s the drip would take."""
    drip_interval = 0.2
    rq = associate_rq()
    port = artim_server.server_address[1]
    with RawConnection.connect(port) as conn:
        started = time.monotonic()
        sent = 0
        while sent < len(rq) and conn.send(rq[sent : sent + 1]):
            sent += 1
            readable, _, _ = select.select([conn.sock], [], [], drip_interval)
            if readable:
                break  # the server spoke or hung up
        elapsed = time.monotonic() - started
        assert conn.read_until_closed() == b""
    assert sent < len(rq)
    assert SHORT_ARTIM - 0.1 < elapsed < WATCHDOG
    assert echo_status(port) == SUCCESS


@pytest.mark.parametrize(
    "header",
    [
        bytes.fromhex("0100 FFFFFFFF"),  # A-ASSOCIATE-RQ claiming 4 GiB
        bytes.fromhex("0400 FFFFFFFF"),  # P-DATA-TF claiming 4 GiB, before association
    ],
    ids=["A-ASSOCIATE-RQ", "P-DATA-TF"],
)
def test_memory_stays_bounded_under_a_4_gib_claim_and_300_mb_of_zeros(
    server: AssociationServer, header: bytes
) -> None:
    """pynetdicom buffers whatever a header claims; dicombus refuses the header, so the
    flood behind it is never read. The server runs in this process: its RSS is ours."""
    flood, chunk = 300 << 20, bytes(1 << 20)
    process = psutil.Process()
    before = process.memory_info().rss
    port = server.server_address[1]
    with RawConnection.connect(port) as conn:
        sent = 0
        if conn.send(header):
            while sent < flood and conn.send(chunk):
                sent += len(chunk)
        reply = conn.read_until_closed()
    assert reply == ABORT_INVALID_PARAMETER
    assert process.memory_info().rss - before < 50 << 20
    assert echo_status(port) == SUCCESS


def test_unknown_user_information_sub_items_are_ignored(server: AssociationServer) -> None:
    """PS3.8 D.2: sub-items a receiver does not know are ignored, not an error. The
    association is accepted and serves a C-ECHO."""
    unknown = (
        UnknownSubItem(item_type=0x5A, data=b"\x00\x01\x02"),  # an unassigned type
        UnknownSubItem(item_type=0xF0, data=b"private extension"),
    )
    port = server.server_address[1]
    with RawConnection.connect(port) as conn:
        assert conn.associate(associate_rq(extra_sub_items=unknown))[0] == 0x02
        conn.send(p_data(is_command=True, is_last=True, data=ECHO_COMMAND))
        response = PDataTF.decode_body(conn.read_pdu()[6:])
        assert decode_command_set(response.pdvs[0].data).Status == SUCCESS
        conn.send(bytes.fromhex("0500 00000004 00000000"))  # A-RELEASE-RQ
        assert conn.read_pdu() == bytes.fromhex("0600 00000004 00000000")  # A-RELEASE-RP
