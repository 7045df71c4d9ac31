"""Rules on the event a routing worker receives: every operator, every combinator, on the
DICOM JSON of real datasets (pydicom's CT_small.dcm and MR_small.dcm), and where a match goes."""

from __future__ import annotations

import fnmatch
import re
import time
from datetime import date, timedelta
from typing import Any

import pytest
from dicombus.routing import Per, parse_routing_config
from dicombus.routing.operators import compile_tests
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from routing_support import real_dataset, store_envelope

DESTINATIONS = """
[[routing.destinations]]
name = "pacs"
type = "dimse"
ae_title = "PACS"
host = "127.0.0.1"
port = 11113

[[routing.destinations]]
name = "ai"
type = "stow-rs"
url = "http://127.0.0.1:8042/dicom-web/studies"
"""


def rule(match: str, *, per: str = "instance", destinations: str = '["pacs"]') -> str:
    return (
        f'{DESTINATIONS}\n[[routing.rules]]\nname = "r"\nper = "{per}"\n'
        f"destinations = {destinations}\n[routing.rules.match]\n{match}\n"
    )


def matches(match: str, envelope: dict[str, Any]) -> bool:
    config = parse_routing_config(rule(match))
    return config.rules[0].matches(envelope)


CT = store_envelope(real_dataset("CT_small.dcm"), calling="CT1")
MR = store_envelope(real_dataset("MR_small.dcm"), calling="MR7", edge="edge-2")


@pytest.mark.parametrize(
    ("match", "ct", "mr"),
    [
        # equals: a keyword, a tag, a list of choices, a number against DS and US values
        ('Modality = "CT"', True, False),
        ('"(0008,0060)" = "MR"', False, True),
        ('"00080060" = ["MR", "CT"]', True, True),
        ("SliceThickness = 5", True, False),
        ("Rows = 128", True, False),
        ('StationName = "CT01_OC0"', True, False),
        # a person name compares by its Alphabetic group
        ('PatientName = "CompressedSamples^CT1"', True, False),
        # one value of a multi-valued attribute is enough
        ('ImageType = "AXIAL"', True, False),
        # wildcard: * and ? as in PS3.4 C.2.2.2.4, the whole value
        ('PatientName = { wildcard = "*^CT?" }', True, False),
        ('PatientName = { wildcard = "CT*" }', False, False),
        ('InstitutionName = { wildcard = "JFK*" }', True, False),
        # regex: searched anywhere
        ('PatientID = { regex = "CT[0-9]" }', True, False),
        ('PatientID = { regex = "^CT" }', False, False),
        ('PatientName = { regex = "(?i)compressed" }', True, True),
        # numeric ranges
        ("SliceThickness = { min = 4.5, max = 5.5 }", True, False),
        ("SliceThickness = { max = 4 }", False, True),
        ("Rows = { min = 64 }", True, True),
        # date ranges (DA), open on either side, or one day
        ('StudyDate = { date_range = "20040101-20041231" }', True, True),
        ('StudyDate = { date_range = "-20040630" }', True, False),
        ('StudyDate = { date_range = "20040826" }', False, True),
        # presence and absence
        ("StationName = { present = true }", True, True),
        ("BodyPartExamined = { present = false }", True, True),
        ("BodyPartExamined = { present = true }", False, False),
        # the event's own facts
        ('event = "EVT_C_STORE"', True, True),
        ('calling_ae = { wildcard = "MR*" }', False, True),
        ('called_ae = "EDGE"', True, True),
        ('edge = "edge-2"', False, True),
        ('sop_class = "CTImageStorage"', True, False),
        ('sop_class = "1.2.840.10008.5.1.4.1.1.4"', False, True),
        ('modality = "MR"', False, True),
    ],
)
def test_each_operator_on_real_datasets(match: str, ct: bool, mr: bool) -> None:
    assert (matches(match, CT), matches(match, MR)) == (ct, mr)


def test_every_key_of_a_match_table_must_hold() -> None:
    assert matches('Modality = "CT"\ncalling_ae = "CT1"', CT)
    assert not matches('Modality = "CT"\ncalling_ae = "MR7"', CT)
    # two operators on one attribute: both
    assert matches('PatientID = { regex = "CT", wildcard = "1*" }', CT)
    assert not matches('PatientID = { regex = "CT", wildcard = "2*" }', CT)


def test_any_all_not_nest() -> None:
    match = """
[[routing.rules.match.any]]
Modality = "MR"
[[routing.rules.match.any]]
Modality = "CT"
[routing.rules.match.any.not]
StationName = { wildcard = "CT01*" }
"""
    # MR matches the first branch; CT is excluded by the not() in the second.
    assert (matches(match, CT), matches(match, MR)) == (False, True)
    inline = 'all = [{ Modality = "CT" }, { not = { PatientID = "nobody" } }]'
    assert matches(inline, CT) and not matches(inline, MR)


def test_an_empty_attribute_is_not_present() -> None:
    dataset = real_dataset("CT_small.dcm")
    dataset.StationName = ""
    envelope = store_envelope(dataset)
    assert matches("StationName = { present = false }", envelope)
    assert not matches("StationName = { present = true }", envelope)


