"""The edge node: its AE from the config, the full-outbox policy, and ``dicombus edge``.

Real associations with dicombus's own SCU; an embedded redis-server where the
bus must reach Redis, a closed port where it must not.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, tls
from dicombus.bus.edge_config import TlsConfig
from dicombus.bus.redis_server import free_port
from dicombus.bus.subscriptions import Subscription
from helpers import VERIFICATION, import_peer
from worker_support import client_for, dicombus_edge, embedded_redis, running_edge, wait_for

STOP_TIMEOUT = 10.0


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with embedded_redis(tmp_path / "redis") as url:
        yield url


def _associate(port: int, calling: str = "SCU") -> object:
    ae = AE(calling)
    ae.add_requested_context(VERIFICATION)
    return ae.associate("127.0.0.1", port, ae_title="EDGE")


def test_a_full_outbox_turns_new_associations_away_as_temporary_congestion(
    tmp_path: Path,
) -> None:
    """Redis is unreachable, so events go to the outbox; past its limit the edge says no."""
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    echo_events = Subscription("site.audit", "audit", frozenset({"EVT_C_ECHO"}))
    with running_edge(nobody, tmp_path, subscriptions=(echo_events,), outbox_max_bytes=1) as node:
        port = node.address[1]
        assoc = _associate(port)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        wait_for(lambda: node.publisher.outbox_full, "the outbox to fill")
        refused = _associate(port)
        assert refused.is_rejected
        # PS3.8 9.3.4: rejected-transient, UL service-provider (presentation), temporary congestion.
        rejection = refused.rejection
        assert (rejection.result, rejection.source, rejection.reason) == (2, 3, 1)
        assert node.metrics()["spooled"] >= 1


def test_the_calling_ae_allow_list_is_enforced(redis_url: str, tmp_path: Path) -> None:
    with running_edge(redis_url, tmp_path, calling_ae_titles=("CT1",)) as node:
        port = node.address[1]
        allowed = _associate(port, "CT1")
        assert allowed.is_established
        allowed.release()
        stranger = _associate(port, "INTRUDER")
        assert stranger.is_rejected
        assert stranger.rejection.reason == 3  # PS3.8: calling AE title not recognized


def test_dicombus_edge_runs_from_a_config_file_and_stops_on_sigterm(
    redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'[edge]\nae_title = "EDGE"\nport = 0\n\n[bus]\nbroker_url = "{redis_url}"\n')
    output = tmp_path / "edge.out"
    with dicombus_edge(config, output, stop_timeout=STOP_TIMEOUT) as port:
        assoc = _associate(port)
        assert assoc.is_established
        assoc.release()
        assert (tmp_path / "dicombus-data" / "storage").is_dir()
    assert "SIGTERM received, stopped" in output.read_text()


def test_dicombus_edge_reports_a_bad_config_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[edge]\nae_title = "EDGE"\nprot = 104\n')
    result = subprocess.run(
        [sys.executable, "-m", "dicombus.cli.main", "edge", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{config}:3: [edge] prot: unknown key 'prot' (did you mean 'port'?)" in result.stderr


def _queued_envelopes(url: str, queue: str) -> list[dict[str, Any]]:
    """The envelopes waiting in ``queue``, read from the kombu messages in its Redis list."""
    envelopes = []
    for raw in client_for(url).lrange(queue, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        args, _kwargs, _embed = json.loads(body)
        envelopes.append(args[0])
    return envelopes


def test_a_tls_edge_publishes_the_client_certificate_subject(
    redis_url: str, tmp_path: Path
) -> None:
    """Mutual TLS (certificates from trustme): the accepted event names the client."""
    trustme = import_peer("trustme")
    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("ct1.test", common_name="CT1")
    for name, blob in (
        ("ca.pem", ca.cert_pem),
        ("edge.pem", server.cert_chain_pems[0]),
        ("edge.key", server.private_key_pem),
        ("ct1.pem", client.cert_chain_pems[0]),
        ("ct1.key", client.private_key_pem),
    ):
        blob.write_to_path(str(tmp_path / name))
    settings = {
        "tls": TlsConfig(
            cert=tmp_path / "edge.pem",
            key=tmp_path / "edge.key",
            ca=tmp_path / "ca.pem",
            require_client_cert=True,
        ),
        "subscriptions": (Subscription("site.audit", "tls.audit", frozenset({"EVT_ACCEPTED"})),),
    }
    with running_edge(redis_url, tmp_path / "edge", **settings) as node:
        ae = AE("CT1")
        ae.add_requested_context(VERIFICATION)
        context = tls.client_context(
            tmp_path / "ca.pem", tmp_path / "ct1.pem", tmp_path / "ct1.key"
        )
        assoc = ae.associate(
            "127.0.0.1", node.address[1], ae_title="EDGE", tls_args=(context, "127.0.0.1")
        )
        assert assoc.is_established
        assoc.release()
        [accepted] = wait_for(lambda: _queued_envelopes(redis_url, "tls.audit"), "the event")
    assert "CT1" in accepted["data"]["association"]["tls_peer_subject"]
