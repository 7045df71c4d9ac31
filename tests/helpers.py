"""Test helpers shared across packages: free ports, small datasets, Part 10 files.

The dataset factories build instances in memory (no test data downloads):
``small_dataset`` (~2 KB), ``ct_dataset`` (512 KB of CT-like pixel data) and
``multiframe_dataset``. Each call makes fresh UIDs so instances never collide
in a storage folder.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
from dicombus import AE, AllStoragePresentationContexts
from dicombus.dataset_codec import read_part10_header
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
SECONDARY_CAPTURE_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.2")
VERIFICATION = UID("1.2.840.10008.1.1")

# Every wait in a test is bounded; a peer that needs longer than this to open
# its port, or to report an event from its association thread, is broken, not slow.
STARTUP_TIMEOUT = 10.0
WAIT = 5.0


# DCMTK's network tools. pynetdicom installs console scripts with the same
# names (its "apps"), and they may come first on PATH; for these we insist on
# the binary that reports itself as DCMTK.
DCMTK_TOOLS = frozenset(
    {"echoscu", "storescu", "storescp", "findscu", "movescu", "getscu", "termscu", "dcmqrscp"}
)


def peer_missing(message: str) -> NoReturn:
    """A real peer (package, tool, server) that a test needs is not there.

    Skips the test on a developer machine; fails it when the environment variable ``CI`` is
    set to anything non-empty (``true``, ``1``, ...), because CI installs every peer and a
    skipped interop test there would pass without having run. Works at module level too
    (failing there is a collection error). Every test that needs a peer goes through this
    (``import_peer``, ``require_tool``) rather than ``pytest.skip`` or ``pytest.importorskip``.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so every peer must be installed", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def import_peer(name: str) -> ModuleType:
    """Import a third-party peer package, or ``peer_missing`` (the one ``importorskip``)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        peer_missing(f"the peer package {name!r} is not installed")


def _is_dcmtk(path: str) -> bool:
    try:
        with open(path, "rb") as executable:
            if executable.read(2) == b"#!":
                return False  # a script, as pynetdicom's apps are; DCMTK's tools are binaries
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "$dcmtk:" in result.stdout


@functools.cache
def find_tool(name: str) -> str | None:
    """The path of an external tool on PATH (for DCMTK's names, DCMTK's binary), or None."""
    if name not in DCMTK_TOOLS:
        return shutil.which(name)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which(name, path=folder) if folder else None
        if candidate and _is_dcmtk(str(Path(candidate).resolve())):
            return str(Path(candidate).resolve())
    return None


def require_tool(name: str) -> str:
    """``require_tool("storescp")`` -> the tool's path, or ``peer_missing``."""
    path = find_tool(name)
    if path is None:
        peer_missing(f"the external tool {name!r} is not installed (or not on PATH)")
    return path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    try:
        return not status.read_text().rsplit(") ", 1)[-1].startswith("Z")
    except FileNotFoundError:  # reaped meanwhile
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for tools that need a number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = STARTUP_TIMEOUT) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout} s"
                ) from None
            time.sleep(0.02)


