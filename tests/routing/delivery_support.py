"""What the delivery tests share: an edge, a routing worker and destinations, all real.

The edge stores with dicombus, the routing worker is a ``dicombus worker`` process that
consumes the router's queue and the destinations' queues, and destinations are DCMTK's
``storescp`` or pynetdicom SCPs on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicombus import AE
from dicombus.dataset_codec import read_part10_header
from dicombus.routing.delivery_store import DeliveryStore, State
from helpers import DcmtkProcess, free_port, import_peer, require_tool, wait_for_port
from pydicom.dataset import Dataset
from worker_support import Worker

ROUTE_QUEUES = "dicombus.route"
# The longest a held C-STORE waits for its association to end.
HOLD_LIMIT = 30.0


def destination_toml(name: str, ae_title: str, port: int, **delivery: Any) -> str:
    lines = [
        "[[routing.destinations]]",
        f'name = "{name}"',
        'type = "dimse"',
        f'ae_title = "{ae_title}"',
        'host = "127.0.0.1"',
        f"port = {port}",
    ]
    return _with_delivery(lines, delivery)


def write_config(
    folder: Path, destinations: str, rule_to: list[str], *, routing: str = "", rule: str = ""
) -> Path:
    """The node's file: ``destinations``, one rule sending everything to ``rule_to``
    (``rule``: more of its keys, e.g. ``per``), ``routing``: more ``[routing]`` keys."""
    path = folder / "node.toml"
    names = ", ".join(f'"{name}"' for name in rule_to)
    section = f"[routing]\n{routing}\n" if routing else ""
    path.write_text(
        f'[edge]\ndata_dir = "{folder / "node"}"\n\n{section}{destinations}\n'
        f'[[routing.rules]]\nname = "all"\n{rule}destinations = [{names}]\n'
    )
    return path


def stow_destination_toml(name: str, url: str, password_env: str, **delivery: Any) -> str:
    """A STOW-RS destination with HTTP basic authentication as ``router``."""
    lines = [
        "[[routing.destinations]]",
        f'name = "{name}"',
        'type = "stow-rs"',
        f'url = "{url}"',
        'auth = "basic"',
        'username = "router"',
        f'password_env = "{password_env}"',
    ]
    return _with_delivery(lines, delivery)


def _with_delivery(lines: list[str], delivery: dict[str, Any]) -> str:
    """A destination's table, and its ``delivery`` sub-table when there are settings."""
    if delivery:
        lines.append("[routing.destinations.delivery]")
        lines += [f"{key} = {value!r}".replace("'", '"') for key, value in delivery.items()]
    return "\n".join(lines) + "\n"


def store_datasets(
    port: int, datasets: list[Dataset], *, calling: str = "SCU", tls_args: Any = None
) -> None:
    """Store ``datasets`` on the edge at ``port`` on one association (over TLS with
    ``tls_args``, as ``AE.associate`` takes them), each Success."""
    ae = AE(calling)
    for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets):
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE", tls_args=tls_args)
    assert assoc.is_established
    try:
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == 0
    finally:
        assoc.release()


def routing_worker(
    url: str,
    folder: Path,
    config: Path,
    queues: list[str],
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
    tasks: tuple[str, ...] = (),
) -> Worker:
    """A ``dicombus worker`` routing by ``config``, consuming the router's queue and
    ``queues``; ``tasks``: more task modules, from this folder."""
    return Worker(
        url,
        folder,
        include=("dicombus_workers.routing.task", *tasks),
        tasks_folder=Path(__file__).parent,
        pool="solo",
        queues=",".join([ROUTE_QUEUES, *queues]),
        env={
            "DICOMBUS_CONFIG": str(config),
            "DICOMBUS_ROUTING_DB": str(folder / "routing.sqlite3"),
            **(env or {}),
        },
        prefix=prefix or [],
    )


def states(store: DeliveryStore, destination: str) -> Counter[State]:
    return Counter(d.state for d in store.deliveries(destination=destination))


def data_set_bytes(path: Path) -> bytes:
    """The data set of a Part 10 file, after its File Meta Information (which each writer
    makes its own)."""
    header = read_part10_header(path)
    return path.read_bytes()[header.dataset_offset :]


@contextmanager
def storescp(folder: Path, ae_title: str = "STORESCP") -> Iterator[DcmtkProcess]:
    """DCMTK's storescp, writing each instance it receives to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [require_tool("storescp"), "-aet", ae_title, "-od", str(folder), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peer = DcmtkProcess(process, port, folder)
    try:
        wait_for_port(port)
        yield peer
    finally:
        peer.stop()


@dataclass
class CountingScp:
    """A pynetdicom Storage SCP that answers ``status`` and counts each instance."""

    port: int
    status: int = 0x0000
    received: Counter[str] = field(default_factory=Counter)
    # The associations instances came on (the objects, so none is counted twice).
    associations: list[Any] = field(default_factory=list)
    # When this many instances were kept, the next C-STORE waits until its association is
    # gone and is not kept (a destination that keeps only what it could acknowledge).
    hold_at: int | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    server: Any = None

    def start(self) -> None:
        pynetdicom = import_peer("pynetdicom")
        ae = pynetdicom.AE("PYSCP")
        ae.supported_contexts = pynetdicom.AllStoragePresentationContexts
        ae.add_supported_context("1.2.840.10008.1.1")
        handlers = [(pynetdicom.evt.EVT_C_STORE, self._store)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _store(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        if self.hold_at is not None and sum(self.received.values()) == self.hold_at:
            self.hold_at = None
            self.holding.set()
            deadline = time.monotonic() + HOLD_LIMIT
            while event.assoc.is_established and time.monotonic() < deadline:
                time.sleep(0.05)
            return 0xA700
        self.received[uid] += 1
        if not any(event.assoc is seen for seen in self.associations):
            self.associations.append(event.assoc)
        return self.status

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@contextmanager
def counting_scp(port: int | None = None, *, status: int = 0x0000) -> Iterator[CountingScp]:
    scp = CountingScp(port or free_port(), status)
    scp.start()
    try:
        yield scp
    finally:
        scp.stop()
