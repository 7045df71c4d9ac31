"""The tests a rule applies to one attribute's values: equals, wildcard, regex, numeric and
date ranges, presence.

A test receives the attribute's values as text (None when the attribute is absent, an empty
tuple when it is present without a value) and holds when any value passes, so a test on a
multi-valued attribute such as ImageType asks "is one of its values ...". Each operator is
compiled once, when the configuration loads, into a closure over precompiled data: matching
an event costs a dictionary lookup and a comparison per test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from dicombus.protocol.errors import DicombusError

# None: the attribute is absent; (): present with no value.
Values = Sequence[str] | None
ValueTest = Callable[[Values], bool]

OPERATORS = ("equals", "wildcard", "regex", "min", "max", "date_range", "present")

# PS3.4 C.2.2.2.5: a range is "<lower>-<upper>", either side may be left open. Dates (DA),
# times (TM) and date-times (DT) are digits with an optional fraction after a period.
_BOUND = re.compile(r"[0-9]{2,}(\.[0-9]{1,6})?")


class OperatorError(DicombusError, ValueError):
    """A bad operator or argument; ``key`` names the operator (None: the table as a whole)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


def compile_tests(table: Mapping[str, Any]) -> ValueTest:
    """The test of an operator table such as ``{ wildcard = "CT*" }`` or
    ``{ min = 18, max = 65 }``: every operator in it must hold."""
    if not table:
        raise OperatorError(None, f"expected at least one of {', '.join(OPERATORS)}")
    tests: list[ValueTest] = []
    for name, argument in table.items():
        if name in ("min", "max"):
            continue
        try:
            tests.append(_compile_operator(name, argument))
        except ValueError as exc:
            raise OperatorError(name, str(exc)) from None
    if "min" in table or "max" in table:
        bounds = {}
        for name in ("min", "max"):
            if name in table:
                try:
                    bounds[name] = _number(table[name])
                except ValueError as exc:
                    raise OperatorError(name, str(exc)) from None
        try:
            tests.append(numeric_range(**bounds))
        except ValueError as exc:
            raise OperatorError("max", str(exc)) from None
    if len(tests) == 1:
        return tests[0]
    return lambda values: all(test(values) for test in tests)


def _compile_operator(name: str, argument: Any) -> ValueTest:
    if name == "equals":
        return equals(argument)
    if name == "wildcard":
        pattern = wildcard_pattern(_strings(argument, "a wildcard pattern"))
        return _any_value([pattern.fullmatch])
    if name == "regex":
        patterns = regex_patterns(_strings(argument, "a regular expression"))
        return _any_value([pattern.search for pattern in patterns])
    if name == "date_range":
        return date_range(argument)
    if name == "present":
        if not isinstance(argument, bool):
            raise ValueError(f"expected true or false, got {argument!r}")
        return _present if argument else _absent
    raise ValueError(f"unknown operator {name!r}; expected one of {', '.join(OPERATORS)}")


def equals(argument: Any) -> ValueTest:
    """Any value equal to the argument (or to one of a list of them); numbers compare as numbers."""
    choices = argument if isinstance(argument, list) else [argument]
    if not choices:
        raise ValueError("expected a value or a non-empty list of values")
    texts: set[str] = set()
    numbers: set[float] = set()
    for choice in choices:
        if isinstance(choice, str):
            texts.add(choice)
        elif isinstance(choice, int | float) and not isinstance(choice, bool):
            numbers.add(float(choice))
        else:
            raise ValueError(f"expected a string or a number, got {choice!r}")

    def test(values: Values) -> bool:
        if not values:
            return False
        for value in values:
            if value in texts:
                return True
            if numbers and _as_number(value) in numbers:
                return True
        return False

    return test


def wildcard_pattern(patterns: Sequence[str]) -> re.Pattern[str]:
    """PS3.4 C.2.2.2.4: ``*`` matches any run of characters (none too), ``?`` exactly one;
    every other character stands for itself. The whole value must match."""
    parts = []
    for pattern in patterns:
        parts.append("".join(_WILDCARD.get(char, re.escape(char)) for char in pattern))
    return re.compile("|".join(f"(?:{part})" for part in parts), re.DOTALL)


_WILDCARD = {"*": ".*", "?": "."}


def regex_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """Python regular expressions, searched anywhere in the value (anchor with ^ and $)."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
    return compiled


def numeric_range(*, min: float | None = None, max: float | None = None) -> ValueTest:
    """Any value that reads as a number within [min, max] (either bound may be open)."""
    if min is not None and max is not None and min > max:
        raise ValueError(f"min {min:g} is above max {max:g}")
    low = float("-inf") if min is None else min
    high = float("inf") if max is None else max

    def test(values: Values) -> bool:
        if not values:
            return False
        for value in values:
            number = _as_number(value)
            if number is not None and low <= number <= high:
                return True
        return False

    return test


def date_range(argument: Any) -> ValueTest:
    """PS3.4 C.2.2.2.5 range matching on DA, TM and DT values: ``"20240101-20241231"``,
    ``"-20241231"``, ``"20240101-"``, or one date alone (that day).

    A value is compared at the precision of the bound: its first len(bound) characters,
    so the DT value 20241231235959 is within ``-20241231`` and a date bound takes the
    whole day. An offset from UTC on a DT value is not applied.
    """
    if not isinstance(argument, str):
        raise ValueError(f'expected a range such as "20240101-20241231", got {argument!r}')
    low, dash, high = argument.strip().partition("-")
    if not dash:
        high = low
    if not (low or high):
        raise ValueError('expected at least one bound, e.g. "20240101-"')
    for bound in (low, high):
        if bound:
            _check_bound(bound)
    if low and high and low.ljust(len(high), "0") > high.ljust(len(low), "9"):
        raise ValueError(f"the range {argument!r} is empty: {low} is after {high}")

    def test(values: Values) -> bool:
        if not values:
            return False
        for value in values:
            if low and value[: len(low)] < low:
                continue
            if high and value[: len(high)] > high:
                continue
            return bool(value)
        return False

    return test


def _check_bound(bound: str) -> None:
    if not _BOUND.fullmatch(bound):
        raise ValueError(f"{bound!r} is not a DA, TM or DT value (digits, e.g. 20240131)")
    if len(bound) >= 8 and bound[:8].isdigit():
        try:
            datetime.strptime(bound[:8], "%Y%m%d")
        except ValueError:
            raise ValueError(f"{bound[:8]!r} is not a calendar date") from None


def _present(values: Values) -> bool:
    return bool(values)


def _absent(values: Values) -> bool:
    return not values


def _any_value(matchers: list[Callable[[str], object]]) -> ValueTest:
    def test(values: Values) -> bool:
        if not values:
            return False
        return any(match(value) for value in values for match in matchers)

    return test


def _strings(argument: Any, what: str) -> list[str]:
    items = argument if isinstance(argument, list) else [argument]
    if not items or not all(isinstance(item, str) for item in items):
        raise ValueError(f"expected {what} or a list of them, got {argument!r}")
    return items


def _number(argument: Any) -> float:
    if isinstance(argument, bool) or not isinstance(argument, int | float):
        raise ValueError(f"expected a number, got {argument!r}")
    return float(argument)


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
