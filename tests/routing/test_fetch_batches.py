"""Fetching a batch from the edge: one C-GET association, its address from the events, and
failures classed like a destination's (docs/routing.md "Fetching from the edge").

The edge is a dicombus edge node serving C-GET from its index, in this process (so the
test counts the associations it accepts); the destination is DCMTK's ``storescp``. The
deliveries name a stored path that does not exist here, as on another host, so the
destination's sender (driven one round at a time) must fetch every instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from delivery_support import data_set_bytes, store_datasets, storescp
from dicombus import evt
from dicombus.bus.edge import EdgeNode
from dicombus.bus.envelope import retrieve_uri
from dicombus.routing.delivery_policy import DeliveryPolicy
from dicombus.routing.delivery_store import Breaker, DeliveryRequest, DeliveryStore, State
from dicombus.routing.destinations import DimseDestination, EdgeSettings, EdgeSource
from dicombus_workers.routing.events import RouteEventPublisher
from dicombus_workers.routing.fetch import NOT_FOUND_TRIES
from dicombus_workers.routing.metrics import RoutingMetrics
from dicombus_workers.routing.sender import SAFETY_POLL, DestinationSender
from helpers import free_port, small_dataset
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from worker_support import embedded_redis, running_edge, wait_for

pytestmark = pytest.mark.interop

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
# Back-off short enough for a test to wait for the retries it counts.
FAST = DeliveryPolicy(retry_first=0.05, retry_max=0.1)


def requests_for(datasets: list[Dataset], uri: str, destination: str) -> list[DeliveryRequest]:
    """What the router records for ``datasets``: a stored path not readable here."""
    return [
        DeliveryRequest(
            sop_instance_uid=str(ds.SOPInstanceUID),
            destination=destination,
            sop_class_uid=str(ds.SOPClassUID),
            transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
            stored_path=f"/nonexistent/{ds.SOPInstanceUID}.dcm",
            event_id=f"event-{ds.SOPInstanceUID}",
            context={
                "retrieve_uri": uri,
                "study_instance_uid": str(ds.StudyInstanceUID),
                "series_instance_uid": str(ds.SeriesInstanceUID),
            },
        )
        for ds in datasets
    ]


@contextmanager
def sender_for(
    url: str, folder: Path, port: int, edge: EdgeSettings | None = None
) -> Iterator[DestinationSender]:
    destination = DimseDestination(
        name="pacs", ae_title="STORESCP", host="127.0.0.1", port=port, delivery=FAST
    )
    store = DeliveryStore(folder / "routing.sqlite3")
    events = RouteEventPublisher(url, folder / "route-events")
    sender = DestinationSender(destination, store, events, RoutingMetrics(url, "pacs"), edge)
    try:
        yield sender
    finally:
        sender.files.close()
        events.close()
        store.close()


def rounds_until(sender: DestinationSender, done: Callable[[], bool]) -> None:
    """Run the sender's rounds (each sends what is due) until ``done``."""

    def one() -> bool:
        sender.step()
        return done()

    wait_for(one, "the sender to settle the deliveries")


def fetch_associations(node: EdgeNode) -> list[str]:
    """The calling AE titles of the associations the edge accepts from now on."""
    seen: list[str] = []

    def established(event: Any) -> None:
        seen.append(event.assoc.requestor.ae_title.strip())

    assert node.server is not None
    node.server.bind(evt.EVT_ESTABLISHED, established)
    return seen


def test_a_batch_comes_over_one_c_get_association_from_the_address_the_events_give(
    tmp_path: Path,
) -> None:
    # Two studies, two series in one of them, two SOP classes, two transfer syntaxes.
    datasets = [small_dataset() for _ in range(3)]
    for ds in datasets[1:]:
        ds.StudyInstanceUID = datasets[0].StudyInstanceUID
    datasets[2].SeriesInstanceUID = datasets[1].SeriesInstanceUID
    datasets.append(small_dataset(MR_IMAGE_STORAGE, ImplicitVRLittleEndian))
    with (
        storescp(tmp_path / "storescp") as pacs,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as node,
        sender_for(url, tmp_path, pacs.port) as sender,
    ):
        store_datasets(node.address[1], datasets)
        advertised = retrieve_uri("EDGE", "127.0.0.1", node.address[1])
        assert node.capture is not None and node.capture.retrieve_uri == advertised
        seen = fetch_associations(node)
        sender.store.add(requests_for(datasets, advertised, "pacs"))
        rounds_until(sender, lambda: _states(sender) == {State.ACKNOWLEDGED: 4})
        assert seen == ["DICOMBUS"]  # one association for the whole batch
    received = {dcmread(p).SOPInstanceUID: p for p in (tmp_path / "storescp").iterdir()}
    stored = {dcmread(p).SOPInstanceUID: p for p in (tmp_path / "edge" / "storage").rglob("*.dcm")}
    assert set(received) == set(stored) == {str(ds.SOPInstanceUID) for ds in datasets}
    for uid, path in received.items():
        assert data_set_bytes(path) == data_set_bytes(stored[uid])


