"""An SQLite index of a folder of DICOM Part 10 files, by the levels of PS3.4 C.6.

One table per level of the Query/Retrieve information model -- patients,
studies, series, instances -- each row pointing at its parent, and a table of
the files seen (path, modification time, size) so a rescan parses only the
files that changed. The attributes kept are the keys of the Patient Root and
Study Root models (:data:`ATTRIBUTES`): the SQL tables are generated from that
catalogue, and :mod:`dicombus.qr.query` builds its queries from it.

Values are kept as pydicom decodes them (text, character set applied),
decoded here from the encoded values (pydicom's conversion of each element
costs several times more);
PN, DA and TM values also get a ``*_key`` column in the normal form that
:mod:`dicombus.qr.matching` compares against, so a query never normalizes a
column.

The index is a cache of the folder: a file whose schema version differs from
:data:`SCHEMA_VERSION` is rebuilt from the files.

An entity without a Patient ID is filed under the empty Patient ID; an
instance seen in two files is served from the one indexed last.
"""

from __future__ import annotations

import functools
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

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from dicombus.qr.matching import fold_person_name, normalize_date, normalize_time
from dicombus.sqlite_setup import switch_to_wal

LOGGER = logging.getLogger("dicombus.qr")

# Bump when the tables change: an index of another version is rebuilt.
SCHEMA_VERSION = 1

# A file holding a DICOMDIR, not an instance (PS3.10 7.1; PS3.4 Annex F).
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# Seconds a write waits for another connection's write lock on the index (an
# operator's sqlite3 shell, a backup) before it fails: sqlite3's own default.
BUSY_TIMEOUT = 5.0

# SOP Instance UIDs looked up per SELECT: under SQLite's oldest limit on bound
# parameters (999).
_LOOKUP_BATCH = 500

# Files are written in transactions of at most this many: large enough that a
# folder of 100 000 files is not 100 000 commits, small enough that an
# interrupted scan keeps most of its work, and that the four lists a batch binds
# to find where its instances were filed (paths, SOP Instance, Series and Study
# Instance UIDs) stay under SQLite's oldest limit on bound parameters (999).
_WRITE_BATCH = 200


def _in_list(count: int) -> str:
    return f"({', '.join('?' for _ in range(count))})"


