"""ATNA messages over syslog to a real rsyslog (Debian's rsyslogd): TLS, an outage, UDP.

The auditor is the worker's own (:class:`dicombus_workers.atna.task.AtnaAuditor`):
events in, the SQLite spool, the forwarder thread, the RFC 5425 TLS or RFC 5426
UDP sender, and rsyslog receiving on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from atna_support import (
    Rsyslog,
    c_store,
    conn_close,
    envelope,
    issue_certificates,
    rsyslog_folder,
    study,
    validate,
)
from dicombus_workers.atna.config import parse_syslog_config
from dicombus_workers.atna.task import AtnaAuditor
from helpers import free_port
from worker_support import wait_for

# RFC 5424 6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG
HEADER = re.compile(
    rb"<85>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) audit-host dicombus (\d+) IHE\+RFC-3881 - "
)
RECEIVE_TIMEOUT = 30.0


def _check(raw: str) -> bytes:
    """The message's header fields, and its XML validated; returns the XML."""
    data = raw.encode("utf-8")
    found = HEADER.match(data)
    assert found, f"not the RFC 5424 header of an ATNA message: {raw[:120]!r}"
    xml = data[found.end() :]
    validate(xml)
    return xml


def _auditor(tmp_path: Path, section: str) -> AtnaAuditor:
    text = f'[audit.syslog]\nhostname = "audit-host"\nmax_backoff = 1\n{section}'
    config = parse_syslog_config(text, name="node.toml", base=tmp_path)
    assert config is not None
    return AtnaAuditor(config)


@pytest.fixture
def rsyslog_dir() -> Iterator[Path]:
    with rsyslog_folder() as folder:
        yield folder


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    return issue_certificates(tmp_path / "certs")


def _association(number: int) -> list:
    """The events of one association storing two instances of one study."""
    association = f"01ASSOCIATION{number:013d}"
    ds = study(f"P-{number}")
    twin = study(f"P-{number}")
    twin.StudyInstanceUID = ds.StudyInstanceUID
    return [
        c_store(ds, association=association),
        c_store(twin, association=association),
        conn_close(association),
    ]


def test_tls_delivery_survives_an_outage_in_order(
    tmp_path: Path, rsyslog_dir: Path, certificates
) -> None:
    _folder, ca, cert, key = certificates
    port = free_port()
    server = Rsyslog(rsyslog_dir, port, (ca, cert, key))
    server.start()
    auditor = _auditor(tmp_path, f'host = "127.0.0.1"\nport = {port}\nca = "{ca}"\n')
    try:
        for record in _association(1):
            auditor.handle(record)
        first = wait_for(server.messages, "the first message", RECEIVE_TIMEOUT)
        assert len(first) == 1  # one Instances Transferred for the association's study

        server.stop()  # the repository goes away
        expected = ["P-1"]
        for number in range(2, 6):
            for record in _association(number):
                auditor.handle(record)
            expected.append(f"P-{number}")
        auditor.handle(
            envelope("EVT_USER_ID", {"user_identity_type": 1, "username": "u", "verified": True})
        )
        wait_for(lambda: auditor.spool.count() == 5, "five messages spooled during the outage")

        server.start()  # it returns: the forwarder's back-off brings everything, in order
        received = wait_for(
            lambda: len(server.messages()) >= 6 and server.messages(), "all six", RECEIVE_TIMEOUT
        )
    finally:
        auditor.forwarder.stop()
        server.stop()
    assert len(received) == 6, "nothing lost, nothing twice"
    patients = []
    for raw in received:
        xml = _check(raw)
        found = re.search(rb'ParticipantObjectID="(P-\d+)"', xml)
        patients.append(found.group(1).decode() if found else "user")
    assert patients == [*expected, "user"], "in the order they were spooled"
    assert auditor.spool.count() == 0


def test_mutual_tls(tmp_path: Path, rsyslog_dir: Path, certificates) -> None:
    # rsyslog verifies the client (x509/certvalid): it takes the message only with cert/key.
    folder, ca, cert, key = certificates
    client_cert, client_key = folder / "client.pem", folder / "client.key"
    port = free_port()
    server = Rsyslog(rsyslog_dir, port, (ca, cert, key), verify_clients=True)
    server.start()
    auditor = _auditor(
        tmp_path,
        f'host = "127.0.0.1"\nport = {port}\nca = "{ca}"\n'
        f'cert = "{client_cert}"\nkey = "{client_key}"\n',
    )
    try:
        auditor.application_activity(start=True)
        auditor.forwarder.wake()
        [raw] = wait_for(server.messages, "the application start", RECEIVE_TIMEOUT)
    finally:
        auditor.forwarder.stop()
        server.stop()
    assert b'csd-code="110120"' in _check(raw)


def test_udp_delivery(tmp_path: Path, rsyslog_dir: Path) -> None:
    port = free_port()
    server = Rsyslog(rsyslog_dir, port, None)
    server.start()
    auditor = _auditor(tmp_path, f'host = "127.0.0.1"\nport = {port}\ntransport = "udp"\n')
    record = envelope(
        "EVT_REJECTED", {"result": 1, "source": 1, "reason": 3, "description": "calling AE"}
    )
    try:
        # UDP says nothing about a receiver that is not up yet: send until one arrives.
        def arrived() -> list[str]:
            auditor.handle(record)
            return server.messages()

        received = wait_for(arrived, "a datagram", RECEIVE_TIMEOUT)
    finally:
        auditor.forwarder.stop()
        server.stop()
    assert b'csd-code="110113"' in _check(received[0])
