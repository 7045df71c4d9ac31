"""The [audit.syslog] section: defaults, and mistakes named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicombus.bus.edge_config import parse_edge_config
from dicombus_workers.atna.config import AuditConfigError, Transport, parse_syslog_config


def test_defaults(tmp_path: Path) -> None:
    config = parse_syslog_config(
        '[edge]\ndata_dir = "data"\n[audit.syslog]\nhost = "arr"\n', name="n.toml", base=tmp_path
    )
    assert config is not None
    assert (config.transport, config.port) == (Transport.TLS, 6514)
    assert config.spool == tmp_path / "data" / "atna-spool.sqlite3"
    udp = parse_syslog_config(
        '[audit.syslog]\nhost = "arr"\ntransport = "udp"\n', name="n.toml", base=tmp_path
    )
    assert udp is not None and udp.port == 514


def test_no_section_no_auditor(tmp_path: Path) -> None:
    assert parse_syslog_config("[edge]\nport = 104\n", name="n.toml", base=tmp_path) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[audit.syslog]\nhost = "a"\nprot = 1\n', "n.toml:3: [audit.syslog] prot: unknown key"),
        ('[audit.syslog]\nhost = "a"\nport = 0\n', "n.toml:3: [audit.syslog] port: expected"),
        ("[audit.syslog]\nport = 514\n", "n.toml:1: [audit.syslog] missing key 'host'"),
        ('[audit.syslog]\nhost = "a"\ntransport = "tcp"\n', "n.toml:3: [audit.syslog] transport"),
        ('[audit.syslog]\nhost = "a"\nca = "none.pem"\n', "n.toml:3: [audit.syslog] ca: no such"),
        ('[audit.syslog]\nhost = "a"\nhostname = "a b"\n', "n.toml:3: [audit.syslog] hostname"),
        (
            "[audit]\nsyslogg = 1\n",
            "n.toml:2: [audit] syslogg: unknown key 'syslogg' (did you mean 'syslog'?)",
        ),
    ],
)
def test_mistakes_name_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AuditConfigError) as raised:
        parse_syslog_config(text, name="n.toml", base=tmp_path)
    assert str(raised.value).startswith(message), str(raised.value)


def test_the_edge_leaves_audit_to_the_workers(tmp_path: Path) -> None:
    parse_edge_config('[audit.syslog]\nhost = "arr"\n', name="n.toml", base=tmp_path)
