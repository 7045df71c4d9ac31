"""Live dicombus peers and raw Upper Layer connections, for the runtime, fault and fuzz suites.

A real Verification server to attack (``verification_server``), the SCU that must
still get through afterwards (``echo_status``), well-formed PDUs built with
dicombus's own encoders (``associate_rq``, ``p_data``), and a socket that speaks
bytes rather than DICOM (``RawConnection``) for everything malformed.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dicombus import AE
from dicombus.protocol.items import (
    ImplementationClassUIDSubItem,
    MaximumLengthSubItem,
    PresentationContextACItem,
    PresentationContextRQItem,
    UserInformationItem,
    UserSubItem,
)
from dicombus.protocol.pdus import AAssociateAC, AAssociateRQ, PDataTF, PresentationDataValue
from dicombus.server import AssociationServer
from pydicom.uid import UID

VERIFICATION_SOP_CLASS = UID("1.2.840.10008.1.1")
IMPLICIT_VR_LITTLE_ENDIAN = UID("1.2.840.10008.1.2")

# Every wait in these suites is bounded by this; a live peer that takes longer is broken.
WAIT = 5.0


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_idle(server: Any, timeout: float = WAIT) -> None:
    """Block until every association of ``server`` (either stack) has finished."""
    assert wait_until(lambda: not server.active_associations, timeout), (
        f"{len(server.active_associations)} associations still running after {timeout} s"
    )


@contextlib.contextmanager
def verification_server(
    *, evt_handlers: Sequence[Any] = (), **settings: Any
) -> Iterator[AssociationServer]:
    """A dicombus Verification SCP titled ECHOSCP on a free loopback port.

    ``settings`` are AE attributes (``acse_timeout=1``, ``maximum_pdu_size=16384``).
    """
    ae = AE("ECHOSCP")
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    for name, value in settings.items():
        setattr(ae, name, value)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=list(evt_handlers))
    assert server is not None
    try:
        yield server
    finally:
        server.shutdown()


def echo_status(port: int, *, timeout: float = 5.0) -> int | None:
    """The status of a C-ECHO over a fresh association from dicombus's SCU (None: no answer)."""
    ae = AE("ECHOSCU")
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSCP")
    if not assoc.is_established:
        return None
    status = assoc.send_c_echo().get("Status")
    assoc.release()
    return None if status is None else int(status)


def associate_rq(
    *,
    calling: str = "RAWSCU",
    called: str = "ECHOSCP",
    protocol_version: int = 1,
    application_context: str = "1.2.840.10008.3.1.1.1",
    extra_sub_items: Sequence[UserSubItem] = (),
    abstract_syntax: str = VERIFICATION_SOP_CLASS,
    transfer_syntax: str = IMPLICIT_VR_LITTLE_ENDIAN,
) -> bytes:
    """An encoded A-ASSOCIATE-RQ proposing one context (1): Verification in Implicit VR LE
    unless told otherwise."""
    return AAssociateRQ(
        protocol_version=protocol_version,
        called_ae_title=called,
        calling_ae_title=calling,
        application_context_name=application_context,
        presentation_contexts=(
            PresentationContextRQItem(
                context_id=1,
                abstract_syntax=abstract_syntax,
                transfer_syntaxes=(transfer_syntax,),
            ),
        ),
        user_information=UserInformationItem(
            sub_items=(
                MaximumLengthSubItem(maximum_length=16384),
                ImplementationClassUIDSubItem(uid="1.2.826.0.1.3680043.9.7433.1"),
                *extra_sub_items,
            )
        ),
    ).encode()


def p_data(*, is_command: bool, is_last: bool, data: bytes, context_id: int = 1) -> bytes:
    """An encoded P-DATA-TF holding one PDV."""
    pdv = PresentationDataValue(
        context_id=context_id, is_command=is_command, is_last=is_last, data=data
    )
    return PDataTF(pdvs=(pdv,)).encode()


class RawConnection:
    """A TCP connection that speaks raw bytes: hostile input out, whole PDUs in.

    Every read is bounded by the socket timeout; a peer that neither answers
    nor closes raises TimeoutError instead of hanging the test.
    """

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self.sock = sock
        sock.settimeout(timeout)

    @classmethod
    def connect(cls, port: int, timeout: float = 5.0) -> RawConnection:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=timeout), timeout)

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the peer closed the connection before taking it all."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def half_close(self) -> None:
        """Send a FIN, as a requestor does when it is done: the peer reads EOF."""
        with contextlib.suppress(OSError):  # the peer may have hung up already
            self.sock.shutdown(socket.SHUT_WR)

    def read_exactly(self, count: int) -> bytes:
        received = bytearray()
        while len(received) < count:
            chunk = self.sock.recv(count - len(received))
            if not chunk:
                raise ConnectionError(f"closed after {len(received)} of {count} bytes")
            received += chunk
        return bytes(received)

    def read_pdu(self) -> bytes:
        """One whole PDU, its 6-byte header included."""
        header = self.read_exactly(6)
        return header + self.read_exactly(int.from_bytes(header[2:], "big"))

    def read_until_closed(self, limit: int = 1 << 20) -> bytes:
        """Whatever the peer sends until it closes (a reset counts as closing)."""
        received = bytearray()
        while len(received) < limit:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return bytes(received)

    def associate(self, rq: bytes | None = None) -> bytes:
        """Send an A-ASSOCIATE-RQ (default: ``associate_rq()``) and return the reply PDU."""
        self.sock.sendall(associate_rq() if rq is None else rq)
        return self.read_pdu()


def accept_association(
    conn: RawConnection,
    *,
    abstract_syntax: str = VERIFICATION_SOP_CLASS,
    maximum_length: int = 16384,
) -> None:
    """Play the acceptor of an association: read the A-ASSOCIATE-RQ, accept context 1
    in Implicit VR Little Endian (the requestor must propose ``abstract_syntax`` first)."""
    rq = conn.read_pdu()
    assert rq[0] == 0x01, f"expected an A-ASSOCIATE-RQ, got PDU type {rq[0]:#04x}"
    ac = AAssociateAC(
        called_ae_title="ANY-SCP",
        calling_ae_title="SCU",
        presentation_contexts=(
            PresentationContextACItem(
                context_id=1, result=0, transfer_syntax=IMPLICIT_VR_LITTLE_ENDIAN
            ),
        ),
        user_information=UserInformationItem(
            sub_items=(
                MaximumLengthSubItem(maximum_length=maximum_length),
                ImplementationClassUIDSubItem(uid="1.2.826.0.1.3680043.9.7433.2"),
            )
        ),
    )
    conn.send(ac.encode())


# A scripted peer: what it does with the one connection it accepts (runtime/conftest.py).
RawScript = Callable[[RawConnection], None]
