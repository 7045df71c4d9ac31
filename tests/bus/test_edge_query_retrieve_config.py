"""The edge's ``[query_retrieve]`` section, and the contexts a Q/R-serving edge accepts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from dicombus import AE
from dicombus.bus.edge import advertised_host, build_ae
from dicombus.bus.edge_config import EdgeConfig, EdgeConfigError, parse_edge_config
from dicombus.qr.scp import Destination
from dicombus.sop_class import (
    CTImageStorage,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelGet,
)
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

BASE = Path("/nonexistent")


def test_destinations_inline_and_as_tables() -> None:
    config = parse_edge_config(
        "[query_retrieve]\n"
        'index = "q/index.sqlite3"\n\n'
        "[query_retrieve.destinations]\n"
        'STORESCP = { host = "127.0.0.1", port = 11113 }\n\n'
        '[query_retrieve.destinations."PACS 2"]\n'
        'host = "pacs2.example.org"\n'
        "port = 104\n",
        base=BASE,
    )
    assert config.query_retrieve
    assert config.index == BASE / "q" / "index.sqlite3"
    assert config.move_destinations == {
        "STORESCP": Destination("127.0.0.1", 11113),
        "PACS 2": Destination("pacs2.example.org", 104),
    }


def test_query_retrieve_is_on_by_default_with_the_index_in_the_data_folder() -> None:
    config = parse_edge_config('[edge]\ndata_dir = "node"\n', base=BASE)
    assert (config.query_retrieve, config.move_destinations) == (True, {})
    assert config.index == BASE / "node" / "index.sqlite3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[query_retrieve.destinations]\nA = { host = "h", port = 1 }\n'
            'B = { host = "h", port = 0 }\n',
            "edge.toml:3: [query_retrieve.destinations] B.port: expected a TCP port 1-65535, got 0",
        ),
        (
            '[query_retrieve.destinations.PACS]\nhost = "h"\nport = 104\nprot = 1\n',
            "edge.toml:4: [query_retrieve.destinations] PACS.prot: unknown key "
            "(expected host and port)",
        ),
        (
            '[query_retrieve.destinations]\n"WAY-TOO-LONG-AE-TITLE" = { host = "h", port = 1 }\n',
            "edge.toml:2: [query_retrieve.destinations] WAY-TOO-LONG-AE-TITLE: "
            "'WAY-TOO-LONG-AE-TITLE' is not an AE title",
        ),
        (
            "[query_retrieve]\ndestinations = 3\n",
            "edge.toml:2: [query_retrieve] destinations: expected a table of AE titles",
        ),
        (
            "[query_retrieve]\nenabled = 1\n",
            "edge.toml:2: [query_retrieve] enabled: expected true or false, got 1",
        ),
        (
            "[query_retrieve]\ndestination = {}\n",
            "edge.toml:2: [query_retrieve] destination: unknown key 'destination' "
            "(did you mean 'destinations'?)",
        ),
    ],
)
def test_errors_name_the_line_and_the_key(text: str, expected: str) -> None:
    with pytest.raises(EdgeConfigError) as raised:
        parse_edge_config(text, name="edge.toml", base=BASE)
    assert str(raised.value).startswith(expected), str(raised.value)


def accepted(ae: AE, abstract_syntax: str, transfer_syntax: str) -> bool:
    """Whether ``ae`` accepts ``abstract_syntax`` proposed in ``transfer_syntax`` alone."""
    context = next(c for c in ae.supported_contexts if c.abstract_syntax == abstract_syntax)
    return transfer_syntax in context.transfer_syntax


def test_serving_query_retrieve_keeps_the_configured_transfer_syntaxes() -> None:
    """Granting the C-GET roles to each storage context used to add the three default
    syntaxes to it: an edge told to accept Explicit VR Little Endian only took Implicit."""
    config = EdgeConfig(transfer_syntaxes=(str(ExplicitVRLittleEndian),))
    ae = build_ae(config)
    assert accepted(ae, CTImageStorage, ExplicitVRLittleEndian)
    assert not accepted(ae, CTImageStorage, ImplicitVRLittleEndian)
    (ct,) = (c for c in ae.supported_contexts if c.abstract_syntax == CTImageStorage)
    assert (ct.scu_role, ct.scp_role) == (True, True)
    assert accepted(ae, StudyRootQueryRetrieveInformationModelGet, ImplicitVRLittleEndian)
    assert accepted(ae, StorageCommitmentPushModel, ExplicitVRLittleEndian)


def test_an_edge_without_query_retrieve_accepts_no_query_or_commitment() -> None:
    ae = build_ae(EdgeConfig(query_retrieve=False))
    offered = {str(c.abstract_syntax) for c in ae.supported_contexts}
    assert StudyRootQueryRetrieveInformationModelGet not in offered
    assert StorageCommitmentPushModel not in offered


def test_the_retrieve_host_the_events_advertise() -> None:
    # [query_retrieve] host wins; else the bound address; else, bound to every address,
    # this host's name (an address workers on other hosts can reach).
    named = parse_edge_config('[query_retrieve]\nhost = "edge-1.example"\n', base=BASE)
    assert advertised_host(named) == "edge-1.example"
    assert advertised_host(EdgeConfig(bind="10.0.0.2")) == "10.0.0.2"
    assert advertised_host(EdgeConfig(bind="0.0.0.0")) == socket.getfqdn()
    assert advertised_host(EdgeConfig(bind="::")) == socket.getfqdn()