def _filed_under_sql(paths: int, instances: int, series: int, studies: int) -> str:
    """(series id, study id, patient id) rows: where the instances in the files (the
    first ``paths`` parameters) or the instances themselves (the next ``instances``)
    are filed, and the parents of the series and studies named next."""
    return (
        "SELECT se.id, st.id, st.parent_id FROM instances im "
        "JOIN series se ON se.id = im.parent_id JOIN studies st ON st.id = se.parent_id "
        f"WHERE im.path IN {_in_list(paths)} OR im.sop_instance_uid IN {_in_list(instances)} "
        "UNION ALL SELECT NULL, st.id, st.parent_id FROM series se "
        "JOIN studies st ON st.id = se.parent_id "
        f"WHERE se.series_instance_uid IN {_in_list(series)} "
        "UNION ALL SELECT NULL, NULL, parent_id FROM studies "
        f"WHERE study_instance_uid IN {_in_list(studies)}"
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
# The indexed attributes all lie in groups 0008 to 0020, before anything bulky:
# parsing stops past the last of them, so pixel data is never read, and a C-STORE
# handler that parses the received data set this far for its UIDs has every
# indexed value at hand (see :class:`IndexEntry`).
LAST_INDEXED_TAG = int(max(_READ_TAGS))
_SPECIFIC_CHARACTER_SET = int(Tag("SpecificCharacterSet"))


@dataclass(frozen=True, slots=True)
class _Column:
    """Where an indexed attribute's value goes: its column, and its normal form's."""

    tag: int
    vr: str
    column: str
    key_column: str | None  # for PN, DA and TM (see IndexedAttribute.key_column)


# The indexed attributes of each level, in the order of their columns.
_COLUMNS = {
    level: [
        _Column(
            int(Tag(a.keyword)),
            a.vr,
            a.column,
            a.key_column if a.key_column != a.column else None,
        )
        for a in ATTRIBUTES.values()
        if a.level is level
    ]
    for level in LEVEL_ORDER
}
# The tags of each level's columns, in their order.
_TAGS = {level: tuple(column.tag for column in columns) for level, columns in _COLUMNS.items()}
# What the matching compares a PN, DA or TM value with (see dicombus.qr.matching).
_NORMAL_FORM = {"PN": fold_person_name, "DA": normalize_date, "TM": normalize_time}
# PS3.5 6.1.2.3: the VRs whose values the Specific Character Set applies to; the
# others indexed (UI, CS, DA, TM, IS) hold the default repertoire only.
_CHARACTER_SET_VRS = frozenset({"SH", "LO", "PN"})
# PS3.5 6.1.2.5.3: the control characters (TAB, LF, FF, CR) after which a text
# value is back in its first character set; as pydicom decodes text values.
_TEXT_DELIMITERS = {0x09, 0x0A, 0x0C, 0x0D}
# pydicom's default_encoding ("iso8859") under the name CPython decodes without a
# codec lookup.
_DEFAULT_REPERTOIRE = "latin-1"
# PS3.5 6.1.2.5.3: the escape that starts a code extension (ISO 2022).
_ESC = 0x1B


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A stored file to index, queued with :meth:`Index.submit`.

    ``header``: the data set's elements up to :data:`LAST_INDEXED_TAG`, as parsed from
    the bytes now in the file (values still encoded), in ``transfer_syntax``; without
    it the file's header is read from disk.
    """

    # Absolute, every symbolic link resolved: as a scan names the file.
    path: str
    header: Dataset | None = None
    transfer_syntax: str | None = None


@dataclass(frozen=True, slots=True)
class _Row:
    """What one file puts in the index: its ``files`` row, and the column values of its
    instance at each level (None: the file holds no instance of the hierarchy)."""

    path: str
    stamp: tuple[int, int]
    values: dict[Level, dict[str, object]] | None


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

    Files are indexed at once (:meth:`scan`, :meth:`add_file`) or queued
    (:meth:`submit`) for whoever writes next: a thread that writes the queue in
    batches (:class:`dicombus.qr.index_writer.IndexWriter`), or the next read,
    which writes what is queued before it reads. So a read sees every file
    submitted before it, however far behind the writer is.
    """

    def __init__(self, database: Path | str) -> None:
        self._lock = threading.Lock()
        # Taken alone (never while waiting for the lock above): a submit does not
        # wait for a transaction.
        self._queue_lock = threading.Lock()
        self._queue: list[IndexEntry] = []
        if str(database) != ":memory:":
            # Its folder may not exist yet: the edge's data folder, say, is made by the bus later.
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            str(database), timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=None
        )
        self._connection.row_factory = sqlite3.Row
        with self._lock:
            self._connection.execute("PRAGMA foreign_keys = ON")
            switch_to_wal(self._connection, BUSY_TIMEOUT)
            # WAL with NORMAL: a commit is a write to the WAL, no fsync; the last
            # commits before a power cut may be lost, and the next scan finds their
            # files again (the files are the truth; this is their cache).
            self._connection.execute("PRAGMA synchronous = NORMAL")
            self._create_schema()

    def close(self) -> None:
        """Write what is queued, then close."""
        with self._lock:
            self._write_queued()
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
            self._write_queued()
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
            self._write_queued()
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
        for start in range(0, len(changed), _WRITE_BATCH):
            batch = changed[start : start + _WRITE_BATCH]
            rows = [_file_row(path, on_disk[path]) for path in batch]
            with self._lock, self._transaction():
                self._write_rows(rows)
            indexed = sum(1 for row in rows if row.values is not None)
            report.indexed += indexed
            report.not_instances += len(rows) - indexed
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
        """Index one file now (one transaction); False if it is no instance."""
        resolved = path.resolve()
        stat = resolved.stat()
        row = _file_row(str(resolved), (stat.st_mtime_ns, stat.st_size))
        with self._lock:
            self._write_queued()
            with self._transaction():
                self._write_rows([row])
        return row.values is not None

    def submit(self, entry: IndexEntry) -> int:
        """Queue ``entry`` for the next write (see the class); return how many are queued.

        Costs an append: nothing is read or written here.
        """
        with self._queue_lock:
            self._queue.append(entry)
            return len(self._queue)

    @property
    def backlog(self) -> int:
        """How many submitted entries are not written yet."""
        return len(self._queue)

    def write_queued(self) -> None:
        """Write every queued entry, in batches of one transaction each."""
        with self._lock:
            self._write_queued()

    def _write_queued(self) -> None:
        # Taken from the queue and written under self._lock: entries are written in
        # the order they were submitted, whoever writes them.
        with self._queue_lock:
            entries, self._queue = self._queue, []
        for start in range(0, len(entries), _WRITE_BATCH):
            batch = entries[start : start + _WRITE_BATCH]
            rows = [row for row in map(_entry_row, batch) if row is not None]
            try:
                with self._transaction():
                    self._write_rows(rows)
            except sqlite3.Error as exc:
                # The files are stored and answered; only their rows are lost, and
                # the next start's scan finds the files unindexed and indexes them.
                LOGGER.error(
                    "could not index %d stored files (%s%s): %s; the next start indexes them",
                    len(rows),
                    rows[0].path if rows else "",
                    ", ..." if len(rows) > 1 else "",
                    exc,
                )

    def _write_rows(self, rows: Sequence[_Row]) -> None:
        """Write ``rows`` (in a transaction), as if one by one in their order.

        Each entity above the instances is written once per batch, with the values
        of the last row naming it: where many instances of one series come
        together, that is three statements for the batch, not three per instance.
        Of the levels above, only the rows the batch's instances may have left empty
        are checked, so the cost does not grow with the index.
        """
        # A file written twice in a batch holds what the last write put there.
        rows = list({row.path: row for row in rows}.values())
        if not rows:
            return
        db = self._connection
        vacated = self._filed_under(rows)
        db.executemany(
            "INSERT INTO files (path, mtime_ns, size, sop_instance_uid) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET mtime_ns = excluded.mtime_ns, "
            "size = excluded.size, sop_instance_uid = excluded.sop_instance_uid",
            [(row.path, *row.stamp, _sop_instance_uid(row)) for row in rows],
        )
        # The file may have held another instance (or one) before it changed.
        db.executemany(
            "DELETE FROM instances WHERE path = ? AND sop_instance_uid IS NOT ?",
            [(row.path, _sop_instance_uid(row)) for row in rows],
        )
        instances = [row.values for row in rows if row.values is not None]
        ids: dict[Level, dict[object, int]] = {}
        for level in LEVEL_ORDER[:-1]:
            # The last row naming an entity decides its values and its parent.
            last = {_unique(values, level): values for values in instances}
            ids[level] = {key: self._upsert(level, values, ids) for key, values in last.items()}
        db.executemany(
            _UPSERT_SQL[Level.IMAGE],
            [
                (*values[Level.IMAGE].values(), ids[Level.SERIES][_unique(values, Level.SERIES)])
                for values in instances
            ],
        )
        self._prune(vacated)

    def _upsert(
        self,
        level: Level,
        values: dict[Level, dict[str, object]],
        ids: dict[Level, dict[object, int]],
    ) -> int:
        """Write the entity of ``level`` that ``values`` name, under its parent (already
        written: its id in ``ids``); its id."""
        parent = LEVELS[level].parent
        params = list(values[level].values())
        if parent is not None:
            params.append(ids[parent][_unique(values, parent)])
        (row_id,) = self._connection.execute(_UPSERT_SQL[level], params).fetchone()
        return int(row_id)

    def _filed_under(self, rows: Sequence[_Row]) -> dict[Level, set[int]]:
        """The series, studies and patients that writing ``rows`` may empty: where the
        files' old instances and these instances are filed now, and the current
        parents of the series and studies they name (an entity re-filed under another
        parent leaves its old one)."""
        instances = [row.values for row in rows if row.values is not None]
        lists: list[list[object]] = [
            [row.path for row in rows],
            [_unique(values, Level.IMAGE) for values in instances],
            list({_unique(values, Level.SERIES) for values in instances}),
            list({_unique(values, Level.STUDY) for values in instances}),
        ]
        sql = _filed_under_sql(*map(len, lists))
        found = self._connection.execute(sql, [uid for uids in lists for uid in uids])
        vacated: dict[Level, set[int]] = {
            Level.SERIES: set(),
            Level.STUDY: set(),
            Level.PATIENT: set(),
        }
        for row in found.fetchall():
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


