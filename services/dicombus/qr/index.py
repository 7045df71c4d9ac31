"""An SQLite index of a folder of DICOM Part 10 files, by the levels of PS3.4 C.6.

One table per level of the Query/Retrieve information model -- patients,
studies, series, instances -- each row pointing at its parent, and a table of
the files seen (path, modification time, size) so a rescan parses only the
files that changed. The attributes kept are the keys of the Patient Root and
Study Root models (:data:`ATTRIBUTES`): the SQL tables are generated from that
catalogue, and :mod:`dicombus.qr.query` builds its queries from it.

Values are kept as pydicom decodes them (text, character set applied);
PN, DA and TM values also get a ``*_key`` column in the normal form that
:mod:`dicombus.qr.matching` compares against, so a query never normalizes a
column.

The index is a cache of the folder: a file whose schema version differs from
:data:`SCHEMA_VERSION` is rebuilt from the files.

An entity without a Patient ID is filed under the empty Patient ID; an
instance seen in two files is served from the one indexed last.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from dicombus.qr.matching import fold_person_name, normalize_date, normalize_time

LOGGER = logging.getLogger("dicombus.qr")

# Bump when the tables change: an index of another version is rebuilt.
SCHEMA_VERSION = 1

# A file holding a DICOMDIR, not an instance (PS3.10 7.1; PS3.4 Annex F).
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# SOP Instance UIDs looked up per SELECT: under SQLite's oldest limit on bound
# parameters (999).
_LOOKUP_BATCH = 500

# Rows are written in transactions of this many files during a scan: large
# enough that a folder of 100 000 files is not 100 000 fsyncs, small enough
# that an interrupted scan keeps most of its work.
_SCAN_BATCH = 500


# The UIDs that file an instance: its own, its series', its study's.
_HIERARCHY = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")

# (series id, study id, patient id) rows: where the instance in the file (first
# parameter) or the instance itself (second) is filed, and the parents of its
# series (third) and study (fourth). See Index._filed_under.
_FILED_UNDER_SQL = (
    "SELECT se.id, st.id, st.parent_id FROM instances im "
    "JOIN series se ON se.id = im.parent_id JOIN studies st ON st.id = se.parent_id "
    "WHERE im.path = ?1 OR im.sop_instance_uid = ?2 "
    "UNION ALL SELECT NULL, st.id, st.parent_id FROM series se "
    "JOIN studies st ON st.id = se.parent_id WHERE se.series_instance_uid = ?3 "
    "UNION ALL SELECT NULL, NULL, parent_id FROM studies WHERE study_instance_uid = ?4"
)


class Level(StrEnum):
    """The Query/Retrieve Level (0008,0052) values of the composite models."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True, slots=True)
class LevelTable:
    level: Level
    table: str
    # The SQL alias used for this table in every query (see dicombus.qr.query).
    alias: str
    unique_keyword: str
    parent: Level | None


LEVELS: dict[Level, LevelTable] = {
    Level.PATIENT: LevelTable(Level.PATIENT, "patients", "pa", "PatientID", None),
    Level.STUDY: LevelTable(Level.STUDY, "studies", "st", "StudyInstanceUID", Level.PATIENT),
    Level.SERIES: LevelTable(Level.SERIES, "series", "se", "SeriesInstanceUID", Level.STUDY),
    Level.IMAGE: LevelTable(Level.IMAGE, "instances", "im", "SOPInstanceUID", Level.SERIES),
}

# Top to bottom, for walking the hierarchy.
LEVEL_ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)

# VRs whose values get a normal-form ``*_key`` column for matching.
_KEYED_VRS = frozenset({"PN", "DA", "TM"})


