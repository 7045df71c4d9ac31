"""A [routing] section with a mistake fails at load, naming the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicombus.bus.edge_config import EdgeConfigError, parse_edge_config
from dicombus.bus.envelope import RetrieveAddress
from dicombus.routing import (
    RoutingConfig,
    RoutingConfigError,
    load_routing_config,
    parse_routing_config,
)
from dicombus.routing.destinations import (
    DimseDestination,
    EdgeSettings,
    EdgeSource,
    StowAuth,
    StowDestination,
)
from dicombus.routing.rules import Per
from routing_support import real_dataset, store_envelope

GOOD = """\
[edge]
id = "edge-1"

[[routing.destinations]]
name = "pacs"
type = "dimse"
ae_title = "PACS"
host = "10.0.0.5"
port = 104
transfer_syntaxes = ["JPEG2000Lossless", "ExplicitVRLittleEndian"]
concurrency = 4

[[routing.destinations]]
name = "ai"
type = "stow-rs"
url = "https://ai.example/dicom-web/studies"
auth = "bearer"
token_env = "AI_TOKEN"
concurrency = 2

[[routing.destinations]]
name = "research"
type = "stow-rs"
url = "http://archive.example/dicomweb/studies"
auth = "basic"
username = "router"
password_env = "ARCHIVE_PASSWORD"
[routing.destinations.transform]
deidentify = true
uid_secret_env = "DEID_SECRET"
remove = ["StationName", "(0009,1010)"]
set = { PatientID = "STUDY-7", ClinicalTrialProtocolID = "P7" }

[[routing.rules]]
name = "ct-to-pacs"
per = "study"
destinations = ["pacs", "ai"]
[routing.rules.match]
Modality = "CT"
calling_ae = { wildcard = "CT*" }

