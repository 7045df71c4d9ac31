"""PS3.4 C.2.2.2 matching: parsing key values, and the SQL they become run on SQLite.

The property tests compare the SQL conditions, executed by SQLite over a
column of values, with a reference matcher written here straight from the
standard's words (regular expressions, tuples of time components) rather than
from the library's normal forms.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from datetime import date, timedelta

import pytest
from dicombus.qr.matching import (
    AnyOf,
    KeyValueError,
    Range,
    SingleValue,
    WildCard,
    fold_person_name,
    normalize_date,
    normalize_time,
    parse_key,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# -- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "  ", "*", "CT\\*", "\\"])
def test_universal_matching(value: str | None) -> None:
    assert parse_key(value, "CS") is None


def test_single_value_and_wildcard() -> None:
    assert parse_key("CT", "CS") == SingleValue("CT")
    assert parse_key(" CT ", "CS") == SingleValue("CT")  # padding is not significant
    assert parse_key("C?", "CS") == WildCard("C?")
    assert parse_key("Doe^J*", "PN") == WildCard("doe^j*")  # PN is folded


def test_uid_list_is_any_of_its_uids() -> None:
    assert parse_key("1.2.3\\1.2.4", "UI") == AnyOf((SingleValue("1.2.3"), SingleValue("1.2.4")))


def test_date_and_time_ranges() -> None:
    assert parse_key("20240101-20240131", "DA") == Range("20240101", "20240131")
    assert parse_key("-20240131", "DA") == Range(None, "20240131")
    assert parse_key("20240101-", "DA") == Range("20240101", None)
    assert parse_key("0800-09", "TM") == Range("080000.000000", "095959.999999")
    assert parse_key("2024.01.02", "DA") == SingleValue("20240102")  # ACR-NEMA form


def test_integer_strings_match_by_value() -> None:
    assert parse_key("+07", "IS") == SingleValue(7)


@pytest.mark.parametrize(
    ("value", "vr"),
    [
        ("1.2.*", "UI"),
        ("2024*", "DA"),
        ("2024", "DA"),
        ("-", "DA"),
        ("25:00:00x", "TM"),
        ("1*", "IS"),
        ("one", "IS"),
    ],
)
def test_values_a_vr_does_not_allow(value: str, vr: str) -> None:
    with pytest.raises(KeyValueError):
        parse_key(value, vr)


def test_normal_forms() -> None:
    assert normalize_time("08") == "080000.000000"
    assert normalize_time("08:30:15.5") == "083015.500000"
    assert normalize_time("0830", high=True) == "083059.999999"
    assert normalize_time("8") is None
    assert normalize_date("20240229") == "20240229"
    assert normalize_date("240229") is None
    assert fold_person_name("MÜLLER^Hans") == "müller^hans"


def test_values_only_travel_as_parameters() -> None:
    hostile = "x' OR '1'='1"
    condition = AnyOf((SingleValue(hostile), WildCard(hostile + "*"))).condition("c")
    assert hostile not in condition.sql
    assert condition.params == (hostile, hostile + "*")


# -- executing on SQLite -------------------------------------------------------------------


def matching_rows(value: str | None, vr: str, stored: Sequence[object]) -> set[int]:
    """Indexes of the ``stored`` values (already in the index's form) the key matches."""
    matcher = parse_key(value, vr)
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (n INTEGER, v)")
        db.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(stored)))
        if matcher is None:
            rows = db.execute("SELECT n FROM t")
        else:
            condition = matcher.condition("v")
            rows = db.execute(f"SELECT n FROM t WHERE {condition.sql}", condition.params)
        return {n for (n,) in rows}


def test_brackets_are_literal_in_wildcards() -> None:
    stored = ["A[1]B", "A1B", "A[1]Bx"]
    assert matching_rows("A[1]?", "LO", stored) == {0}
    assert matching_rows("A[1]*", "LO", stored) == {0, 2}


def test_empty_values_match_only_universal() -> None:
    assert matching_rows("*", "LO", [None, "x"]) == {0, 1}
    assert matching_rows("?*", "LO", [None, "x"]) == {1}


def test_pn_ignores_case_other_text_does_not() -> None:
    names = [fold_person_name(n) for n in ("DOE^JOHN", "Doe^Jane", "ROE^JOHN")]
    assert matching_rows("doe^*", "PN", names) == {0, 1}
    assert matching_rows("doe^*", "LO", ["DOE^JOHN", "doe^john"]) == {1}


# -- reference matcher, from the standard's text -------------------------------------------


def reference_text_match(query: str, value: str | None, *, fold: bool) -> bool:
    """C.2.2.2.1 / C.2.2.2.4 / multiple values, by regular expressions."""
    alternatives = [alternative.strip(" ") for alternative in query.split("\\")]
    if any(alternative in ("", "*") for alternative in alternatives):
        return True  # C.2.2.2.3: universal matching, empty values included
    if value is None:
        return False
    for alternative in alternatives:
        if fold:
            alternative, value = alternative.casefold(), value.casefold()
        pattern = "".join(
            ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in alternative
        )
        if re.fullmatch(pattern, value, re.DOTALL):
            return True
    return False