@dataclass(frozen=True, slots=True)
class IndexedAttribute:
    """An attribute stored in the index: where it lives and how it is matched."""

    keyword: str
    level: Level
    vr: str
    column: str

    @property
    def key_column(self) -> str:
        """The column queries match against (the normal form for PN, DA and TM)."""
        return f"{self.column}_key" if self.vr in _KEYED_VRS else self.column

    @property
    def sql_type(self) -> str:
        return "INTEGER" if self.vr == "IS" else "TEXT"


def _attributes(*rows: tuple[str, Level, str, str]) -> dict[str, IndexedAttribute]:
    return {row[0]: IndexedAttribute(*row) for row in rows}


# PS3.4 C.6.1.1 (Patient Root) and C.6.2.1 (Study Root): the unique and
# required keys of each level, plus the SOP Class UID a retrieve needs.
ATTRIBUTES = _attributes(
    ("PatientID", Level.PATIENT, "LO", "patient_id"),
    ("PatientName", Level.PATIENT, "PN", "patient_name"),
    ("PatientBirthDate", Level.PATIENT, "DA", "patient_birth_date"),
    ("PatientSex", Level.PATIENT, "CS", "patient_sex"),
    ("StudyInstanceUID", Level.STUDY, "UI", "study_instance_uid"),
    ("StudyDate", Level.STUDY, "DA", "study_date"),
    ("StudyTime", Level.STUDY, "TM", "study_time"),
    ("AccessionNumber", Level.STUDY, "SH", "accession_number"),
    ("StudyID", Level.STUDY, "SH", "study_id"),
    ("StudyDescription", Level.STUDY, "LO", "study_description"),
    ("ReferringPhysicianName", Level.STUDY, "PN", "referring_physician_name"),
    ("SeriesInstanceUID", Level.SERIES, "UI", "series_instance_uid"),
    ("Modality", Level.SERIES, "CS", "modality"),
    ("SeriesNumber", Level.SERIES, "IS", "series_number"),
    ("SOPInstanceUID", Level.IMAGE, "UI", "sop_instance_uid"),
    ("SOPClassUID", Level.IMAGE, "UI", "sop_class_uid"),
    ("InstanceNumber", Level.IMAGE, "IS", "instance_number"),
)

# What a file read needs: every indexed attribute, and the character set that
# decodes the text ones.
_READ_TAGS: list[BaseTag | int] = [
    Tag("SpecificCharacterSet"),
    *(Tag(keyword) for keyword in ATTRIBUTES),
]
# Parsing stops past the last of them: nothing later (pixel data least of all)
# is read, which halves the cost of indexing a freshly stored instance.
_LAST_READ_TAG = int(max(_READ_TAGS))


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What a retrieve needs to send one instance."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


@dataclass(slots=True)
class ScanReport:
    """What a scan of the storage folder did."""

    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    not_instances: int = 0


