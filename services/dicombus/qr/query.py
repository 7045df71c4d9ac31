"""C-FIND / C-GET / C-MOVE identifiers into SQL over the index, and matches back into identifiers.

:func:`parse_identifier` reads the Query/Retrieve Level and the keys of an
identifier under an information model (:class:`Model`) and returns a
:class:`Query`. Its SQL is assembled from the constant table and column names
of :data:`dicombus.qr.index.ATTRIBUTES` only; every value the peer sent is a
bound parameter.

Keys of the query level and the levels above it are matched (a relational
reading of PS3.4 C.4.1.2.1: a peer that names the patient at the series level
gets the series of that patient). Keys of lower levels, and keys the index
does not hold, are not matched and come back empty, as PS3.4 C.4.1.1.3.2
allows for keys an SCP does not support. Retrieval selects the instances
below every matching entity of the retrieve level, and asks for the unique
key of that level (PS3.4 C.4.2.2.1 / C.4.3.2.1).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicombus import sop_class
from dicombus.protocol import status
from dicombus.protocol.errors import DicombusError
from dicombus.qr.index import (
    ATTRIBUTES,
    LEVEL_ORDER,
    LEVELS,
    Index,
    Level,
    StoredInstance,
    value_text,
)
from dicombus.qr.matching import Condition, KeyValueError, parse_key

_QUERY_RETRIEVE_LEVEL = Tag("QueryRetrieveLevel")
_SPECIFIC_CHARACTER_SET = Tag("SpecificCharacterSet")
# PS3.5 6.1.2.5.3: Unicode in UTF-8, what every response with non-ASCII text uses.
_UTF8 = "ISO_IR 192"


class Model(Enum):
    """A Query/Retrieve information model and the levels it has (PS3.4 C.6)."""

    PATIENT_ROOT = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)
    STUDY_ROOT = (Level.STUDY, Level.SERIES, Level.IMAGE)
    PATIENT_STUDY_ONLY = (Level.PATIENT, Level.STUDY)  # retired (PS3.4-2004 C.6.3)

    @property
    def levels(self) -> tuple[Level, ...]:
        levels: tuple[Level, ...] = self.value
        return levels


MODEL_BY_SOP_CLASS: dict[str, Model] = {
    str(uid): model
    for model, uids in (
        (
            Model.PATIENT_ROOT,
            (
                sop_class.PatientRootQueryRetrieveInformationModelFind,
                sop_class.PatientRootQueryRetrieveInformationModelGet,
                sop_class.PatientRootQueryRetrieveInformationModelMove,
            ),
        ),
        (
            Model.STUDY_ROOT,
            (
                sop_class.StudyRootQueryRetrieveInformationModelFind,
                sop_class.StudyRootQueryRetrieveInformationModelGet,
                sop_class.StudyRootQueryRetrieveInformationModelMove,
            ),
        ),
        (
            Model.PATIENT_STUDY_ONLY,
            (
                sop_class.PatientStudyOnlyQueryRetrieveInformationModelFind,
                sop_class.PatientStudyOnlyQueryRetrieveInformationModelGet,
                sop_class.PatientStudyOnlyQueryRetrieveInformationModelMove,
            ),
        ),
    )
    for uid in uids
}


class QueryError(DicombusError):
    """An identifier the SCP cannot answer; ``status`` is the failure to send."""

    def __init__(self, comment: str, code: int = status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS) -> None:
        super().__init__(comment)
        self.status = code
        self.comment = comment


@dataclass(frozen=True, slots=True)
class DerivedAttribute:
    """A key computed from lower levels (PS3.4 C.6.1.1.2 optional keys).

    ``select`` is the SQL expression of its value over the level's alias;
    ``match``, when the key can be matched, wraps a condition on ``m.<column>``.
    """

    keyword: str
    level: Level
    vr: str
    select: str
    match: str | None = None
    match_column: str = ""


# Correlated subqueries over the aliases of dicombus.qr.query's joins (pa, st, se).
_SERIES_OF_STUDY = "SELECT id FROM series WHERE parent_id = st.id"
_STUDIES_OF_PATIENT = "SELECT id FROM studies WHERE parent_id = pa.id"
_SERIES_OF_PATIENT = f"SELECT id FROM series WHERE parent_id IN ({_STUDIES_OF_PATIENT})"

DERIVED: dict[str, DerivedAttribute] = {
    attribute.keyword: attribute
    for attribute in (
        DerivedAttribute(
            "ModalitiesInStudy",
            Level.STUDY,
            "CS",
            "(SELECT group_concat(modality, '\\') FROM (SELECT DISTINCT m.modality AS modality "
            "FROM series m WHERE m.parent_id = st.id AND m.modality IS NOT NULL "
            "ORDER BY m.modality))",
            match="EXISTS (SELECT 1 FROM series m WHERE m.parent_id = st.id AND {condition})",
            match_column="m.modality",
        ),
        DerivedAttribute(
            "NumberOfPatientRelatedStudies",
            Level.PATIENT,
            "IS",
            "(SELECT count(*) FROM studies WHERE parent_id = pa.id)",
        ),
        DerivedAttribute(
            "NumberOfPatientRelatedSeries",
            Level.PATIENT,
            "IS",
            f"(SELECT count(*) FROM series WHERE parent_id IN ({_STUDIES_OF_PATIENT}))",
        ),
        DerivedAttribute(
            "NumberOfPatientRelatedInstances",
            Level.PATIENT,
            "IS",
            f"(SELECT count(*) FROM instances WHERE parent_id IN ({_SERIES_OF_PATIENT}))",
        ),
        DerivedAttribute(
            "NumberOfStudyRelatedSeries",
            Level.STUDY,
            "IS",
            "(SELECT count(*) FROM series WHERE parent_id = st.id)",
        ),
        DerivedAttribute(
            "NumberOfStudyRelatedInstances",
            Level.STUDY,
            "IS",
            f"(SELECT count(*) FROM instances WHERE parent_id IN ({_SERIES_OF_STUDY}))",
        ),
        DerivedAttribute(
            "NumberOfSeriesRelatedInstances",
            Level.SERIES,
            "IS",
            "(SELECT count(*) FROM instances WHERE parent_id = se.id)",
        ),
    )
}


@dataclass(slots=True)
class Query:
    """A parsed identifier: the level, the SQL conditions and the keys to answer with."""

    model: Model
    level: Level
    # The identifier's elements, in its order, that a response carries back.
    requested: list[DataElement] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    # Unique keys given a non-universal value, by level.
    unique_keys: set[Level] = field(default_factory=set)

    def find_sql(self) -> tuple[str, tuple[object, ...]]:
        """SELECT one row per matching entity of the query level, columns by keyword."""
        columns = [
            f'{LEVELS[a.level].alias}.{a.column} AS "{a.keyword}"'
            for a in ATTRIBUTES.values()
            if self.covers(a.level)
        ]
        columns += [
            f'{d.select} AS "{d.keyword}"'
            for d in DERIVED.values()
            if self.covers(d.level) and self._requests(d.keyword)
        ]
        return self._sql(columns, self.level)

    def retrieve_sql(self) -> tuple[str, tuple[object, ...]]:
        """SELECT the instances below every matching entity of the query level."""
        columns = ["im.path", "im.sop_class_uid", "im.sop_instance_uid", "im.transfer_syntax"]
        return self._sql(columns, Level.IMAGE)

    def _sql(self, columns: list[str], down_to: Level) -> tuple[str, tuple[object, ...]]:
        levels = LEVEL_ORDER[: LEVEL_ORDER.index(down_to) + 1]
        joins = "patients pa" + "".join(
            f" JOIN {LEVELS[level].table} {LEVELS[level].alias} "
            f"ON {LEVELS[level].alias}.parent_id = {LEVELS[LEVELS[level].parent or level].alias}.id"
            for level in levels[1:]
        )
        where = " AND ".join(c.sql for c in self.conditions) or "1"
        # Top-down from the model's root: Patient Root groups by patient, Study
        # Root lists studies by date.
        ordered = levels[levels.index(self.model.levels[0]) :]
        order = ", ".join(column for level in ordered for column in _ORDER[level])
        sql = f"SELECT {', '.join(columns)} FROM {joins} WHERE {where} ORDER BY {order}"
        return sql, tuple(param for c in self.conditions for param in c.params)

    def covers(self, level: Level) -> bool:
        return LEVEL_ORDER.index(level) <= LEVEL_ORDER.index(self.level)

    def _requests(self, keyword: str) -> bool:
        return any(element.keyword == keyword for element in self.requested)

    def response(self, row: sqlite3.Row) -> Dataset:
        """The identifier of one C-FIND match: the requested keys, valued from ``row``."""
        answer = Dataset()
        names = row.keys()
        non_ascii = False
        for element in self.requested:
            value = row[element.keyword] if element.keyword in names else None
            if value is not None and isinstance(value, str) and not value.isascii():
                non_ascii = True
            answer.add(_answer_element(element, value))
        answer.QueryRetrieveLevel = self.level.value
        if non_ascii:
            answer.SpecificCharacterSet = _UTF8
        return answer


# Results come in a stable, readable order: patients by name, studies by date,
# series and instances by number; the unique key breaks ties.
_ORDER: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: ("pa.patient_name_key", "pa.patient_id"),
    Level.STUDY: ("st.study_date_key", "st.study_time_key", "st.study_instance_uid"),
    Level.SERIES: ("se.series_number", "se.series_instance_uid"),
    Level.IMAGE: ("im.instance_number", "im.sop_instance_uid"),
}


def model_for(sop_class_uid: str) -> Model:
    """The information model of a Find, Get or Move SOP class."""
    try:
        return MODEL_BY_SOP_CLASS[str(sop_class_uid)]
    except KeyError:
        raise QueryError(
            f"{sop_class_uid} is not a Patient Root, Study Root or Patient/Study Only "
            "Query/Retrieve SOP class",
            status.SOP_CLASS_NOT_SUPPORTED,
        ) from None


def parse_identifier(identifier: Dataset, model: Model) -> Query:
    """Read a C-FIND, C-GET or C-MOVE identifier; raise QueryError for one we cannot answer."""
    level = _level(identifier, model)
    query = Query(model=model, level=level)
    for element in identifier:
        if element.tag in (_QUERY_RETRIEVE_LEVEL, _SPECIFIC_CHARACTER_SET):
            continue
        query.requested.append(element)
        if element.VR == "SQ":
            continue  # sequence matching (C.2.2.2.6) is not offered
        _add_condition(query, element)
    return query


def _level(identifier: Dataset, model: Model) -> Level:
    element = identifier.get(_QUERY_RETRIEVE_LEVEL)
    text = value_text(element.value) if element is not None else None
    if text is None:
        raise QueryError("the identifier has no Query/Retrieve Level (0008,0052)")
    allowed = {level.value: level for level in model.levels}
    if text.upper() not in allowed:
        # Error Comment is an LO (64 characters): short enough to arrive whole.
        raise QueryError(f"QueryRetrieveLevel {text!r} not in {', '.join(allowed)}")
    return allowed[text.upper()]


def _add_condition(query: Query, element: DataElement) -> None:
    keyword = element.keyword
    stored = ATTRIBUTES.get(keyword)
    derived = DERIVED.get(keyword)
    if stored is not None and query.covers(stored.level):
        level, vr = stored.level, stored.vr
        column = f"{LEVELS[stored.level].alias}.{stored.key_column}"
        wrap = "{condition}"
    elif derived is not None and derived.match and query.covers(derived.level):
        level, vr, column, wrap = derived.level, derived.vr, derived.match_column, derived.match
    else:
        return
    try:
        matcher = parse_key(value_text(element.value), vr)
    except KeyValueError as exc:
        raise QueryError(f"{keyword}: {exc}") from None
    if matcher is None:
        return
    condition = matcher.condition(column)
    query.conditions.append(Condition(wrap.format(condition=condition.sql), condition.params))
    if stored is not None and keyword == LEVELS[level].unique_keyword:
        query.unique_keys.add(level)


def _answer_element(requested: DataElement, value: object) -> DataElement:
    vr = requested.VR
    if vr in ("UN", "") and requested.keyword:
        vr = dictionary_VR(requested.tag)
    if vr == "SQ":
        return DataElement(requested.tag, vr, [])
    if isinstance(value, str) and "\\" in value:
        return DataElement(requested.tag, vr, value.split("\\"))
    return DataElement(requested.tag, vr, value)


def find(index: Index, identifier: Dataset, model: Model) -> Iterator[Dataset]:
    """The response identifiers of a C-FIND.

    The identifier is checked (QueryError) and every match read from the
    index before this returns; each response is built as it is taken.
    """
    query = parse_identifier(identifier, model)
    sql, params = query.find_sql()
    rows = index.select(sql, params)
    return (query.response(row) for row in rows)


def retrieve(index: Index, identifier: Dataset, model: Model) -> list[StoredInstance]:
    """The instances a C-GET or C-MOVE with ``identifier`` asks for."""
    query = parse_identifier(identifier, model)
    if query.level not in query.unique_keys:
        unique = LEVELS[query.level].unique_keyword
        # PS3.4 C.4.2.2.1 / C.4.3.2.1: the unique key of the retrieve level.
        raise QueryError(f"a {query.level.value} retrieve needs a value for {unique}")
    sql, params = query.retrieve_sql()
    return [
        StoredInstance(
            path=Path(row["path"]),
            sop_class_uid=row["sop_class_uid"],
            sop_instance_uid=row["sop_instance_uid"],
            transfer_syntax=row["transfer_syntax"],
        )
        for row in index.select(sql, params)
    ]
