"""TLS on both sides of a dicombus association, with certificates made by ``trustme``:
server authentication with hostname checking, mutual TLS, the TLS 1.2 floor of
``dicombus.tls``'s contexts, the peer subject seen by handlers, and a plaintext client
on a TLS port. A few tests run against pynetdicom (named in the test name)."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from capture_support import Collected, schema_errors
from dicombus import AE, evt, tls
from dicombus.association import Association
from dicombus.bus.capture import EventCapture
from dicombus.server import AssociationServer
from dicombus.sop_class import Verification
from helpers import import_peer
from raw_peers import RawConnection, associate_rq

trustme = import_peer("trustme")

WAIT = 5.0  # seconds: every wait is bounded
ACSE_TIMEOUT = 1.0  # the server's ARTIM / handshake deadline in these tests


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")

    def write(name: str, blob: Any) -> Path:
        path = folder / name
        blob.write_to_path(str(path))
        return path

    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", common_name="edge.test")
    client = ca.issue_cert("modality-1.test", common_name="modality-1")
    stranger = other.issue_cert("stranger.test", common_name="stranger")
    return Pki(
        ca=write("ca.pem", ca.cert_pem),
        server_cert=write("server.pem", server.cert_chain_pems[0]),
        server_key=write("server.key", server.private_key_pem),
        client_cert=write("client.pem", client.cert_chain_pems[0]),
        client_key=write("client.key", client.private_key_pem),
        other_ca=write("other-ca.pem", other.cert_pem),
        stranger_cert=write("stranger.pem", stranger.cert_chain_pems[0]),
        stranger_key=write("stranger.key", stranger.private_key_pem),
    )


class EchoRecorder:
    """EVT_C_ECHO handler that notes the requestor's certificate subject."""

    def __init__(self) -> None:
        self.subjects: list[str | None] = []

    def __call__(self, event: evt.Event) -> int:
        self.subjects.append(event.assoc.requestor.tls_peer_subject)
        return 0x0000


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[Any]:
    """``tls_server(require_client_cert=False)`` -> (server, EchoRecorder)."""
    servers: list[AssociationServer] = []

    def start(*, require_client_cert: bool = False) -> tuple[AssociationServer, EchoRecorder]:
        context = tls.server_context(
            pki.server_cert, pki.server_key, pki.ca, require_client_cert=require_client_cert
        )
        ae = AE("EDGE")
        ae.add_supported_context(Verification)
        ae.acse_timeout = ACSE_TIMEOUT
        recorder = EchoRecorder()
        server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            ssl_context=context,
            evt_handlers=[(evt.EVT_C_ECHO, recorder)],
        )
        assert server is not None
        servers.append(server)
        return server, recorder

    yield start
    for server in servers:
        server.shutdown()


def requestor() -> AE:
    ae = AE("MODALITY")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae


def associate(server: AssociationServer, context: ssl.SSLContext, hostname: str) -> Association:
    port = server.server_address[1]
    return requestor().associate("127.0.0.1", port, tls_args=(context, hostname))


def echo(server: AssociationServer, context: ssl.SSLContext, hostname: str = "localhost") -> int:
    """A C-ECHO over a fresh TLS association; the status (-1: not established)."""
    assoc = associate(server, context, hostname)
    if not assoc.is_established:
        return -1
    status = int(assoc.send_c_echo().Status)
    assoc.release()
    return status


# -- server authentication ---------------------------------------------------------------


def test_echo_over_tls_names_the_acceptor_to_the_requestor(pki: Pki, tls_server: Any) -> None:
    server, recorder = tls_server()
    assoc = associate(server, tls.client_context(pki.ca), "localhost")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    subject = assoc.acceptor.tls_peer_subject
    # The protocol the contexts settled on (dicombus.tls asks for TLS 1.2 at least).
    assert assoc.link is not None
    sock = assoc.link.channel.sock
    assert isinstance(sock, ssl.SSLSocket)
    version = sock.version()
    assoc.release()
    assert subject is not None and "commonName=edge.test" in subject
    assert version in ("TLSv1.2", "TLSv1.3")
    assert recorder.subjects == [None]  # no client certificate was asked for or sent


def test_the_hostname_is_checked(pki: Pki, tls_server: Any) -> None:
    server, _ = tls_server()
    assert echo(server, tls.client_context(pki.ca), hostname="elsewhere.test") == -1
    assert echo(server, tls.client_context(pki.ca)) == 0x0000  # the server keeps serving


