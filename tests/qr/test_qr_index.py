"""The SQLite index of a storage folder: levels, incremental scans, removals."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from dicombus.dataset_codec import read_part10_header
from dicombus.instance_uids import read_instance_header
from dicombus.qr.index import (
    ATTRIBUTES,
    LAST_INDEXED_TAG,
    SCHEMA_VERSION,
    Index,
    IndexEntry,
    Level,
    value_text,
)
from helpers import part10_dataset_bytes, small_dataset, write_part10
from pydicom import dcmread
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from qr_archive import ENTRIES, build_archive, instance


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    build_archive(tmp_path / "store")
    return tmp_path / "store"


def counts(index: Index) -> tuple[int, ...]:
    return tuple(index.count(level) for level in Level)


def test_a_scan_indexes_every_level(folder: Path) -> None:
    (folder / "notes.txt").write_text("not DICOM")
    with Index(":memory:") as index:
        report = index.scan(folder)
        assert (report.indexed, report.not_instances) == (len(ENTRIES), 1)
        assert counts(index) == (3, 4, 6, 8)
        rows = index.select(
            "SELECT patient_name, patient_name_key FROM patients WHERE patient_id = ?", ["P2"]
        )
        assert tuple(rows[0]) == ("Müller^Jürgen", "müller^jürgen")


def test_unchanged_files_are_not_read_again(folder: Path, tmp_path: Path) -> None:
    database = tmp_path / "index.sqlite"
    with Index(database) as index:
        index.scan(folder)
    # Same size, same modification time, no longer DICOM: a scan that read it
    # again would drop its instance.
    path = folder / "1.dcm"
    stat = path.stat()
    path.write_bytes(b"x" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with Index(database) as index:
        report = index.scan(folder)
        assert (report.indexed, report.unchanged, report.removed) == (0, len(ENTRIES), 0)
        assert index.count(Level.IMAGE) == len(ENTRIES)


def test_a_changed_file_is_read_again(folder: Path) -> None:
    with Index(":memory:") as index:
        index.scan(folder)
        changed = instance(ENTRIES[0])
        changed.PatientName = "DOE^JOHNNY"
        write_part10(changed, folder / "1.dcm")
        stat = (folder / "1.dcm").stat()
        # Make the change visible even on file systems with coarse timestamps.
        os.utime(folder / "1.dcm", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        report = index.scan(folder)
        assert (report.indexed, report.unchanged) == (1, len(ENTRIES) - 1)
        rows = index.select("SELECT patient_name FROM patients WHERE patient_id = 'P1'", [])
        assert rows[0][0] == "DOE^JOHNNY"


def test_removed_files_leave_the_index_with_their_empty_parents(folder: Path) -> None:
    with Index(":memory:") as index:
        index.scan(folder)
        for entry in ENTRIES:
            if entry.patient_id == "P2":
                (folder / f"{entry.instance}.dcm").unlink()
        report = index.scan(folder)
        assert report.removed == 2
        assert counts(index) == (2, 3, 5, 6)


def test_a_duplicate_instance_is_served_from_its_other_file(folder: Path) -> None:
    (folder / "copy.dcm").write_bytes((folder / "1.dcm").read_bytes())
    with Index(":memory:") as index:
        index.scan(folder)
        assert index.count(Level.IMAGE) == len(ENTRIES)
        served = index.select(
            "SELECT path FROM instances WHERE sop_instance_uid = ?", [ENTRIES[0].sop_uid]
        )[0][0]
        Path(served).unlink()
        index.scan(folder)
        paths = index.select(
            "SELECT path FROM instances WHERE sop_instance_uid = ?", [ENTRIES[0].sop_uid]
        )
        assert [Path(row[0]).name for row in paths] == [
            "1.dcm" if served.endswith("copy.dcm") else "copy.dcm"
        ]


def test_hidden_files_and_folders_are_skipped(folder: Path) -> None:
    write_part10(small_dataset(), folder / ".partial.part")
    (folder / ".cache").mkdir()
    write_part10(small_dataset(), folder / ".cache" / "x.dcm")
    with Index(":memory:") as index:
        assert index.scan(folder).indexed == len(ENTRIES)


def test_add_file_indexes_one_stored_instance(tmp_path: Path) -> None:
    path = write_part10(small_dataset(), tmp_path / "new.dcm")
    with Index(":memory:") as index:
        assert index.add_file(path)
        assert counts(index) == (1, 1, 1, 1)
        (tmp_path / "plain.txt").write_text("hello")
        assert not index.add_file(tmp_path / "plain.txt")


def test_an_index_of_another_schema_version_is_rebuilt(folder: Path, tmp_path: Path) -> None:
    database = tmp_path / "old.sqlite"
    with sqlite3.connect(database) as old:
        old.execute("CREATE TABLE patients (whatever TEXT)")
        old.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with Index(database) as index:
        assert index.scan(folder).indexed == len(ENTRIES)


def test_add_file_drops_the_entities_a_re_filed_instance_leaves_empty(tmp_path: Path) -> None:
    """The same instance stored again under another patient, study and series (the file
    replaced): the old ones go, and nothing else is touched."""
    first = small_dataset()
    first.PatientID = "OLD"
    other = small_dataset()
    other.PatientID = "OTHER"
    path = write_part10(first, tmp_path / "a.dcm")
    with Index(":memory:") as index:
        assert index.add_file(write_part10(other, tmp_path / "b.dcm"))
        assert index.add_file(path)
        assert counts(index) == (2, 2, 2, 2)
        moved = small_dataset()
        moved.SOPInstanceUID = first.SOPInstanceUID
        moved.PatientID = "NEW"
        assert index.add_file(write_part10(moved, path))
        assert counts(index) == (2, 2, 2, 2)
        patients = index.select("SELECT patient_id FROM patients ORDER BY patient_id", [])
        assert [row["patient_id"] for row in patients] == ["NEW", "OTHER"]
        found = index.locate([first.SOPInstanceUID, "1.2.3.4"])
        assert list(found) == [first.SOPInstanceUID]
        assert found[first.SOPInstanceUID].path == path.resolve()


# PS3.5 Annex H-K: the character sets of pydicom's test files, ISO 2022 code
# extensions included (Japanese, Korean), and person names with three component groups.
CHARSET_FILES = sorted(get_charset_files("chr*.dcm"))


@pytest.mark.parametrize("source", CHARSET_FILES, ids=lambda path: Path(path).stem)
def test_values_from_a_received_header_are_those_pydicom_decodes(
    source: str, tmp_path: Path
) -> None:
    """An instance queued with the header the C-STORE handler parsed is indexed with the
    values pydicom's own conversion gives, as one indexed from its file is."""
    dataset = dcmread(source)
    for keyword in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword not in dataset:
            setattr(dataset, keyword, generate_uid())
    dataset.InstanceNumber = "7"
    path = write_part10(dataset, tmp_path / "received.dcm").resolve()
    expected = _pydicom_values(dcmread(path))
    syntax = read_part10_header(path).transfer_syntax
    parsed = read_instance_header(part10_dataset_bytes(path), syntax, LAST_INDEXED_TAG)
    with Index(":memory:") as index:
        index.submit(IndexEntry(str(path), parsed, syntax))
        assert _indexed_values(index) == expected
    with Index(":memory:") as index:
        assert index.add_file(path)
        assert _indexed_values(index) == expected


