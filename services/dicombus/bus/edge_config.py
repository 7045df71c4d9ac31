"""The edge node's TOML configuration: known keys, checked types, errors that name the line.

A complete file, every key optional (the values shown are the defaults)::

    [edge]
    id = "edge-1"                  # names the edge in every event's source
    ae_title = "DICOMBUS"
    bind = "127.0.0.1"
    port = 11112
    data_dir = "dicombus-data"     # storage, outbox and embedded Redis live here

    [storage]
    root = "<data_dir>/storage"
    layout = "study"               # <study>/<series>/<instance>.dcm; or "sop-class", "flat"
    duplicates = "keep-first"      # same UID, other content: or "replace", "keep-both"

    [accept]
    sop_classes = ["storage"]      # "storage": every storage SOP class; names or UIDs
    transfer_syntaxes = ["all"]    # "all": every syntax pydicom knows; names or UIDs
    calling_ae_titles = []         # the allow list; empty: any calling AE
    require_called_aet = false

    [limits]
    max_associations = 10
    max_pdu_size = 262144          # 0: no limit
    acse_timeout = 30.0
    dimse_timeout = 30.0
    network_timeout = 60.0
    max_dataset_size = 4294967296  # a larger C-STORE data set aborts the association

    [tls]                          # present: associations are TLS only
    cert = "edge.pem"
    key = "edge.key"
    ca = "clients-ca.pem"          # verify client certificates signed by it
    require_client_cert = false

    [bus]
    enabled = true
    broker_url = ""                # "": DICOMBUS_BROKER_URL, else an embedded Redis
    outbox = "<data_dir>/outbox.sqlite3"
    outbox_max_bytes = 1073741824
    reserve_bytes = 67108864       # disk kept free for events when the disk fills; 0: none
    queue_size = 10000
    batch_size = 500
    publisher_process = true       # build and send messages in a child process (off the GIL)
    bulk_threshold = 1024          # DICOM JSON values longer than this become BulkDataURIs

    [[bus.subscriptions]]          # static subscriptions, on top of the registry in Redis
    task = "myapp.tasks.route"
    queue = "routing"
    events = ["EVT_C_STORE"]
    raw = false

    [query_retrieve]               # C-FIND, C-GET, C-MOVE, Storage Commitment from the index
    enabled = true
    index = "<data_dir>/index.sqlite3"
    host = ""                      # where routing workers reach us for C-GET (events' retrieveuri);
                                   # "": bind, or this host's name when bind is 0.0.0.0 or ::

    [query_retrieve.destinations]  # C-MOVE destinations (and commitment requestors), by AE title
    STORESCP = { host = "127.0.0.1", port = 11113 }

Relative paths are relative to the folder of the configuration file.
Verification is always accepted. An unknown section or key is an error with
a "did you mean" hint, and every error names the file, the line and the key.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

from pydicom import uid as pydicom_uid

from dicombus import evt, sop_class
from dicombus.ae_title import checked_ae_title
from dicombus.bus.disk_reserve import DEFAULT_RESERVE_BYTES
from dicombus.bus.subscriptions import Subscription
from dicombus.presentation import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
from dicombus.protocol.errors import DicombusError
from dicombus.protocol.limits import DEFAULT_MAXIMUM_PDU_SIZE, MINIMUM_PDU_LENGTH
from dicombus.qr.scp import Destination, DestinationError, parse_destination
from dicombus.runtime.spool import DEFAULT_MAX_DATASET_SIZE
from dicombus.storage_files import DEFAULT_LAYOUT, Duplicates, Layout

ALL_STORAGE = "storage"
ALL_SYNTAXES = "all"
DEFAULT_DATA_DIR = Path("dicombus-data")
DEFAULT_QUEUE = "events"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
EVENT_NAMES = frozenset(
    [e.name for e in evt.NOTIFICATION_EVENTS] + [e.name for e in evt.INTERVENTION_EVENTS]
)


class EdgeConfigError(DicombusError, ValueError):
    """A configuration the edge cannot run with; the message names file, line and key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    cert: Path
    key: Path
    ca: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeConfig:
    """Everything an :class:`~dicombus.bus.edge.EdgeNode` is built from."""

    edge_id: str = "edge-1"
    ae_title: str = "DICOMBUS"
    bind: str = "127.0.0.1"
    port: int = 11112
    data_dir: Path = DEFAULT_DATA_DIR
    storage_root: Path | None = None
    layout: Layout = DEFAULT_LAYOUT
    duplicates: Duplicates = Duplicates.KEEP_FIRST
    sop_classes: tuple[str, ...] = ()  # UIDs; empty: every storage SOP class
    transfer_syntaxes: tuple[str, ...] = ()  # UIDs; empty: every known syntax
    calling_ae_titles: tuple[str, ...] = ()
    require_called_aet: bool = False
    max_associations: int = 10
    max_pdu_size: int = DEFAULT_MAXIMUM_PDU_SIZE
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 60.0
    max_dataset_size: int = DEFAULT_MAX_DATASET_SIZE
    tls: TlsConfig | None = None
    bus_enabled: bool = True
    broker_url: str | None = None
    outbox_path: Path | None = None
    outbox_max_bytes: int = 1 << 30
    reserve_bytes: int = DEFAULT_RESERVE_BYTES
    queue_size: int = 10_000
    batch_size: int = 500
    publisher_process: bool = True
    bulk_threshold: int = 1024
    subscriptions: tuple[Subscription, ...] = field(default_factory=tuple)
    query_retrieve: bool = True
    index_path: Path | None = None
    retrieve_host: str | None = None
    move_destinations: Mapping[str, Destination] = field(default_factory=dict)

    @property
    def storage(self) -> Path:
        return self.storage_root if self.storage_root is not None else self.data_dir / "storage"

    @property
    def outbox(self) -> Path:
        if self.outbox_path is not None:
            return self.outbox_path
        return self.data_dir / "outbox.sqlite3"

    @property
    def index(self) -> Path:
        return self.index_path if self.index_path is not None else self.data_dir / "index.sqlite3"

    @property
    def accepted_sop_classes(self) -> list[str]:
        if self.sop_classes:
            return list(self.sop_classes)
        return [str(context.abstract_syntax) for context in AllStoragePresentationContexts]

    @property
    def accepted_transfer_syntaxes(self) -> list[str]:
        return list(self.transfer_syntaxes) or [str(syntax) for syntax in ALL_TRANSFER_SYNTAXES]


