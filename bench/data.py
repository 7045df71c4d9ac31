"""The benchmark's data sets: DICOM Part 10 files generated once and cached.

Three shapes of C-STORE traffic, all Explicit VR Little Endian so that every
SCU can send the files as they are and every SCP receives the same bytes:

- ``small``: tiny instances (~2 KB), where per-message overhead dominates;
- ``ct``: 512x512 16-bit CT slices (~0.5 MB), the everyday bulk of a PACS;
- ``multiframe``: 16-bit multi-frame instances (64 MB, 16 MB with --quick),
  where copying and writing bytes dominate.

Pixel values are random noise: nothing on the path decodes or compresses them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# PS3.4 B.5: Multi-frame Grayscale Word Secondary Capture Image Storage, the
# simplest 16-bit multi-frame IOD (no functional groups needed).
MULTIFRAME_WORD_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"

# Bump when the generated files change shape, so old caches are not reused.
_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSetSpec:
    """How many instances of which shape one C-STORE row sends."""

    name: str
    title: str
    count: int
    sop_class: str
    rows: int
    columns: int
    frames: int

    @property
    def pixel_bytes(self) -> int:
        return self.rows * self.columns * self.frames * 2


def specs(*, quick: bool) -> dict[str, DataSetSpec]:
    """The three data sets; --quick sends fewer and smaller instances."""
    return {
        spec.name: spec
        for spec in (
            DataSetSpec(
                name="small",
                title="~2 KB instances",
                count=200 if quick else 500,
                sop_class=CT_IMAGE_STORAGE,
                rows=24,
                columns=24,
                frames=1,
            ),
            DataSetSpec(
                name="ct",
                title="512x512x16-bit CT (~0.5 MB)",
                count=60 if quick else 200,
                sop_class=CT_IMAGE_STORAGE,
                rows=512,
                columns=512,
                frames=1,
            ),
            DataSetSpec(
                name="multiframe",
                title=f"multi-frame ({'16' if quick else '64'} MB)",
                count=2 if quick else 3,
                sop_class=MULTIFRAME_WORD_SC_STORAGE,
                rows=512,
                columns=512,
                frames=32 if quick else 128,
            ),
        )
    }


def ensure_files(spec: DataSetSpec, root: Path) -> list[Path]:
    """The spec's files under ``root``, generated unless an identical set is cached there."""
    folder = root / f"{spec.name}-{spec.count}x{spec.rows}x{spec.columns}x{spec.frames}"
    manifest = folder / "manifest.json"
    wanted = {"version": _FORMAT_VERSION, "spec": asdict(spec)}
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        files = [folder / name for name in recorded.get("files", [])]
        if recorded.get("key") == wanted and all(path.is_file() for path in files):
            return files
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.dcm"):
        stale.unlink()
    pixels = _noise(spec)
    series_uid = generate_uid()
    files = []
    for index in range(spec.count):
        path = folder / f"{index:05d}.dcm"
        _instance(spec, index, pixels, series_uid).save_as(path, enforce_file_format=True)
        files.append(path)
    manifest.write_text(json.dumps({"key": wanted, "files": [p.name for p in files]}))
    return files


def _noise(spec: DataSetSpec) -> bytes:
    generator = np.random.default_rng(seed=1234)
    values = generator.integers(0, 4096, size=spec.pixel_bytes // 2, dtype=np.uint16)
    return values.astype("<u2").tobytes()


def _instance(spec: DataSetSpec, index: int, pixels: bytes, series_uid: str) -> Dataset:
    sop_instance = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(spec.sop_class)
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = spec.sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT" if spec.sop_class == CT_IMAGE_STORAGE else "OT"
    ds.PatientName = "BENCH^DICOMBUS"
    ds.PatientID = "BENCH-0001"
    ds.StudyDate = "20240101"
    ds.InstanceNumber = index + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if spec.frames > 1:
        ds.NumberOfFrames = spec.frames
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"
    return ds
