"""The ``[routing]`` section of the node's TOML file: destinations and rules, checked.

It lives in the same file as the edge's own sections (:mod:`dicombus.bus.edge_config`,
which leaves ``[routing]`` to this module) and is checked the same way: an unknown key, a
value of the wrong type, a bad regular expression, an empty range or a rule naming a
destination that does not exist fails the load with the file, the line and the key::

    edge.toml:31: [routing.rules[0].match] StudyDate.date_range: '20241301' is not a calendar date

The value checks are the edge configuration's own. docs/routing.md is the reference.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dicombus.bus.edge_config import (
    EVENT_NAMES,
    EdgeConfigError,
    ae_title_value,
    boolean_value,
    did_you_mean,
    existing_file_value,
    integer_value,
    nonempty_value,
    sop_classes_value,
    transfer_syntaxes_value,
)
from dicombus.routing import rules
from dicombus.routing.delivery_policy import DeliveryPolicy, positive_seconds, warnings_value
from dicombus.routing.destinations import (
    NAME,
    Destination,
    DimseDestination,
    EdgeSettings,
    StowAuth,
    StowDestination,
)
from dicombus.routing.operators import OperatorError, compile_tests, equals
from dicombus.routing.rules import Condition, Per, Route, Rule, ValuesOf
from dicombus.routing.tags import parse_path, parse_tag, vr_of
from dicombus.routing.toml_lines import Path as KeyPath
from dicombus.routing.toml_lines import key_lines, line_of
from dicombus.routing.transforms import SetTag, Transform

SECTION = "routing"
COMBINATORS = ("all", "any", "not")
# The event's own facts a rule can test, besides the attributes of the data set.
FIELDS: dict[str, ValuesOf] = {
    "event": rules.event_type,
    "calling_ae": rules.calling_ae,
    "called_ae": rules.called_ae,
    "edge": rules.source_edge,
    "sop_class": rules.sop_class,
    "modality": rules.attribute((rules.MODALITY,)),
}
DESTINATION_KEYS = ("name", "type", "concurrency", "transform", "delivery")
# A DICOM peer's address, and how our SCU reaches it: a DIMSE destination's, the edge's.
ADDRESS_KEYS = ("ae_title", "host", "port")
TLS_FILE_KEYS = ("tls_ca", "tls_cert", "tls_key")
REQUESTOR_KEYS = ("calling_ae_title", "tls", *TLS_FILE_KEYS)
DIMSE_KEYS = (*DESTINATION_KEYS, *ADDRESS_KEYS, *REQUESTOR_KEYS, "transfer_syntaxes")
STOW_KEYS = (
    *DESTINATION_KEYS,
    "url",
    "auth",
    "username",
    "password_env",
    "token_env",
    "tls_verify",
    "tls_ca",
)
SECTION_KEYS = ("destinations", "rules", "study_quiet_seconds", "edge")
EDGE_KEYS = (*ADDRESS_KEYS, *REQUESTOR_KEYS)
# A study is complete (STUDY_STABLE) after this long without a new instance: longer than a
# modality's pause between series, short enough for a reader waiting on the study.
DEFAULT_STUDY_QUIET_SECONDS = 60.0
RULE_KEYS = ("name", "description", "match", "per", "destinations", "quiet_seconds")
TRANSFORM_KEYS = ("deidentify", "uid_secret_env", "uid_secret", "remove", "set")
DELIVERY_CHECKS: dict[str, Callable[[Any, Path], Any]] = {
    "retry_first": positive_seconds,
    "retry_max": positive_seconds,
    "max_attempts": integer_value(0),
    "breaker_failures": integer_value(1),
    "breaker_probe": positive_seconds,
    "warnings": warnings_value,
    "batch_size": integer_value(1),
}
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})


class RoutingConfigError(EdgeConfigError):
    """A ``[routing]`` section the router cannot run with; names file, line and key."""


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    destinations: Mapping[str, Destination]
    rules: tuple[Rule, ...]
    study_quiet_seconds: float = DEFAULT_STUDY_QUIET_SECONDS
    # Where instances are fetched from when the stored file is not readable here.
    edge: EdgeSettings | None = None

    def quiet_times(self, per: Per) -> frozenset[float]:
        """The rules' own quiet times for units ``per`` series or study."""
        return frozenset(
            rule.quiet_seconds
            for rule in self.rules
            if rule.per is per and rule.quiet_seconds is not None
        )

    def routes(self, envelope: Mapping[str, Any]) -> list[Route]:
        """Where the event's stored instance goes (:func:`dicombus.routing.rules.routes`)."""
        return rules.routes(self.rules, envelope)


