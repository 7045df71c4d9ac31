"""pynetdicom's storage SCP example runs on dicombus after changing only its import.

The example is one text, run twice: as written for pynetdicom, and with
``pynetdicom`` replaced by ``dicombus`` in its imports. The same pynetdicom SCU
drives both servers, and both must leave the same files behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dicombus.sop_class import CTImageStorage, MRImageStorage
from helpers import (
    ct_dataset,
    import_peer,
    multiframe_dataset,
    part10_dataset_bytes,
    small_dataset,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

pynetdicom = import_peer("pynetdicom")

# As pynetdicom users write it (pydicom 3 API); `port` and `storage_dir` are the
# two settings the test provides.
SEED_EXAMPLE = """
import os

from pynetdicom import AE, evt, AllStoragePresentationContexts
from pynetdicom.sop_class import Verification


def handle_echo(event):
    return 0x0000


def handle_store(event, storage_dir):
    os.makedirs(storage_dir, exist_ok=True)
    ds = event.dataset
    ds.file_meta = event.file_meta
    path = os.path.join(storage_dir, ds.SOPInstanceUID)
    ds.save_as(path, enforce_file_format=True)
    return 0x0000


handlers = [
    (evt.EVT_C_ECHO, handle_echo),
    (evt.EVT_C_STORE, handle_store, [storage_dir]),
]

ae = AE()
ae.supported_contexts = AllStoragePresentationContexts
ae.add_supported_context(Verification)
server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
"""


def run_example(source: str, storage_dir: Path, datasets: list[Dataset]) -> list[int]:
    """Start the example's server, echo and store ``datasets`` with pynetdicom, stop it."""
    namespace: dict[str, Any] = {"port": 0, "storage_dir": str(storage_dir)}
    exec(compile(source, "seed_example.py", "exec"), namespace)
    server = namespace["server"]
    try:
        scu = pynetdicom.AE("SEED-SCU")
        scu.add_requested_context(pynetdicom.sop_class.Verification)
        for ds in datasets:
            scu.add_requested_context(ds.SOPClassUID, str(ds.file_meta.TransferSyntaxUID))
        assoc = scu.associate("127.0.0.1", server.server_address[1])
        assert assoc.is_established
        statuses = [assoc.send_c_echo().Status]
        statuses += [assoc.send_c_store(ds, msg_id=n + 2).Status for n, ds in enumerate(datasets)]
        assoc.release()
    finally:
        server.shutdown()
    return statuses


def test_seed_storage_scp_example_runs_unchanged_on_dicombus(tmp_path: Path) -> None:
    """Both runs answer every request with Success and store the same datasets."""
    assert SEED_EXAMPLE.count("from pynetdicom") == 2
    datasets = [
        small_dataset(CTImageStorage, ExplicitVRLittleEndian),
        small_dataset(MRImageStorage, ImplicitVRLittleEndian),
        multiframe_dataset(4, ExplicitVRLittleEndian),
        ct_dataset(ExplicitVRLittleEndian),
    ]
    sources = {
        "pynetdicom": SEED_EXAMPLE,
        "dicombus": SEED_EXAMPLE.replace("from pynetdicom", "from dicombus"),
    }
    statuses = {
        name: run_example(source, tmp_path / name, datasets) for name, source in sources.items()
    }
    assert statuses["dicombus"] == statuses["pynetdicom"] == [0x0000] * (1 + len(datasets))

    expected = sorted(str(ds.SOPInstanceUID) for ds in datasets)
    for name in sources:
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == expected, name
    for uid in expected:
        theirs, ours = tmp_path / "pynetdicom" / uid, tmp_path / "dicombus" / uid
        assert part10_dataset_bytes(ours) == part10_dataset_bytes(theirs)
        meta_ours, meta_theirs = dcmread(ours).file_meta, dcmread(theirs).file_meta
        for keyword in (
            "MediaStorageSOPClassUID",
            "MediaStorageSOPInstanceUID",
            "TransferSyntaxUID",
        ):
            assert meta_ours[keyword] == meta_theirs[keyword], (uid, keyword)


@pytest.mark.parametrize("library", ["pynetdicom", "dicombus"])
def test_seed_example_binds_both_handler_shapes(library: str, tmp_path: Path) -> None:
    """The 2-tuple binding has no extra arguments; the 3-tuple passes [storage_dir]."""
    source = SEED_EXAMPLE.replace("from pynetdicom", f"from {library}")
    namespace: dict[str, Any] = {"port": 0, "storage_dir": str(tmp_path)}
    exec(compile(source, "seed_example.py", "exec"), namespace)
    server = namespace["server"]
    try:
        evt = namespace["evt"]
        echo = server.get_handlers(evt.EVT_C_ECHO)
        store = server.get_handlers(evt.EVT_C_STORE)
    finally:
        server.shutdown()
    assert echo == (namespace["handle_echo"], None)
    assert store == (namespace["handle_store"], [str(tmp_path)])