[[routing.rules]]
name = "research"
destinations = ["research"]
[routing.rules.match]
StudyDate = { date_range = "20240101-" }
"""
ENVIRON = {"AI_TOKEN": "t", "ARCHIVE_PASSWORD": "p", "DEID_SECRET": "k"}


def load(text: str, environ: dict[str, str] | None = None) -> object:
    return parse_routing_config(
        text, name="node.toml", environ=ENVIRON if environ is None else environ
    )


def test_a_good_file_gives_destinations_rules_and_queues() -> None:
    config = parse_routing_config(GOOD, name="node.toml", environ=ENVIRON)
    pacs, ai, research = config.destinations.values()
    assert isinstance(pacs, DimseDestination) and pacs.concurrency == 4
    assert pacs.transfer_syntaxes == ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1")
    assert isinstance(ai, StowDestination) and ai.auth is StowAuth.BEARER
    assert isinstance(research, StowDestination) and research.transform.uid_secret == b"k"
    assert [d.queue for d in config.destinations.values()] == [
        "dicombus.route.pacs",
        "dicombus.route.ai",
        "dicombus.route.research",
    ]
    assert [r.name for r in config.rules] == ["ct-to-pacs", "research"]
    # The edge reads the same file and leaves [routing] to the router.
    assert parse_edge_config(GOOD).edge_id == "edge-1"


def test_a_misspelt_routing_section_is_the_edge_s_unknown_section() -> None:
    with pytest.raises(
        EdgeConfigError,
        match=r"node.toml:1: \[routng\]: unknown section 'routng' \(did you mean 'routing'\?\)",
    ):
        parse_edge_config("[routng]\n", name="node.toml")


def _replace(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # unknown keys, with a hint
        (
            _replace('host = "10.0.0.5"', 'hots = "10.0.0.5"'),
            r"node.toml:8: \[routing.destinations\[0\]\] hots: "
            r"unknown key 'hots' \(did you mean 'host'\?\)",
        ),
        (
            _replace('per = "study"', 'pre = "study"'),
            r"node.toml:36: \[routing.rules\[0\]\] pre: unknown key 'pre' \(did you mean 'per'\?\)",
        ),
        (
            _replace('Modality = "CT"', 'Modalty = "CT"'),
            r"node.toml:39: \[routing.rules\[0\].match\] Modalty: 'Modalty' is neither a DICOM "
            r"keyword nor a tag \(gggg,eeee\) \(did you mean 'Modality'\?\)",
        ),
        (
            _replace("deidentify = true", "deidentify = true\nanonymise = 1"),
            r"node.toml:30: \[routing.destinations\[2\].transform\] anonymise: unknown key",
        ),
        (
            _replace('calling_ae = { wildcard = "CT*" }', 'calling_ae = { glob = "CT*" }'),
            r"node.toml:40: \[routing.rules\[0\].match.calling_ae\] glob: unknown operator 'glob'",
        ),
        # wrong types
        (
            _replace("port = 104", 'port = "104"'),
            r"node.toml:9: \[routing.destinations\[0\]\] port: expected an integer, got '104'",
        ),
        (
            _replace("concurrency = 2", "concurrency = 0"),
            r"node.toml:19: \[routing.destinations\[1\]\] concurrency: "
            r"expected an integer >= 1, got 0",
        ),
        (
            _replace('per = "study"', 'per = "patient"'),
            r"node.toml:36: \[routing.rules\[0\]\] per: expected 'instance', 'series' or 'study'",
        ),
        (
            _replace(
                'set = { PatientID = "STUDY-7",', 'set = { Rows = "big", PatientID = "STUDY-7",'
            ),
            r"node.toml:32: \[routing.destinations\[2\].transform.set\] Rows: "
            r"expected a number for VR US",
        ),
        (
            _replace('type = "dimse"', 'type = "dimse-tls"'),
            r"node.toml:6: \[routing.destinations\[0\]\] type: expected 'dimse' or 'stow-rs'",
        ),
        # bad regular expression
        (
            _replace('Modality = "CT"', 'Modality = { regex = "C(T" }'),
            r"node.toml:39: \[routing.rules\[0\].match.Modality\] regex: "
            r"bad regular expression 'C\(T'",
        ),
        # a rule naming a destination that does not exist
        (
            _replace('destinations = ["research"]', 'destinations = ["reserch"]'),
            r"node.toml:44: \[routing.rules\[1\]\] destinations: no destination named 'reserch'",
        ),
        # bad ranges
        (
            _replace(
                'StudyDate = { date_range = "20240101-" }',
                'StudyDate = { date_range = "20241231-20240101" }',
            ),
            r"node.toml:46: \[routing.rules\[1\].match.StudyDate\] date_range: the range "
            r"'20241231-20240101' is empty",
        ),
        (
            _replace(
                'StudyDate = { date_range = "20240101-" }',
                'StudyDate = { date_range = "20240230-" }',
            ),
            r"node.toml:46: .* date_range: '20240230' is not a calendar date",
        ),
        (
            _replace(
                'StudyDate = { date_range = "20240101-" }', "SliceThickness = { min = 5, max = 1 }"
            ),
            r"node.toml:46: \[routing.rules\[1\].match.SliceThickness\] max: min 5 is above max 1",
        ),
        # the rest
        (
            _replace('Modality = "CT"', 'event = "EVT_C_STROE"'),
            r"node.toml:39: .* "
            r"event: 'EVT_C_STROE' is not an event type \(did you mean 'EVT_C_STORE'\?\)",
        ),
        (
            _replace('name = "ai"', 'name = "pacs"'),
            r"node.toml:14: \[routing.destinations\[1\]\] name: a second destination named 'pacs'",
        ),
        (
            _replace("port = 104", "port = 104\ntls_ca = 'ca.pem'"),
            r"node.toml:10: \[routing.destinations\[0\]\] tls_ca: no such file",
        ),
        (
            _replace('uid_secret_env = "DEID_SECRET"', ""),
            r"node.toml:29: \[routing.destinations\[2\].transform\] deidentify: "
            r"deidentify needs one of",
        ),
    ],
)
def test_each_mistake_names_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(RoutingConfigError, match=message):
        load(text)


def test_a_secret_named_by_an_unset_variable_fails_at_load() -> None:
    environ = {"AI_TOKEN": "t", "ARCHIVE_PASSWORD": "p"}
    with pytest.raises(
        RoutingConfigError,
        match=r"node.toml:30: .* uid_secret_env: the environment variable 'DEID_SECRET' is not set",
    ):
        load(GOOD, environ)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(_replace("port = 104", "port = 70000"))
    with pytest.raises(RoutingConfigError) as caught:
        load_routing_config(path, environ=ENVIRON)
    assert str(caught.value).startswith(f"{path}:9: [routing.destinations[0]] port: ")


def test_study_quiet_seconds_defaults_and_is_checked() -> None:
    assert load(GOOD).study_quiet_seconds == 60.0
    quiet = GOOD.replace(
        "[[routing.destinations]]",
        "[routing]\nstudy_quiet_seconds = 90\n\n[[routing.destinations]]",
        1,
    )
    assert load(quiet).study_quiet_seconds == 90.0
    with pytest.raises(
        RoutingConfigError,
        match=r"node.toml:5: \[routing\] study_quiet_seconds: expected a positive number of "
        r"seconds, got 0",
    ):
        load(quiet.replace("study_quiet_seconds = 90", "study_quiet_seconds = 0"))


def test_the_edge_to_fetch_from_is_read_and_checked() -> None:
    edge = '[routing]\nedge = { ae_title = "EDGE", host = "10.0.0.2", port = 11112 }\n'
    found = load(edge)
    assert isinstance(found, RoutingConfig) and found.edge is not None
    assert (found.edge.ae_title, found.edge.port, found.edge.calling_ae_title) == (
        "EDGE",
        11112,
        "DICOMBUS",
    )
    with pytest.raises(RoutingConfigError, match=r"node.toml:2: \[routing.edge\] port: expected"):
        load(edge.replace("11112", '"x"'))
    with pytest.raises(RoutingConfigError, match=r"\[routing.edge\] hots: unknown key 'hots'"):
        load(edge.replace("host", "hots"))


def test_the_edge_takes_tls_settings_as_a_dimse_destination_does(tmp_path: Path) -> None:
    for name in ("ca.pem", "worker.pem", "worker.key"):
        (tmp_path / name).write_text("PEM\n")
    edge = """\
