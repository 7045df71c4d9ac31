"""C-STORE event envelopes as a routing worker receives them, from real DICOM files.

The dataset goes through the bus's own DICOM JSON encoder (the publisher's), and the
envelope carries the fields docs/events.md lists for EVT_C_STORE.
"""

from __future__ import annotations

from typing import Any

from dicombus.bus.dicom_json import to_dicom_json
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset


def real_dataset(name: str = "CT_small.dcm") -> Dataset:
    """One of pydicom's test files (CT_small.dcm, MR_small.dcm, ...)."""
    path = get_testdata_file(name)
    assert path is not None, name
    return dcmread(path)


def store_envelope(
    dataset: Dataset,
    *,
    calling: str = "CT1",
    called: str = "EDGE",
    edge: str = "edge-1",
    event_id: str = "01M82N4HHFD4QEZNWZK13EGMYD",
    time: str = "2026-11-22T22:13:27.727568Z",
    status_category: str = "Success",
    stored: bool = True,
) -> dict[str, Any]:
    uri = "file:///data/storage/x.dcm"
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"dicombus://{edge}/{called}",
        "type": "EVT_C_STORE",
        "time": time,
        "subject": "01M82N4HHFD4QEZNWZK13EGMYE",
        "datacontenttype": "application/json",
        "sequence": 9,
        "schemaversion": "1",
        "data": {
            "association": {
                "role": "acceptor",
                "calling_ae_title": calling,
                "called_ae_title": called,
                "peer_address": "127.0.0.1",
                "peer_port": 56766,
                "local_port": 11112,
                "tls_peer_subject": None,
            },
            "message_id": 1,
            "sop_class_uid": str(dataset.SOPClassUID),
            "sop_instance_uid": str(dataset.SOPInstanceUID),
            "transfer_syntax": "1.2.840.10008.1.2.1",
            "status": 0 if status_category == "Success" else 0xA700,
            "status_category": status_category,
            "stored_path": "/data/storage/x.dcm" if stored else None,
            "dataset": to_dicom_json(dataset, bulk_data_uri=uri),
            "dataset_source": "stored_file",
        },
    }
