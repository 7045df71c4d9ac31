"""``dicombus routes check`` and ``dicombus routes dry-run``, run as the user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dicombus_workers.builtin import AuditStore
from dicombus_workers.records import EventRecord
from routing_support import real_dataset, store_envelope

CONFIG = """\
[edge]
id = "edge-1"

[[routing.destinations]]
name = "pacs"
type = "dimse"
ae_title = "PACS"
host = "127.0.0.1"
port = 11113

[[routing.destinations]]
name = "research"
type = "stow-rs"
url = "http://127.0.0.1:8042/dicom-web/studies"
[routing.destinations.transform]
deidentify = true
uid_secret_env = "DEID_SECRET"

[[routing.rules]]
name = "ct"
per = "study"
destinations = ["pacs"]
[routing.rules.match]
Modality = "CT"

[[routing.rules]]
name = "all-research"
destinations = ["research"]
[routing.rules.match]
calling_ae = { wildcard = "MR*" }
"""


def dicombus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "DEID_SECRET": "k", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dicombus.cli.main", "routes", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def test_check_prints_destinations_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    result = dicombus("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: 2 destinations, 2 rules"
    assert any(
        line.split()[:5]
        == ["pacs", "dimse", "dicom://PACS@127.0.0.1:11113", "dicombus.route.pacs", "1"]
        for line in lines
    )
    assert any(line.startswith("research") and "de-identify" in line for line in lines)
    assert any(line.split()[:4] == ["ct", "study", "pacs", "Modality"] for line in lines)


def test_check_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG.replace('Modality = "CT"', 'Modality = { regex = "C(T" }'))
    result = dicombus("check", "--config", str(path))
    assert result.returncode == 2
    assert (
        f"{path}:24: [routing.rules[0].match.Modality] regex: bad regular expression"
        in result.stderr
    )
    assert result.stdout == ""


def test_check_shows_a_rule_s_own_quiet_time_and_names_its_misuse(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG.replace('per = "study"\n', 'per = "study"\nquiet_seconds = 30\n'))
    result = dicombus("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    rules = [line.split("  ") for line in result.stdout.splitlines() if line.startswith("ct ")]
    assert [[cell.strip() for cell in rule if cell.strip()][:3] for rule in rules] == [
        ["ct", "study (quiet 30 s)", "pacs"]
    ]
    path.write_text(
        CONFIG.replace(
            'destinations = ["research"]\n', 'destinations = ["research"]\nquiet_seconds = 5\n'
        )
    )
    result = dicombus("check", "--config", str(path))
    assert result.returncode == 2
    assert (
        f"{path}:29: [routing.rules[1]] quiet_seconds: only with per = 'series' or 'study'"
        in result.stderr
    )


def test_check_exits_2_on_an_unset_secret(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    result = dicombus("check", "--config", str(path), env={"DEID_SECRET": ""})
    assert result.returncode == 2
    assert "uid_secret_env: the environment variable 'DEID_SECRET' is not set" in result.stderr


def test_dry_run_replays_the_audit_store_through_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    audit = tmp_path / "audit.sqlite3"
    store = AuditStore(audit)
    now = datetime.now(UTC)

    def at(age: timedelta) -> str:
        return (now - age).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    ct, mr = real_dataset("CT_small.dcm"), real_dataset("MR_small.dcm")
    recorded = [
        store_envelope(ct, calling="CT1", event_id="01A", time=at(timedelta(minutes=5))),
        store_envelope(mr, calling="MR7", event_id="01B", time=at(timedelta(minutes=4))),
        # too old for --since 2h
        store_envelope(ct, calling="CT1", event_id="01C", time=at(timedelta(hours=3))),
        # a C-STORE that failed: nothing to forward
        store_envelope(
            mr,
            calling="MR7",
            event_id="01D",
            time=at(timedelta(minutes=3)),
            status_category="Failure",
            stored=False,
        ),
        # an instance no rule takes
        store_envelope(mr, calling="US1", event_id="01E", time=at(timedelta(minutes=2))),
    ]
    for envelope in recorded:
        assert store.write([EventRecord(envelope)]) == 1
    result = dicombus("dry-run", "--config", str(path), "--since", "2h", "--audit-db", str(audit))
    assert result.returncode == 0, result.stderr
    routes = [line for line in result.stdout.splitlines() if " -> " in line]
    assert len(routes) == 2
    assert (
        "CT1" in routes[0]
        and f"{ct.SOPInstanceUID}  -> pacs  (rule ct, per study {ct.StudyInstanceUID})" in routes[0]
    )
    assert "MR7" in routes[1] and "-> research  (rule all-research, per instance" in routes[1]
    assert result.stdout.splitlines()[-1].endswith(
        "would send: pacs 1, research 1; matched no rule: 2"
    )
    as_json = dicombus(
        "dry-run", "--config", str(path), "--since", "2h", "--audit-db", str(audit), "--json"
    )
    found = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(f["event_id"], f["destination"]) for f in found] == [
        ("01A", "pacs"),
        ("01B", "research"),
    ]


def test_dry_run_without_an_audit_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    result = dicombus(
        "dry-run", "--config", str(path), "--audit-db", str(tmp_path / "none.sqlite3")
    )
    assert result.returncode == 4
    assert "cannot read the audit store" in result.stderr