class Index:
    """The index of one storage folder, in an SQLite file (or ``":memory:"``).

    Safe to share between threads: one connection, used under a lock. Every
    method returns plain data, so no cursor outlives the lock.
    """

    def __init__(self, database: Path | str) -> None:
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(
            str(database), check_same_thread=False, isolation_level=None
        )
        self._connection.row_factory = sqlite3.Row
        with self._lock:
            self._connection.execute("PRAGMA foreign_keys = ON")
            self._connection.execute("PRAGMA journal_mode = WAL")
            # WAL with NORMAL: a commit is a write to the WAL, no fsync; the last
            # commits before a power cut may be lost, and the next scan finds their
            # files again (the files are the truth; this is their cache).
            self._connection.execute("PRAGMA synchronous = NORMAL")
            self._create_schema()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------

    def _create_schema(self) -> None:
        (version,) = self._connection.execute("PRAGMA user_version").fetchone()
        if version not in (0, SCHEMA_VERSION):
            LOGGER.info("index schema %d is not %d; rebuilding", version, SCHEMA_VERSION)
            for table in ("files", *(LEVELS[level].table for level in reversed(LEVEL_ORDER))):
                self._connection.execute(f"DROP TABLE IF EXISTS {table}")
        with self._transaction():
            for statement in schema_statements():
                self._connection.execute(statement)
            self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._connection.execute("BEGIN")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------

    def select(self, sql: str, params: Sequence[object]) -> list[sqlite3.Row]:
        """Run one SELECT (with bound ``params``) and return all its rows."""
        with self._lock:
            return self._connection.execute(sql, tuple(params)).fetchall()

    def locate(self, sop_instance_uids: Iterable[str]) -> dict[str, StoredInstance]:
        """The indexed instances among ``sop_instance_uids``, by SOP Instance UID."""
        uids = list(dict.fromkeys(sop_instance_uids))
        found: dict[str, StoredInstance] = {}
        for start in range(0, len(uids), _LOOKUP_BATCH):
            chunk = uids[start : start + _LOOKUP_BATCH]
            marks = ", ".join("?" for _ in chunk)
            rows = self.select(
                "SELECT path, sop_class_uid, sop_instance_uid, transfer_syntax FROM instances "
                f"WHERE sop_instance_uid IN ({marks})",
                chunk,
            )
            for row in rows:
                found[row["sop_instance_uid"]] = StoredInstance(
                    path=Path(row["path"]),
                    sop_class_uid=row["sop_class_uid"],
                    sop_instance_uid=row["sop_instance_uid"],
                    transfer_syntax=row["transfer_syntax"],
                )
        return found

    def count(self, level: Level) -> int:
        with self._lock:
            (number,) = self._connection.execute(
                f"SELECT count(*) FROM {LEVELS[level].table}"
            ).fetchone()
        return int(number)

    # -- writing -----------------------------------------------------------------------

    def scan(self, root: Path) -> ScanReport:
        """Bring the index up to date with the files under ``root``.

        Files whose size and modification time are unchanged since the last
        scan are not read again; files that disappeared leave the index.
        Hidden files and folders (a leading dot) are skipped: they hold
        partial writes and the index itself.
        """
        report = ScanReport()
        on_disk = dict(_walk(root.resolve()))
        with self._lock, self._transaction() as db:
            known = {
                row["path"]: (row["mtime_ns"], row["size"])
                for row in db.execute("SELECT path, mtime_ns, size FROM files")
            }
            for path in known.keys() - on_disk.keys():
                report.removed += self._forget_file(path)
            self._prune()
            known = {
                row["path"]: (row["mtime_ns"], row["size"])
                for row in db.execute("SELECT path, mtime_ns, size FROM files")
            }
        changed = [path for path, stamp in on_disk.items() if known.get(path) != stamp]
        report.unchanged = len(on_disk) - len(changed)
        for start in range(0, len(changed), _SCAN_BATCH):
            batch = [(Path(path), on_disk[path]) for path in changed[start : start + _SCAN_BATCH]]
            parsed = [(path, stamp, _read_instance(path)) for path, stamp in batch]
            with self._lock, self._transaction():
                for path, stamp, dataset in parsed:
                    if self._store(path, stamp, dataset):
                        report.indexed += 1
                    else:
                        report.not_instances += 1
                self._prune()
        LOGGER.info(
            "indexed %s: %d new or changed, %d unchanged, %d removed, %d not instances",
            root,
            report.indexed,
            report.unchanged,
            report.removed,
            report.not_instances,
        )
        return report

    def add_file(self, path: Path) -> bool:
        """Index one file (just written by the storage SCP); False if it is no instance.

        One transaction; of the levels above, only the rows this file's
        instance may have left empty are checked, so the cost does not grow
        with the index.
        """
        path = path.resolve()
        stat = path.stat()
        dataset = _read_instance(path)
        with self._lock, self._transaction():
            vacated = self._filed_under(path, dataset)
            stored = self._store(path, (stat.st_mtime_ns, stat.st_size), dataset)
            self._prune(vacated)
        return stored

    def _filed_under(self, path: Path, dataset: Dataset | None) -> dict[Level, set[int]]:
        """The series, studies and patients that storing ``dataset`` from ``path`` may
        empty: where the file's old instance and this instance are filed now, and the
        current parents of the series and study it names (an entity re-filed under
        another parent leaves its old one)."""
        uids = [None if dataset is None else value_text(dataset.get(k)) for k in _HIERARCHY]
        rows = self._connection.execute(_FILED_UNDER_SQL, (str(path), *uids)).fetchall()
        vacated: dict[Level, set[int]] = {
            Level.SERIES: set(),
            Level.STUDY: set(),
            Level.PATIENT: set(),
        }
        for row in rows:
            for level, row_id in zip((Level.SERIES, Level.STUDY, Level.PATIENT), row, strict=True):
                if row_id is not None:
                    vacated[level].add(row_id)
        return vacated

    def _forget_file(self, path: str) -> int:
        """Drop a vanished file; 1 if it held an indexed instance."""
        db = self._connection
        row = db.execute("DELETE FROM files WHERE path = ? RETURNING sop_instance_uid", (path,))
        uid = row.fetchone()["sop_instance_uid"]
        deleted = db.execute("DELETE FROM instances WHERE path = ?", (path,)).rowcount
        if deleted and uid is not None:
            # Another copy of the instance may live in a file we skip as
            # unchanged; forgetting that file makes this scan index it again.
            db.execute("DELETE FROM files WHERE sop_instance_uid = ?", (uid,))
        return 1 if deleted else 0

    def _store(self, path: Path, stamp: tuple[int, int], dataset: Dataset | None) -> bool:
        db = self._connection
        uid = None if dataset is None else str(dataset.SOPInstanceUID)
        db.execute(
            "INSERT INTO files (path, mtime_ns, size, sop_instance_uid) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET mtime_ns = excluded.mtime_ns, "
            "size = excluded.size, sop_instance_uid = excluded.sop_instance_uid",
            (str(path), *stamp, uid),
        )
        # The file may have held another instance (or one) before it changed.
        db.execute(
            "DELETE FROM instances WHERE path = ? AND sop_instance_uid IS NOT ?", (str(path), uid)
        )
        if dataset is None:
            return False
        parent: int | None = None
        for level in LEVEL_ORDER:
            parent = self._upsert(level, dataset, parent, path)
        return True

    def _upsert(self, level: Level, dataset: Dataset, parent: int | None, path: Path) -> int:
        values: dict[str, object] = {}
        for attribute in ATTRIBUTES.values():
            if attribute.level is level:
                values.update(_column_values(attribute, dataset))
        if level is Level.PATIENT:
            values["patient_id"] = values["patient_id"] or ""
        else:
            values["parent_id"] = parent
        if level is Level.IMAGE:
            values["path"] = str(path)
            values["transfer_syntax"] = str(dataset.file_meta.TransferSyntaxUID)
        table = LEVELS[level]
        unique = ATTRIBUTES[table.unique_keyword].column
        columns = list(values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != unique)
        sql = (
            f"INSERT INTO {table.table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT({unique}) DO UPDATE SET {updates} RETURNING id"
        )
        (row_id,) = self._connection.execute(sql, tuple(values.values())).fetchone()
        return int(row_id)

    def _prune(self, only: dict[Level, set[int]] | None = None) -> None:
        """Remove series, studies and patients left without children (of ``only``'s
        rows, when given: ids by level)."""
        for level in reversed(LEVEL_ORDER[:-1]):
            table = LEVELS[level].table
            child = next(t.table for t in LEVELS.values() if t.parent is level)
            sql = (
                f"DELETE FROM {table} WHERE NOT EXISTS "
                f"(SELECT 1 FROM {child} WHERE {child}.parent_id = {table}.id)"
            )
            ids: tuple[int, ...] = ()
            if only is not None:
                ids = tuple(only[level])
                if not ids:
                    continue
                sql += f" AND id IN ({', '.join('?' for _ in ids)})"
            self._connection.execute(sql, ids)


