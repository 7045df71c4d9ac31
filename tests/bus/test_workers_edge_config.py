"""The edge's TOML configuration: defaults, conversions, and errors that name line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicombus.bus.edge_config import (
    EdgeConfigError,
    load_edge_config,
    parse_edge_config,
)
from dicombus.bus.subscriptions import Subscription
from dicombus.presentation import ALL_TRANSFER_SYNTAXES
from dicombus.storage_files import Duplicates, Layout

FULL = """\
[edge]
id = "edge-7"
ae_title = "EDGE7"
port = 0
data_dir = "node"

[storage]
layout = "flat"
duplicates = "keep-both"

[accept]
sop_classes = ["CTImageStorage", "1.2.840.10008.5.1.4.1.1.4"]
transfer_syntaxes = ["ExplicitVRLittleEndian", "1.2.840.10008.1.2"]
calling_ae_titles = ["CT1", "MR1"]

[limits]
max_associations = 4
acse_timeout = 5
max_dataset_size = 1048576

[bus]
broker_url = "redis://127.0.0.1:6390/0"

[[bus.subscriptions]]
task = "site.route"
queue = "routing"
events = ["EVT_C_STORE"]

[[bus.subscriptions]]
task = "site.audit"
events = ["EVT_ACCEPTED", "EVT_RELEASED"]
raw = true
"""


def test_a_full_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(FULL)
    config = load_edge_config(path)
    assert (config.edge_id, config.ae_title, config.port) == ("edge-7", "EDGE7", 0)
    assert config.data_dir == tmp_path / "node"
    assert config.storage == tmp_path / "node" / "storage"
    assert config.outbox == tmp_path / "node" / "outbox.sqlite3"
    assert config.layout is Layout.FLAT
    assert config.duplicates is Duplicates.KEEP_BOTH
    assert config.max_dataset_size == 1 << 20
    assert config.sop_classes == ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4")
    assert config.transfer_syntaxes == ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    assert config.calling_ae_titles == ("CT1", "MR1")
    assert (config.max_associations, config.acse_timeout) == (4, 5.0)
    assert config.broker_url == "redis://127.0.0.1:6390/0"
    assert config.subscriptions == (
        Subscription("site.route", "routing", frozenset({"EVT_C_STORE"})),
        Subscription("site.audit", "events", frozenset({"EVT_ACCEPTED", "EVT_RELEASED"}), True),
    )


def test_an_empty_file_means_every_default() -> None:
    config = parse_edge_config("", base=Path("/srv/edge"))
    assert config.data_dir == Path("/srv/edge/dicombus-data")
    assert config.ae_title == "DICOMBUS" and config.port == 11112
    assert len(config.accepted_sop_classes) > 100
    assert config.accepted_transfer_syntaxes == [str(uid) for uid in ALL_TRANSFER_SYNTAXES]
    assert config.tls is None and config.bus_enabled and config.subscriptions == ()
    # By study and series: no folder holds more than a series.
    assert config.layout is Layout.STUDY
    assert config.duplicates is Duplicates.KEEP_FIRST
    assert config.max_dataset_size == 4 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[edge]\nport = 1\n[limits]\nmax_asociations = 3\n",
            ":4: [limits] max_asociations: "
            "unknown key 'max_asociations' (did you mean 'max_associations'?)",
        ),
        ("[edgee]\nport = 1\n", ":1: [edgee]: unknown section 'edgee' (did you mean 'edge'?)"),
        (
            '[edge]\nae_title = "E"\n\nport = "eleven"\n',
            ":4: [edge] port: expected an integer, got 'eleven'",
        ),
        ("[edge]\nport = 70000\n", ":2: [edge] port: expected an integer between 0 and 65535"),
        ("[limits]\nacse_timeout = -1\n", ":2: [limits] acse_timeout: expected a non-negative"),
        (
            '[accept]\nsop_classes = ["CTImageStorag"]\n',
            ":2: [accept] sop_classes: 'CTImageStorag' is neither",
        ),
        (
            '[accept]\ncalling_ae_titles = ["WAY-TOO-LONG-AE-TITLE"]\n',
            ":2: [accept] calling_ae_titles: invalid AE title",
        ),
        ('[bus]\nbroker_url = "http://x"\n', ":2: [bus] broker_url: expected a redis:// URL"),
        (
            '[bus]\n[[bus.subscriptions]]\ntask = "a"\nevents = ["EVT_C_STOR"]\n\n'
            '[[bus.subscriptions]]\ntask = "b"\nevents = ["EVT_C_STORE"]\nqueue = 3\n',
            ":4: [bus.subscriptions[0]] events: 'EVT_C_STOR' is not an event type "
            "(did you mean 'EVT_C_STORE'?)",
        ),
        (
            '[[bus.subscriptions]]\ntask = "a"\nevents = ["EVT_C_STORE"]\n\n'
            '[[bus.subscriptions]]\ntask = "b"\nevents = ["EVT_C_STORE"]\nqueue = 3\n',
            ":8: [bus.subscriptions[1]] queue: expected a string, got 3",
        ),
        ('[[bus.subscriptions]]\nqueue = "q"\n', ":1: [bus.subscriptions[0]]: missing key 'task'"),
        ('[tls]\ncert = "missing.pem"\nkey = "missing.key"\n', ":2: [tls] cert: no such file"),
        (
            '[storage]\nduplicates = "overwrite"\n',
            ":2: [storage] duplicates: expected one of 'keep-first', 'replace', 'keep-both'",
        ),
        ("[limits]\nmax_dataset_size = 0\n", ":2: [limits] max_dataset_size: expected an integer"),
        ("port = 11112\n", ":1: port: expected a section, such as [edge]"),
        ("[edge]\nport = \n", ":2: not valid TOML"),
    ],
)
def test_errors_name_the_file_the_line_and_the_key(text: str, expected: str) -> None:
    with pytest.raises(EdgeConfigError) as raised:
        parse_edge_config(text, name="edge.toml", base=Path("/nonexistent"))
    assert str(raised.value).startswith("edge.toml"), str(raised.value)
    assert expected in str(raised.value)
