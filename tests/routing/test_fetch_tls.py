"""Fetching a batch from an edge that speaks DICOM over TLS (PS3.15 B.1): the edge says
``dicom-tls://`` in its events, and a worker with the CA (and its own certificate, for
an edge that requires one) fetches over TLS; a worker without the CA has a dead letter
naming the setting (docs/routing.md "Where the edge is").

The edge is a dicombus edge node with ``[tls]``, in this process; the destination is
DCMTK's ``storescp``; certificates come from ``trustme``, as in tests/security/test_tls.py.
The deliveries name a stored path that does not exist here, so every instance is fetched.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from delivery_support import data_set_bytes, store_datasets, storescp
from dicombus import tls
from dicombus.bus.edge_config import TlsConfig
from dicombus.bus.envelope import retrieve_uri
from dicombus.routing.delivery_store import State
from dicombus.routing.destinations import EdgeSettings
from dicombus_workers.routing.sender import DestinationSender
from helpers import import_peer, small_dataset
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from test_fetch_batches import (
    MR_IMAGE_STORAGE,
    fetch_associations,
    requests_for,
    rounds_until,
    sender_for,
)
from worker_support import embedded_redis, running_edge

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class Pki:
    ca: Path
    edge: tuple[Path, Path]  # certificate, key
    worker: tuple[Path, Path]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    trustme = import_peer("trustme")
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))

    def issue(name: str, host: str) -> tuple[Path, Path]:
        issued = ca.issue_cert(host, common_name=name)
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        return cert, key

    # The edge's certificate names the host it advertises (the client checks it).
    return Pki(folder / "ca.pem", issue("edge", "127.0.0.1"), issue("router", "router.test"))


def tls_edge(pki: Pki) -> TlsConfig:
    """``[tls]`` with a client certificate required (mutual TLS): the edge accepts no
    association that did not present the worker's certificate."""
    cert, key = pki.edge
    return TlsConfig(cert=cert, key=key, ca=pki.ca, require_client_cert=True)


def modality_tls(pki: Pki) -> tuple[ssl.SSLContext, str]:
    """The modality's side of the TLS association that stores on the edge."""
    return tls.client_context(pki.ca, *pki.worker), "127.0.0.1"


@dataclass(frozen=True)
class TlsEdge:
    """A TLS edge holding the instances a modality stored over TLS, and a sender to
    DCMTK's storescp whose worker fetches from that edge."""

    sender: DestinationSender
    advertised: str  # the retrieve URI in the edge's events
    fetches: list[str]  # calling AE titles of the associations the edge accepted since


@contextmanager
def tls_edge_holding(
    tmp_path: Path, pki: Pki, datasets: list[Dataset], worker_tls: EdgeSettings | None
) -> Iterator[TlsEdge]:
    """``datasets`` stored on a TLS edge; the sender's ``[routing] edge`` is ``worker_tls``."""
    with (
        storescp(tmp_path / "storescp") as pacs,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge", tls=tls_edge(pki)) as node,
        sender_for(url, tmp_path, pacs.port, worker_tls) as sender,
    ):
        port = node.address[1]
        store_datasets(port, datasets, tls_args=modality_tls(pki))
        advertised = retrieve_uri("EDGE", "127.0.0.1", port, tls=True)
        assert node.capture is not None and node.capture.retrieve_uri == advertised
        yield TlsEdge(sender, advertised, fetch_associations(node))


def test_a_batch_is_fetched_over_tls_from_the_edge_the_events_name(
    tmp_path: Path, pki: Pki
) -> None:
    datasets = [small_dataset() for _ in range(2)]
    datasets[1].StudyInstanceUID = datasets[0].StudyInstanceUID
    datasets.append(small_dataset(MR_IMAGE_STORAGE, ImplicitVRLittleEndian))
    # The address from the events; the TLS settings from [routing] edge.
    cert, key = pki.worker
    worker_tls = EdgeSettings(tls_ca=pki.ca, tls_cert=cert, tls_key=key)
    with tls_edge_holding(tmp_path, pki, datasets, worker_tls) as edge:
        assert edge.advertised.startswith("dicom-tls://")
        sender = edge.sender
        sender.store.add(requests_for(datasets, edge.advertised, "pacs"))
        rounds_until(
            sender,
            lambda: [d.state for d in sender.store.deliveries()] == [State.ACKNOWLEDGED] * 3,
        )
        assert edge.fetches == ["DICOMBUS"]  # one TLS association for the whole batch
    received = {dcmread(p).SOPInstanceUID: p for p in (tmp_path / "storescp").iterdir()}
    stored = {dcmread(p).SOPInstanceUID: p for p in (tmp_path / "edge" / "storage").rglob("*.dcm")}
    assert set(received) == set(stored) == {str(ds.SOPInstanceUID) for ds in datasets}
    for uid, path in received.items():
        assert data_set_bytes(path) == data_set_bytes(stored[uid])


def test_a_worker_without_the_ca_has_a_dead_letter_naming_the_setting(
    tmp_path: Path, pki: Pki
) -> None:
    ds = small_dataset()
    with tls_edge_holding(tmp_path, pki, [ds], None) as edge:  # no [routing] edge at all
        sender = edge.sender
        sender.store.add(requests_for([ds], edge.advertised, "pacs"))
        rounds_until(sender, lambda: [d.state for d in sender.store.deliveries()] == [State.DEAD])
        [dead] = sender.store.deliveries()
        assert edge.fetches == []  # nothing was tried in the clear, nor without a way to verify
    assert dead.attempts == 1  # asking again cannot help: a dead letter at once
    assert dead.reason == (
        f"DICOM over TLS to {edge.advertised} needs tls_ca in [routing] edge, "
        "to verify its certificate"
    )
    assert list((tmp_path / "storescp").iterdir()) == []


def test_a_failed_tls_handshake_with_the_edge_is_named_in_the_reason(
    tmp_path: Path, pki: Pki
) -> None:
    """A worker that trusts another CA cannot verify the edge: its delivery waits for
    another try with the handshake's failure as the reason, in OpenSSL's words."""
    other = import_peer("trustme").CA()
    other.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    cert, key = pki.worker
    worker_tls = EdgeSettings(tls_ca=tmp_path / "other-ca.pem", tls_cert=cert, tls_key=key)
    ds = small_dataset()
    with tls_edge_holding(tmp_path, pki, [ds], worker_tls) as edge:
        sender = edge.sender
        sender.store.add(requests_for([ds], edge.advertised, "pacs"))
        rounds_until(sender, lambda: sender.store.deliveries()[0].reason is not None)
        [waiting] = sender.store.deliveries()
        assert edge.fetches == []
    assert waiting.state == State.WAITING  # a certificate may be replaced: tried again
    assert waiting.reason is not None
    assert waiting.reason.startswith(
        f"cannot connect to the edge {edge.advertised}: "
        "TLS handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    assert list((tmp_path / "storescp").iterdir()) == []