def _image(
    sop_class: UID,
    *,
    modality: str,
    rows: int,
    columns: int,
    bits: int,
    frames: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "Interop^Test"
    ds.PatientID = "DICOMBUS-1"
    ds.StudyDate = "20240102"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    size = rows * columns * (bits // 8) * frames
    # A repeating ramp: deterministic, and not all zeros, so a byte lost or
    # moved in reassembly changes the comparison.
    ds.PixelData = bytes(i % 251 for i in range(size))
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return ds


def small_dataset(
    sop_class: UID = CT_IMAGE_STORAGE, transfer_syntax: str = ExplicitVRLittleEndian
) -> Dataset:
    """A ~2 KB image instance of ``sop_class`` (32 x 48, 8 bits)."""
    modality = {CT_IMAGE_STORAGE: "CT", MR_IMAGE_STORAGE: "MR"}.get(sop_class, "OT")
    return _image(
        sop_class,
        modality=modality,
        rows=32,
        columns=48,
        bits=8,
        transfer_syntax=transfer_syntax,
    )


def ct_dataset(transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """A CT-like instance with 512 x 512 x 16-bit pixel data (~512 KB)."""
    ds = _image(
        CT_IMAGE_STORAGE,
        modality="CT",
        rows=512,
        columns=512,
        bits=16,
        transfer_syntax=transfer_syntax,
    )
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.SliceThickness = 1.25
    return ds


def multiframe_dataset(frames: int = 8, transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """A Multi-frame Grayscale Byte Secondary Capture instance (``frames`` x 64 x 64)."""
    return _image(
        MULTIFRAME_GRAYSCALE_BYTE_SC_STORAGE,
        modality="OT",
        rows=64,
        columns=64,
        bits=8,
        frames=frames,
        transfer_syntax=transfer_syntax,
    )


def with_sequence_and_private_element(ds: Dataset) -> Dataset:
    """``ds`` with what Implicit and Explicit VR encode differently: a nested sequence
    (items with and without VRs) and a private element (UN in Implicit VR)."""
    code = Dataset()
    code.CodeValue = "CT.ABD"
    code.CodingSchemeDesignator = "99LOCAL"
    ds.ProcedureCodeSequence = [code]
    ds.private_block(0x0009, "DICOMBUS TEST", create=True).add_new(0x01, "LO", "private value")
    return ds


def pydicom_test_file(name: str) -> Path:
    """One of the small test files that ship inside pydicom (no download)."""
    found = get_testdata_file(name)
    if not isinstance(found, str):
        raise FileNotFoundError(f"pydicom does not ship the test file {name!r}")
    return Path(found)


def write_part10(ds: Dataset, path: Path) -> Path:
    """Save ``ds`` as a Part 10 file in the transfer syntax of its file meta."""
    ds.save_as(path, enforce_file_format=True)
    return path


def part10_dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta Information: the dataset as stored."""
    offset = read_part10_header(path).dataset_offset
    return path.read_bytes()[offset:]


def context_outcomes(assoc: Any) -> list[tuple[str, int]]:
    """(abstract syntax, PS3.8 Table 9-18 result) of every negotiated context, sorted; works
    on a dicombus or a pynetdicom association."""
    contexts = [*assoc.accepted_contexts, *assoc.rejected_contexts]
    return sorted((str(c.abstract_syntax), int(c.result)) for c in contexts)


def dicombus_storage_scp(**settings: Any) -> AE:
    """A dicombus AE supporting every storage SOP class and Verification; ``settings`` are set
    as AE attributes (``maximum_pdu_size=4096``)."""
    ae = AE("DICOMBUS")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(VERIFICATION)
    for name, value in settings.items():
        setattr(ae, name, value)
    return ae


def pdata_lengths(into: list[int]) -> Callable[[Any], None]:
    """An EVT_PDU_RECV / EVT_PDU_SENT handler for either stack: appends the PDU length of
    every P-DATA-TF to ``into``."""

    def collect(event: Any) -> None:
        pdu = event.pdu
        if pdu.pdu_type == 0x04:
            # dicombus calls the PDU length field body_length, pynetdicom pdu_length.
            into.append(pdu.body_length if hasattr(pdu, "body_length") else pdu.pdu_length)

    return collect


@dataclass(frozen=True, slots=True)
class ReceivedInstance:
    sop_instance_uid: str
    transfer_syntax: str
    dataset_bytes: bytes


class StoreRecorder:
    """An EVT_C_STORE handler for either stack (same Event API): records each instance
    as it arrived, still encoded, and answers Success."""

    def __init__(self) -> None:
        self.received: list[ReceivedInstance] = []
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> int:
        instance = ReceivedInstance(
            sop_instance_uid=str(event.request.AffectedSOPInstanceUID),
            transfer_syntax=str(event.context.transfer_syntax),
            dataset_bytes=event.encoded_dataset(include_meta=False),
        )
        with self._lock:
            self.received.append(instance)
        return 0x0000

    def by_uid(self) -> dict[str, ReceivedInstance]:
        with self._lock:
            return {instance.sop_instance_uid: instance for instance in self.received}


@dataclass
class DcmtkProcess:
    """A DCMTK tool running in the background, with its listening port and output folder."""

    process: subprocess.Popen[str]
    port: int
    output_dir: Path

    def stop(self) -> str:
        """Terminate the process (if still running) and return what it logged."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate(timeout=10)
        return output


def unhex(dump: str) -> bytes:
    """Bytes from an annotated hex dump: pairs of hex digits, '#' starts a comment."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in dump.splitlines()))


# Instances to send to a peer, by test id: a small image in each uncompressed
# transfer syntax, 512 KB of pixel data, and a JPEG-compressed file as DCMTK wrote it.
STORE_CASES: dict[str, Callable[[], Dataset]] = {
    "ct-explicit-le": lambda: small_dataset(CT_IMAGE_STORAGE, ExplicitVRLittleEndian),
    "mr-implicit-le": lambda: small_dataset(MR_IMAGE_STORAGE, ImplicitVRLittleEndian),
    "sc-deflated": lambda: small_dataset(
        SECONDARY_CAPTURE_IMAGE_STORAGE, DeflatedExplicitVRLittleEndian
    ),
    "ct-big-endian": lambda: small_dataset(CT_IMAGE_STORAGE, ExplicitVRBigEndian),
    "ct-512k-explicit-le": lambda: ct_dataset(ExplicitVRLittleEndian),
    "jpeg-baseline": lambda: dcmread(pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm")),
}


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """``folder``, made immutable (chattr +i) until the block ends.

    The tests run as root, which ignores permission bits: chmod cannot make a folder
    unwritable for it. An immutable folder refuses even root any new entry (only
    CAP_LINUX_IMMUTABLE can clear the flag), as a read-only mount would.
    """
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(folder)], check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True, capture_output=True)
