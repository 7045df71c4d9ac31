"""What EventCapture costs the association thread, per event (issue 4: "free when nobody listens").

    python bench/bus_capture.py [--events 200000] [--stores 2000] [--json out.json]

Three measurements, all on a real association on 127.0.0.1 (a dicombus SCU
and a dicombus SCP titled EDGE with an EventCapture attached; the sink is a
deque's append, standing in for the publisher's non-blocking submit):

1. **Per event, on the association's code path.** The acceptor's own calls
   -- ``report_outcome(EVT_C_STORE, ...)`` with a C-STORE request, as the
   storage service makes it after each response, and the lifecycle
   notifications through ``_notify`` -- timed in a loop of ``--events``,
   with nothing subscribed and with lifecycle + C-STORE subscribed. The
   figure is nanoseconds per call; the "per C-STORE" row adds the six
   lifecycle events of an association spread over 100 C-STOREs.
2. **On the publisher thread** (for scale): building the C-STORE envelope
   (reading the stored file's header, DICOM JSON) and json.dumps.
3. **End to end**: C-STOREs/s of ``--stores`` small instances over one
   association, nothing subscribed vs lifecycle + C-STORE; median of 3
   alternating runs (the SCU shares this process, so it is a ratio, not a
   throughput benchmark; see bench/bus_run.py for that).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dicombus import AE, evt
from dicombus.association import Association
from dicombus.bus.capture import EventCapture
from dicombus.protocol.commands import c_store_rq
from dicombus.protocol.fragments import DimseMessage, MemoryDatasetSink
from dicombus.server import AssociationServer
from dicombus.service_request import ServiceRequest
from dicombus.storage_files import Layout, store_instance
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
LIFECYCLE = (
    "EVT_CONN_OPEN",
    "EVT_REQUESTED",
    "EVT_ACCEPTED",
    "EVT_ESTABLISHED",
    "EVT_RELEASED",
    "EVT_CONN_CLOSE",
)
SUBSCRIBED = frozenset({*LIFECYCLE, "EVT_C_STORE"})
# For the "per C-STORE" row: an association's lifecycle events shared by this many stores.
STORES_PER_ASSOCIATION = 100
WAIT = 10.0


def instance() -> Dataset:
    """A small CT instance (~2 KB), fresh UIDs."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Bench^Capture"
    ds.PatientID = "BENCH-1"
    ds.Rows, ds.Columns = 32, 48
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(32 * 48)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def quick_ae(title: str) -> AE:
    ae = AE(title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae


class Switchable:
    """What the capture is told is wanted; flipped between runs, then refresh()."""

    def __init__(self) -> None:
        self.types: frozenset[str] = frozenset()

    def __call__(self, event_type: str) -> bool:
        return event_type in self.types


Edge = tuple[AssociationServer, EventCapture, Switchable, "collections.deque[Any]"]


@contextmanager
def edge(storage: Path) -> Iterator[Edge]:
    def store(event: Any) -> int:
        path = store_instance(
            storage,
            file_meta=event.file_meta,
            dataset_bytes=event.encoded_dataset(include_meta=False),
            layout=Layout.FLAT,
        ).path
        event.request.outcome.update(stored_path=str(path), stored_size=path.stat().st_size)
        return 0x0000

    ae = quick_ae("EDGE")
    ae.add_supported_context(CT_IMAGE_STORAGE)
    wanted = Switchable()
    # Bounded: the timing loops make millions of events, and only the last few are looked at.
    sink: collections.deque[Any] = collections.deque(maxlen=10_000)
    capture = EventCapture(
        edge_id="bench",
        sink=sink.append,
        wants=wanted,
        bulk_data_uri_base=storage.resolve().as_uri(),
    )
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    capture.attach(server)
    try:
        yield server, capture, wanted, sink
    finally:
        capture.detach()
        server.shutdown()


def associate(server: AssociationServer) -> Association:
    scu = quick_ae("MODALITY")
    scu.add_requested_context(CT_IMAGE_STORAGE)
    assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="EDGE")
    if not assoc.is_established:
        raise RuntimeError("the benchmark association was not accepted")
    return assoc


