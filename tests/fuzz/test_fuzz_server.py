"""Fuzz a live dicombus server: whatever arrives on a connection, the next one is served.

One server takes every example in turn. Each example opens a connection,
optionally associates, sends random bytes (raw, or shaped like PDUs so that
they reach the decoders behind the header check), then half-closes. The
invariants: whatever the server sends back is whole PDUs; it hangs up;
its association thread ends; and a C-ECHO from dicombus's SCU then succeeds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dicombus.protocol.commands import c_echo_rq, encode_command_set
from dicombus.server import AssociationServer
from hypothesis import given, settings
from hypothesis import strategies as st
from raw_peers import RawConnection, echo_status, p_data, verification_server, wait_idle

FUZZ = settings(max_examples=50, deadline=None)
# PS3.8 9.3.1: the PDU types a server may send (AC, RJ, P-DATA-TF, RP, A-ABORT).
ANSWER_TYPES = {0x02, 0x03, 0x04, 0x06, 0x07}


@pytest.fixture(scope="module")
def server() -> Iterator[AssociationServer]:
    with verification_server(acse_timeout=1, network_timeout=2, maximum_pdu_size=16384) as live:
        yield live


def _framed(pdu_type: int, body: bytes) -> bytes:
    """A PDU header of ``pdu_type`` whose length matches ``body``."""
    return bytes((pdu_type, 0)) + len(body).to_bytes(4, "big") + body


_PDU_SHAPED = st.builds(_framed, st.integers(0, 9), st.binary(max_size=300))
# P-DATA-TF PDUs of random PDVs around a real command: reach DIMSE reassembly.
_PDV_SHAPED = st.builds(
    lambda is_command, is_last, data: p_data(is_command=is_command, is_last=is_last, data=data),
    st.booleans(),
    st.booleans(),
    st.one_of(st.binary(max_size=200), st.just(encode_command_set(c_echo_rq(7)))),
)
_JUNK = st.lists(
    st.one_of(st.binary(max_size=300), _PDU_SHAPED, _PDV_SHAPED), min_size=1, max_size=4
).map(b"".join)


def _whole_pdus(reply: bytes) -> bool:
    """Whether ``reply`` is a run of whole PDUs of types a server may send."""
    offset = 0
    while offset < len(reply):
        if len(reply) - offset < 6 or reply[offset] not in ANSWER_TYPES:
            return False
        offset += 6 + int.from_bytes(reply[offset + 2 : offset + 6], "big")
    return offset == len(reply)


@FUZZ
@given(associate_first=st.booleans(), junk=_JUNK)
def test_server_survives_random_bytes(
    server: AssociationServer, associate_first: bool, junk: bytes
) -> None:
    port = server.server_address[1]
    with RawConnection.connect(port) as conn:
        if associate_first:
            assert conn.associate()[0] == 0x02  # A-ASSOCIATE-AC
        conn.send(junk)
        conn.half_close()  # the server reads EOF instead of waiting out a timer
        reply = conn.read_until_closed()
    assert _whole_pdus(reply), reply.hex()
    wait_idle(server)
    assert echo_status(port) == 0x0000