def test_an_acceptor_from_an_untrusted_ca_is_refused(pki: Pki, tls_server: Any) -> None:
    server, _ = tls_server()
    assert echo(server, tls.client_context(pki.other_ca)) == -1
    assert echo(server, tls.client_context(pki.ca)) == 0x0000


def test_a_requestor_is_told_why_its_connection_failed(pki: Pki, tls_server: Any) -> None:
    """``connection_error``: the TLS handshake's failure in OpenSSL's words, or the
    socket's error; None once a connection was opened."""
    server, _ = tls_server()
    untrusted = associate(server, tls.client_context(pki.other_ca), "localhost")
    assert untrusted.is_aborted and not untrusted.is_established
    assert untrusted.connection_error is not None
    assert untrusted.connection_error.startswith("TLS handshake failed: [SSL: CERTIFICATE_VERIFY")
    assert "_ssl.c" not in untrusted.connection_error
    with socket.socket() as unused:  # a port nobody listens on: bound, never listening
        unused.bind(("127.0.0.1", 0))
        refused = requestor().associate("127.0.0.1", unused.getsockname()[1])
    assert refused.connection_error is not None and "refused" in refused.connection_error
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the connection, says nothing
        patient = requestor()
        patient.acse_timeout = 0.5  # the handshake's deadline
        port = silent.getsockname()[1]
        timed_out = patient.associate(
            "127.0.0.1", port, tls_args=(tls.client_context(pki.ca), "localhost")
        )
    assert timed_out.connection_error == "TLS handshake failed: The handshake operation timed out"
    trusted = associate(server, tls.client_context(pki.ca), "localhost")
    assert trusted.is_established and trusted.connection_error is None
    trusted.release()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_contexts_refuse_anything_older_than_tls_1_2(pki: Pki, tls_server: Any) -> None:
    server_side = tls.server_context(pki.server_cert, pki.server_key)
    client_side = tls.client_context(pki.ca)
    assert server_side.minimum_version == client_side.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_side.check_hostname and client_side.verify_mode == ssl.CERT_REQUIRED
    server, _ = tls_server()
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    assert echo(server, old) == -1
    assert echo(server, client_side) == 0x0000


def test_helper_arguments_are_checked(pki: Pki) -> None:
    with pytest.raises(ValueError, match="needs the CA"):
        tls.server_context(pki.server_cert, pki.server_key, require_client_cert=True)
    with pytest.raises(ValueError, match="without its certificate"):
        tls.client_context(pki.ca, key=pki.client_key)


# -- mutual TLS -------------------------------------------------------------------------------


def test_mutual_tls_gives_handlers_the_client_subject(pki: Pki, tls_server: Any) -> None:
    server, recorder = tls_server(require_client_cert=True)
    with_cert = tls.client_context(pki.ca, pki.client_cert, pki.client_key)
    assert echo(server, with_cert) == 0x0000
    (subject,) = recorder.subjects
    assert subject is not None and "commonName=modality-1" in subject


@pytest.mark.parametrize("client", ["none", "stranger"])
def test_mutual_tls_refuses_a_missing_or_untrusted_client_certificate(
    pki: Pki, tls_server: Any, client: str
) -> None:
    server, recorder = tls_server(require_client_cert=True)
    context = (
        tls.client_context(pki.ca)
        if client == "none"
        else tls.client_context(pki.ca, pki.stranger_cert, pki.stranger_key)
    )
    assert echo(server, context) == -1
    assert recorder.subjects == []
    assert echo(server, tls.client_context(pki.ca, pki.client_cert, pki.client_key)) == 0x0000


# -- a plaintext client on the TLS port ---------------------------------------------------------


def test_a_silent_plaintext_client_is_dropped_within_the_acse_timeout(
    pki: Pki, tls_server: Any
) -> None:
    server, _ = tls_server()
    with RawConnection.connect(server.server_address[1], timeout=WAIT) as raw:
        started = time.monotonic()
        assert raw.read_until_closed() == b""
        waited = time.monotonic() - started
    assert waited < ACSE_TIMEOUT + 1.0
    assert echo(server, tls.client_context(pki.ca)) == 0x0000


