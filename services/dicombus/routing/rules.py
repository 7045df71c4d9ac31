"""Rules: conditions on what a worker receives, and which destinations a match goes to.

A condition reads the event's CloudEvents envelope as it arrived (a plain ``dict``), not a
pydicom Dataset: the stored header is already in the DICOM JSON model (PS3.18 F.2) under
``data.dataset``, keyed by 8-hex-digit tags, so a test is a dictionary lookup and a
comparison. Conditions are built once, when the configuration loads (:mod:`.config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

from dicombus.routing.operators import Values, ValueTest

Envelope = Mapping[str, Any]
Condition = Callable[[Envelope], bool]
ValuesOf = Callable[[Envelope], Values]

STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
MODALITY = "00080060"
# PS3.7 C: the categories of a C-STORE status under which the edge kept the instance.
STORED_CATEGORIES = frozenset({"Success", "Warning"})


class Per(StrEnum):
    """What one routing decision is about: the instance, or all of its series or study."""

    INSTANCE = "instance"
    SERIES = "series"
    STUDY = "study"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    destinations: tuple[str, ...]
    per: Per = Per.INSTANCE
    condition: Condition | None = None  # None: every stored instance
    summary: str = "every stored instance"
    description: str = ""
    # Per series or study: hold the unit's deliveries until it has been quiet this long
    # (None: per study, until STUDY_STABLE; per series, not held).
    quiet_seconds: float | None = None

    def matches(self, envelope: Envelope) -> bool:
        return self.condition is None or self.condition(envelope)


@dataclass(frozen=True, slots=True)
class Route:
    """One decision: send the unit (``per``, ``uid``) that holds ``sop_instance_uid`` to
    ``destination``, because of ``rule``."""

    rule: str
    destination: str
    per: Per
    uid: str
    sop_instance_uid: str
    quiet_seconds: float | None = None


# -- what a condition reads from the envelope --


def _data(envelope: Envelope) -> Mapping[str, Any]:
    data: Mapping[str, Any] = envelope.get("data") or {}
    return data


def _association(envelope: Envelope) -> Mapping[str, Any]:
    association: Mapping[str, Any] = _data(envelope).get("association") or {}
    return association


def _one(value: Any) -> Values:
    return None if value is None else (str(value),)


def event_type(envelope: Envelope) -> Values:
    return _one(envelope.get("type"))


def calling_ae(envelope: Envelope) -> Values:
    return _one(_association(envelope).get("calling_ae_title"))


def called_ae(envelope: Envelope) -> Values:
    return _one(_association(envelope).get("called_ae_title"))


def source_edge(envelope: Envelope) -> Values:
    """The edge id, from ``source`` = ``dicombus://<edge id>/<AE title>``."""
    source = envelope.get("source")
    return None if source is None else (unquote(urlsplit(str(source)).netloc),)


def sop_class(envelope: Envelope) -> Values:
    return _one(_data(envelope).get("sop_class_uid"))


def attribute(path: Sequence[str]) -> ValuesOf:
    """The values of the attribute at ``path`` (tags; the outer ones sequences, any item)."""
    head, *rest = path
    if not rest:

        def values(envelope: Envelope) -> Values:
            dataset = _data(envelope).get("dataset")
            element = dataset.get(head) if dataset else None
            return None if element is None else element_values(element)

        return values

    def nested(envelope: Envelope) -> Values:
        dataset = _data(envelope).get("dataset")
        items = [dataset] if dataset else []
        for tag in path[:-1]:
            items = [
                item
                for outer in items
                for item in ((outer.get(tag) or {}).get("Value") or ())
                if isinstance(item, Mapping)
            ]
        found = [outer[path[-1]] for outer in items if path[-1] in outer]
        if not found:
            return None
        return tuple(value for element in found for value in element_values(element))

    return nested


def element_values(element: Mapping[str, Any]) -> tuple[str, ...]:
    """An element's values as text: strings as they are, numbers written out, a person
    name's Alphabetic group (PS3.18 F.2.2); sequences, bulk data and nulls give none."""
    values = element.get("Value")
    if not values:
        return ()
    out: list[str] = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float):
            out.append(str(value))
        elif isinstance(value, Mapping) and element.get("vr") == "PN":
            out.append(str(value.get("Alphabetic", "")))
    return tuple(out)


# -- conditions --


def test_on(values_of: ValuesOf, test: ValueTest) -> Condition:
    return lambda envelope: test(values_of(envelope))


def all_of(conditions: Sequence[Condition]) -> Condition:
    if len(conditions) == 1:
        return conditions[0]
    parts = tuple(conditions)
    return lambda envelope: all(condition(envelope) for condition in parts)


def any_of(conditions: Sequence[Condition]) -> Condition:
    parts = tuple(conditions)
    return lambda envelope: any(condition(envelope) for condition in parts)


def none_of(condition: Condition) -> Condition:
    return lambda envelope: not condition(envelope)


# -- from an event to routes --


def stored_instance(envelope: Envelope) -> bool:
    """Whether the event reports an instance the edge stored: only those can be forwarded."""
    data = _data(envelope)
    return (
        envelope.get("type") == "EVT_C_STORE"
        and bool(data.get("stored_path"))
        and bool(data.get("sop_instance_uid"))
        and data.get("status_category") in STORED_CATEGORIES
    )


def unit_uid(envelope: Envelope, per: Per) -> str | None:
    """The UID of what a rule routes ``per``: the instance, its series or its study."""
    data = _data(envelope)
    if per is Per.INSTANCE:
        uid = data.get("sop_instance_uid")
        return str(uid) if uid else None
    tag = SERIES_INSTANCE_UID if per is Per.SERIES else STUDY_INSTANCE_UID
    values = attribute((tag,))(envelope)
    return values[0] if values else None


def routes(rules: Sequence[Rule], envelope: Envelope) -> list[Route]:
    """Every (rule, destination) the event's stored instance goes to, in rule order.

    A destination named by two matching rules appears once, for the first of them, so an
    instance is never sent twice to the same place.
    """
    if not stored_instance(envelope):
        return []
    instance = str(_data(envelope)["sop_instance_uid"])
    found: list[Route] = []
    taken: set[str] = set()
    for rule in rules:
        if not rule.matches(envelope):
            continue
        uid = unit_uid(envelope, rule.per)
        if uid is None:
            continue
        for destination in rule.destinations:
            if destination not in taken:
                taken.add(destination)
                found.append(
                    Route(rule.name, destination, rule.per, uid, instance, rule.quiet_seconds)
                )
    return found