# -- value checks: each returns the converted value or raises ValueError("expected ...") --

Check = Callable[[Any, Path], Any]


def _text(value: Any, _base: Path) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def nonempty_value(value: Any, base: Path) -> str:
    text = _text(value, base)
    if not text.strip():
        raise ValueError("expected a non-empty string")
    return text


def boolean_value(value: Any, _base: Path) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def integer_value(minimum: int, maximum: int | None = None) -> Check:
    def check(value: Any, _base: Path) -> int:
        # bool is an int in Python; "true" is not a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            if maximum is None:
                raise ValueError(f"expected an integer >= {minimum}, got {value}")
            raise ValueError(f"expected an integer between {minimum} and {maximum}, got {value}")
        return value

    return check


def _pdu_size(value: Any, base: Path) -> int:
    size: int = integer_value(0)(value, base)
    if 0 < size < MINIMUM_PDU_LENGTH:
        raise ValueError(f"expected 0 (no limit) or at least {MINIMUM_PDU_LENGTH}, got {size}")
    return size


def _seconds(value: Any, _base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"expected a non-negative number of seconds, got {value!r}")
    return float(value)


def _path(value: Any, base: Path) -> Path:
    path = Path(nonempty_value(value, base)).expanduser()
    return path if path.is_absolute() else base / path


