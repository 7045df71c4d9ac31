"""PS3.4 C.2.2.2 attribute matching, turned into SQL conditions with bound parameters.

A C-FIND key value becomes a :class:`Matcher` (or ``None`` for universal
matching) through :func:`parse_key`; the matcher then renders an SQL
condition over a column expression that the caller names. Values from the
peer only ever travel as bound parameters, never inside the SQL text.

The kinds of matching, by the standard's names:

- Universal (C.2.2.2.3): an empty value, or ``*`` alone, matches everything.
- Single Value (C.2.2.2.1): equality. Case-sensitive, except for PN values,
  which this SCP matches case-insensitively (the standard lets a PN match
  ignore case); both sides are folded with :func:`fold_person_name`.
- List of UID (C.2.2.2.2) and Multiple Value matching: values separated by
  backslashes; an entity matches when any one of them matches. Each value is
  matched on its own, so ``CT\\MR`` asks for either modality.
- Wild Card (C.2.2.2.4): ``*`` matches any run of characters (none
  included), ``?`` exactly one, for the text VRs only. There is no escape:
  in a query these two characters are always wildcards.
- Range (C.2.2.2.5): ``A-B``, ``-B`` and ``A-`` for DA and TM, inclusive.

Dates and times are compared in a normal form that :func:`normalize_date` and
:func:`normalize_time` compute both for stored values (by the index) and for
query values (here), so ``0800`` and ``080000`` are the same time. An entity
whose value is empty matches only universal matching.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from dicombus.protocol.errors import DicombusError

# PS3.4 C.2.2.2.4: the VRs whose values may hold wildcards.
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
# PS3.4 C.2.2.2.5: the VRs range matching applies to (DT has no key in our index).
RANGE_VRS = frozenset({"DA", "TM"})
# Leading spaces are significant only in these text VRs (PS3.5 6.2); trailing
# padding never is.
_LEADING_SPACE_VRS = frozenset({"LT", "ST", "UT"})

_DATE = re.compile(r"\d{8}")
# PS3.5 6.2 TM: HH[MM[SS[.F{1,6}]]]; ACR-NEMA's HH:MM:SS is still seen in old files.
_TIME = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")


class KeyValueError(DicombusError, ValueError):
    """A key value that its VR does not allow in a query (answered 0xA900 by the SCP)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """An SQL boolean expression and the parameters bound to its ``?`` placeholders."""

    sql: str
    params: tuple[object, ...]


class Matcher(ABC):
    """One way of matching a key value against a column."""

    @abstractmethod
    def condition(self, column: str) -> Condition:
        """The condition over ``column``, an SQL expression chosen by the caller."""


@dataclass(frozen=True, slots=True)
class SingleValue(Matcher):
    value: object

    def condition(self, column: str) -> Condition:
        return Condition(f"{column} = ?", (self.value,))


@dataclass(frozen=True, slots=True)
class WildCard(Matcher):
    """Matched with SQLite's GLOB, which is case-sensitive and knows ``*`` and ``?``."""

    pattern: str

    def condition(self, column: str) -> Condition:
        # GLOB's only other special character is '[' (a character class);
        # "[[]" is a class holding just '[', i.e. a literal bracket.
        return Condition(f"{column} GLOB ?", (self.pattern.replace("[", "[[]"),))


@dataclass(frozen=True, slots=True)
class Range(Matcher):
    """Inclusive bounds in normal form; None for an open end."""

    low: str | None
    high: str | None

    def condition(self, column: str) -> Condition:
        parts: list[str] = []
        params: list[object] = []
        if self.low is not None:
            parts.append(f"{column} >= ?")
            params.append(self.low)
        if self.high is not None:
            parts.append(f"{column} <= ?")
            params.append(self.high)
        return Condition("(" + " AND ".join(parts) + ")", tuple(params))


