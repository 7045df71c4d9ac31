"""De-identification: the PS3.15 Table E.1-1 Basic Profile on real datasets, and UIDs that
stay consistent across instances, processes and runs."""

from __future__ import annotations

import re

from dicombus.routing.basic_profile import BASIC_PROFILE
from dicombus.routing.deidentify import BasicProfile, pseudonymous_uid
from dicombus.routing.transforms import SetTag, Transform
from pydicom.dataset import Dataset
from routing_support import real_dataset

SECRET = b"a secret from the environment"

# Rows of PS3.15 Table E.1-1 (Basic Profile column), transcribed from the standard's text
# independently of basic_profile.py.
STANDARD_ROWS = {
    "00080050": "Z",  # Accession Number
    "00100010": "Z",  # Patient's Name
    "00100030": "Z",  # Patient's Birth Date
    "00100040": "Z",  # Patient's Sex
    "00101000": "X",  # Other Patient IDs
    "0020000D": "U",  # Study Instance UID
    "0020000E": "U",  # Series Instance UID
    "00080018": "U",  # SOP Instance UID
    "00200052": "U",  # Frame of Reference UID
    "00080080": "X/Z/D",  # Institution Name
    "00080081": "X",  # Institution Address
    "00080090": "Z",  # Referring Physician's Name
    "00080020": "Z",  # Study Date
    "00080030": "Z",  # Study Time
    "00200010": "Z",  # Study ID
    "00081010": "X/Z/D",  # Station Name
    "00080022": "X/Z",  # Acquisition Date
    "00080023": "Z/D",  # Content Date
    "00181000": "X/Z/D",  # Device Serial Number
    "00081140": "X/Z/U*",  # Referenced Image Sequence
}


def test_the_table_agrees_with_the_standard_s_rows() -> None:
    assert {tag: BASIC_PROFILE[tag] for tag in STANDARD_ROWS} == STANDARD_ROWS
    assert set(BASIC_PROFILE.values()) <= {
        "D",
        "Z",
        "X",
        "U",
        "Z/D",
        "X/Z",
        "X/D",
        "X/Z/D",
        "X/Z/U*",
    }
    assert all(re.fullmatch(r"[0-9A-Fx]{8}", tag) for tag in BASIC_PROFILE)


def empty(dataset: Dataset, keyword: str) -> bool:
    """Present with a zero-length value (action Z)."""
    return keyword in dataset and dataset[keyword].VM == 0


def deidentified(name: str = "CT_small.dcm") -> tuple[Dataset, Dataset]:
    original = real_dataset(name)
    copy = real_dataset(name)
    BasicProfile(SECRET).apply(copy)
    return original, copy


def test_each_action_of_the_profile_on_a_real_ct() -> None:
    original, copy = deidentified()
    # X: removed
    assert "OtherPatientIDs" not in copy or original.get("OtherPatientIDs") is None
    assert "InstitutionAddress" not in copy
    # Z: emptied, still present
    assert all(empty(copy, kw) for kw in ("PatientName", "StudyDate", "AccessionNumber"))
    assert original.PatientID and copy.PatientID != original.PatientID
    # X/Z/D, Z/D: replaced by a dummy consistent with the VR
    assert original.InstitutionName and copy.InstitutionName == "ANONYMIZED"
    assert original.StationName and copy.StationName == "ANONYMIZED"
    assert copy.ContentDate == "19000101"
    # U: replaced, consistently, and a valid UUID-derived UID
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    ):
        before, after = str(original[keyword].value), str(copy[keyword].value)
        assert after == pseudonymous_uid(before, SECRET) != before
        assert re.fullmatch(r"2\.25\.[1-9][0-9]*", after) and len(after) <= 64
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID
    # kept: what the table does not list
    assert copy.Modality == original.Modality and copy.Rows == original.Rows
    assert copy.PixelData == original.PixelData
    # and what the profile says it adds
    assert copy.PatientIdentityRemoved == "YES"
    assert copy.LongitudinalTemporalInformationModified == "REMOVED"
    code = copy.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")


def test_private_attributes_are_removed_and_sequences_cleaned_inside() -> None:
    dataset = real_dataset("CT_small.dcm")
    dataset.private_block(0x0009, "ACME", create=True).add_new(0x10, "LO", "secret")
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.PatientName = "Nested^Name"
    dataset.ReferencedImageSequence = [item]
    BasicProfile(SECRET).apply(dataset)
    assert not any(element.tag.is_private for element in dataset)
    inside = dataset.ReferencedImageSequence[0]
    assert inside.ReferencedSOPInstanceUID == pseudonymous_uid("1.2.3.4", SECRET)
    assert empty(inside, "PatientName")


def test_uids_are_consistent_across_instances_and_keyed_by_the_secret() -> None:
    _, first = deidentified("CT_small.dcm")
    _, again = deidentified("CT_small.dcm")
    assert first.StudyInstanceUID == again.StudyInstanceUID
    assert first.SOPInstanceUID == again.SOPInstanceUID
    other = real_dataset("CT_small.dcm")
    BasicProfile(b"another secret").apply(other)
    assert other.StudyInstanceUID != first.StudyInstanceUID
    # A reference in one instance maps to the UID the referenced instance received.
    referenced = real_dataset("MR_small.dcm")
    BasicProfile(SECRET).apply(referenced)
    assert referenced.SOPInstanceUID == pseudonymous_uid(
        str(real_dataset("MR_small.dcm").SOPInstanceUID), SECRET
    )


def test_a_transform_deidentifies_then_removes_then_sets() -> None:
    transform = Transform(
        uid_secret=SECRET,
        remove=("00180050",),
        set=(SetTag("00100020", "LO", "SUBJ-7"), SetTag("00100010", "PN", "Subject^7")),
    )
    dataset = transform.apply(real_dataset())
    assert dataset.PatientID == "SUBJ-7" and dataset.PatientName == "Subject^7"
    assert "SliceThickness" not in dataset
    assert dataset.PatientIdentityRemoved == "YES"
    assert Transform().is_identity and Transform().apply(real_dataset()) == real_dataset()
