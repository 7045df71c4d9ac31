"""The AE API surface, as pynetdicom users know it: settings, contexts, servers, associate()."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from dicombus import (
    AE,
    DEFAULT_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    StoragePresentationContexts,
    build_context,
    evt,
)
from dicombus.association import Association
from dicombus.sop_class import CTImageStorage, MRImageStorage, Verification
from helpers import free_port
from loopback import WAIT_TIMEOUT, associate, associated, quick_ae, serving, wait_until
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

TIMEOUTS = ["acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"]


# -- settings ---------------------------------------------------------------------------------


def test_defaults() -> None:
    ae = AE()
    assert ae.ae_title == "DICOMBUS"
    assert ae.maximum_associations == 10
    assert ae.require_called_aet is False and ae.require_calling_aet == []
    assert ae.requested_contexts == [] and ae.supported_contexts == []
    assert ae.active_associations == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("STORESCP", "STORESCP"),
        ("  PADDED  ", "PADDED"),  # PS3.5 6.2: leading and trailing spaces are not significant
        ("SIXTEEN_CHARS_AE", "SIXTEEN_CHARS_AE"),
        ("WITH SPACE", "WITH SPACE"),
        (b"FROM_BYTES", "FROM_BYTES"),
    ],
)
def test_valid_ae_titles(value: Any, expected: str) -> None:
    assert AE(value).ae_title == expected
    ae = AE()
    ae.ae_title = value
    assert ae.ae_title == expected


INVALID_AE_TITLES = [
    "",
    "    ",
    "SEVENTEEN_CHARS_A",
    "BACK\\SLASH",
    "TAB\tX",
    "NL\n",  # only spaces are insignificant padding (PS3.5 6.2), not other whitespace
    "SC\u00dc",  # outside the default character repertoire: no PDU could carry it
    "DEL\x7f",
]


@pytest.mark.parametrize("value", INVALID_AE_TITLES)
def test_invalid_ae_titles_are_value_errors(value: str) -> None:
    with pytest.raises(ValueError, match="invalid AE title"):
        AE(value)
    ae = AE("KEEP")
    with pytest.raises(ValueError):
        ae.ae_title = value
    assert ae.ae_title == "KEEP"


@pytest.mark.parametrize("value", [None, 42, ["AE"]])
def test_ae_titles_of_other_types_are_type_errors(value: Any) -> None:
    with pytest.raises(TypeError):
        AE(value)


def test_require_calling_aet_is_validated_and_copied() -> None:
    ae = AE()
    ae.require_calling_aet = [" ONE ", "TWO"]
    assert ae.require_calling_aet == ["ONE", "TWO"]
    ae.require_calling_aet.append("THREE")  # a copy: the AE is not changed behind its back
    assert ae.require_calling_aet == ["ONE", "TWO"]
    with pytest.raises(ValueError):
        ae.require_calling_aet = ["OK", "BAD\\TITLE"]


@pytest.mark.parametrize("name", TIMEOUTS)
def test_timeouts_accept_none_and_non_negative_numbers(name: str) -> None:
    ae = AE()
    for value, expected in [(None, None), (0, 0.0), (5, 5.0), (0.25, 0.25)]:
        setattr(ae, name, value)
        assert getattr(ae, name) == expected
    assert isinstance(getattr(ae, name), float)


@pytest.mark.parametrize("name", TIMEOUTS)
@pytest.mark.parametrize("value", [-1, -0.5, "10", [1]])
def test_timeouts_refuse_other_values(name: str, value: Any) -> None:
    ae = AE()
    before = getattr(ae, name)
    with pytest.raises(ValueError, match=name):
        setattr(ae, name, value)
    assert getattr(ae, name) == before


@pytest.mark.parametrize("value", [0, 7, 4096, 16382, 1 << 24])
def test_maximum_pdu_size_accepts_zero_for_unlimited(value: int) -> None:
    ae = AE()
    ae.maximum_pdu_size = value
    assert ae.maximum_pdu_size == value


@pytest.mark.parametrize("value", [-1, 1, 6, 16382.0, "16382", None])
def test_maximum_pdu_size_refuses(value: Any) -> None:
    ae = AE()
    with pytest.raises(ValueError, match="maximum_pdu_size"):
        ae.maximum_pdu_size = value


@pytest.mark.parametrize("value", [0, -3, 2.0])
def test_maximum_associations_must_be_positive(value: Any) -> None:
    ae = AE()
    with pytest.raises(ValueError, match="maximum_associations"):
        ae.maximum_associations = value


# -- requested contexts ------------------------------------------------------------------


def test_add_requested_context_defaults_and_duplicates() -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian, ExplicitVRBigEndian])
    contexts = ae.requested_contexts
    assert [c.abstract_syntax for c in contexts] == [Verification, CTImageStorage, CTImageStorage]
    assert contexts[0].transfer_syntax == DEFAULT_TRANSFER_SYNTAXES
    # Requested contexts may repeat an abstract syntax (one proposal per transfer syntax).
    assert contexts[1].transfer_syntax == [ExplicitVRLittleEndian]
    assert contexts[2].transfer_syntax == [ImplicitVRLittleEndian, ExplicitVRBigEndian]


def test_remove_requested_context_whole_or_some_transfer_syntaxes() -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.remove_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ExplicitVRBigEndian])
    # The context left with no transfer syntax is gone; the other keeps what remains.
    assert [(c.abstract_syntax, c.transfer_syntax) for c in ae.requested_contexts] == [
        (Verification, DEFAULT_TRANSFER_SYNTAXES),
        (CTImageStorage, [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]),
    ]
    ae.remove_requested_context(CTImageStorage)
    assert [c.abstract_syntax for c in ae.requested_contexts] == [Verification]
    ae.remove_requested_context(MRImageStorage)  # not there: nothing happens
    assert len(ae.requested_contexts) == 1


def test_at_most_128_requested_contexts() -> None:
    """PS3.8 9.3.2.2: context IDs are the odd numbers 1..255."""
    ae = AE()
    for _ in range(128):
        ae.add_requested_context(Verification, ImplicitVRLittleEndian)
    with pytest.raises(ValueError, match="128"):
        ae.add_requested_context(Verification)
    assert len(ae.requested_contexts) == 128


def test_requested_contexts_setter_copies_the_list() -> None:
    ae = AE()
    ae.requested_contexts = StoragePresentationContexts
    assert ae.requested_contexts == StoragePresentationContexts
    assert ae.requested_contexts[0] is not StoragePresentationContexts[0]
    first = StoragePresentationContexts[0].abstract_syntax
    ae.remove_requested_context(first, ImplicitVRLittleEndian)
    assert ImplicitVRLittleEndian in StoragePresentationContexts[0].transfer_syntax
    with pytest.raises(ValueError, match="128"):
        ae.requested_contexts = AllStoragePresentationContexts


# -- supported contexts ------------------------------------------------------------------


def test_add_supported_context_merges_transfer_syntaxes_and_updates_roles() -> None:
    ae = AE()
    ae.add_supported_context(CTImageStorage, ImplicitVRLittleEndian)
    ae.add_supported_context(
        CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian], scu_role=True
    )
    (context,) = ae.supported_contexts
    assert context.transfer_syntax == [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
    assert (context.scu_role, context.scp_role) == (True, None)


def test_remove_supported_context_whole_or_some_transfer_syntaxes() -> None:
    ae = AE()
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage)
    ae.remove_supported_context(
        CTImageStorage, [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
    )
    ct = next(c for c in ae.supported_contexts if c.abstract_syntax == CTImageStorage)
    assert ct.transfer_syntax == [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
    ae.remove_supported_context(CTImageStorage, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    assert [c.abstract_syntax for c in ae.supported_contexts] == [Verification]
    ae.remove_supported_context(Verification)
    assert ae.supported_contexts == []


def test_supported_contexts_setter_has_no_128_limit_and_sorts_by_uid() -> None:
    ae = AE()
    ae.supported_contexts = AllStoragePresentationContexts
    uids = [str(c.abstract_syntax) for c in ae.supported_contexts]
    assert len(uids) == len(AllStoragePresentationContexts) > 128
    assert uids == sorted(uids)


def test_supported_contexts_setter_merges_repeated_abstract_syntaxes() -> None:
    ae = AE()
    ae.supported_contexts = [
        build_context(CTImageStorage, ImplicitVRLittleEndian),
        build_context(CTImageStorage, ExplicitVRLittleEndian),
    ]
    (context,) = ae.supported_contexts
    assert context.transfer_syntax == [ImplicitVRLittleEndian, ExplicitVRLittleEndian]


# -- servers -------------------------------------------------------------------------------


def test_start_server_needs_a_supported_context() -> None:
    with pytest.raises(ValueError, match="supported presentation context"):
        AE().start_server(("127.0.0.1", 0), block=False)


def test_associate_needs_a_requested_context() -> None:
    with pytest.raises(RuntimeError, match="requested presentation context"):
        AE().associate("127.0.0.1", free_port())


def test_start_server_non_blocking_tracks_active_associations() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    with serving(scp) as server:
        host, port = server.server_address
        assert (host, port != 0) == ("127.0.0.1", True)
        with associated(scu, server) as assoc:
            assert assoc.is_established
            assert len(server.active_associations) == 1
            assert scp.active_associations == server.active_associations
            assert scu.active_associations == [assoc]
        wait_until(lambda: not server.active_associations)
        assert scu.active_associations == []


def echo_status(status: int) -> Any:
    def on_echo(event: evt.Event) -> int:
        return status

    return on_echo


def test_server_bind_reaches_running_and_later_associations_and_unbind_undoes_it() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    handler = echo_status(0x0122)
    with serving(scp) as server, associated(scu, server) as running:
        assert running.send_c_echo().Status == 0x0000
        server.bind(evt.EVT_C_ECHO, handler)
        assert server.get_handlers(evt.EVT_C_ECHO) == (handler, None)
        assert running.send_c_echo().Status == 0x0122
        with associated(scu, server) as later:
            assert later.send_c_echo().Status == 0x0122
        server.unbind(evt.EVT_C_ECHO, handler)
        assert server.get_handlers(evt.EVT_C_ECHO) == (None, None)
        assert running.send_c_echo().Status == 0x0000


def test_evt_handlers_with_extra_args() -> None:
    calls: list[tuple[str, str]] = []

    def on_echo(event: evt.Event, first: str, second: str) -> int:
        calls.append((first, second))
        return 0x0000

    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    with (
        serving(scp, [(evt.EVT_C_ECHO, on_echo, ["a", "b"])]) as server,
        associated(scu, server) as assoc,
    ):
        assert assoc.send_c_echo().Status == 0x0000
    assert calls == [("a", "b")]


def test_start_server_with_its_own_title_and_contexts() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scp.require_called_aet = True
    scu = quick_ae("SCU")
    with serving(scp, ae_title="OTHER", contexts=[build_context(CTImageStorage)]) as server:
        assert server.ae_title == "OTHER"
        with associated(scu, server, contexts=[build_context(CTImageStorage)]) as assoc:
            assert [c.abstract_syntax for c in assoc.accepted_contexts] == [CTImageStorage]
            assert server.active_associations[0].acceptor.ae_title == "OTHER"
        refused = associate(scu, server, ae_title="SCP", contexts=[build_context(CTImageStorage)])
        assert refused.is_rejected


# "" is not among them: start_server(ae_title="") means the AE's own title.
@pytest.mark.parametrize("value", [title for title in INVALID_AE_TITLES if title])
def test_start_server_checks_its_own_title(value: str) -> None:
    """The title given to start_server is checked as the AE's is (it names the edge in
    every published event); it used to be taken as given."""
    scp = quick_ae("SCP", supported=[Verification])
    with pytest.raises(ValueError, match="invalid AE title"):
        scp.start_server(("127.0.0.1", 0), block=False, ae_title=value)
    assert scp.active_associations == []


def test_start_server_title_is_stripped() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    with serving(scp, ae_title="  OTHER ") as server:
        assert server.ae_title == "OTHER"


def test_ae_shutdown_stops_servers_and_aborts_requested_associations() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    server = scp.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    port = server.server_address[1]
    assoc = associate(scu, server)
    assert assoc.is_established
    scu.shutdown()
    assert assoc.is_aborted and not assoc.is_established
    scp.shutdown()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.shutdown()  # again: harmless


def test_a_blocking_server_returns_quietly_when_the_ae_shuts_it_down() -> None:
    """start_server(block=True) ends without an error once another thread shuts the
    AE down (the server used to remove itself from the AE's list, and the AE then
    removed it again: ValueError)."""
    scp = quick_ae("SCP", supported=[Verification])
    port = free_port()
    outcome: list[BaseException | None] = []

    def serve() -> None:
        try:
            scp.start_server(("127.0.0.1", port), block=True)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_until(lambda: _taken(port))
    scp.shutdown()
    thread.join(WAIT_TIMEOUT)
    assert outcome == [None]
    assert scp.active_associations == []


def _taken(port: int) -> bool:
    """Whether something listens on ``port`` (checked without connecting to it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# -- associate() options --------------------------------------------------------------------


def serving_side(server: Any) -> Association:
    (served,) = server.active_associations
    assert isinstance(served, Association)
    return served


def test_associate_contexts_title_max_pdu_and_bind_address() -> None:
    scp = quick_ae("SCP", supported=[Verification, CTImageStorage])
    scp.require_called_aet = True
    scu = quick_ae("SCU", requested=[MRImageStorage])  # replaced by contexts=
    local_port = free_port()
    with (
        serving(scp) as server,
        associated(
            scu,
            server,
            contexts=[build_context(Verification), build_context(CTImageStorage)],
            ae_title="SCP",
            max_pdu=32768,
            bind_address=("127.0.0.1", local_port),
        ) as assoc,
    ):
        assert assoc.is_established
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [
            Verification,
            CTImageStorage,
        ]
        assert [c.context_id for c in assoc.accepted_contexts] == [1, 3]
        assert (assoc.requestor.address, assoc.requestor.port) == ("127.0.0.1", local_port)
        assert assoc.requestor.maximum_length == 32768
        served = serving_side(server)
        assert served.requestor.maximum_length == 32768
        assert served.requestor.port == local_port
        assert served.acceptor.ae_title == "SCP"


def test_associate_max_pdu_zero_means_unlimited() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    with serving(scp) as server, associated(scu, server, max_pdu=0) as assoc:
        assert serving_side(server).requestor.maximum_length == 0
        assert assoc.send_c_echo().Status == 0x0000


def test_associate_to_a_closed_port_fails_fast() -> None:
    scu = quick_ae("SCU", requested=[Verification])
    assoc = scu.associate("127.0.0.1", free_port())
    assert not assoc.is_established
    assert assoc.is_aborted
    assert not assoc.is_rejected