@dataclass(frozen=True, slots=True)
class AnyOf(Matcher):
    """Multiple Value / List of UID matching: any alternative matches."""

    alternatives: tuple[Matcher, ...]

    def condition(self, column: str) -> Condition:
        conditions = [alternative.condition(column) for alternative in self.alternatives]
        return Condition(
            "(" + " OR ".join(c.sql for c in conditions) + ")",
            tuple(param for c in conditions for param in c.params),
        )


def parse_key(value: str | None, vr: str) -> Matcher | None:
    """The matcher for a query ``value`` of an attribute of ``vr``; None means universal.

    Raises KeyValueError when the value is not one the VR allows in a query.
    """
    if value is None:
        return None
    alternatives: list[Matcher] = []
    for part in value.split("\\"):
        matcher = _parse_one(_strip(part, vr), vr)
        if matcher is None:
            return None  # one universal alternative makes the whole key universal
        alternatives.append(matcher)
    if len(alternatives) == 1:
        return alternatives[0]
    return AnyOf(tuple(alternatives))


def _strip(text: str, vr: str) -> str:
    text = text.rstrip(" \x00")
    return text if vr in _LEADING_SPACE_VRS else text.lstrip(" ")


def _parse_one(text: str, vr: str) -> Matcher | None:
    # PS3.4 C.2.2.2.4 note: a lone "*" is the same as universal matching.
    if text in ("", "*"):
        return None
    if vr in RANGE_VRS:
        return _parse_date_or_time(text, vr)
    if vr == "IS":
        try:
            return SingleValue(int(text))
        except ValueError:
            raise KeyValueError(f"{text!r} is not an integer string (IS)") from None
    has_wildcard = "*" in text or "?" in text
    if has_wildcard and vr not in WILDCARD_VRS:
        raise KeyValueError(f"wildcards are not allowed in a {vr} key: {text!r}")
    if vr == "PN":
        text = fold_person_name(text)
    return WildCard(text) if has_wildcard else SingleValue(text)


def _parse_date_or_time(text: str, vr: str) -> Matcher:
    low_text, dash, high_text = text.partition("-")
    if not dash:
        return SingleValue(_normal_bound(text, vr, text, high=False))
    if not low_text and not high_text:
        raise KeyValueError(f"the range {text!r} has neither a start nor an end")
    return Range(
        _normal_bound(low_text, vr, text, high=False) if low_text else None,
        _normal_bound(high_text, vr, text, high=True) if high_text else None,
    )


def _normal_bound(bound: str, vr: str, whole: str, *, high: bool) -> str:
    normal = normalize_date(bound) if vr == "DA" else normalize_time(bound, high=high)
    if normal is None:
        what = "date (YYYYMMDD)" if vr == "DA" else "time (HH[MM[SS[.FFFFFF]]])"
        raise KeyValueError(f"{whole!r} is not a {what} or a range of them")
    return normal


def normalize_date(text: str) -> str | None:
    """``YYYYMMDD`` for a DA value (ACR-NEMA's ``YYYY.MM.DD`` too), else None."""
    compact = text.strip().replace(".", "")
    return compact if _DATE.fullmatch(compact) else None


def normalize_time(text: str, *, high: bool = False) -> str | None:
    """``HHMMSS.FFFFFF`` for a TM value, else None.

    Missing components are filled with zeros, or, for the upper bound of a
    range (``high``), with their largest value: ``-08`` means "up to the end
    of the eighth hour", as a reader of the query would expect.
    """
    found = _TIME.fullmatch(text.strip())
    if found is None:
        return None
    hours, minutes, seconds, fraction = found.groups()
    fill = "9" if high else "0"
    minutes = minutes or ("59" if high else "00")
    seconds = seconds or ("59" if high else "00")
    if fraction is None:
        fraction = fill * 6
    elif high:
        fraction = fraction.ljust(6, "9")
    else:
        fraction = fraction.ljust(6, "0")
    return f"{hours}{minutes}{seconds}.{fraction}"


def fold_person_name(text: str) -> str:
    """The form in which PN values are compared: case folded (Unicode's full folding)."""
    return text.casefold()