def test_a_plaintext_association_request_is_refused_at_once(pki: Pki, tls_server: Any) -> None:
    server, _ = tls_server()
    port = server.server_address[1]
    with RawConnection.connect(port, timeout=WAIT) as raw:
        started = time.monotonic()
        raw.send(associate_rq(called="EDGE"))
        reply = raw.read_until_closed()
        waited = time.monotonic() - started
    assert not reply.startswith(b"\x02")  # never an A-ASSOCIATE-AC
    assert waited < ACSE_TIMEOUT
    plain = requestor().associate("127.0.0.1", port)
    assert not plain.is_established
    assert echo(server, tls.client_context(pki.ca)) == 0x0000


def test_a_failed_handshake_is_published_as_a_connection_close_with_its_reason(
    pki: Pki, tls_server: Any
) -> None:
    # The bus's capture on the TLS server: a plaintext A-ASSOCIATE-RQ, then a good echo.
    server, _ = tls_server()
    collected = Collected()
    capture = EventCapture(
        edge_id="edge-test",
        sink=collected,
        wants=lambda event_type: event_type in ("EVT_CONN_OPEN", "EVT_CONN_CLOSE"),
        bulk_data_uri_base="file:///storage",
    )
    capture.attach(server)
    try:
        with RawConnection.connect(server.server_address[1], timeout=WAIT) as raw:
            raw.send(associate_rq(called="EDGE"))
            raw.read_until_closed()
        collected.wait_for("EVT_CONN_CLOSE")
        assert echo(server, tls.client_context(pki.ca)) == 0x0000
        collected.wait_for("EVT_CONN_CLOSE", 2)
    finally:
        capture.detach()
    failed, closed = collected.envelopes("EVT_CONN_CLOSE")
    assert "WRONG_VERSION_NUMBER" in failed["data"]["tls_error"]
    assert failed["data"]["address"] == "127.0.0.1"
    assert closed["data"]["tls_error"] is None
    assert len(collected.envelopes("EVT_CONN_OPEN")) == 1, "only the connection that carried DICOM"
    assert schema_errors(failed) == schema_errors(closed) == []


# -- against pynetdicom -----------------------------------------------------------------------


def test_pynetdicom_requestor_over_tls_to_dicombus(pki: Pki, tls_server: Any) -> None:
    pynetdicom = import_peer("pynetdicom")
    server, recorder = tls_server(require_client_cert=True)
    ae = pynetdicom.AE("PYNETDICOM")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    context = tls.client_context(pki.ca, pki.client_cert, pki.client_key)
    assoc = ae.associate("127.0.0.1", server.server_address[1], tls_args=(context, "localhost"))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert "commonName=modality-1" in str(recorder.subjects[0])


def test_dicombus_requestor_over_tls_to_pynetdicom(pki: Pki) -> None:
    pynetdicom = import_peer("pynetdicom")
    ae = pynetdicom.AE("PYNETDICOM")
    ae.add_supported_context(Verification)
    context = tls.server_context(pki.server_cert, pki.server_key)
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=context)
    try:
        port = server.server_address[1]
        assoc = requestor().associate(
            "127.0.0.1", port, tls_args=(tls.client_context(pki.ca), "localhost")
        )
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assert "commonName=edge.test" in str(assoc.acceptor.tls_peer_subject)
        assoc.release()
    finally:
        server.shutdown()


# Before each call into OpenSSL took the channel's lock, about one association in ten
# to pynetdicom lost its first C-ECHO: the reader thread's read (taking the TLS 1.3
# session tickets the server sends after the handshake) ran into the caller thread's
# write, and read as a false end of the stream.
ASSOCIATIONS_READING_WHILE_WRITING = 30


def test_tls_reads_and_writes_from_two_threads_do_not_break_the_stream(pki: Pki) -> None:
    """The association's reader thread reads while the caller's thread writes the
    C-ECHO-RQ, on each of 30 fresh TLS associations to pynetdicom: every one answers."""
    pynetdicom = import_peer("pynetdicom")
    ae = pynetdicom.AE("PYNETDICOM")
    ae.add_supported_context(Verification)
    context = tls.server_context(pki.server_cert, pki.server_key)
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=context)
    statuses = []
    try:
        port = server.server_address[1]
        for _ in range(ASSOCIATIONS_READING_WHILE_WRITING):
            assoc = requestor().associate(
                "127.0.0.1", port, tls_args=(tls.client_context(pki.ca), "localhost")
            )
            statuses.append(assoc.send_c_echo().get("Status"))
            assoc.release()
    finally:
        server.shutdown()
    assert statuses == [0x0000] * ASSOCIATIONS_READING_WHILE_WRITING