def existing_file_value(value: Any, base: Path) -> Path:
    path = _path(value, base)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def ae_title_value(value: Any, base: Path) -> str:
    try:
        return checked_ae_title(_text(value, base))
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def _list_of(item: Check) -> Check:
    def check(value: Any, base: Path) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(item(element, base) for element in value)

    return check


def _one_of(choices: type[StrEnum]) -> Check:
    def check(value: Any, base: Path) -> StrEnum:
        try:
            return choices(_text(value, base))
        except ValueError:
            names = ", ".join(repr(choice.value) for choice in choices)
            raise ValueError(f"expected one of {names}, got {value!r}") from None

    return check


def sop_classes_value(value: Any, base: Path) -> tuple[str, ...]:
    uids: list[str] = []
    for name in _list_of(nonempty_value)(value, base):
        if name == ALL_STORAGE:
            uids.extend(str(c.abstract_syntax) for c in AllStoragePresentationContexts)
        elif _UID.fullmatch(name):
            uids.append(name)
        else:
            try:
                uids.append(str(getattr(sop_class, name)))
            except AttributeError:
                raise ValueError(
                    f"{name!r} is neither {ALL_STORAGE!r}, a SOP class name nor a UID"
                ) from None
    return tuple(dict.fromkeys(uids))


def transfer_syntaxes_value(value: Any, base: Path) -> tuple[str, ...]:
    uids: list[str] = []
    for name in _list_of(nonempty_value)(value, base):
        if name == ALL_SYNTAXES:
            uids.extend(str(syntax) for syntax in ALL_TRANSFER_SYNTAXES)
            continue
        found = name if _UID.fullmatch(name) else getattr(pydicom_uid, name, None)
        if not isinstance(found, str) or not pydicom_uid.UID(found).is_transfer_syntax:
            raise ValueError(f"{name!r} is not a transfer syntax name or UID")
        uids.append(str(found))
    return tuple(dict.fromkeys(uids))


def _event_names(value: Any, base: Path) -> frozenset[str]:
    names = _list_of(nonempty_value)(value, base)
    if not names:
        raise ValueError("expected at least one event type")
    for name in names:
        if name not in EVENT_NAMES:
            close = difflib.get_close_matches(name, sorted(EVENT_NAMES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name!r} is not an event type{hint}")
    return frozenset(names)


def _broker_url(value: Any, base: Path) -> str:
    text = _text(value, base).strip()
    if text and not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"expected a redis:// URL, got {text!r}")
    return text