TimeParts = tuple[int, ...]


def time_parts(text: str) -> TimeParts:
    """HHMMSS.FFFFFF as (hours, minutes, seconds, microseconds) with only the given parts."""
    parts = [int(text[i : i + 2]) for i in range(0, min(len(text), 6), 2)]
    if "." in text:
        fraction = text.split(".")[1]
        parts.append(int(fraction.ljust(6, "0")))
    return tuple(parts)


def reference_time_in_range(
    value: TimeParts, low: TimeParts | None, high: TimeParts | None
) -> bool:
    """C.2.2.2.5, with a partial upper bound covering the whole unit it names."""
    full = value + (0,) * (4 - len(value))
    if low is not None and full < low + (0,) * (4 - len(low)):
        return False
    return high is None or full[: len(high)] <= high


# -- properties ------------------------------------------------------------------------------

# Letters of both cases (some outside ASCII), the wildcard characters, the
# GLOB class brackets and a caret: what a pattern translation could get wrong.
TEXT = st.text(alphabet="aAbBzZéÉß^[]*?. -1", max_size=8)
PATTERNS = st.text(alphabet="aAbBéÉß^[]*?. \\", max_size=6)


@settings(max_examples=300, deadline=None)
@given(query=PATTERNS, values=st.lists(st.one_of(st.none(), TEXT), max_size=12))
def test_wildcards_match_as_the_standard_says(query: str, values: list[str | None]) -> None:
    stored = [None if v is None or not v.strip(" ") else v.strip(" ") for v in values]
    expected = {n for n, v in enumerate(stored) if reference_text_match(query, v, fold=False)}
    assert matching_rows(query, "LO", stored) == expected


@settings(max_examples=300, deadline=None)
@given(query=PATTERNS, values=st.lists(TEXT.filter(lambda v: v.strip(" ")), max_size=12))
def test_person_names_match_without_case(query: str, values: list[str]) -> None:
    stored = [fold_person_name(v.strip(" ")) for v in values]
    expected = {
        n for n, v in enumerate(values) if reference_text_match(query, v.strip(" "), fold=True)
    }
    assert matching_rows(query, "PN", stored) == expected


UIDS = st.sampled_from(["1.2.3", "1.2.30", "1.2.3.4", "2.25.1", "1.2"])


@given(query=st.lists(UIDS, min_size=1, max_size=3), values=st.lists(UIDS, max_size=8))
def test_uid_lists(query: list[str], values: list[str]) -> None:
    expected = {n for n, v in enumerate(values) if v in query}
    assert matching_rows("\\".join(query), "UI", values) == expected


DATES = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@given(
    low=st.one_of(st.none(), DATES),
    span=st.integers(min_value=-5, max_value=400),
    values=st.lists(DATES, max_size=10),
)
def test_date_ranges(low: date | None, span: int, values: list[date]) -> None:
    high = None if low is None else low + timedelta(days=span)
    if low is None and high is None:
        high = date(2000, 1, 1)
    query = f"{low:%Y%m%d}" if low else ""
    query += f"-{high:%Y%m%d}" if high else "-"
    stored = [normalize_date(f"{v:%Y%m%d}") for v in values]
    expected = {
        n for n, v in enumerate(values) if (low is None or v >= low) and (high is None or v <= high)
    }
    assert matching_rows(query, "DA", stored) == expected


def time_text(parts: Sequence[int]) -> str:
    text = "".join(f"{p:02d}" for p in parts[:3])
    return text + (f".{parts[3]:06d}".rstrip("0") if len(parts) > 3 and parts[3] else "")


TIMES = st.lists(st.integers(0, 59), min_size=1, max_size=3).map(
    lambda parts: [min(parts[0], 23), *parts[1:]]
)


@given(
    low=st.one_of(st.none(), TIMES),
    high=st.one_of(st.none(), TIMES),
    values=st.lists(TIMES, max_size=10),
)
def test_time_ranges(
    low: list[int] | None, high: list[int] | None, values: list[list[int]]
) -> None:
    if low is None and high is None:
        high = [12]
    query = (time_text(low) if low else "") + "-" + (time_text(high) if high else "")
    stored = [normalize_time(time_text(v)) for v in values]
    expected = {
        n
        for n, v in enumerate(values)
        if reference_time_in_range(
            time_parts(time_text(v)),
            time_parts(time_text(low)) if low else None,
            time_parts(time_text(high)) if high else None,
        )
    }
    assert matching_rows(query, "TM", stored) == expected


@given(query=st.integers(-5, 5), values=st.lists(st.one_of(st.none(), st.integers(-5, 5))))
def test_integer_strings(query: int, values: list[int | None]) -> None:
    expected = {n for n, v in enumerate(values) if v == query}
    assert matching_rows(str(query), "IS", values) == expected