def test_an_attribute_inside_a_sequence_matches_in_any_item() -> None:
    dataset = real_dataset("CT_small.dcm")
    first, second = Dataset(), Dataset()
    first.ReferencedSOPInstanceUID = "1.2.3.1"
    second.ReferencedSOPInstanceUID = "1.2.3.2"
    dataset.ReferencedImageSequence = [first, second]
    envelope = store_envelope(dataset)
    assert matches('"ReferencedImageSequence.ReferencedSOPInstanceUID" = "1.2.3.2"', envelope)
    assert not matches('"ReferencedImageSequence.ReferencedSOPInstanceUID" = "1.2.3.3"', envelope)


def test_routes_per_study_series_instance_and_each_destination_once() -> None:
    ds = real_dataset("CT_small.dcm")
    text = rule('Modality = "CT"', per="study", destinations='["pacs", "ai"]')
    text += '\n[[routing.rules]]\nname = "also"\nper = "series"\ndestinations = ["pacs"]\n'
    config = parse_routing_config(text)
    found = config.routes(CT)
    assert [(r.rule, r.destination, r.per, r.uid) for r in found] == [
        ("r", "pacs", Per.STUDY, ds.StudyInstanceUID),
        ("r", "ai", Per.STUDY, ds.StudyInstanceUID),
    ]
    assert {r.sop_instance_uid for r in found} == {ds.SOPInstanceUID}
    # The second rule alone: per series.
    assert [(r.destination, r.uid) for r in config.routes(MR)] == [
        ("pacs", real_dataset("MR_small.dcm").SeriesInstanceUID)
    ]


def test_only_stored_instances_are_routed() -> None:
    config = parse_routing_config(rule('Modality = "CT"'))
    failed = store_envelope(real_dataset(), status_category="Failure", stored=False)
    echo = {**CT, "type": "EVT_C_ECHO"}
    assert config.routes(CT) and not config.routes(failed) and not config.routes(echo)


def test_a_rule_without_match_takes_every_stored_instance() -> None:
    text = DESTINATIONS + '[[routing.rules]]\nname = "all"\ndestinations = ["ai"]\n'
    config = parse_routing_config(text)
    assert [r.destination for r in config.routes(MR)] == ["ai"]


# -- properties against a reference --

_TEXT = st.text(alphabet="AB^*?.-_ 1", max_size=8)
_PATTERN = st.text(alphabet="AB^*?.-_ 1", max_size=6)


@given(pattern=_PATTERN, value=_TEXT)
def test_wildcard_agrees_with_fnmatch(pattern: str, value: str) -> None:
    # fnmatch has the same * and ? (and [...], which this alphabet never contains).
    expected = fnmatch.fnmatchcase(value, pattern)
    assert compile_tests({"wildcard": pattern})([value]) is expected


@given(pattern=st.sampled_from(["^A", "B$", "A.B", "[0-9]+", "^(A|B)*$", "\\^"]), value=_TEXT)
def test_regex_agrees_with_re_search(pattern: str, value: str) -> None:
    assert compile_tests({"regex": pattern})([value]) is (re.search(pattern, value) is not None)


_NUMBER = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(low=_NUMBER, high=_NUMBER, value=_NUMBER)
def test_numeric_range_agrees_with_comparison(low: float, high: float, value: float) -> None:
    if low > high:
        low, high = high, low
    test = compile_tests({"min": low, "max": high})
    assert test([repr(value)]) is (low <= value <= high)
    assert test([str(int(value))]) is (low <= int(value) <= high)


_DAY = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@given(low=_DAY, high=_DAY, day=_DAY, seconds=st.integers(0, 86399))
def test_date_range_agrees_with_dates(low: date, high: date, day: date, seconds: int) -> None:
    if low > high:
        low, high = high, low
    test = compile_tests({"date_range": f"{low:%Y%m%d}-{high:%Y%m%d}"})
    inside = low <= day <= high
    assert test([f"{day:%Y%m%d}"]) is inside  # DA
    moment = f"{day:%Y%m%d}{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
    assert test([moment + ".123+0100"]) is inside  # DT: the whole day is in range
    assert compile_tests({"date_range": f"{low:%Y%m%d}-"})([f"{day:%Y%m%d}"]) is (day >= low)
    before = compile_tests({"date_range": f"-{high:%Y%m%d}"})
    assert before([f"{day + timedelta(0):%Y%m%d}"]) is (day <= high)


def test_matching_rate() -> None:
    """Not a timing assertion: prints matches/s for docs/routing.md (pytest -s)."""
    config = parse_routing_config(
        rule(
            'Modality = "CT"\ncalling_ae = { wildcard = "CT*" }\n'
            'StudyDate = { date_range = "20040101-" }\n'
            'PatientID = { regex = "^1CT" }\nSliceThickness = { min = 1, max = 10 }',
            destinations='["pacs", "ai"]',
        )
    )
    count = 20_000
    started = time.perf_counter()
    for _ in range(count):
        config.routes(CT)
    elapsed = time.perf_counter() - started
    assert len(config.routes(CT)) == 2
    print(f"\n{count / elapsed:,.0f} events/s through a 5-test rule to 2 destinations")