def _upsert_sql(level: Level) -> str:
    """INSERT of an entity of ``level``, or UPDATE of the one with its unique key;
    RETURNING its id. Parameters: the columns of :func:`_row_values` in their order,
    then the parent's id."""
    table = LEVELS[level]
    columns = [
        name for c in _COLUMNS[level] for name in (c.column, c.key_column) if name is not None
    ]
    if level is Level.IMAGE:
        columns += ["path", "transfer_syntax"]
    if table.parent is not None:
        columns.append("parent_id")
    unique = ATTRIBUTES[table.unique_keyword].column
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != unique)
    return (
        f"INSERT INTO {table.table} ({', '.join(columns)}) VALUES {_in_list(len(columns))} "
        f"ON CONFLICT({unique}) DO UPDATE SET {updates} RETURNING id"
    )


_UPSERT_SQL = {level: _upsert_sql(level) for level in LEVEL_ORDER}


def _unique(values: dict[Level, dict[str, object]], level: Level) -> object:
    """The unique key of the instance's entity at ``level``, in its row values."""
    return values[level][ATTRIBUTES[LEVELS[level].unique_keyword].column]


def _sop_instance_uid(row: _Row) -> object:
    return None if row.values is None else _unique(row.values, Level.IMAGE)


def _entry_row(entry: IndexEntry) -> _Row | None:
    """The row of a submitted file; None (logged) if the file is gone or unreadable."""
    path = entry.path
    try:
        stat = os.stat(path)
    except OSError as exc:
        LOGGER.warning("not indexed: %s (%s)", path, exc)
        return None
    stamp = (stat.st_mtime_ns, stat.st_size)
    if entry.header is None or entry.transfer_syntax is None:
        return _file_row(path, stamp)
    try:
        return _Row(path, stamp, _row_values(entry.header, entry.transfer_syntax, path))
    except (ValueError, LookupError) as exc:
        # pydicom's strict reading mode raises on a value its character set cannot
        # decode; the file is stored, and the next start's scan tries it again.
        LOGGER.error("could not index %s: %s; the next start indexes it", path, exc)
        return None