[routing.edge]
ae_title = "EDGE"
host = "edge-1"
port = 2762
tls = true
tls_ca = "ca.pem"
tls_cert = "worker.pem"
tls_key = "worker.key"
"""
    found = parse_routing_config(edge, name="node.toml", base=tmp_path)
    assert found.edge == EdgeSettings(
        ae_title="EDGE",
        host="edge-1",
        port=2762,
        tls=True,
        tls_ca=tmp_path / "ca.pem",
        tls_cert=tmp_path / "worker.pem",
        tls_key=tmp_path / "worker.key",
    )
    source = found.edge.source(RetrieveAddress("OTHER", "elsewhere", 104))
    assert source is not None and source.address == "dicom-tls://EDGE@edge-1:2762"
    # The destinations' checks, with the file, line and key.
    mistakes = {
        edge.replace(
            "tls = true\n", ""
        ): r"node.toml:5: \[routing.edge\] tls_ca: tls_ca needs tls = true",
        edge.replace('tls_key = "worker.key"\n', ""): r"node.toml:7: \[routing.edge\] tls_cert: "
        "tls_cert and tls_key go together",
        edge.replace("ca.pem", "nowhere.pem"): r"\[routing.edge\] tls_ca: no such file",
        edge.replace("tls = true", 'tls = "yes"'): r"\[routing.edge\] tls: expected",
        edge.replace("tls_ca", "tls_cafile"): r"unknown key 'tls_cafile' \(did you mean 'tls_ca'",
    }
    for text, message in mistakes.items():
        with pytest.raises(RoutingConfigError, match=message):
            parse_routing_config(text, name="node.toml", base=tmp_path)


def test_an_edge_table_without_an_address_keeps_the_events_address(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("PEM\n")
    text = '[routing]\nedge = { tls_ca = "ca.pem", calling_ae_title = "ROUTER" }\n'
    found = parse_routing_config(text, name="node.toml", base=tmp_path)
    assert found.edge == EdgeSettings(calling_ae_title="ROUTER", tls_ca=tmp_path / "ca.pem")
    # A dicom-tls:// edge is reached over TLS with the CA; a dicom:// one in the clear.
    tls_edge = RetrieveAddress("EDGE", "edge-1", 2762, tls=True)
    assert found.edge.source(tls_edge) == EdgeSource(
        ae_title="EDGE",
        host="edge-1",
        port=2762,
        calling_ae_title="ROUTER",
        tls=True,
        tls_ca=tmp_path / "ca.pem",
    )
    plain = found.edge.source(RetrieveAddress("EDGE", "edge-1", 104))
    assert plain is not None and plain.address == "dicom://EDGE@edge-1:104"
    assert found.edge.source(None) is None  # no address anywhere
    # tls = true: TLS even where the events say dicom:// (a TLS-terminating proxy).
    forced = parse_routing_config(
        text.replace("}", ", tls = true }"), name="node.toml", base=tmp_path
    )
    assert forced.edge is not None
    assert forced.edge.source(RetrieveAddress("EDGE", "edge-1", 104)) == EdgeSource(
        ae_title="EDGE",
        host="edge-1",
        port=104,
        calling_ae_title="ROUTER",
        tls=True,
        tls_ca=tmp_path / "ca.pem",
    )
    # Part of an address is a mistake, not an address.
    with pytest.raises(
        RoutingConfigError, match=r"node.toml:2: \[routing\] edge: missing key 'ae_title'"
    ):
        parse_routing_config(
            text.replace("}", ', host = "edge-1" }'), name="node.toml", base=tmp_path
        )


def test_a_per_study_or_series_rule_has_its_own_quiet_time() -> None:
    own = GOOD.replace('per = "study"\n', 'per = "study"\nquiet_seconds = 30\n', 1)
    config = load(own)
    assert isinstance(config, RoutingConfig)
    assert [rule.quiet_seconds for rule in config.rules] == [30.0, None]
    assert config.quiet_times(Per.STUDY) == {30.0}
    assert config.quiet_times(Per.SERIES) == frozenset()
    with pytest.raises(
        RoutingConfigError,
        match=r"node.toml:37: \[routing.rules\[0\]\] quiet_seconds: expected a positive number "
        r"of seconds, got -1",
    ):
        load(own.replace("quiet_seconds = 30", "quiet_seconds = -1"))
    per_instance = GOOD.replace(
        'destinations = ["research"]\n', 'destinations = ["research"]\nquiet_seconds = 5\n'
    )
    with pytest.raises(
        RoutingConfigError,
        match=r"node.toml:45: \[routing.rules\[1\]\] quiet_seconds: only with per = 'series' "
        r"or 'study'",
    ):
        load(per_instance)


def test_the_readme_s_routing_example_loads_and_routes_ct_to_the_pacs() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme.split("Forward every CT", 1)[1].split("```toml\n", 1)[1].split("```")[0]
    parse_edge_config(example, name="node.toml")  # the edge reads the same file
    config = load(example, {})
    assert isinstance(config, RoutingConfig)
    ct, mr = real_dataset(), real_dataset()
    mr.Modality = "MR"
    assert [(r.rule, r.destination) for r in config.routes(store_envelope(ct))] == [("ct", "pacs")]
    assert config.routes(store_envelope(mr)) == []
