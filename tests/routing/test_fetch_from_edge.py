"""A routing worker that cannot read the edge's storage fetches the instances with C-GET
from the edge its events name (``retrieveuri``, docs/routing.md "Fetching from the edge").

The worker runs in its own mount namespace (``unshare -m``) with an empty tmpfs mounted over
the edge's storage folder: the stored paths the events name do not exist for it, as on
another host. The edge is a dicombus edge node serving C-GET from its index; the
destination is DCMTK's ``storescp``, whose files must hold the edge's bytes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from delivery_support import (
    data_set_bytes,
    destination_toml,
    routing_worker,
    states,
    store_datasets,
    storescp,
)
from dicombus.routing.delivery_store import DeliveryStore, State
from helpers import peer_missing, small_dataset
from pydicom import dcmread
from worker_support import embedded_redis, running_edge, wait_for

pytestmark = pytest.mark.interop


def hidden(storage: Path) -> list[str]:
    """A command prefix: a private mount namespace where ``storage`` is an empty tmpfs."""
    unshare = shutil.which("unshare")
    if unshare is None:
        peer_missing("util-linux's unshare is not installed")
    probe = subprocess.run(
        [unshare, "-m", "sh", "-c", f"mount -t tmpfs none '{storage}'"], capture_output=True
    )
    if probe.returncode != 0:
        peer_missing(f"cannot make a mount namespace: {probe.stderr.decode().strip()}")
    return [unshare, "-m", "sh", "-c", f'mount -t tmpfs none "{storage}" && exec "$@"', "sh"]


def test_worker_without_the_edges_files_fetches_them_with_c_get(tmp_path: Path) -> None:
    datasets = [small_dataset() for _ in range(3)]
    with (
        storescp(tmp_path / "storescp") as pacs,
        embedded_redis(tmp_path / "redis") as url,
        running_edge(url, tmp_path / "edge") as edge,
    ):
        storage = tmp_path / "edge" / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        prefix = hidden(storage)
        config = tmp_path / "node.toml"
        config.write_text(
            f'[edge]\ndata_dir = "{tmp_path / "node"}"\n\n'
            # No [routing] edge: the events say where the edge serves C-GET.
            + destination_toml("pacs", "STORESCP", pacs.port)
            + '\n[[routing.rules]]\nname = "all"\ndestinations = ["pacs"]\n'
        )
        worker = routing_worker(
            url, tmp_path / "worker", config, ["dicombus.route.pacs"], prefix=prefix
        )
        db = DeliveryStore(tmp_path / "worker" / "routing.sqlite3")
        try:
            store_datasets(edge.address[1], datasets)
            wait_for(lambda: states(db, "pacs")[State.ACKNOWLEDGED] == 3, "3 acknowledged")
            stored = {d.sop_instance_uid: Path(d.request.stored_path) for d in db.deliveries()}
            # Not readable where the worker runs.
            for path in stored.values():
                look = subprocess.run([*prefix, "test", "-e", str(path)])
                assert look.returncode != 0, path
        finally:
            worker.stop()
    received = {dcmread(path).SOPInstanceUID: path for path in (tmp_path / "storescp").iterdir()}
    assert len(received) == 3
    for uid, path in stored.items():
        assert data_set_bytes(received[uid]) == data_set_bytes(path)