# section -> key -> (check, EdgeConfig field); the one list of what a file may say.
SCHEMA: dict[str, dict[str, tuple[Check, str]]] = {
    "edge": {
        "id": (nonempty_value, "edge_id"),
        "ae_title": (ae_title_value, "ae_title"),
        "bind": (nonempty_value, "bind"),
        "port": (integer_value(0, 65535), "port"),
        "data_dir": (_path, "data_dir"),
    },
    "storage": {
        "root": (_path, "storage_root"),
        "layout": (_one_of(Layout), "layout"),
        "duplicates": (_one_of(Duplicates), "duplicates"),
    },
    "accept": {
        "sop_classes": (sop_classes_value, "sop_classes"),
        "transfer_syntaxes": (transfer_syntaxes_value, "transfer_syntaxes"),
        "calling_ae_titles": (_list_of(ae_title_value), "calling_ae_titles"),
        "require_called_aet": (boolean_value, "require_called_aet"),
    },
    "limits": {
        "max_associations": (integer_value(1), "max_associations"),
        "max_pdu_size": (_pdu_size, "max_pdu_size"),
        "acse_timeout": (_seconds, "acse_timeout"),
        "dimse_timeout": (_seconds, "dimse_timeout"),
        "network_timeout": (_seconds, "network_timeout"),
        "max_dataset_size": (integer_value(1), "max_dataset_size"),
    },
    "tls": {
        "cert": (existing_file_value, "cert"),
        "key": (existing_file_value, "key"),
        "ca": (existing_file_value, "ca"),
        "require_client_cert": (boolean_value, "require_client_cert"),
    },
    "bus": {
        "enabled": (boolean_value, "bus_enabled"),
        "broker_url": (_broker_url, "broker_url"),
        "outbox": (_path, "outbox_path"),
        "outbox_max_bytes": (integer_value(1 << 20), "outbox_max_bytes"),
        "reserve_bytes": (integer_value(0), "reserve_bytes"),
        "queue_size": (integer_value(1), "queue_size"),
        "batch_size": (integer_value(1), "batch_size"),
        "publisher_process": (boolean_value, "publisher_process"),
        "bulk_threshold": (integer_value(0), "bulk_threshold"),
        "subscriptions": (lambda value, _base: value, "subscriptions"),
    },
    "query_retrieve": {
        "enabled": (boolean_value, "query_retrieve"),
        "index": (_path, "index_path"),
        "host": (nonempty_value, "retrieve_host"),
        "destinations": (lambda value, _base: value, "move_destinations"),
    },
}
# [routing] shares the file: rules and destinations for the routing workers (docs/routing.md).
ROUTING_SECTION = "routing"
# [audit] too: the ATNA syslog settings of the audit workers (docs/audit.md).
AUDIT_SECTION = "audit"
_SECTIONS = {**SCHEMA, ROUTING_SECTION: {}, AUDIT_SECTION: {}}
SUBSCRIPTION_SCHEMA: dict[str, Check] = {
    "task": nonempty_value,
    "queue": nonempty_value,
    "events": _event_names,
    "raw": boolean_value,
}


