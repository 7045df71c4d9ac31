"""dicombus as the SCU, pynetdicom as the SCP: real associations on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE
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
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

pynetdicom = import_peer("pynetdicom")
dsutils = import_peer("pynetdicom.dsutils")

STORAGE_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
]


def pynetdicom_scp(**settings: Any) -> Any:
    """A pynetdicom storage + verification SCP AE."""
    ae = pynetdicom.AE("PYNETDICOM")
    for context in pynetdicom.StoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, STORAGE_SYNTAXES)
    ae.add_supported_context(Verification)
    for name, value in settings.items():
        setattr(ae, name, value)
    return ae


def associate(port: int, *contexts: tuple[str, list[str] | None], **settings: Any) -> Any:
    """A dicombus association requesting ``contexts`` ((abstract syntax, syntaxes))."""
    ae = AE("DICOMBUS")
    for name, value in settings.items():
        setattr(ae, name, value)
    for abstract_syntax, syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, syntaxes)
    return ae.associate("127.0.0.1", port, ae_title="PYNETDICOM")


def plain_encoding(ds: Dataset, syntax: str) -> bytes:
    """pynetdicom's encoding of ``ds`` in ``syntax``, before any deflate."""
    uid = UID(syntax)
    encoded: bytes = dsutils.encode(ds, uid.is_implicit_VR, uid.is_little_endian, False)
    return encoded


def test_echo_to_pynetdicom(serve: Callable[..., Any]) -> None:
    echoed = threading.Event()

    def on_echo(event: Any) -> int:
        echoed.set()
        return 0x0000

    server = serve(pynetdicom_scp(), [(pynetdicom.evt.EVT_C_ECHO, on_echo)])
    assoc = associate(server.server_address[1], (Verification, None))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert echoed.is_set()


STORE_CASES = {
    **COMMON_STORE_CASES,
    "multiframe-explicit-le": lambda: multiframe_dataset(8, ExplicitVRLittleEndian),
}


@pytest.mark.parametrize("make", STORE_CASES.values(), ids=STORE_CASES.keys())
def test_store_dataset_to_pynetdicom(
    serve: Callable[..., Any], make: Callable[[], Dataset]
) -> None:
    ds = make()
    syntax = str(ds.file_meta.TransferSyntaxUID)
    decoded: list[Dataset] = []
    recorder = StoreRecorder()

    def on_store(event: Any) -> int:
        decoded.append(event.dataset)
        return recorder(event)

    server = serve(pynetdicom_scp(), [(pynetdicom.evt.EVT_C_STORE, on_store)])
    assoc = associate(server.server_address[1], (ds.SOPClassUID, [syntax]))
    status = assoc.send_c_store(ds)
    assoc.release()

    assert status.Status == 0x0000
    received = recorder.by_uid()[ds.SOPInstanceUID]
    assert received.transfer_syntax == syntax
    wire = received.dataset_bytes
    if UID(syntax).is_deflated:
        # Deflate output depends on the zlib call, so compare what it inflates to.
        wire = zlib.decompress(wire, -zlib.MAX_WBITS)
    assert wire == plain_encoding(ds, syntax)
    assert decoded[0].SOPInstanceUID == ds.SOPInstanceUID
    assert decoded[0].PixelData == ds.PixelData


