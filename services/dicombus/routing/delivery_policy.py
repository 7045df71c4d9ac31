"""What a destination's answer means for a delivery: done, try again later, or never.

A C-STORE response status (PS3.4 B.2.3, PS3.7 C) falls in one of these classes:

- Success (0x0000): acknowledged.
- Warning (0xB000 coercion, 0xB006 elements discarded, 0xB007 data set does not match SOP
  class, and any 0x0001 / 0x0107 / 0x0116 / 0xBxxx): the destination kept the instance, with
  a caveat; acknowledged, or retried when the destination's ``warnings = "retry"``.
- Out of resources (0xA7xx): the destination cannot take it now; retried with back-off.
- Data set does not match SOP class (0xA9xx) and cannot understand (0xCxxx): sending the
  same bytes again cannot help; a dead letter at once, with the reason.
- Any other failure (a refused SOP class 0x0122, not authorized 0x0124, 0x01xx ...): a dead
  letter too: only a change on one side can fix it, and ``dicombus routes retry`` replays it.

A connection that could not be made or broke (refused, rejected, aborted, no response) is
transient: retried with back-off, and counted by the destination's circuit breaker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

# PS3.7 C.1-C.4 status ranges used for C-STORE (PS3.4 Table B.2-1).
SUCCESS = 0x0000
OUT_OF_RESOURCES_MASK, OUT_OF_RESOURCES = 0xFF00, 0xA700
DATA_SET_MISMATCH_MASK, DATA_SET_MISMATCH = 0xFF00, 0xA900
CANNOT_UNDERSTAND_MASK, CANNOT_UNDERSTAND = 0xF000, 0xC000
# PS3.7 C.3: warnings; 0xBxxx in the Storage Service Class (B.2.3).
WARNING_CODES = frozenset({0x0001, 0x0107, 0x0116})
WARNING_MASK, WARNING = 0xF000, 0xB000

# Back-off defaults: the first retry after 5 s, doubling to at most 10 minutes between tries.
DEFAULT_RETRY_FIRST = 5.0
DEFAULT_RETRY_MAX = 600.0
# 0: retry transient failures for as long as it takes (a PACS down for a weekend).
DEFAULT_MAX_ATTEMPTS = 0
# The breaker opens after this many consecutive failed associations, and probes this often.
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_PROBE = 10.0
# Instances per association: one study of a CT scanner's usual size fits in one.
DEFAULT_BATCH_SIZE = 500


class Outcome(StrEnum):
    ACKNOWLEDGED = "acknowledged"  # the destination kept it: never sent again
    RETRY = "retry"  # transient: again after a back-off delay
    DEAD = "dead"  # permanent: a dead letter, with the reason


class Warnings(StrEnum):
    ACCEPT = "accept"
    RETRY = "retry"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    """A destination's retry, breaker and batching settings (``[...destinations.delivery]``)."""

    retry_first: float = DEFAULT_RETRY_FIRST
    retry_max: float = DEFAULT_RETRY_MAX
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    breaker_failures: int = DEFAULT_BREAKER_FAILURES
    breaker_probe: float = DEFAULT_BREAKER_PROBE
    warnings: Warnings = Warnings.ACCEPT
    batch_size: int = DEFAULT_BATCH_SIZE

    def classify(self, status: int) -> Outcome:
        """The class of a C-STORE response status (see the module docstring)."""
        if status == SUCCESS:
            return Outcome.ACKNOWLEDGED
        if status in WARNING_CODES or status & WARNING_MASK == WARNING:
            return Outcome.ACKNOWLEDGED if self.warnings is Warnings.ACCEPT else Outcome.RETRY
        if status & OUT_OF_RESOURCES_MASK == OUT_OF_RESOURCES:
            return Outcome.RETRY
        return Outcome.DEAD

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds before try ``attempts + 1``: exponential, capped, with jitter.

        "Equal jitter": half the exponential delay fixed, half random, so retries of many
        instances (or many routers) after one outage spread out instead of arriving together,
        and no retry comes sooner than half its step.
        """
        step = min(self.retry_max, self.retry_first * 2.0 ** max(attempts - 1, 0))
        jitter: float = (rng or random).uniform(0, step / 2)
        return step / 2 + jitter

    def gives_up(self, attempts: int) -> bool:
        """Whether ``attempts`` failed tries are the last (``max_attempts`` 0: never)."""
        return self.max_attempts > 0 and attempts >= self.max_attempts


def describe_status(status: int) -> str:
    """``0xA900 (data set does not match SOP class)``, for dead-letter reasons and logs."""
    if status & DATA_SET_MISMATCH_MASK == DATA_SET_MISMATCH:
        meaning = "error: data set does not match SOP class"
    elif status & CANNOT_UNDERSTAND_MASK == CANNOT_UNDERSTAND:
        meaning = "error: cannot understand"
    elif status & OUT_OF_RESOURCES_MASK == OUT_OF_RESOURCES:
        meaning = "refused: out of resources"
    elif status == 0x0122:
        meaning = "refused: SOP class not supported"
    elif status == 0x0124:
        meaning = "refused: not authorized"
    elif status in WARNING_CODES or status & WARNING_MASK == WARNING:
        meaning = "warning"
    elif status == SUCCESS:
        meaning = "success"
    else:
        meaning = "failure"
    return f"0x{status:04X} ({meaning})"


def positive_seconds(value: object, _base: object) -> float:
    """A configuration check: a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return float(value)


def warnings_value(value: object, _base: object) -> Warnings:
    """A configuration check: ``"accept"`` or ``"retry"``."""
    try:
        return Warnings(str(value))
    except ValueError:
        raise ValueError(f'expected "accept" or "retry", got {value!r}') from None
