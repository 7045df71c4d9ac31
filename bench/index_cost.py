"""What indexing a stored instance costs the edge, in CPU per C-STORE.

Two SCPs in this process store each instance they receive over a real association on
127.0.0.1, one with the plain storage handler (``dicombus storescp``'s), one with the
edge's indexed one (:class:`dicombus.qr.archive.IndexedStorage`, over a fresh index);
an SCU sends each instance to both in turn. Measured:

- the CPU the C-STORE thread spends in the handler (``time.thread_time`` around each
  call), indexed minus plain for the same instance (each instance goes to both SCPs,
  side by side), the median over the instances: what indexing adds before the
  response leaves;
- the CPU of the index writer's thread, when the index is written by one, read from
  its clock once every instance is in the index;

each per instance, for the ``small`` and ``ct`` data sets of bench/data.py (median of
the repeats). Run from the repository root::

    python bench/index_cost.py [--count 500] [--repeats 3] [--scp-dir /dev/shm]

The storage folders are on ``--scp-dir`` (a tmpfs by default, as bench/run.py's):
fsyncs on a disk would add the same cost to both handlers and only the noise to their
difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import data
from dicombus import AE, evt
from dicombus.qr.archive import IndexedStorage
from dicombus.qr.index import Level
from dicombus.storage_files import Layout, prepare_storage_root
from dicombus.storage_handler import handle_store
from pydicom import dcmread
from pydicom.dataset import Dataset
from run import DEFAULT_DATA_DIR, DEFAULT_SCP_DIR

WAIT = 60.0


@dataclass(slots=True)
class Run:
    handler_cpu: list[float] = field(default_factory=list)  # seconds per C-STORE
    writer_cpu: float = 0.0  # seconds, on the index writer's thread


def _timed(handler: Callable[[evt.Event], Any], run: Run) -> Callable[[evt.Event], Any]:
    def timed(event: evt.Event) -> Any:
        start = time.thread_time()
        try:
            return handler(event)
        finally:
            run.handler_cpu.append(time.thread_time() - start)

    return timed


@contextmanager
def _scp(handler: Callable[[evt.Event], Any]) -> Iterator[int]:
    ae = AE("BENCHSCP")
    ae.add_supported_context(data.CT_IMAGE_STORAGE)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, handler)]
    )
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


@contextmanager
def _association(port: int) -> Iterator[Any]:
    ae = AE("BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    ae.add_requested_context(data.CT_IMAGE_STORAGE)
    assoc = ae.associate("127.0.0.1", port, ae_title="BENCHSCP")
    if not assoc.is_established:
        raise SystemExit("the benchmark SCP refused the association")
    try:
        yield assoc
    finally:
        assoc.release()


def _send_paired(ports: tuple[int, int], datasets: list[Dataset]) -> None:
    """Each instance to both SCPs in turn, the first one first for even instances and
    last for odd ones: both see the same load at the same moments."""
    with _association(ports[0]) as first, _association(ports[1]) as second:
        for number, dataset in enumerate(datasets):
            for assoc in (first, second) if number % 2 == 0 else (second, first):
                reply = assoc.send_c_store(dataset)
                if reply.get("Status") != 0:
                    raise SystemExit(f"C-STORE answered {reply!r}")


def _thread_cpu(name_prefix: str) -> float:
    """The CPU seconds of the live threads whose names start with ``name_prefix``."""
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        for thread in threading.enumerate()
        if thread.name.startswith(name_prefix) and thread.ident is not None
    )


def paired(datasets: list[Dataset], folder: Path) -> tuple[Run, Run]:
    """The plain and the indexed handler's runs, fed the same instances side by side."""
    plain, indexed = Run(), Run()
    plain_root, indexed_root = folder / "plain", folder / "indexed"
    prepare_storage_root(plain_root)
    prepare_storage_root(indexed_root)
    archive = IndexedStorage(indexed_root, folder / "index.sqlite3", layout=Layout.STUDY)
    archive.open()
    try:
        store_plain = _timed(lambda event: handle_store(event, plain_root, Layout.STUDY), plain)
        with _scp(store_plain) as first, _scp(_timed(archive.handle_store, indexed)) as second:
            _send_paired((first, second), datasets)
        writer = getattr(archive, "writer", None)
        if writer is not None:
            deadline = time.monotonic() + WAIT
            while writer.backlog and time.monotonic() < deadline:
                time.sleep(0.01)
            indexed.writer_cpu = _thread_cpu(writer.thread_name)
        if archive.index.count(Level.IMAGE) != len(datasets):
            raise SystemExit("the index does not hold every instance sent")
    finally:
        archive.close()
    return plain, indexed


def measure(name: str, count: int, repeats: int, scp_dir: Path, data_dir: Path) -> None:
    spec = data.specs(quick=False)[name]
    files = data.ensure_files(_with_count(spec, count), data_dir)
    datasets = [dcmread(path) for path in files]
    added: list[float] = []
    writer: list[float] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(dir=scp_dir) as where:
            base, with_index = paired(datasets, Path(where))
        # The median of the per-instance differences: a garbage collection or a
        # preemption in one handler call moves a sum by more than indexing costs.
        pairs = zip(with_index.handler_cpu, base.handler_cpu, strict=True)
        added.append(statistics.median(b - a for b, a in pairs))
        writer.append(with_index.writer_cpu / count)
    thread = statistics.median(added) * 1e6
    background = statistics.median(writer) * 1e6
    runs = ", ".join(f"{a * 1e6:.0f}" for a in added)
    print(
        f"{name:5} x{count}: C-STORE thread +{thread:.0f} us/instance "
        f"(median of indexed minus plain per instance; runs {runs}), "
        f"index writer {background:.0f} us/instance, total +{thread + background:.0f} us"
    )


def _with_count(spec: data.DataSetSpec, count: int) -> data.DataSetSpec:
    fields = {field: getattr(spec, field) for field in spec.__slots__}
    fields["count"] = count
    return data.DataSetSpec(**fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="instances per data set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scp-dir", type=Path, default=DEFAULT_SCP_DIR)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    for name in ("small", "ct"):
        measure(name, args.count, args.repeats, args.scp_dir, args.data_dir)


if __name__ == "__main__":
    main()