def _file_row(path: str, stamp: tuple[int, int]) -> _Row:
    """The row of a file, from the header read from disk."""
    read = _read_instance(Path(path))
    values = None if read is None else _row_values(*read, path)
    return _Row(path, stamp, values)


def _row_values(
    dataset: Dataset, transfer_syntax: str, path: str
) -> dict[Level, dict[str, object]] | None:
    """The column values of the instance in ``dataset`` at each level, in the order of
    :data:`_UPSERT_SQL`; None if it lacks a UID of the Q/R hierarchy or is a DICOMDIR.

    The values of the levels above the instance are shared by the rows of every
    instance with the same encoded values (a series' instances): not to be changed.
    """
    # The values as read, none converted by pydicom (see _element_text); by plain
    # int, which a lookup compares in C (a BaseTag key compares in Python).
    read = {int(tag): element.value for tag, element in dataset.items()}
    encodings = _encodings(read.get(_SPECIFIC_CHARACTER_SET))
    values: dict[Level, dict[str, object]] = {}
    for level, shared in _SHARED_COLUMN_VALUES.items():
        encoded = tuple(map(read.get, _TAGS[level]))
        try:
            values[level] = shared(encodings, encoded)
        except TypeError:  # a value set after reading that is no bytes (a list)
            values[level] = _column_values(level, encodings, encoded)
    image = values[Level.IMAGE] = _column_values(
        Level.IMAGE, encodings, tuple(map(read.get, _TAGS[Level.IMAGE]))
    )
    uids = (
        image["sop_instance_uid"],
        image["sop_class_uid"],
        values[Level.SERIES]["series_instance_uid"],
        values[Level.STUDY]["study_instance_uid"],
    )
    if not all(uids) or image["sop_class_uid"] == _MEDIA_STORAGE_DIRECTORY:
        LOGGER.debug("not indexed: %s lacks a UID of the Q/R hierarchy", path)
        return None
    image["path"] = path
    image["transfer_syntax"] = transfer_syntax
    return values


