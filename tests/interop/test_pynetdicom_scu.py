"""pynetdicom as the SCU, dicombus as the SCP: real associations on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, config, evt
from dicombus.sop_class import (
    CTImageStorage,
    MRImageStorage,
    Verification,
)
from helpers import STORE_CASES as COMMON_STORE_CASES
from helpers import (
    WAIT,
    StoreRecorder,
    context_outcomes,
    ct_dataset,
    dicombus_storage_scp,
    import_peer,
    multiframe_dataset,
    part10_dataset_bytes,
    pdata_lengths,
    pydicom_test_file,
    small_dataset,
    write_part10,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

pynetdicom = import_peer("pynetdicom")
dsutils = import_peer("pynetdicom.dsutils")


def associate(port: int, *contexts: tuple[str, list[str] | None], **kwargs: Any) -> Any:
    """A pynetdicom association requesting ``contexts`` ((abstract syntax, syntaxes))."""
    ae = pynetdicom.AE("PYNETDICOM")
    for abstract_syntax, syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, syntaxes)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMBUS", **kwargs)
    assert assoc.is_established
    return assoc


def pynetdicom_encoding(ds: Dataset, syntax: str) -> bytes:
    """What pynetdicom puts on the wire for ``ds`` in ``syntax``."""
    uid = UID(syntax)
    encoded: bytes = dsutils.encode(ds, uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated)
    return encoded


def test_pynetdicom_echo(serve: Callable[..., Any]) -> None:
    server = serve(dicombus_storage_scp())
    assoc = associate(server.server_address[1], (Verification, None))
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0x0000


STORE_CASES = {
    **COMMON_STORE_CASES,
    "multiframe-implicit-le": lambda: multiframe_dataset(8, ImplicitVRLittleEndian),
    "rle-lossless": lambda: dcmread(pydicom_test_file("MR_small_RLE.dcm")),
}


@pytest.mark.parametrize("make", STORE_CASES.values(), ids=STORE_CASES.keys())
def test_pynetdicom_store_reaches_handler_byte_identical(
    serve: Callable[..., Any], make: Callable[[], Dataset]
) -> None:
    ds = make()
    syntax = str(ds.file_meta.TransferSyntaxUID)
    seen: dict[str, Any] = {}

    def on_store(event: Any) -> int:
        seen["encoded"] = event.encoded_dataset(include_meta=False)
        seen["part10"] = event.encoded_dataset()
        seen["meta"] = event.file_meta
        seen["dataset"] = event.dataset
        seen["on_disk"] = event.dataset_path.read_bytes()
        return 0x0000

    ae = dicombus_storage_scp()
    ae.add_supported_context(ds.SOPClassUID, [syntax])  # compressed syntaxes are opt-in
    server = serve(ae, [(evt.EVT_C_STORE, on_store)])
    assoc = associate(server.server_address[1], (ds.SOPClassUID, [syntax]))
    status = assoc.send_c_store(ds)
    assoc.release()

    assert status.Status == 0x0000
    assert seen["encoded"] == pynetdicom_encoding(ds, syntax)
    assert seen["on_disk"] == seen["encoded"]
    assert seen["meta"].TransferSyntaxUID == syntax
    assert seen["meta"].MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert seen["part10"].endswith(seen["encoded"]) and seen["part10"][128:132] == b"DICM"
    received: Dataset = seen["dataset"]
    assert received.SOPInstanceUID == ds.SOPInstanceUID
    assert received.PixelData == ds.PixelData
    assert received.file_meta.TransferSyntaxUID == syntax


def test_pynetdicom_store_part10_file_is_saved_as_pynetdicom_would(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    """The pydicom 3 idiom in a handler: file_meta onto the dataset, then save_as."""
    ds = small_dataset(CTImageStorage, ExplicitVRLittleEndian)

    def on_store(event: Any) -> int:
        received = event.dataset
        received.file_meta = event.file_meta
        received.save_as(tmp_path / "saved.dcm", enforce_file_format=True)
        (tmp_path / "raw.dcm").write_bytes(event.encoded_dataset())
        return 0x0000

    server = serve(dicombus_storage_scp(), [(evt.EVT_C_STORE, on_store)])
    assoc = associate(server.server_address[1], (CTImageStorage, [ExplicitVRLittleEndian]))
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    for name in ("saved.dcm", "raw.dcm"):
        stored = dcmread(tmp_path / name)
        assert stored.SOPInstanceUID == ds.SOPInstanceUID
        assert stored.PixelData == ds.PixelData
        assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_pynetdicom_store_is_not_decoded_unless_asked(
    serve: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom streams a file path as on disk; a dataset pydicom cannot parse still reaches a
    handler that only wants the bytes, because nothing decodes it unasked."""
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    path = write_part10(small_dataset(CTImageStorage, ExplicitVRLittleEndian), tmp_path / "a.dcm")
    # (0011,1000) SQ of undefined length whose first item is cut short: pydicom raises on it.
    broken_tail = (
        bytes.fromhex("1100 0010 5351 0000 ffffffff")  # tag, "SQ", reserved, undefined length
        + bytes.fromhex("feff 00e0 10000000")  # item tag, length 16, and no item bytes
    )
    path.write_bytes(path.read_bytes() + broken_tail)
    seen: list[bytes] = []

    def on_store(event: Any) -> int:
        seen.append(event.encoded_dataset(include_meta=False))
        return 0x0000

    server = serve(dicombus_storage_scp(), [(evt.EVT_C_STORE, on_store)])
    assoc = associate(server.server_address[1], (CTImageStorage, [ExplicitVRLittleEndian]))
    status = assoc.send_c_store(path)
    assoc.release()
    assert status.Status == 0x0000
    assert seen == [part10_dataset_bytes(path)]
    assert seen[0].endswith(broken_tail)
    with pytest.raises(OSError):
        dcmread(path)  # a decode would have failed


