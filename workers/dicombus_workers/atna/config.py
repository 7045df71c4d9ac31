"""The ``[audit.syslog]`` section of the node's TOML file: where audit messages go.

::

    [audit.syslog]
    host = "arr.example.org"     # the audit record repository (required)
    transport = "tls"            # "tls" (RFC 5425) or "udp" (RFC 5426)
    port = 6514                  # default 6514 for tls, 514 for udp
    ca = "arr-ca.pem"            # verify the repository with this CA (default: the system's)
    cert = "node.pem"            # mutual TLS: this node's certificate and key
    key = "node.key"

A worker reads the file named by ``DICOMBUS_CONFIG``; without it, or without
the section, the ATNA task is not registered. Mistakes fail the load naming
the file, line and key, as the edge's own sections do (docs/audit.md).
"""

from __future__ import annotations

import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

from dicombus.bus.edge_config import (
    DEFAULT_DATA_DIR,
    EdgeConfigError,
    did_you_mean,
    existing_file_value,
    integer_value,
    nonempty_value,
)
from dicombus.routing.toml_lines import key_lines, line_of

from dicombus_workers.atna import syslog

CONFIG_ENV = "DICOMBUS_CONFIG"
SPOOL_NAME = "atna-spool.sqlite3"
SECTION = ("audit", "syslog")
DEFAULT_MAX_BACKOFF = 60.0


class Transport(StrEnum):
    TLS = "tls"
    UDP = "udp"


class AuditConfigError(EdgeConfigError):
    """An ``[audit.syslog]`` section the worker cannot run with; names file, line and key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogConfig:
    host: str
    port: int
    transport: Transport
    spool: Path
    hostname: str
    app_name: str = "dicombus"
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None
    source_id: str | None = None
    enterprise_site: str | None = None
    # The longest wait between two tries while the repository is away.
    max_backoff: float = DEFAULT_MAX_BACKOFF
    timeout: float = 10.0


def load_syslog_config(path: Path) -> SyslogConfig | None:
    """``[audit.syslog]`` of the node's file ``path``; None when the file has none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditConfigError(f"{path}: cannot read the configuration: {exc}") from None
    return parse_syslog_config(text, name=str(path), base=path.resolve().parent)


def parse_syslog_config(text: str, *, name: str, base: Path) -> SyslogConfig | None:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AuditConfigError(f"{name}: not valid TOML: {exc}") from None
    audit = document.get("audit", {})
    where = _Where(text, name)
    if not isinstance(audit, dict):
        where.fail("expected a table [audit]", ("audit",))
    for key in audit:
        if key != "syslog":
            where.fail(f"unknown key{did_you_mean(key, {'syslog': 0})}", ("audit",), key)
    section = audit.get("syslog")
    if section is None:
        return None
    if not isinstance(section, dict):
        where.fail("expected a table [audit.syslog]", SECTION)
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _KEYS:
            where.fail(f"unknown key{did_you_mean(key, _KEYS)}", SECTION, key)
        try:
            values[key] = _KEYS[key](value, base)
        except ValueError as exc:
            where.fail(str(exc), SECTION, key)
    if "host" not in values:
        where.fail("missing key 'host' (the audit record repository)", SECTION)
    transport = values.pop("transport", Transport.TLS)
    if transport is Transport.UDP:
        for tls_only in ("ca", "cert", "key", "server_name"):
            if tls_only in values:
                where.fail('only with transport = "tls"', SECTION, tls_only)
    if ("key" in values) != ("cert" in values):
        missing = "key" if "cert" in values else "cert"
        message = f"mutual TLS needs both cert and key; {missing!r} is missing"
        where.fail(message, SECTION)
    values.setdefault("port", syslog.TLS_PORT if transport is Transport.TLS else syslog.UDP_PORT)
    values.setdefault("spool", _data_dir(document, base) / SPOOL_NAME)
    values.setdefault("hostname", socket.gethostname() or "localhost")
    return SyslogConfig(transport=transport, **values)


def _data_dir(document: Mapping[str, Any], base: Path) -> Path:
    # The node's data folder ([edge] data_dir), where the edge keeps its own state too.
    configured = (document.get("edge") or {}).get("data_dir")
    folder = Path(configured) if isinstance(configured, str) and configured else DEFAULT_DATA_DIR
    return folder if folder.is_absolute() else base / folder


def _transport(value: Any, base: Path) -> Transport:
    text = nonempty_value(value, base)
    try:
        return Transport(text)
    except ValueError:
        raise ValueError(f'expected "tls" or "udp", got {value!r}') from None


def _header(maximum: int) -> Callable[[Any, Path], str]:
    def check(value: Any, base: Path) -> str:
        return syslog.header_field(nonempty_value(value, base), maximum)

    return check


def _positive_seconds(value: Any, _base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return float(value)


def _spool_path(value: Any, base: Path) -> Path:
    path = Path(nonempty_value(value, base)).expanduser()
    return path if path.is_absolute() else base / path


_KEYS: dict[str, Callable[[Any, Path], Any]] = {
    "host": nonempty_value,
    "port": integer_value(1, 65535),
    "transport": _transport,
    "ca": existing_file_value,
    "cert": existing_file_value,
    "key": existing_file_value,
    "server_name": nonempty_value,
    "hostname": _header(syslog.MAX_HOSTNAME),
    "app_name": _header(syslog.MAX_APP_NAME),
    "source_id": nonempty_value,
    "enterprise_site": nonempty_value,
    "spool": _spool_path,
    "max_backoff": _positive_seconds,
    "timeout": _positive_seconds,
}


class _Where:
    def __init__(self, text: str, name: str) -> None:
        self.lines = key_lines(text)
        self.name = name

    def fail(self, message: str, table: tuple[str, ...], key: str | None = None) -> NoReturn:
        line = line_of(self.lines, table if key is None else (*table, key))
        where = f":{line}" if line is not None else ""
        named = f" {key}:" if key is not None else ""
        raise AuditConfigError(f"{self.name}{where}: [{'.'.join(table)}]{named} {message}")