def _column_values(
    level: Level, encodings: tuple[str, ...], encoded: tuple[object, ...]
) -> dict[str, object]:
    """The column values of ``level`` from its attributes' ``encoded`` values (as
    :func:`_element_text` takes them), in :data:`_COLUMNS` order."""
    values: dict[str, object] = {}
    for column, value in zip(_COLUMNS[level], encoded, strict=True):
        text = _element_text(value, column.vr, encodings)
        if column.vr == "IS":
            values[column.column] = _integer(text)
            continue
        values[column.column] = text
        if column.key_column is not None:
            normal = None if text is None else _NORMAL_FORM[column.vr](text)
            values[column.key_column] = normal
    if level is Level.PATIENT and not values["patient_id"]:
        values["patient_id"] = ""
    return values


# The instances of a series share the values of the levels above theirs: decoded once
# (a few hundred bytes each, for many series arriving interleaved).
_SHARED_COLUMN_VALUES = {
    level: functools.lru_cache(maxsize=800)(functools.partial(_column_values, level))
    for level in LEVEL_ORDER[:-1]
}


def _encodings(value: object) -> tuple[str, ...]:
    """The Python codecs of a Specific Character Set (0008,0005) value (as read)."""
    terms = _element_text(value, "CS", ())
    return _codecs(terms or "")


@functools.lru_cache(maxsize=64)
def _codecs(terms: str) -> tuple[str, ...]:
    # PS3.3 C.12.1.1.2: an empty first value is the default repertoire.
    return tuple(convert_encodings([term.strip(" ") for term in terms.split("\\")]))


def _element_text(value: object, vr: str, encodings: Sequence[str]) -> str | None:
    """An element's value as read (encoded bytes, or set after reading) as pydicom would give it,
    multiple values joined by backslashes; None if absent or empty. ``vr``: the
    attribute's, whatever the encoding says (an implicit VR encoding says none).

    Decoded from the encoded value here, not by pydicom's conversion of the element
    (which builds a value object per element, several times the cost).
    """
    if value is None:
        return None  # absent, or too long to have been read
    if not isinstance(value, bytes):
        return value_text(value)  # set after reading (see _read_instance)
    if vr not in _CHARACTER_SET_VRS:
        text = value.decode(_DEFAULT_REPERTOIRE)
    elif _ESC in value:
        text = decode_bytes(value, encodings, _TEXT_DELIMITERS)
    else:
        # What decode_bytes does without an escape sequence, but for its handling
        # of a value its codec refuses (a warning or an error), which it does then.
        try:
            text = value.decode(encodings[0])
        except (UnicodeError, LookupError):
            text = decode_bytes(value, encodings, _TEXT_DELIMITERS)
    if "\\" not in text:
        text = text.rstrip("\x00 ")
        return (text.rstrip("=") if vr == "PN" else text).strip(" \x00") or None
    parts = [part.rstrip("\x00 ") for part in text.split("\\")]
    if vr == "PN":
        # As pydicom's PersonName: no trailing empty component groups.
        parts = [part.rstrip("=") for part in parts]
    return "\\".join(parts).strip(" \x00") or None


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
    return int(tag) > LAST_INDEXED_TAG


def _read_instance(path: Path) -> tuple[Dataset, str] | None:
    """The indexed attributes of a Part 10 file and its transfer syntax; None if it
    cannot be read or holds a DICOMDIR."""
    try:
        with path.open("rb") as file:
            dataset = read_partial(file, stop_when=_past_read_tags, specific_tags=_READ_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        LOGGER.debug("not indexed: %s (%s)", path, exc)
        return None
    meta = dataset.file_meta
    syntax = value_text(meta.get("TransferSyntaxUID"))
    if syntax is None or meta.get("MediaStorageSOPClassUID") == _MEDIA_STORAGE_DIRECTORY:
        return None
    if "SOPInstanceUID" not in dataset and "MediaStorageSOPInstanceUID" in meta:
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if "SOPClassUID" not in dataset and "MediaStorageSOPClassUID" in meta:
        dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    return dataset, syntax
