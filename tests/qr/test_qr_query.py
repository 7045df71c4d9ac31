"""C-FIND / C-GET / C-MOVE identifiers into SQL, and the response identifiers built from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicombus import sop_class
from dicombus.protocol import status
from dicombus.qr.index import Index, Level
from dicombus.qr.query import (
    Model,
    QueryError,
    find,
    model_for,
    parse_identifier,
    retrieve,
)
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from qr_archive import ENTRIES, build_archive


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    folder = tmp_path_factory.mktemp("archive")
    build_archive(folder)
    with Index(":memory:") as opened:
        opened.scan(folder)
        yield opened


def identifier(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def values(responses: Any, keyword: str) -> list[Any]:
    return [response.get(keyword) for response in responses]


def test_study_root_study_query_with_a_case_insensitive_name(index: Index) -> None:
    query = identifier("STUDY", PatientName="doe^*", StudyInstanceUID="", StudyDate="")
    found = list(find(index, query, Model.STUDY_ROOT))
    assert values(found, "StudyInstanceUID") == [ENTRIES[0].study_uid, ENTRIES[3].study_uid]
    assert values(found, "StudyDate") == ["20240102", "20240315"]
    assert all(r.QueryRetrieveLevel == "STUDY" for r in found)
    # Only the requested keys come back (and the level).
    assert {e.keyword for e in found[0]} == {
        "QueryRetrieveLevel",
        "PatientName",
        "StudyInstanceUID",
        "StudyDate",
    }


def test_non_ascii_values_are_answered_in_utf8(index: Index) -> None:
    query = identifier("PATIENT", PatientName="MÜLLER*", NumberOfPatientRelatedStudies="")
    (found,) = find(index, query, Model.PATIENT_ROOT)
    assert found.SpecificCharacterSet == "ISO_IR 192"
    assert str(found.PatientName) == "Müller^Jürgen"
    assert found.NumberOfPatientRelatedStudies == 1


def test_modalities_in_study_match_any_of_the_studys_series(index: Index) -> None:
    query = identifier("STUDY", ModalitiesInStudy="MR", StudyInstanceUID="")
    found = list(find(index, query, Model.STUDY_ROOT))
    assert values(found, "StudyInstanceUID") == [ENTRIES[4].study_uid, ENTRIES[0].study_uid]
    assert list(found[1].ModalitiesInStudy) == ["CT", "MR"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"StudyDate": "20240101-20240331"}, [1, 2]),
        ({"StudyDate": "-20240101"}, [3]),
        ({"StudyDate": "20240601-"}, [4]),
        ({"StudyTime": "0830-09"}, [1, 4]),
        ({"StudyTime": "0900"}, [4]),
        ({"AccessionNumber": "ACC?", "StudyDate": "2024*"}, None),
        ({"AccessionNumber": "ACC1\\ACC3"}, [3, 1]),
        ({"StudyInstanceUID": f"{ENTRIES[0].study_uid}\\{ENTRIES[6].study_uid}"}, [1, 4]),
    ],
)
def test_study_matching(index: Index, keys: dict[str, str], expected: list[int] | None) -> None:
    query = identifier("STUDY", StudyID="", **keys)
    if expected is None:
        with pytest.raises(QueryError) as raised:
            list(find(index, query, Model.STUDY_ROOT))
        assert raised.value.status == status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
        assert "StudyDate" in raised.value.comment
        return
    found = find(index, query, Model.STUDY_ROOT)
    assert [int(v) for v in values(found, "StudyID")] == expected


def test_series_and_image_levels(index: Index) -> None:
    series = identifier(
        "SERIES", StudyInstanceUID=ENTRIES[0].study_uid, Modality="", SeriesNumber=""
    )
    found = list(find(index, series, Model.STUDY_ROOT))
    assert values(found, "Modality") == ["CT", "MR"]
    images = identifier("IMAGE", SeriesInstanceUID=ENTRIES[0].series_uid, InstanceNumber="2")
    images.SOPInstanceUID = ""
    images.SOPClassUID = ""
    (image,) = find(index, images, Model.PATIENT_ROOT)
    assert image.SOPInstanceUID == ENTRIES[1].sop_uid
    assert image.SOPClassUID == sop_class.CTImageStorage


def test_keys_the_level_cannot_answer_come_back_empty(index: Index) -> None:
    query = identifier(
        "STUDY",
        StudyInstanceUID=ENTRIES[6].study_uid,
        SeriesInstanceUID="1.2.3",  # below the level: neither matched nor answered
        InstitutionName="",  # not in the index
        ReferencedStudySequence=Sequence(),
    )
    (found,) = find(index, query, Model.STUDY_ROOT)
    assert found.SeriesInstanceUID in (None, "")
    assert found.InstitutionName in (None, "")
    assert list(found.ReferencedStudySequence) == []


@pytest.mark.parametrize(
    ("query", "model", "words"),
    [
        (Dataset(), Model.PATIENT_ROOT, "no Query/Retrieve Level"),
        (identifier("PATIENT"), Model.STUDY_ROOT, "not in STUDY, SERIES, IMAGE"),
        (identifier("SERIES"), Model.PATIENT_STUDY_ONLY, "not in PATIENT, STUDY"),
        (identifier("FRAME"), Model.PATIENT_ROOT, "'FRAME'"),
        (identifier("IMAGE", SOPInstanceUID="1.2.*"), Model.PATIENT_ROOT, "SOPInstanceUID"),
    ],
)
def test_identifiers_the_scp_cannot_answer(query: Dataset, model: Model, words: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_identifier(query, model)
    assert raised.value.status == status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert words in raised.value.comment


def test_models_by_sop_class() -> None:
    assert model_for(sop_class.StudyRootQueryRetrieveInformationModelMove) is Model.STUDY_ROOT
    assert model_for(sop_class.PatientStudyOnlyQueryRetrieveInformationModelGet) is (
        Model.PATIENT_STUDY_ONLY
    )
    with pytest.raises(QueryError) as raised:
        model_for(sop_class.ModalityWorklistInformationModelFind)
    assert raised.value.status == status.SOP_CLASS_NOT_SUPPORTED


def test_values_are_bound_never_part_of_the_sql(index: Index) -> None:
    hostile = "x'); DROP TABLE patients; --"
    query = parse_identifier(identifier("PATIENT", PatientID=hostile), Model.PATIENT_ROOT)
    sql, params = query.find_sql()
    assert hostile not in sql
    assert params == (hostile,)
    assert list(find(index, identifier("PATIENT", PatientID=hostile), Model.PATIENT_ROOT)) == []
    assert index.count(Level.PATIENT) == 3


def test_retrieve_selects_the_instances_below_the_matches(index: Index) -> None:
    study = identifier("STUDY", StudyInstanceUID=ENTRIES[0].study_uid)
    found = retrieve(index, study, Model.STUDY_ROOT)
    assert [i.sop_instance_uid for i in found] == [e.sop_uid for e in ENTRIES[:3]]
    assert all(isinstance(i.path, Path) and i.path.is_file() for i in found)
    assert {i.transfer_syntax for i in found} == {e.syntax for e in ENTRIES[:3]}
    patient = identifier("PATIENT", PatientID="P3")
    assert len(retrieve(index, patient, Model.PATIENT_ROOT)) == 2


def test_retrieve_needs_the_unique_key_of_its_level(index: Index) -> None:
    with pytest.raises(QueryError) as raised:
        retrieve(
            index, identifier("SERIES", StudyInstanceUID=ENTRIES[0].study_uid), Model.STUDY_ROOT
        )
    assert "SeriesInstanceUID" in raised.value.comment