def load_routing_config(path: Path, environ: Mapping[str, str] | None = None) -> RoutingConfig:
    """Read the ``[routing]`` section of the node's file ``path``; RoutingConfigError if bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutingConfigError(f"{path}: cannot read the configuration: {exc}") from None
    return parse_routing_config(text, name=str(path), base=path.resolve().parent, environ=environ)


def parse_routing_config(
    text: str,
    *,
    name: str = "<config>",
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> RoutingConfig:
    """Check the TOML ``text``'s ``[routing]``; no section gives no destinations, no rules."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutingConfigError(f"{name}: not valid TOML: {exc}") from None
    parser = _Parser(text, name, base or Path.cwd(), os.environ if environ is None else environ)
    return parser.parse(document.get(SECTION, {}))


class _Parser:
    def __init__(self, text: str, name: str, base: Path, environ: Mapping[str, str]) -> None:
        self.lines = key_lines(text)
        self.name = name
        self.base = base
        self.environ = environ

    def fail(self, message: str, path: KeyPath) -> NoReturn:
        line = line_of(self.lines, path)
        where = f":{line}" if line is not None else ""
        table, keys = _split(path)
        raise RoutingConfigError(f"{self.name}{where}: [{table}] {keys}: {message}")

    def parse(self, section: Any) -> RoutingConfig:
        here: KeyPath = (SECTION,)
        if not isinstance(section, dict):
            self.fail("expected a table [routing]", here)
        for key in section:
            if key not in SECTION_KEYS:
                self.fail(
                    f"unknown key{did_you_mean(key, dict.fromkeys(SECTION_KEYS))}", (*here, key)
                )
        destinations: dict[str, Destination] = {}
        for index, table in enumerate(self.tables(section, "destinations")):
            destination = self.destination(table, (*here, "destinations", index))
            if destination.name in destinations:
                self.fail(
                    f"a second destination named {destination.name!r}",
                    (*here, "destinations", index, "name"),
                )
            destinations[destination.name] = destination
        found: list[Rule] = []
        for index, table in enumerate(self.tables(section, "rules")):
            rule = self.rule(table, (*here, "rules", index), destinations)
            if any(rule.name == earlier.name for earlier in found):
                self.fail(f"a second rule named {rule.name!r}", (*here, "rules", index, "name"))
            found.append(rule)
        quiet = section.get("study_quiet_seconds", DEFAULT_STUDY_QUIET_SECONDS)
        quiet = self.check(positive_seconds, quiet, (*here, "study_quiet_seconds"))
        edge = self.edge(section["edge"], (*here, "edge")) if "edge" in section else None
        return RoutingConfig(destinations, tuple(found), quiet, edge)

    def edge(self, table: Any, path: KeyPath) -> EdgeSettings:
        if not isinstance(table, dict):
            self.fail("expected a table {ae_title, host, port} and/or TLS settings", path)
        self.known_keys(table, EDGE_KEYS, path)
        # Without an address, the TLS files serve the edges whose events say dicom-tls://.
        has_address = any(key in table for key in ADDRESS_KEYS)
        values = self.address(table, path) if has_address else {}
        values.update(self.requestor(table, path, files_need_tls=has_address))
        return EdgeSettings(**values)

    def tables(self, section: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        value = section.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.fail(f"expected [[routing.{key}]] tables", (SECTION, key))
        return value

    def check(self, check: Callable[[Any, Path], Any], value: Any, path: KeyPath) -> Any:
        try:
            return check(value, self.base)
        except ValueError as exc:
            self.fail(str(exc), path)

    def known_keys(self, table: Mapping[str, Any], known: Sequence[str], path: KeyPath) -> None:
        for key in table:
            if key not in known:
                self.fail(f"unknown key{did_you_mean(key, dict.fromkeys(known))}", (*path, key))

    def required(self, table: Mapping[str, Any], key: str, path: KeyPath) -> Any:
        if key not in table:
            self.fail(f"missing key {key!r}", path)
        return table[key]

    # -- destinations --

    def destination(self, table: dict[str, Any], path: KeyPath) -> Destination:
        kind = self.check(nonempty_value, self.required(table, "type", path), (*path, "type"))
        name = self.check(nonempty_value, self.required(table, "name", path), (*path, "name"))
        if not NAME.fullmatch(name):
            self.fail("expected letters, digits, '_', '.' or '-' (up to 64)", (*path, "name"))
        common: dict[str, Any] = {"name": name}
        if "concurrency" in table:
            common["concurrency"] = self.check(
                integer_value(1), table["concurrency"], (*path, "concurrency")
            )
        if "transform" in table:
            common["transform"] = self.transform(table["transform"], (*path, "transform"))
        if "delivery" in table:
            common["delivery"] = self.delivery(table["delivery"], (*path, "delivery"))
        if kind == "dimse":
            self.known_keys(table, DIMSE_KEYS, path)
            return self.dimse(table, path, common)
        if kind == "stow-rs":
            self.known_keys(table, STOW_KEYS, path)
            return self.stow(table, path, common)
        self.fail(f"expected 'dimse' or 'stow-rs', got {kind!r}", (*path, "type"))

    def dimse(self, table: dict[str, Any], path: KeyPath, common: dict[str, Any]) -> Destination:
        values = {**common, **self.address(table, path)}
        values.update(self.requestor(table, path, files_need_tls=True))
        if "transfer_syntaxes" in table:
            values["transfer_syntaxes"] = self.check(
                transfer_syntaxes_value, table["transfer_syntaxes"], (*path, "transfer_syntaxes")
            )
        return DimseDestination(**values)

    def address(self, table: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
        """A DICOM peer's ``ae_title``, ``host`` and ``port``, all required."""
        return {
            "ae_title": self.check(
                ae_title_value, self.required(table, "ae_title", path), (*path, "ae_title")
            ),
            "host": self.check(nonempty_value, self.required(table, "host", path), (*path, "host")),
            "port": self.check(
                integer_value(1, 65535), self.required(table, "port", path), (*path, "port")
            ),
        }

    def requestor(
        self, table: Mapping[str, Any], path: KeyPath, *, files_need_tls: bool
    ) -> dict[str, Any]:
        """How our SCU reaches a peer: ``calling_ae_title``, ``tls`` and its files (which
        need ``tls = true`` when ``files_need_tls``)."""
        checks: dict[str, Callable[[Any, Path], Any]] = {
            "calling_ae_title": ae_title_value,
            "tls": boolean_value,
            **dict.fromkeys(TLS_FILE_KEYS, existing_file_value),
        }
        values = {
            key: self.check(check, table[key], (*path, key))
            for key, check in checks.items()
            if key in table
        }
        for key in TLS_FILE_KEYS:
            if files_need_tls and key in values and not values.get("tls"):
                self.fail(f"{key} needs tls = true", (*path, key))
        if ("tls_cert" in values) != ("tls_key" in values):
            self.fail("tls_cert and tls_key go together", (*path, "tls_cert"))
        return values

    def stow(self, table: dict[str, Any], path: KeyPath, common: dict[str, Any]) -> Destination:
        values = dict(common)
        url = self.check(nonempty_value, self.required(table, "url", path), (*path, "url"))
        if not url.startswith(("http://", "https://")):
            self.fail(f"expected an http:// or https:// URL, got {url!r}", (*path, "url"))
        values["url"] = url
        auth = self.check(nonempty_value, table.get("auth", "none"), (*path, "auth"))
        try:
            values["auth"] = StowAuth(auth)
        except ValueError:
            self.fail(f"expected 'none', 'basic' or 'bearer', got {auth!r}", (*path, "auth"))
        needs = {
            StowAuth.NONE: (),
            StowAuth.BASIC: ("username", "password_env"),
            StowAuth.BEARER: ("token_env",),
        }[values["auth"]]
        for key in ("username", "password_env", "token_env"):
            if key in table and key not in needs:
                self.fail(f"not used with auth = {auth!r}", (*path, key))
        for key in needs:
            values[key] = self.check(nonempty_value, self.required(table, key, path), (*path, key))
            if key.endswith("_env"):
                self.environment(values[key], (*path, key))
        if "tls_verify" in table:
            values["tls_verify"] = self.check(
                boolean_value, table["tls_verify"], (*path, "tls_verify")
            )
        if "tls_ca" in table:
            values["tls_ca"] = self.check(existing_file_value, table["tls_ca"], (*path, "tls_ca"))
        return StowDestination(**values)

    def delivery(self, table: Any, path: KeyPath) -> DeliveryPolicy:
        if not isinstance(table, dict):
            self.fail("expected a table", path)
        self.known_keys(table, tuple(DELIVERY_CHECKS), path)
        values = {
            key: self.check(DELIVERY_CHECKS[key], v, (*path, key)) for key, v in table.items()
        }
        policy = DeliveryPolicy(**values)
        if policy.retry_max < policy.retry_first:
            self.fail("retry_max is shorter than retry_first", (*path, "retry_max"))
        return policy

    def environment(self, variable: str, path: KeyPath) -> str:
        value = self.environ.get(variable, "")
        if not value:
            self.fail(f"the environment variable {variable!r} is not set", path)
        return value

    def transform(self, table: Any, path: KeyPath) -> Transform:
        if not isinstance(table, dict):
            self.fail("expected a table", path)
        self.known_keys(table, TRANSFORM_KEYS, path)
        values: dict[str, Any] = {}
        if self.check(boolean_value, table.get("deidentify", False), (*path, "deidentify")):
            has_env, has_secret = "uid_secret_env" in table, "uid_secret" in table
            if has_env == has_secret:
                self.fail(
                    "deidentify needs one of uid_secret_env or uid_secret", (*path, "deidentify")
                )
            if has_env:
                variable = self.check(
                    nonempty_value, table["uid_secret_env"], (*path, "uid_secret_env")
                )
                secret = self.environment(variable, (*path, "uid_secret_env"))
                values["uid_secret_source"] = f"${variable}"
            else:
                secret = self.check(nonempty_value, table["uid_secret"], (*path, "uid_secret"))
                values["uid_secret_source"] = "uid_secret"
            values["uid_secret"] = secret.encode("utf-8")
        elif "uid_secret_env" in table or "uid_secret" in table:
            key = "uid_secret_env" if "uid_secret_env" in table else "uid_secret"
            self.fail("only used with deidentify = true", (*path, key))
        if "remove" in table:
            names = table["remove"]
            if not isinstance(names, list):
                self.fail(f"expected a list of attributes, got {names!r}", (*path, "remove"))
            values["remove"] = tuple(self.tag(name, (*path, "remove")) for name in names)
        if "set" in table:
            changes = table["set"]
            if not isinstance(changes, dict):
                self.fail("expected a table of attribute = value", (*path, "set"))
            values["set"] = tuple(
                self.set_tag(key, value, (*path, "set", key)) for key, value in changes.items()
            )
        return Transform(**values)

    def tag(self, name: Any, path: KeyPath) -> str:
        if not isinstance(name, str):
            self.fail(f"expected an attribute name, got {name!r}", path)
        try:
            return parse_tag(name)
        except ValueError as exc:
            self.fail(str(exc), path)

    def set_tag(self, name: str, value: Any, path: KeyPath) -> SetTag:
        tag = self.tag(name, path)
        vr = vr_of(tag)
        if vr is None or vr == "SQ" or "or" in vr:
            self.fail("only attributes of the data dictionary with one VR, not sequences", path)
        items = value if isinstance(value, list) else [value]
        numeric = vr in _NUMERIC_VRS
        for item in items:
            is_number = isinstance(item, int | float) and not isinstance(item, bool)
            if (numeric and not is_number) or (not numeric and not isinstance(item, str)):
                kind = "a number" if numeric else "a string"
                self.fail(f"expected {kind} for VR {vr}, got {item!r}", path)
        return SetTag(tag, vr, value)

    # -- rules --

    def rule(self, table: dict[str, Any], path: KeyPath, known: Mapping[str, Any]) -> Rule:
        self.known_keys(table, RULE_KEYS, path)
        name = self.check(nonempty_value, self.required(table, "name", path), (*path, "name"))
        targets = self.required(table, "destinations", path)
        if not isinstance(targets, list) or not targets:
            self.fail("expected a non-empty list of destination names", (*path, "destinations"))
        for target in targets:
            if target not in known:
                names = ", ".join(map(repr, known)) or "none is configured"
                self.fail(
                    f"no destination named {target!r} (known: {names})", (*path, "destinations")
                )
        per_text = table.get("per", Per.INSTANCE.value)
        try:
            per = Per(per_text)
        except ValueError:
            self.fail(f"expected 'instance', 'series' or 'study', got {per_text!r}", (*path, "per"))
        values: dict[str, Any] = {"name": name, "destinations": tuple(targets), "per": per}
        if "quiet_seconds" in table:
            if per is Per.INSTANCE:
                self.fail("only with per = 'series' or 'study'", (*path, "quiet_seconds"))
            values["quiet_seconds"] = self.check(
                positive_seconds, table["quiet_seconds"], (*path, "quiet_seconds")
            )
        if "description" in table:
            values["description"] = self.check(
                nonempty_value, table["description"], (*path, "description")
            )
        if "match" in table:
            values["condition"], values["summary"] = self.condition(
                table["match"], (*path, "match")
            )
        return Rule(**values)

    def condition(self, table: Any, path: KeyPath) -> tuple[Condition, str]:
        """A match table: every key must hold (all of them)."""
        if not isinstance(table, dict) or not table:
            self.fail("expected a table with at least one test", path)
        parts = [self.term(key, value, (*path, key)) for key, value in table.items()]
        return rules.all_of([c for c, _ in parts]), " and ".join(s for _, s in parts)

    def term(self, key: str, value: Any, path: KeyPath) -> tuple[Condition, str]:
        if key in ("all", "any"):
            tables = value if isinstance(value, list) else None
            if not tables:
                self.fail("expected a non-empty list of match tables", path)
            parts = [self.condition(item, (*path, index)) for index, item in enumerate(tables)]
            join = " and " if key == "all" else " or "
            summary = "(" + join.join(s for _, s in parts) + ")"
            combine = rules.all_of if key == "all" else rules.any_of
            return combine([c for c, _ in parts]), summary
        if key == "not":
            condition, summary = self.condition(value, path)
            return rules.none_of(condition), f"not ({summary})"
        values_of = self.values_of(key, path)
        if isinstance(value, dict):
            try:
                test = compile_tests(value)
            except OperatorError as exc:
                self.fail(str(exc), path if exc.key is None else (*path, exc.key))
            described = ", ".join(f"{op} {arg!r}" for op, arg in value.items())
            return rules.test_on(values_of, test), f"{key} {described}"
        value = self.equals_value(key, value, path)
        try:
            test = equals(value)
        except ValueError as exc:
            self.fail(str(exc), path)
        return rules.test_on(values_of, test), f"{key} = {value!r}"

    def values_of(self, key: str, path: KeyPath) -> ValuesOf:
        if key in FIELDS:
            return FIELDS[key]
        try:
            return rules.attribute(parse_path(key))
        except ValueError as exc:
            fields = ", ".join((*FIELDS, *COMBINATORS))
            self.fail(f"{exc}; nor one of {fields}", path)

    def equals_value(self, key: str, value: Any, path: KeyPath) -> Any:
        """Event names are checked, SOP class names become UIDs."""
        if key == "event":
            names = value if isinstance(value, list) else [value]
            for name in names:
                if name not in EVENT_NAMES:
                    close = difflib.get_close_matches(str(name), sorted(EVENT_NAMES), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    self.fail(f"{name!r} is not an event type{hint}", path)
        if key == "sop_class":
            uids = self.check(
                sop_classes_value, value if isinstance(value, list) else [value], path
            )
            return list(uids)
        return value


def _split(path: KeyPath) -> tuple[str, str]:
    """A key path as the table it is in (``routing.rules[0].match``) and its key."""
    table = ""
    for part in path[:-1]:
        table += f"[{part}]" if isinstance(part, int) else (f".{part}" if table else part)
    last = path[-1] if path else ""
    return table, f"[{last}]" if isinstance(last, int) else str(last)
