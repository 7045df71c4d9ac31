"""DCMTK's echoscu, storescu and storescp against dicombus: real associations on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, evt
from dicombus.dataset_codec import decode_dataset, encode_dataset
from dicombus.sop_class import (
    CTImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)
from helpers import (
    WAIT,
    DcmtkProcess,
    StoreRecorder,
    ct_dataset,
    dicombus_storage_scp,
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
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

RunTool = Callable[..., subprocess.CompletedProcess[str]]
SMALL_PDU = 4096  # DCMTK's smallest --max-pdu
DATASET_TRAILING_PADDING = 0xFFFCFFFC


def assert_same_instance(received: bytes, syntax: str, path: Path) -> None:
    """The bytes that arrived decode to the file's dataset. (storescu re-encodes what it read,
    so its bytes match the file's only where the file was in DCMTK's canonical form.)"""
    original = dcmread(path)
    decoded = decode_dataset(received, syntax)
    del original.file_meta
    # PS3.10 7.2: storescu drops Data Set Trailing Padding, which carries no information.
    original.pop(DATASET_TRAILING_PADDING, None)
    assert decoded == original


def dcmtk_peer_scp(**settings: Any) -> AE:
    ae = dicombus_storage_scp(**settings)
    ae.add_supported_context(SecondaryCaptureImageStorage, JPEGBaseline8Bit)  # for storescu -xy
    return ae


# -- DCMTK SCUs -> dicombus SCP ----------------------------------------------------------


def test_dcmtk_echoscu(serve: Callable[..., Any], run_tool: RunTool) -> None:
    echoes: list[int] = []

    def on_echo(event: Any) -> int:
        echoes.append(event.request.MessageID)
        return 0x0000

    server = serve(dcmtk_peer_scp(), [(evt.EVT_C_ECHO, on_echo)])
    result = run_tool("echoscu", "-aec", "DICOMBUS", "127.0.0.1", str(server.server_address[1]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert echoes == [1]


@pytest.mark.parametrize(
    ("our_max_pdu", "storescu_options"),
    [
        (SMALL_PDU, ()),
        (262_144, ("--max-send-pdu", str(SMALL_PDU), "--max-pdu", str(SMALL_PDU))),
    ],
    ids=["we-advertise-4096", "storescu-sends-4096"],
)
def test_dcmtk_storescu_directory_in_small_pdus(
    serve: Callable[..., Any],
    run_tool: RunTool,
    tmp_path: Path,
    our_max_pdu: int,
    storescu_options: tuple[str, ...],
) -> None:
    """storescu sends a folder tree (+sd +r) in 4096-byte PDUs (our limit, or its own), so the
    512 KB CT arrives in ~130 P-DATA-TF PDUs that we reassemble byte for byte."""
    files = [
        write_part10(small_dataset(CTImageStorage), tmp_path / "a.dcm"),
        write_part10(ct_dataset(), tmp_path / "b.dcm"),
    ]
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    files += [
        write_part10(
            small_dataset(MRImageStorage, ImplicitVRLittleEndian), tmp_path / "sub" / "c.dcm"
        ),
        write_part10(multiframe_dataset(4), tmp_path / "sub" / "deeper" / "d.dcm"),
    ]
    recorder = StoreRecorder()
    lengths: list[int] = []
    server = serve(
        dcmtk_peer_scp(maximum_pdu_size=our_max_pdu),
        [(evt.EVT_C_STORE, recorder), (evt.EVT_PDU_RECV, pdata_lengths(lengths))],
    )
    result = run_tool(
        "storescu",
        *storescu_options,
        "-aec",
        "DICOMBUS",
        "+sd",
        "+r",
        "-R",  # only the contexts these files need
        "127.0.0.1",
        str(server.server_address[1]),
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr

    received = recorder.by_uid()
    assert len(received) == len(files)
    for path in files:
        instance = received[dcmread(path, stop_before_pixels=True).SOPInstanceUID]
        assert_same_instance(instance.dataset_bytes, instance.transfer_syntax, path)
    # pydicom and DCMTK write these explicit VR files alike: not a byte moved on the way.
    for path in (files[0], files[1], files[3]):
        uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert received[uid].dataset_bytes == part10_dataset_bytes(path)
    assert max(lengths) <= SMALL_PDU
    assert len(lengths) > 512 * 1024 // SMALL_PDU


@pytest.mark.parametrize(
    ("option", "name", "syntax"),
    [
        ("-xy", "SC_rgb_jpeg_dcmtk.dcm", JPEGBaseline8Bit),
        ("-xd", "image_dfl.dcm", DeflatedExplicitVRLittleEndian),
        ("-xs", "CT_small.dcm", ExplicitVRLittleEndian),
    ],
    ids=["jpeg-baseline", "deflated", "lossless-proposed-uncompressed-sent"],
)
def test_dcmtk_storescu_transfer_syntax_options(
    serve: Callable[..., Any],
    run_tool: RunTool,
    tmp_path: Path,
    option: str,
    name: str,
    syntax: str,
) -> None:
    path = Path(shutil.copy(pydicom_test_file(name), tmp_path / name))
    recorder = StoreRecorder()
    server = serve(dcmtk_peer_scp(), [(evt.EVT_C_STORE, recorder)])
    port = str(server.server_address[1])
    result = run_tool("storescu", "-aec", "DICOMBUS", option, "127.0.0.1", port, str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    (instance,) = recorder.received
    assert instance.transfer_syntax == syntax
    assert_same_instance(instance.dataset_bytes, syntax, path)


def test_dcmtk_storescu_abort_then_our_server_keeps_serving(
    serve: Callable[..., Any], run_tool: RunTool, tmp_path: Path
) -> None:
    aborted = threading.Event()
    recorder = StoreRecorder()
    server = serve(
        dcmtk_peer_scp(), [(evt.EVT_C_STORE, recorder), (evt.EVT_ABORTED, lambda e: aborted.set())]
    )
    port = str(server.server_address[1])
    path = write_part10(small_dataset(CTImageStorage), tmp_path / "a.dcm")
    result = run_tool("storescu", "-aec", "DICOMBUS", "--abort", "127.0.0.1", port, str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert aborted.wait(WAIT)
    assert len(recorder.received) == 1

    again = run_tool("echoscu", "-aec", "DICOMBUS", "127.0.0.1", port)
    assert again.returncode == 0, again.stdout + again.stderr


# -- dicombus SCU -> DCMTK storescp ------------------------------------------------------


def _stored_by_uid(peer: DcmtkProcess) -> dict[str, Path]:
    return {
        str(dcmread(path, stop_before_pixels=True).SOPInstanceUID): path
        for path in peer.output_dir.iterdir()
    }


def test_store_to_dcmtk_storescp_bit_preserving(
    storescp: Callable[..., DcmtkProcess], tmp_path: Path
) -> None:
    """storescp +B writes what it received as is; every file it wrote holds exactly the dataset
    bytes we sent, and storescp's --max-pdu 4096 is never exceeded."""
    datasets = [
        small_dataset(CTImageStorage, ExplicitVRLittleEndian),
        small_dataset(MRImageStorage, ImplicitVRLittleEndian),
        small_dataset(CTImageStorage, DeflatedExplicitVRLittleEndian),
        ct_dataset(ExplicitVRLittleEndian),
        multiframe_dataset(8, ExplicitVRLittleEndian),
    ]
    jpeg = Path(shutil.copy(pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm"), tmp_path / "jpeg.dcm"))
    on_disk = write_part10(small_dataset(CTImageStorage), tmp_path / "ct.dcm")
    peer = storescp("+B", "+xa", "--max-pdu", str(SMALL_PDU), "-aet", "STORESCP")

    ae = AE("DICOMBUS")
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, str(ds.file_meta.TransferSyntaxUID))
    ae.add_requested_context(SecondaryCaptureImageStorage, JPEGBaseline8Bit)
    lengths: list[int] = []
    assoc = ae.associate(
        "127.0.0.1",
        peer.port,
        ae_title="STORESCP",
        evt_handlers=[(evt.EVT_PDU_SENT, pdata_lengths(lengths))],
    )
    assert assoc.is_established
    assert assoc.remote.maximum_length == SMALL_PDU
    sent: dict[str, bytes] = {}
    for ds in datasets:
        assert assoc.send_c_store(ds).Status == 0x0000
        sent[ds.SOPInstanceUID] = encode_dataset(ds, ds.file_meta.TransferSyntaxUID)
    for path in (jpeg, on_disk):
        assert assoc.send_c_store(path).Status == 0x0000
        sent[dcmread(path, stop_before_pixels=True).SOPInstanceUID] = part10_dataset_bytes(path)
    assoc.release()
    assert assoc.is_released

    stored = _stored_by_uid(peer)
    assert set(stored) == set(sent)
    for uid, data in sent.items():
        assert part10_dataset_bytes(stored[uid]) == data, uid
    assert max(lengths) <= SMALL_PDU


def odd_deflate_dataset() -> Dataset:
    """A deflated-syntax dataset whose raw deflate stream has an odd length."""
    ds = small_dataset(CTImageStorage, DeflatedExplicitVRLittleEndian)
    for length in range(2, 130, 2):  # bounded: about half of all lengths come out odd
        ds.ImageComments = "x" * length
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = encode_dataset(ds, ExplicitVRLittleEndian)
        if len(compressor.compress(raw) + compressor.flush()) % 2:
            return ds
    raise AssertionError("no odd-length deflate stream found")


def test_store_odd_length_deflate_stream_to_dcmtk(
    storescp: Callable[..., DcmtkProcess],
) -> None:
    """DCMTK aborts on an odd-length data set fragment; we pad the deflate stream to even."""
    ds = odd_deflate_dataset()
    peer = storescp("+B", "+xd")
    ae = AE("DICOMBUS")
    ae.add_requested_context(CTImageStorage, DeflatedExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title="STORESCP")
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    assert assoc.is_released
    (stored,) = peer.output_dir.iterdir()
    assert dcmread(stored).ImageComments == ds.ImageComments
    assert part10_dataset_bytes(stored) == encode_dataset(ds, DeflatedExplicitVRLittleEndian)


def test_dcmtk_storescp_rejects_us(storescp: Callable[..., DcmtkProcess]) -> None:
    peer = storescp("--refuse")
    ae = AE("DICOMBUS")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title="STORESCP")
    assert assoc.is_rejected and not assoc.is_established
    assoc.join(WAIT)
    assert not assoc.is_alive()


def test_dcmtk_storescp_aborts_on_us(storescp: Callable[..., DcmtkProcess]) -> None:
    """storescp --abort-after drops the association instead of answering our C-STORE."""
    peer = storescp("--abort-after")
    ae = AE("DICOMBUS")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title="STORESCP")
    assert assoc.is_established
    assert assoc.send_c_store(small_dataset(CTImageStorage)) == Dataset()
    assoc.join(WAIT)
    assert assoc.is_aborted and not assoc.is_alive()