FILE_CASES = {
    "explicit-le": (lambda: small_dataset(CTImageStorage, ExplicitVRLittleEndian), None),
    "implicit-le-multiframe": (lambda: multiframe_dataset(4, ImplicitVRLittleEndian), None),
    "deflated": (lambda: small_dataset(CTImageStorage, DeflatedExplicitVRLittleEndian), None),
    "jpeg-baseline": (lambda: dcmread(pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm")), None),
    "converted-to-accepted-syntax": (
        lambda: small_dataset(MRImageStorage, ImplicitVRLittleEndian),
        ExplicitVRLittleEndian,
    ),
}


@pytest.mark.parametrize(("make", "offered"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_store_file_path_to_pynetdicom(
    serve: Callable[..., Any],
    tmp_path: Path,
    make: Callable[[], Dataset],
    offered: str | None,
) -> None:
    """A file in an accepted syntax goes out as its bytes lie on disk; otherwise it is converted."""
    ds = make()
    path = write_part10(ds, tmp_path / "instance.dcm")
    syntax = offered or str(ds.file_meta.TransferSyntaxUID)
    recorder = StoreRecorder()
    server = serve(pynetdicom_scp(), [(pynetdicom.evt.EVT_C_STORE, recorder)])
    assoc = associate(server.server_address[1], (ds.SOPClassUID, [syntax]))
    status = assoc.send_c_store(path)
    assoc.release()

    assert status.Status == 0x0000
    received = recorder.by_uid()[ds.SOPInstanceUID]
    assert received.transfer_syntax == syntax
    if offered is None:
        assert received.dataset_bytes == part10_dataset_bytes(path)
    else:
        assert received.dataset_bytes == plain_encoding(dcmread(path), syntax)


def test_rejected_by_pynetdicom_require_calling_aet(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(pynetdicom_scp(require_calling_aet=["ONLY-THIS-ONE"]))
    with caplog.at_level(logging.INFO, logger="dicombus"):
        assoc = associate(server.server_address[1], (Verification, None))
    assert assoc.is_rejected
    assert not assoc.is_established
    assert (assoc.rejection.result, assoc.rejection.source, assoc.rejection.reason) == (1, 1, 3)
    rejected = [r for r in caplog.records if "Association Rejected" in r.getMessage()]
    assert rejected, caplog.text
    assert rejected[0].levelno == logging.ERROR
    assert "calling AE title not recognized" in rejected[0].getMessage()
    with pytest.raises(RuntimeError):
        assoc.send_c_echo()


def test_contexts_rejected_by_pynetdicom(serve: Callable[..., Any]) -> None:
    ae = pynetdicom.AE("PYNETDICOM")
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
    recorder = StoreRecorder()
    server = serve(ae, [(pynetdicom.evt.EVT_C_STORE, recorder)])
    assoc = associate(
        server.server_address[1],
        (Verification, None),  # not supported by this SCP
        (CTImageStorage, [ImplicitVRLittleEndian]),  # supported, not in this syntax
        (CTImageStorage, [ExplicitVRLittleEndian]),
    )
    assert assoc.is_established
    outcome = context_outcomes(assoc)
    # PS3.8 Table 9-18: 0 acceptance, 3 abstract syntax / 4 transfer syntaxes not supported.
    assert outcome == sorted([(Verification, 3), (CTImageStorage, 4), (CTImageStorage, 0)])
    with pytest.raises(ValueError):
        assoc.send_c_echo()
    with pytest.raises(ValueError):
        assoc.send_c_store(small_dataset(MRImageStorage))
    # An implicit VR dataset goes out in the explicit VR context that was accepted.
    ds = small_dataset(CTImageStorage, ImplicitVRLittleEndian)
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    received = recorder.by_uid()[ds.SOPInstanceUID]
    assert received.transfer_syntax == ExplicitVRLittleEndian
    assert received.dataset_bytes == plain_encoding(ds, ExplicitVRLittleEndian)
    assert MRImageStorage not in {c.abstract_syntax for c in assoc.accepted_contexts}


def test_release_with_pynetdicom(serve: Callable[..., Any]) -> None:
    released = threading.Event()
    server = serve(pynetdicom_scp(), [(pynetdicom.evt.EVT_RELEASED, lambda e: released.set())])
    assoc = associate(server.server_address[1], (Verification, None))
    assoc.release()
    assert assoc.is_released and not assoc.is_established and not assoc.is_aborted
    assert released.wait(WAIT)
    assert not assoc.is_alive()


def test_abort_seen_by_pynetdicom(serve: Callable[..., Any]) -> None:
    aborted = threading.Event()
    server = serve(pynetdicom_scp(), [(pynetdicom.evt.EVT_ABORTED, lambda e: aborted.set())])
    assoc = associate(server.server_address[1], (Verification, None))
    assoc.abort()
    assert assoc.is_aborted and not assoc.is_established
    assert aborted.wait(WAIT)


def test_pynetdicom_scp_aborts_on_us(serve: Callable[..., Any]) -> None:
    """The peer's C-STORE handler aborts: our send_c_store returns an empty status promptly."""

    def abort_instead(event: Any) -> int:
        event.assoc.abort()
        return 0x0000

    server = serve(pynetdicom_scp(), [(pynetdicom.evt.EVT_C_STORE, abort_instead)])
    assoc = associate(server.server_address[1], (CTImageStorage, [ExplicitVRLittleEndian]))
    status = assoc.send_c_store(small_dataset(CTImageStorage))
    assert status == Dataset()
    assoc.join(WAIT)
    assert assoc.is_aborted and not assoc.is_established
    assert not assoc.is_alive()


def test_we_send_within_pynetdicom_max_pdu(serve: Callable[..., Any]) -> None:
    """pynetdicom advertises 4096 bytes: our P-DATA-TF PDUs never exceed it (seen on its side)."""
    ds = ct_dataset(ExplicitVRLittleEndian)
    recorder = StoreRecorder()
    lengths: list[int] = []

    server = serve(
        pynetdicom_scp(maximum_pdu_size=4096),
        [
            (pynetdicom.evt.EVT_C_STORE, recorder),
            (pynetdicom.evt.EVT_PDU_RECV, pdata_lengths(lengths)),
        ],
    )
    assoc = associate(server.server_address[1], (CTImageStorage, [ExplicitVRLittleEndian]))
    assert assoc.acceptor.maximum_length == 4096
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()

    received = recorder.by_uid()[ds.SOPInstanceUID]
    assert received.dataset_bytes == plain_encoding(ds, ExplicitVRLittleEndian)
    assert max(lengths) <= 4096
    assert len(lengths) > len(received.dataset_bytes) // 4096