def per_call_ns(call: Callable[[], None], count: int) -> float:
    """Nanoseconds per call, the best of 5 loops (the least disturbed by the rest of the box)."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(count):
            call()
        best = min(best, (time.perf_counter_ns() - start) / count)
    return best


def association_path_costs(
    acceptor: Association, capture: EventCapture, wanted: Switchable, count: int
) -> dict[str, float]:
    """ns per event on the acceptor's code path, nothing subscribed vs lifecycle + C-STORE."""
    command = c_store_rq(1, CT_IMAGE_STORAGE, generate_uid())
    received = MemoryDatasetSink()
    received.write(memoryview(bytes(2048)))
    request = ServiceRequest(DimseMessage(context_id=1, command=command, dataset=received))
    # As the edge's storage handler records it (the file is only read on the publisher).
    request.outcome.update(stored_path="/data/storage/instance.dcm", stored_size=2400)
    context = acceptor.accepted_contexts[0].as_tuple

    def store_outcome() -> None:
        acceptor.report_outcome(
            evt.EVT_C_STORE, 0, request=request, context=context, details=request.outcome
        )

    def lifecycle() -> None:
        for name in LIFECYCLE:
            acceptor._notify(getattr(evt, name))

    figures: dict[str, float] = {}
    for label, types in (("off", frozenset()), ("on", SUBSCRIBED)):
        wanted.types = types
        capture.refresh()
        figures[f"c_store_outcome_{label}_ns"] = per_call_ns(store_outcome, count)
        figures[f"lifecycle_event_{label}_ns"] = per_call_ns(
            lifecycle, count // len(LIFECYCLE)
        ) / len(LIFECYCLE)
        figures[f"per_c_store_{label}_ns"] = (
            figures[f"c_store_outcome_{label}_ns"]
            + figures[f"lifecycle_event_{label}_ns"] * len(LIFECYCLE) / STORES_PER_ASSOCIATION
        )
    return figures


def publisher_side_cost(
    server: AssociationServer,
    capture: EventCapture,
    wanted: Switchable,
    sink: collections.deque[Any],
) -> float:
    """Microseconds to build and serialize one C-STORE envelope (on the publisher thread)."""
    wanted.types = frozenset({"EVT_C_STORE"})
    capture.refresh()
    sink.clear()
    assoc = associate(server)
    for _ in range(200):
        assoc.send_c_store(instance())
    assoc.release()
    deadline = time.monotonic() + WAIT
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.01)
    kept = list(sink)
    start = time.perf_counter()
    for pending in kept:
        json.dumps(pending.to_envelope())
    return (time.perf_counter() - start) / len(kept) * 1e6


def stores_per_second(server: AssociationServer, count: int) -> float:
    datasets = [instance() for _ in range(count)]
    assoc = associate(server)
    start = time.perf_counter()
    for ds in datasets:
        assoc.send_c_store(ds)
    elapsed = time.perf_counter() - start
    assoc.release()
    return count / elapsed


def end_to_end(
    server: AssociationServer, capture: EventCapture, wanted: Switchable, count: int
) -> dict[str, float]:
    runs: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(3):
        for label, types in (("off", frozenset()), ("on", SUBSCRIBED)):
            wanted.types = types
            capture.refresh()
            runs[label].append(stores_per_second(server, count))
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    return {"c_store_per_s_off": off, "c_store_per_s_on": on, "on_over_off": on / off}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="calls per timing loop")
    parser.add_argument("--stores", type=int, default=2000, help="C-STOREs per end-to-end run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dicombus-bench-capture-") as folder:
        storage = Path(folder)
        with edge(storage) as (server, capture, wanted, sink):
            assoc = associate(server)
            (acceptor,) = server.active_associations
            figures = association_path_costs(acceptor, capture, wanted, args.events)
            assoc.release()
            figures["publisher_build_and_dumps_us"] = publisher_side_cost(
                server, capture, wanted, sink
            )
            figures.update(end_to_end(server, capture, wanted, args.stores))
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", "utf-8")
    return 0


def report(figures: dict[str, float]) -> str:
    rows = [
        ("C-STORE outcome (report_outcome)", "c_store_outcome"),
        ("one lifecycle event (_notify)", "lifecycle_event"),
        (f"per C-STORE, {STORES_PER_ASSOCIATION} per association", "per_c_store"),
    ]
    lines = [
        "association thread, ns per event     nothing subscribed   lifecycle + C-STORE",
    ]
    for label, key in rows:
        lines.append(
            f"{label:<37}{figures[key + '_off_ns']:>18.0f}{figures[key + '_on_ns']:>22.0f}"
        )
    lines += [
        "",
        f"publisher thread: build + json.dumps of a C-STORE envelope: "
        f"{figures['publisher_build_and_dumps_us']:.0f} us",
        f"C-STORE/s over one association (SCU in this process): off "
        f"{figures['c_store_per_s_off']:.0f}, on {figures['c_store_per_s_on']:.0f} "
        f"(on/off {figures['on_over_off']:.3f})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
