"""A TLS handshake that fails at the edge becomes an ATNA Security Alert at the repository.

The peers are real: ``dicombus up --config node.toml`` with ``[tls]`` (its edge answers
TLS only) and ``[audit.syslog]`` naming Debian's ``rsyslogd`` on loopback over TLS. Two
clients fail the handshake: DCMTK's ``echoscu`` speaking plain DICOM to the TLS port, and
a dicombus requestor that does not trust the edge's CA. Each failure is published as
EVT_CONN_CLOSE with ``tls_error``, and the ATNA task sends a Security Alert (PS3.15
A.5.3.11, EventTypeCode 110126 Node Authentication) naming the client's address and the
reason, valid against the PS3.15 A.5.1.1 schema.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from atna_support import (
    atna_registered,
    received_messages,
    rsyslog_folder,
    started_tls_rsyslog,
    syslog_node_toml,
)
from dicombus import AE, tls
from dicombus.sop_class import Verification
from helpers import import_peer, require_tool
from lxml import etree
from up_support import UpProcess
from worker_support import wait_for

EDGE_AE = "EDGE"
TIMEOUT = 60.0
SECURITY_ALERT, NODE_AUTHENTICATION = "110113", "110126"  # PS3.15 A.5.3.11, CID 403


@pytest.fixture
def rsyslog_dir() -> Iterator[Path]:
    with rsyslog_folder() as folder:
        yield folder


def alert_description(alert: etree._Element) -> str:
    detail = alert.find("ParticipantObjectIdentification/ParticipantObjectDetail")
    return base64.b64decode(detail.get("value")).decode()


def untrusting_requestor(port: int, other_ca: Path) -> bool:
    """A dicombus requestor whose CA did not sign the edge's certificate; established?"""
    ae = AE("STRANGER")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    context = tls.client_context(other_ca)
    assoc = ae.associate("127.0.0.1", port, ae_title=EDGE_AE, tls_args=(context, "127.0.0.1"))
    return assoc.is_established


def test_failed_tls_handshakes_are_security_alerts(tmp_path: Path, rsyslog_dir: Path) -> None:
    echoscu = require_tool("echoscu")
    other_ca = tmp_path / "other-ca.pem"
    import_peer("trustme").CA().cert_pem.write_to_path(str(other_ca))
    rsyslog, ca, cert, key = started_tls_rsyslog(tmp_path, rsyslog_dir)
    node = UpProcess(
        tmp_path / "node",
        *[
            "--config",
            str(
                syslog_node_toml(
                    tmp_path,
                    rsyslog.port,
                    ca,
                    edge_id="edge-tls",
                    ae_title=EDGE_AE,
                    more=f'[tls]\ncert = "{cert}"\nkey = "{key}"\n\n',
                )
            ),
            "--workers",
            "1",
        ],
    )
    try:
        node.wait_ready()
        wait_for(lambda: atna_registered(node), "the worker's ATNA subscription", TIMEOUT)
        # Plain DICOM on the TLS port: the edge reads an A-ASSOCIATE-RQ as a ClientHello.
        plain = subprocess.run(
            [echoscu, "-aec", EDGE_AE, "127.0.0.1", str(node.port)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert plain.returncode != 0, plain.stdout + plain.stderr
        assert not untrusting_requestor(node.port, other_ca)
        alerts = wait_for(
            lambda: len(found := received_messages(rsyslog, SECURITY_ALERT)) >= 2 and found,
            "two Security Alerts",
            TIMEOUT,
        )
    finally:
        stopped = node.stop()
        rsyslog.stop()
    assert stopped == 0, node.text
    assert len(alerts) == 2, "one per failed handshake"
    reasons = sorted(alert_description(alert) for alert in alerts)
    assert all(reason.startswith("TLS handshake failed: ") for reason in reasons), reasons
    assert any("WRONG_VERSION_NUMBER" in reason for reason in reasons), reasons
    assert any("UNKNOWN_CA" in reason for reason in reasons), reasons
    for alert in alerts:
        event = alert.find("EventIdentification")
        assert event.find("EventTypeCode").get("csd-code") == NODE_AUTHENTICATION
        assert event.get("EventOutcomeIndicator") == "4"
        subject = alert.find("ParticipantObjectIdentification")
        assert subject.get("ParticipantObjectID") == "127.0.0.1"
        requestor = alert.find("ActiveParticipant[@UserIsRequestor='true']")
        assert requestor.get("NetworkAccessPointID") == "127.0.0.1"