def schema_statements() -> list[str]:
    """CREATE statements for the index, generated from :data:`ATTRIBUTES`."""
    statements = [
        "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, "
        "size INTEGER NOT NULL, sop_instance_uid TEXT)",
        "CREATE INDEX IF NOT EXISTS files_by_instance ON files (sop_instance_uid)",
    ]
    for level in LEVEL_ORDER:
        table = LEVELS[level]
        columns = ["id INTEGER PRIMARY KEY"]
        if table.parent is not None:
            parent = LEVELS[table.parent].table
            columns.append(f"parent_id INTEGER NOT NULL REFERENCES {parent} (id)")
        for attribute in ATTRIBUTES.values():
            if attribute.level is not level:
                continue
            constraint = " NOT NULL UNIQUE" if attribute.keyword == table.unique_keyword else ""
            columns.append(f"{attribute.column} {attribute.sql_type}{constraint}")
            if attribute.key_column != attribute.column:
                columns.append(f"{attribute.key_column} TEXT")
        if level is Level.IMAGE:
            columns += ["transfer_syntax TEXT NOT NULL", "path TEXT NOT NULL"]
        statements.append(f"CREATE TABLE IF NOT EXISTS {table.table} ({', '.join(columns)})")
        if table.parent is not None:
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {table.table}_by_parent ON {table.table} (parent_id)"
            )
    statements.append("CREATE INDEX IF NOT EXISTS instances_by_path ON instances (path)")
    return statements