def _pydicom_values(dataset: Dataset) -> dict[str, object]:
    values: dict[str, object] = {}
    for attribute in ATTRIBUTES.values():
        text = value_text(dataset.get(attribute.keyword))
        values[attribute.column] = int(text) if attribute.vr == "IS" and text else text
    values["patient_id"] = values["patient_id"] or ""
    return values


def _indexed_values(index: Index) -> dict[str, object]:
    (row,) = index.select(
        "SELECT * FROM instances im JOIN series se ON se.id = im.parent_id "
        "JOIN studies st ON st.id = se.parent_id JOIN patients pa ON pa.id = st.parent_id",
        [],
    )
    return {attribute.column: row[attribute.column] for attribute in ATTRIBUTES.values()}


def test_the_instances_of_a_series_share_what_they_hold_alike_and_nothing_else(
    tmp_path: Path,
) -> None:
    """The values above the instance are decoded once for the instances that encode them
    alike (a series): each instance keeps its own row and path, and a later instance
    with another study value is what the study row holds, in a batch or across batches."""
    first = small_dataset()
    first.PatientID = ""
    first.StudyDescription = "FIRST"
    entries = []
    for number, description in enumerate(["FIRST", "FIRST", "LATER"], start=1):
        dataset = small_dataset()
        for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID"):
            setattr(dataset, keyword, getattr(first, keyword))
        dataset.StudyDescription = description
        dataset.InstanceNumber = number
        path = write_part10(dataset, tmp_path / f"{number}.dcm").resolve()
        syntax = read_part10_header(path).transfer_syntax
        header = read_instance_header(part10_dataset_bytes(path), syntax, LAST_INDEXED_TAG)
        entries.append((IndexEntry(str(path), header, syntax), dataset.SOPInstanceUID))
    for batches in ([entries], [entries[:2], entries[2:]]):
        with Index(":memory:") as index:
            for batch in batches:
                for entry, _ in batch:
                    index.submit(entry)
                index.write_queued()
            rows = index.select(
                "SELECT im.path, im.sop_instance_uid, im.instance_number, st.study_description,"
                " pa.patient_id FROM instances im JOIN series se ON se.id = im.parent_id"
                " JOIN studies st ON st.id = se.parent_id JOIN patients pa ON pa.id = st.parent_id"
                " ORDER BY im.instance_number",
                [],
            )
            assert [tuple(row) for row in rows] == [
                (entry.path, uid, number, "LATER", "")
                for number, (entry, uid) in enumerate(entries, start=1)
            ]