def load_edge_config(path: Path) -> EdgeConfig:
    """Read and check ``path``; raise EdgeConfigError naming the line and key of a problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeConfigError(f"{path}: cannot read the configuration: {exc}") from None
    return parse_edge_config(text, name=str(path), base=path.resolve().parent)


def parse_edge_config(text: str, *, name: str = "<config>", base: Path | None = None) -> EdgeConfig:
    """Check the TOML ``text``; relative paths are taken from ``base`` (default: cwd)."""
    return _Parser(text, name, base if base is not None else Path.cwd()).parse()


class _Parser:
    def __init__(self, text: str, name: str, base: Path) -> None:
        self.text = text
        self.name = name
        self.base = base

    def parse(self) -> EdgeConfig:
        try:
            document = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"at line (\d+)", str(exc))
            where = f":{found.group(1)}" if found else ""
            raise EdgeConfigError(f"{self.name}{where}: not valid TOML: {exc}") from None
        values: dict[str, Any] = {}
        tls: dict[str, Any] = {}
        for section, table in document.items():
            if not isinstance(table, dict):
                # A key outside every section: name it with its own line.
                suggestion = _closest(section, SCHEMA)
                self._fail(f"expected a section, such as [{suggestion}]", (), section)
            if section in (ROUTING_SECTION, AUDIT_SECTION):
                continue  # the workers' parts, checked by dicombus.routing.config and the audit
            if section not in SCHEMA:
                self._fail("unknown section" + did_you_mean(section, _SECTIONS), (section,), None)
            target = tls if section == "tls" else values
            target.update(self._section(section, table))
        if "subscriptions" in values:
            values["subscriptions"] = self._subscriptions(values["subscriptions"])
        if "move_destinations" in values:
            values["move_destinations"] = self._destinations(values["move_destinations"])
        if tls:
            values["tls"] = self._tls(tls)
        if "data_dir" not in values:
            values["data_dir"] = self.base / DEFAULT_DATA_DIR
        return EdgeConfig(**values)

    def _section(self, section: str, table: Mapping[str, Any]) -> dict[str, Any]:
        known = SCHEMA[section]
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                self._fail(f"unknown key{did_you_mean(key, known)}", (section,), key)
            check, attribute = known[key]
            try:
                out[attribute] = check(value, self.base)
            except ValueError as exc:
                self._fail(str(exc), (section,), key)
        return out

    def _subscriptions(self, value: Any) -> tuple[Subscription, ...]:
        where = ("bus", "subscriptions")
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self._fail("expected [[bus.subscriptions]] tables", ("bus",), "subscriptions")
        subs = []
        for index, table in enumerate(value):
            checked: dict[str, Any] = {}
            for key, item in table.items():
                if key not in SUBSCRIPTION_SCHEMA:
                    self._fail(
                        f"unknown key{did_you_mean(key, SUBSCRIPTION_SCHEMA)}", where, key, index
                    )
                try:
                    checked[key] = SUBSCRIPTION_SCHEMA[key](item, self.base)
                except ValueError as exc:
                    self._fail(str(exc), where, key, index)
            for required in ("task", "events"):
                if required not in checked:
                    self._fail(f"missing key {required!r}", where, None, index)
            subs.append(
                Subscription(
                    task=checked["task"],
                    queue=checked.get("queue", DEFAULT_QUEUE),
                    event_types=checked["events"],
                    raw=checked.get("raw", False),
                )
            )
        return tuple(subs)

    def _destinations(self, value: Any) -> dict[str, Destination]:
        table = ("query_retrieve", "destinations")
        if not isinstance(value, dict):
            self._fail("expected a table of AE titles", table[:1], "destinations")
        destinations = {}
        for title, entry in value.items():
            try:
                destinations[title.strip(" ")] = parse_destination(title, entry)
            except DestinationError as exc:
                # The entry inline (TITLE = {...}) or as a table of its own.
                line = (
                    (_line_of(self.text, (*table, title), exc.key, None) if exc.key else None)
                    or _line_of(self.text, table, title, None)
                    or _line_of(self.text, table[:1], "destinations", None)
                )
                where = f":{line}" if line is not None else ""
                key = ".".join(part for part in (title, exc.key) if part)
                raise EdgeConfigError(
                    f"{self.name}{where}: [{'.'.join(table)}] {key}: {exc.problem}"
                ) from None
        return destinations

    def _tls(self, values: dict[str, Any]) -> TlsConfig:
        for required in ("cert", "key"):
            if required not in values:
                self._fail(f"missing key {required!r}", ("tls",), None)
        if values.get("require_client_cert") and "ca" not in values:
            self._fail("require_client_cert needs 'ca'", ("tls",), "require_client_cert")
        return TlsConfig(**values)

    def _fail(
        self,
        message: str,
        table: Sequence[str],
        key: str | None,
        index: int | None = None,
    ) -> NoReturn:
        line = _line_of(self.text, tuple(table), key, index)
        where = f":{line}" if line is not None else ""
        dotted = ".".join(table) + (f"[{index}]" if index is not None else "")
        what = " ".join(part for part in (f"[{dotted}]" if table else "", key or "") if part)
        raise EdgeConfigError(f"{self.name}{where}: {what}: {message}")


def _closest(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return close[0] if close else next(iter(known))


def did_you_mean(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" {name!r} (did you mean {close[0]!r}?)" if close else f" {name!r}"


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")


def _line_of(text: str, table: tuple[str, ...], key: str | None, index: int | None) -> int | None:
    """The 1-based line of ``key`` in ``table`` (entry ``index`` of an array of tables).

    A key written as ``section.key = ...`` at the top level, or inside an
    inline table, is not found; the table's header line (if any) is given then.
    """
    wanted = ".".join(table)
    current: str | None = ""
    seen = -1
    header_line: int | None = None
    key_pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=") if key else None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = header.group(2).replace('"', "").replace(" ", "")
            if name == wanted:
                seen += 1
                current = name if index is None or seen == index else None
                if current is not None:
                    header_line = number
            else:
                current = None
            continue
        if current == wanted and key_pattern is not None and key_pattern.match(line):
            return number
    return header_line