def test_an_edge_that_is_down_is_retried_with_back_off_then_delivers(tmp_path: Path) -> None:
    datasets = [small_dataset() for _ in range(2)]
    port = free_port()
    with (
        storescp(tmp_path / "storescp") as pacs,
        embedded_redis(tmp_path / "redis") as url,
        sender_for(url, tmp_path, pacs.port) as sender,
    ):
        with running_edge(url, tmp_path / "edge", port=port):
            store_datasets(port, datasets)
        sender.store.add(requests_for(datasets, retrieve_uri("EDGE", "127.0.0.1", port), "pacs"))
        rounds_until(sender, lambda: all(d.attempts >= 2 for d in sender.store.deliveries()))
        for delivery in sender.store.deliveries():
            assert delivery.state is State.WAITING
            assert delivery.reason is not None
            assert delivery.reason.startswith("cannot connect to the edge dicom://EDGE@")
            assert delivery.due > delivery.updated  # a back-off delay, kept in the store
        # The edge's absence is not the destination's: its breaker counted nothing.
        assert sender.store.breaker("pacs").failures == 0
        with running_edge(url, tmp_path / "edge", port=port):
            rounds_until(sender, lambda: _states(sender) == {State.ACKNOWLEDGED: 2})
    assert len(list((tmp_path / "storescp").iterdir())) == 2


def test_an_instance_the_edge_does_not_hold_is_a_dead_letter_after_its_tries(
    tmp_path: Path,
) -> None:
    held, never_stored = small_dataset(), small_dataset()
    with (
        storescp(tmp_path / "storescp") as pacs,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as node,
        sender_for(url, tmp_path, pacs.port) as sender,
    ):
        port = node.address[1]
        store_datasets(port, [held])
        uri = retrieve_uri("EDGE", "127.0.0.1", port)
        sender.store.add(requests_for([held, never_stored], uri, "pacs"))
        rounds_until(sender, lambda: _states(sender) == {State.ACKNOWLEDGED: 1, State.DEAD: 1})
        [dead] = sender.store.deliveries(state=State.DEAD)
    assert dead.sop_instance_uid == never_stored.SOPInstanceUID
    assert dead.attempts == NOT_FOUND_TRIES
    assert dead.reason == (
        f"the edge {EdgeSource(ae_title='EDGE', host='127.0.0.1', port=port).address}"
        f" did not send {never_stored.SOPInstanceUID} in {NOT_FOUND_TRIES} tries"
    )


def test_an_edge_that_refuses_us_is_a_dead_letter_at_once(tmp_path: Path) -> None:
    ds = small_dataset()
    with (
        storescp(tmp_path / "storescp") as pacs,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge", calling_ae_titles=("SCU",)) as node,
        sender_for(url, tmp_path, pacs.port) as sender,
    ):
        store_datasets(node.address[1], [ds])
        uri = retrieve_uri("EDGE", "127.0.0.1", node.address[1])
        sender.store.add(requests_for([ds], uri, "pacs"))
        rounds_until(sender, lambda: _states(sender) == {State.DEAD: 1})
        [dead] = sender.store.deliveries()
    assert dead.attempts == 1
    assert dead.reason is not None
    assert "rejected the C-GET association" in dead.reason
    assert "permanent, by the service user: calling AE title not recognized" in dead.reason


def test_the_configured_edge_overrides_the_address_in_the_events(tmp_path: Path) -> None:
    ds = small_dataset()
    with (
        storescp(tmp_path / "storescp") as pacs,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as node,
    ):
        store_datasets(node.address[1], [ds])
        override = EdgeSettings(ae_title="EDGE", host="127.0.0.1", port=node.address[1])
        unreachable = retrieve_uri("EDGE", "127.0.0.1", free_port())
        with sender_for(url, tmp_path, pacs.port, override) as sender:
            sender.store.add(requests_for([ds], unreachable, "pacs"))
            rounds_until(sender, lambda: _states(sender) == {State.ACKNOWLEDGED: 1})


def _states(sender: DestinationSender) -> dict[State, int]:
    found: dict[State, int] = {}
    for delivery in sender.store.deliveries():
        found[delivery.state] = found.get(delivery.state, 0) + 1
    return found


def test_an_open_breaker_holds_due_rows_until_its_probe_instead_of_spinning(
    tmp_path: Path,
) -> None:
    """While a destination's breaker is open, rows already due cannot go before its probe:
    the sender sleeps until the probe (at most its safety poll), not the 10 ms minimum a
    due row would give, which spun the thread at 100 rounds a second during an outage."""
    with (
        embedded_redis(tmp_path / "redis") as url,
        sender_for(url, tmp_path, free_port()) as sender,
    ):
        [request] = requests_for([small_dataset()], "dicom://EDGE@127.0.0.1:1", "pacs")
        sender.store.add([request])
        now = time.time()
        sender.store.set_breaker("pacs", Breaker(failures=3, opened=now, probe_due=now + 60))
        assert sender.store.next_due("pacs") is not None  # the row is due now
        assert sender._sleep() == SAFETY_POLL
        sender.store.set_breaker("pacs", Breaker())
        assert sender._sleep() == pytest.approx(0.01)  # closed: the due row goes at once
