"""A small, fixed archive of instances for the Query/Retrieve tests.

Three patients, four studies, six series, eight instances, with fixed UIDs so
tests can name what they expect; one patient's name is not ASCII, one study
has two modalities, one instance is stored in a compressed transfer syntax
(JPEG Baseline, pixel data as an opaque fragment) so retrieves must send it
as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, small_dataset, write_part10
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

ROOT = "1.2.826.0.1.3680043.10.1111"


@dataclass(frozen=True, slots=True)
class Entry:
    patient_id: str
    patient_name: str
    study: int
    study_date: str
    study_time: str
    accession: str
    series: int
    modality: str
    instance: int
    syntax: str = ExplicitVRLittleEndian

    @property
    def study_uid(self) -> str:
        return f"{ROOT}.1.{self.study}"

    @property
    def series_uid(self) -> str:
        return f"{ROOT}.2.{self.series}"

    @property
    def sop_uid(self) -> str:
        return f"{ROOT}.3.{self.instance}"


ENTRIES = (
    Entry("P1", "DOE^JOHN", 1, "20240102", "083000", "ACC1", 1, "CT", 1),
    Entry("P1", "DOE^JOHN", 1, "20240102", "083000", "ACC1", 1, "CT", 2),
    Entry("P1", "DOE^JOHN", 1, "20240102", "083000", "ACC1", 2, "MR", 3, ImplicitVRLittleEndian),
    Entry("P1", "DOE^JOHN", 2, "20240315", "140000", "ACC2", 3, "CT", 4),
    Entry("P2", "Müller^Jürgen", 3, "20231231", "235959", "ACC3", 4, "MR", 5),
    Entry("P2", "Müller^Jürgen", 3, "20231231", "235959", "ACC3", 4, "MR", 6),
    Entry("P3", "ROE^JANE", 4, "20240601", "0900", "ACC4", 5, "CT", 7),
    Entry("P3", "ROE^JANE", 4, "20240601", "0900", "ACC4", 6, "CT", 8, JPEGBaseline8Bit),
)

STUDY_UIDS = sorted({entry.study_uid for entry in ENTRIES})


def instance(entry: Entry) -> Dataset:
    ds = small_dataset(MR_IMAGE_STORAGE if entry.modality == "MR" else CT_IMAGE_STORAGE)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = entry.patient_id
    ds.PatientName = entry.patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = entry.study_uid
    ds.StudyDate = entry.study_date
    ds.StudyTime = entry.study_time
    ds.AccessionNumber = entry.accession
    ds.StudyID = str(entry.study)
    ds.StudyDescription = f"Study {entry.study}"
    ds.ReferringPhysicianName = "WHO^DR"
    ds.SeriesInstanceUID = entry.series_uid
    ds.Modality = entry.modality
    ds.SeriesNumber = entry.series
    ds.SOPInstanceUID = entry.sop_uid
    ds.InstanceNumber = entry.instance
    ds.file_meta.MediaStorageSOPInstanceUID = entry.sop_uid
    ds.file_meta.TransferSyntaxUID = entry.syntax
    if entry.syntax == JPEGBaseline8Bit:
        # Not a real JPEG stream: nothing here decodes pixels, and an archive
        # must send compressed data exactly as stored.
        ds.PixelData = encapsulate([b"\xff\xd8 not really a jpeg \xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = "YBR_FULL_422"
    return ds


def build_archive(root: Path) -> dict[str, Path]:
    """Write every instance of :data:`ENTRIES` under ``root``; their paths by SOP Instance UID."""
    root.mkdir(parents=True, exist_ok=True)
    return {
        entry.sop_uid: write_part10(instance(entry), root / f"{entry.instance}.dcm")
        for entry in ENTRIES
    }