def _column_values(attribute: IndexedAttribute, dataset: Dataset) -> Iterable[tuple[str, object]]:
    text = value_text(dataset.get(attribute.keyword))
    if attribute.vr == "IS":
        yield attribute.column, _integer(text)
        return
    yield attribute.column, text
    if attribute.key_column == attribute.column:
        return
    key: str | None
    if text is None:
        key = None
    elif attribute.vr == "PN":
        key = fold_person_name(text)
    elif attribute.vr == "DA":
        key = normalize_date(text)
    else:
        key = normalize_time(text)
    yield attribute.key_column, key


def value_text(value: Any) -> str | None:
    """An element value as one string (multiple values joined by backslashes); None if empty."""
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        text = "\\".join(str(item) for item in value)
    else:
        text = str(value)
    text = text.strip(" \x00")
    return text or None


def _integer(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _walk(root: Path) -> Iterator[tuple[str, tuple[int, int]]]:
    """(absolute path, (mtime_ns, size)) of every regular, non-hidden file under ``root``."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path, follow_symlinks=True)
            except OSError:
                continue  # vanished between listing and stat
            if os.path.isfile(path):
                yield path, (stat.st_mtime_ns, stat.st_size)


def _past_read_tags(tag: BaseTag, _vr: str | None, _length: int) -> bool:
    return int(tag) > _LAST_READ_TAG


def _read_instance(path: Path) -> Dataset | None:
    """The indexed attributes of a Part 10 instance file, or None if it is not one."""
    try:
        with path.open("rb") as file:
            dataset = read_partial(file, stop_when=_past_read_tags, specific_tags=_READ_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        LOGGER.debug("not indexed: %s (%s)", path, exc)
        return None
    meta = dataset.file_meta
    if meta.get("MediaStorageSOPClassUID") == _MEDIA_STORAGE_DIRECTORY:
        return None
    if "SOPInstanceUID" not in dataset and "MediaStorageSOPInstanceUID" in meta:
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if "SOPClassUID" not in dataset and "MediaStorageSOPClassUID" in meta:
        dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    required = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
    if "TransferSyntaxUID" not in meta or any(not value_text(dataset.get(k)) for k in required):
        LOGGER.debug("not indexed: %s lacks a UID of the Q/R hierarchy", path)
        return None
    return dataset