def test_pynetdicom_store_spooled_to_dataset_path(
    serve: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With STORE_RECV_CHUNKED_DATASET the fragments go to a file as they arrive; the handler
    gets that file, and it is removed once the handler has returned."""
    monkeypatch.setattr(config, "STORE_RECV_CHUNKED_DATASET", True)
    ds = ct_dataset(ExplicitVRLittleEndian)
    seen: dict[str, Any] = {}

    def on_store(event: Any) -> int:
        seen["path"] = event.dataset_path
        seen["bytes"] = event.dataset_path.read_bytes()
        seen["pixels"] = event.dataset.PixelData
        return 0x0000

    server = serve(dicombus_storage_scp(), [(evt.EVT_C_STORE, on_store)])
    assoc = associate(server.server_address[1], (CTImageStorage, [ExplicitVRLittleEndian]))
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    assert seen["bytes"] == pynetdicom_encoding(ds, ExplicitVRLittleEndian)
    assert seen["pixels"] == ds.PixelData
    assert not seen["path"].exists()


def test_pynetdicom_sees_rejected_contexts(serve: Callable[..., Any]) -> None:
    ae = AE("DICOMBUS")
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    recorder = StoreRecorder()
    server = serve(ae, [(evt.EVT_C_STORE, recorder)])
    assoc = associate(
        server.server_address[1],
        (Verification, None),
        (MRImageStorage, None),  # not supported at all
        (CTImageStorage, [JPEGBaseline8Bit]),  # supported, but not in this syntax
        (CTImageStorage, [ExplicitVRLittleEndian]),
    )
    outcome = context_outcomes(assoc)
    accepted_ct = [c for c in assoc.accepted_contexts if c.abstract_syntax == CTImageStorage]
    with pytest.raises(ValueError):
        assoc.send_c_store(small_dataset(MRImageStorage))
    ds = small_dataset(CTImageStorage, ExplicitVRLittleEndian)
    status = assoc.send_c_store(ds)
    assoc.release()

    # PS3.8 Table 9-18: 0 acceptance, 3 abstract syntax / 4 transfer syntaxes not supported.
    assert outcome == sorted(
        [(Verification, 0), (MRImageStorage, 3), (CTImageStorage, 4), (CTImageStorage, 0)]
    )
    assert [c.transfer_syntax[0] for c in accepted_ct] == [ExplicitVRLittleEndian]
    assert status.Status == 0x0000
    assert list(recorder.by_uid()) == [ds.SOPInstanceUID]


def test_pynetdicom_release_is_seen_by_our_server(serve: Callable[..., Any]) -> None:
    released = threading.Event()
    server = serve(dicombus_storage_scp(), [(evt.EVT_RELEASED, lambda event: released.set())])
    assoc = associate(server.server_address[1], (Verification, None))
    assoc.release()
    assert assoc.is_released
    assert released.wait(WAIT)


def test_pynetdicom_abort_then_our_server_keeps_serving(serve: Callable[..., Any]) -> None:
    aborted = threading.Event()
    server = serve(dicombus_storage_scp(), [(evt.EVT_ABORTED, lambda event: aborted.set())])
    port = server.server_address[1]
    first = associate(port, (Verification, None))
    first.abort()
    assert first.is_aborted
    assert aborted.wait(WAIT)

    second = associate(port, (Verification, None))
    assert second.send_c_echo().Status == 0x0000
    second.release()
    assert second.is_released


def test_pynetdicom_fragments_reassembled_within_our_max_pdu(serve: Callable[..., Any]) -> None:
    """We advertise 4096 bytes; pynetdicom cuts 512 KB into ~130 P-DATA-TF PDUs, which we take
    as they come and reassemble byte for byte."""
    ds = ct_dataset(ExplicitVRLittleEndian)
    recorder = StoreRecorder()
    lengths: list[int] = []

    server = serve(
        dicombus_storage_scp(maximum_pdu_size=4096),
        [(evt.EVT_C_STORE, recorder), (evt.EVT_PDU_RECV, pdata_lengths(lengths))],
    )
    assoc = associate(
        server.server_address[1], (CTImageStorage, [ExplicitVRLittleEndian]), max_pdu=4096
    )
    assert assoc.acceptor.maximum_length == 4096
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()

    received = recorder.by_uid()[ds.SOPInstanceUID]
    assert received.dataset_bytes == pynetdicom_encoding(ds, ExplicitVRLittleEndian)
    assert len(lengths) > len(received.dataset_bytes) // 4096
    assert max(lengths) <= 4096


def test_pynetdicom_several_stores_on_one_association(serve: Callable[..., Any]) -> None:
    datasets = [
        small_dataset(CTImageStorage, ExplicitVRLittleEndian),
        small_dataset(MRImageStorage, ImplicitVRLittleEndian),
        multiframe_dataset(4, ExplicitVRLittleEndian),
    ]
    recorder = StoreRecorder()
    server = serve(dicombus_storage_scp(), [(evt.EVT_C_STORE, recorder)])
    assoc = associate(
        server.server_address[1],
        *[(ds.SOPClassUID, [str(ds.file_meta.TransferSyntaxUID)]) for ds in datasets],
    )
    statuses = [assoc.send_c_store(ds, msg_id=n + 1).Status for n, ds in enumerate(datasets)]
    assoc.release()
    assert statuses == [0x0000] * len(datasets)
    received = recorder.by_uid()
    for ds in datasets:
        syntax = str(ds.file_meta.TransferSyntaxUID)
        assert received[ds.SOPInstanceUID].transfer_syntax == syntax
        assert received[ds.SOPInstanceUID].dataset_bytes == pynetdicom_encoding(ds, syntax)
