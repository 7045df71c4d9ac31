"""The event system on live associations over 127.0.0.1.

dicombus's SCU talks to dicombus's SCP; where the order of events is the
question, the same exchange runs between pynetdicom's SCU and SCP with the
same handlers bound, and the two stacks must agree. Notification events:
that each fires, when, and with which attributes. Intervention events: what
the handler sees, what its answer (or its failure) becomes on the wire.
Binding rules, and that an unbound per-PDU event costs no Event object.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import dicombus
import pytest
from dicombus import AE, _config, evt
from dicombus.association import Association
from dicombus.dataset_codec import InstanceMeta, encode_dataset, encode_part10_header
from dicombus.protocol.commands import CommandField, decode_command_set
from dicombus.protocol.items import UserIdentityACSubItem, UserIdentityRQSubItem
from dicombus.protocol.pdus import (
    AAssociateAC,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    decode_pdu,
)
from dicombus.server import AssociationServer
from helpers import CT_IMAGE_STORAGE, free_port, import_peer, small_dataset
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from raw_peers import VERIFICATION_SOP_CLASS, wait_idle, wait_until

Serve = Callable[..., Any]
SIDES = ("requestor", "acceptor")
ENDINGS = ("released", "rejected", "aborted by the requestor", "aborted by the acceptor")
LIFECYCLE = (
    "EVT_CONN_OPEN",
    "EVT_REQUESTED",
    "EVT_ACCEPTED",
    "EVT_ESTABLISHED",
    "EVT_REJECTED",
    "EVT_RELEASED",
    "EVT_ABORTED",
    "EVT_CONN_CLOSE",
)
STATUS_HANDLER_FAILED = 0xC211  # pynetdicom's C-STORE status for a failing handler
STATUS_INVALID_RETURN = 0xC002  # pynetdicom's status for a handler that returned nonsense
PROCESSING_FAILURE = 0x0110  # PS3.7 Annex C: Processing failure


class Recorder:
    """A notification handler bound as ``(event, recorder, [side])``: keeps every Event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[str, list[Any]] = {side: [] for side in SIDES}

    def __call__(self, event: Any, side: str) -> None:
        with self._lock:
            self.events[side].append(event)

    def bindings(self, side: str, events: Sequence[Any]) -> list[Any]:
        return [(event, self, [side]) for event in events]

    def names(self, side: str) -> list[str]:
        with self._lock:
            return [event.event.name for event in self.events[side]]

    def of(self, side: str, event: evt.NotificationEvent) -> list[Any]:
        with self._lock:
            return [e for e in self.events[side] if e.event.name == event.name]

    def clear(self) -> None:
        with self._lock:
            for events in self.events.values():
                events.clear()


def _bindable(lib: ModuleType, names: Sequence[str]) -> list[Any]:
    return [getattr(lib.evt, name) for name in names]


def echo_scp(lib: ModuleType, serve: Serve, handlers: Sequence[Any] = ()) -> Any:
    """A Verification SCP of either stack that accepts only the calling AE title "SCU"."""
    ae = lib.AE("ECHOSCP")
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    ae.require_calling_aet = ["SCU"]
    return serve(ae, handlers)


def echo_scu(lib: ModuleType = dicombus, title: str = "SCU") -> Any:
    ae = lib.AE(title)
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    return ae


def run_exchange(
    lib: ModuleType, server: Any, recorder: Recorder, ending: str, events: Sequence[Any]
) -> Any:
    """Associate, echo once and end as ``ending`` says; return once both sides are done."""
    scu = echo_scu(lib, "INTRUDER" if ending == "rejected" else "SCU")
    assoc = scu.associate(
        "127.0.0.1",
        server.server_address[1],
        ae_title="ECHOSCP",
        evt_handlers=recorder.bindings("requestor", events),
    )
    if assoc.is_established:
        assert assoc.send_c_echo().Status == 0x0000
        if ending == "released":
            assoc.release()
        elif ending == "aborted by the requestor":
            assoc.abort()
        else:
            server.active_associations[0].abort()
    assert wait_until(lambda: not assoc.is_alive())
    wait_idle(server)
    if any(event.name == "EVT_CONN_CLOSE" for event in events):
        # pynetdicom may report the close from a thread that outlives the association's.
        assert wait_until(lambda: all("EVT_CONN_CLOSE" in recorder.names(s) for s in SIDES))
    return assoc


# -- notification events --------------------------------------------------------------


class Recorded(NamedTuple):
    events: dict[str, list[Any]]  # per side
    requestors: list[Association]
    started: datetime


@pytest.fixture
def everything(serve: Serve) -> Recorded:
    """Every notification event of both sides, over an association released, one
    rejected and one aborted (each on its own server, so each recorder sees one)."""
    recorded = Recorded({side: [] for side in SIDES}, [], datetime.now())
    for ending in ENDINGS[:3]:
        recorder = Recorder()
        server = echo_scp(dicombus, serve, recorder.bindings("acceptor", evt.NOTIFICATION_EVENTS))
        assoc = run_exchange(dicombus, server, recorder, ending, evt.NOTIFICATION_EVENTS)
        recorded.requestors.append(assoc)
        for side in SIDES:
            recorded.events[side].extend(recorder.events[side])
    return recorded


def test_all_notification_events_fire_on_both_sides(everything: Recorded) -> None:
    every = {event.name for event in evt.NOTIFICATION_EVENTS}
    assert len(every) == 17
    for side in SIDES:
        assert {event.event.name for event in everything.events[side]} == every, side


def test_every_event_has_assoc_event_and_timestamp(everything: Recorded) -> None:
    for side in SIDES:
        for event in everything.events[side]:
            assert isinstance(event.assoc, Association)
            assert event.assoc.mode == side
            assert event.event in evt.NOTIFICATION_EVENTS
            assert event.event is getattr(evt, event.event.name)
            assert event.name == event.event.name
            assert isinstance(event.event.description, str) and event.event.description
            assert isinstance(event.timestamp, datetime)
            assert everything.started <= event.timestamp <= datetime.now()
    assert {id(event.assoc) for event in everything.events["requestor"]} == {
        id(assoc) for assoc in everything.requestors
    }


def test_connection_events_carry_the_peer_address(serve: Serve) -> None:
    recorder = Recorder()
    watched = [evt.EVT_CONN_OPEN, evt.EVT_CONN_CLOSE]
    server = echo_scp(dicombus, serve, recorder.bindings("acceptor", watched))
    assoc = run_exchange(dicombus, server, recorder, "released", watched)
    server_address = ("127.0.0.1", server.server_address[1])
    client_address = ("127.0.0.1", assoc.requestor.port)
    for side, peer in (("requestor", server_address), ("acceptor", client_address)):
        assert [event.address for event in recorder.events[side]] == [peer, peer]
        assert recorder.names(side) == ["EVT_CONN_OPEN", "EVT_CONN_CLOSE"]


def test_acse_pdu_data_and_dimse_events_describe_the_exchange(serve: Serve) -> None:
    recorder = Recorder()
    watched = [
        evt.EVT_ACSE_SENT,
        evt.EVT_ACSE_RECV,
        evt.EVT_PDU_SENT,
        evt.EVT_PDU_RECV,
        evt.EVT_DATA_SENT,
        evt.EVT_DATA_RECV,
        evt.EVT_DIMSE_SENT,
        evt.EVT_DIMSE_RECV,
    ]
    server = echo_scp(dicombus, serve, recorder.bindings("acceptor", watched))
    run_exchange(dicombus, server, recorder, "released", watched)

    def primitives(side: str, event: evt.NotificationEvent) -> list[type]:
        return [type(e.primitive) for e in recorder.of(side, event)]

    def pdus(side: str, event: evt.NotificationEvent) -> list[type]:
        return [type(e.pdu) for e in recorder.of(side, event)]

    def commands(side: str, event: evt.NotificationEvent) -> list[CommandField]:
        return [e.message.command.command_field for e in recorder.of(side, event)]

    outgoing = [AAssociateRQ, AReleaseRQ]
    incoming = [AAssociateAC, AReleaseRP]
    assert primitives("requestor", evt.EVT_ACSE_SENT) == outgoing
    assert primitives("requestor", evt.EVT_ACSE_RECV) == incoming
    assert primitives("acceptor", evt.EVT_ACSE_RECV) == outgoing
    assert primitives("acceptor", evt.EVT_ACSE_SENT) == incoming
    assert pdus("requestor", evt.EVT_PDU_SENT) == [AAssociateRQ, PDataTF, AReleaseRQ]
    assert pdus("requestor", evt.EVT_PDU_RECV) == [AAssociateAC, PDataTF, AReleaseRP]
    assert pdus("acceptor", evt.EVT_PDU_RECV) == [AAssociateRQ, PDataTF, AReleaseRQ]
    assert pdus("acceptor", evt.EVT_PDU_SENT) == [AAssociateAC, PDataTF, AReleaseRP]
    assert commands("requestor", evt.EVT_DIMSE_SENT) == [CommandField.C_ECHO_RQ]
    assert commands("requestor", evt.EVT_DIMSE_RECV) == [CommandField.C_ECHO_RSP]
    assert commands("acceptor", evt.EVT_DIMSE_RECV) == [CommandField.C_ECHO_RQ]
    assert commands("acceptor", evt.EVT_DIMSE_SENT) == [CommandField.C_ECHO_RSP]
    # EVT_DATA_*: each PDU's raw bytes, header included, decoding to that PDU.
    for side in SIDES:
        for pdu_event, data_event in (
            (evt.EVT_PDU_SENT, evt.EVT_DATA_SENT),
            (evt.EVT_PDU_RECV, evt.EVT_DATA_RECV),
        ):
            raw = [e.data for e in recorder.of(side, data_event)]
            assert all(isinstance(data, bytes) for data in raw)
            assert [decode_pdu(data[0], data[6:]) for data in raw] == [
                e.pdu for e in recorder.of(side, pdu_event)
            ]
            assert all(int.from_bytes(data[2:6], "big") == len(data) - 6 for data in raw)


def test_a_kept_received_pdu_does_not_change_after_its_handler_returns(serve: Serve) -> None:
    """The reader reuses its buffer for the next PDU; event.pdu must not be a view of it."""
    kept: list[PDataTF] = []

    def keep(event: evt.Event) -> None:
        if isinstance(event.pdu, PDataTF):
            kept.append(event.pdu)

    server = echo_scp(dicombus, serve, [(evt.EVT_PDU_RECV, keep)])
    assoc = echo_scu().associate("127.0.0.1", server.server_address[1], ae_title="ECHOSCP")
    for message_id in (1, 2, 3):
        assoc.send_c_echo(msg_id=message_id)
    assoc.release()
    wait_idle(server)
    assert [decode_command_set(pdu.pdvs[0].data).MessageID for pdu in kept] == [1, 2, 3]


def test_fsm_transitions_match_pynetdicoms(serve: Serve) -> None:
    """Both stacks walk PS3.8 Table 9-10 the same way through an echo and a release."""
    pynetdicom = import_peer("pynetdicom")
    walks = {}
    for lib in (dicombus, pynetdicom):
        recorder = Recorder()
        watched = [lib.evt.EVT_FSM_TRANSITION]
        server = echo_scp(lib, serve, recorder.bindings("acceptor", watched))
        run_exchange(lib, server, recorder, "released", watched)
        walks[lib.__name__] = {
            side: [
                (e.current_state, e.fsm_event, e.action, e.next_state)
                for e in recorder.events[side]
            ]
            for side in SIDES
        }
    assert walks["dicombus"] == walks["pynetdicom"]
    assert walks["dicombus"]["acceptor"][0] == ("Sta1", "Evt5", "AE-5", "Sta2")
    assert walks["dicombus"]["acceptor"][-1] == ("Sta13", "Evt17", "AR-5", "Sta1")
    assert walks["dicombus"]["requestor"][-1] == ("Sta7", "Evt13", "AR-3", "Sta1")


def test_lifecycle_order_matches_pynetdicoms(serve: Serve) -> None:
    """The same handlers on both stacks see the association's life in the same order.

    EVT_CONN_CLOSE is compared apart: pynetdicom fires it before EVT_RELEASED on a
    requestor and before EVT_ABORTED on an acceptor whose peer aborted, but after them
    otherwise; dicombus always reports the association's end first, then the close.
    """
    pynetdicom = import_peer("pynetdicom")
    orders: dict[str, dict[str, dict[str, list[str]]]] = {}
    for lib in (dicombus, pynetdicom):
        recorder = Recorder()
        watched = _bindable(lib, LIFECYCLE)
        server = echo_scp(lib, serve, recorder.bindings("acceptor", watched))
        orders[lib.__name__] = {}
        for ending in ENDINGS:
            run_exchange(lib, server, recorder, ending, watched)
            orders[lib.__name__][ending] = {side: recorder.names(side) for side in SIDES}
            recorder.clear()
    for ending in ENDINGS:
        ours, theirs = orders["dicombus"][ending], orders["pynetdicom"][ending]
        for side in SIDES:
            assert [n for n in ours[side] if n != "EVT_CONN_CLOSE"] == [
                n for n in theirs[side] if n != "EVT_CONN_CLOSE"
            ], (ending, side)
            assert ours[side].count("EVT_CONN_CLOSE") == theirs[side].count("EVT_CONN_CLOSE") == 1
            assert ours[side][-1] == "EVT_CONN_CLOSE"
    assert orders["dicombus"]["released"]["requestor"] == [
        "EVT_REQUESTED",
        "EVT_CONN_OPEN",
        "EVT_ACCEPTED",
        "EVT_ESTABLISHED",
        "EVT_RELEASED",
        "EVT_CONN_CLOSE",
    ]


def test_connection_refused_reports_requested_then_aborted() -> None:
    """As pynetdicom, less its EVT_CONN_CLOSE for a connection that never opened."""
    port = free_port()  # nothing listens there
    recorder = Recorder()
    assoc = echo_scu().associate(
        "127.0.0.1", port, evt_handlers=recorder.bindings("requestor", evt.NOTIFICATION_EVENTS)
    )
    assert assoc.is_aborted
    assert recorder.names("requestor") == ["EVT_REQUESTED", "EVT_ABORTED"]


# -- intervention events -----------------------------------------------------------------


def storage_scp(serve: Serve, handlers: Sequence[Any] = ()) -> AssociationServer:
    ae = AE("STORESCP")
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    ae.add_supported_context(CT_IMAGE_STORAGE)
    server: AssociationServer = serve(ae, handlers)
    return server


def storage_scu() -> AE:
    ae = AE("SCU")
    ae.add_requested_context(VERIFICATION_SOP_CLASS)
    ae.add_requested_context(CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    return ae


def test_c_store_handler_sees_the_request_context_and_dataset(serve: Serve) -> None:
    seen: dict[str, Any] = {}

    def on_store(event: evt.Event) -> int:
        path = event.dataset_path
        seen.update(
            message_id=event.request.MessageID,
            event_message_id=event.message_id,
            instance=event.request.AffectedSOPInstanceUID,
            sop_class=event.request.AffectedSOPClassUID,
            context=(
                event.context.context_id,
                event.context.abstract_syntax,
                event.context.transfer_syntax,
            ),
            patient=event.dataset.PatientID,
            pixels=event.dataset.PixelData,
            meta=(event.file_meta.TransferSyntaxUID, event.file_meta.MediaStorageSOPInstanceUID),
            same_meta=event.file_meta is event.file_meta,
            meta_header=encode_part10_header(event.file_meta),
            instance_meta=event.instance_meta,
            part10=event.encoded_dataset(),
            encoded=event.encoded_dataset(include_meta=False),
            path=path,
            path_bytes=path.read_bytes(),
        )
        return 0x0000

    server = storage_scp(serve, [(evt.EVT_C_STORE, on_store)])
    ds = small_dataset()
    assoc = storage_scu().associate("127.0.0.1", server.server_address[1])
    assert assoc.send_c_store(ds, msg_id=7).Status == 0x0000
    assoc.release()
    wait_idle(server)
    encoded = encode_dataset(ds, ExplicitVRLittleEndian)
    (store_context,) = [c for c in assoc.accepted_contexts if c.abstract_syntax == CT_IMAGE_STORAGE]
    assert seen["message_id"] == seen["event_message_id"] == 7
    assert seen["instance"] == ds.SOPInstanceUID
    assert seen["sop_class"] == CT_IMAGE_STORAGE
    assert seen["context"] == (store_context.context_id, CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    assert seen["patient"] == ds.PatientID
    assert seen["pixels"] == ds.PixelData
    assert seen["meta"] == (ExplicitVRLittleEndian, ds.SOPInstanceUID)
    assert seen["encoded"] == seen["path_bytes"] == encoded
    assert seen["part10"][128:132] == b"DICM"
    assert seen["part10"].endswith(encoded)
    # file_meta is built once, on first access; the storage handler's three UIDs
    # (instance_meta) write the same header byte for byte.
    assert seen["same_meta"]
    assert seen["instance_meta"] == InstanceMeta(
        sop_class_uid=CT_IMAGE_STORAGE,
        sop_instance_uid=ds.SOPInstanceUID,
        transfer_syntax=ExplicitVRLittleEndian,
    )
    assert seen["part10"] == seen["meta_header"] + encoded
    assert seen["instance_meta"].part10_header() == seen["meta_header"]
    # The spool file is the handler's to move; left where it was, it is removed.
    assert wait_until(lambda: not Path(seen["path"]).exists())


def test_c_echo_handler_sees_the_request(serve: Serve) -> None:
    seen: list[tuple[int, int, str]] = []

    def on_echo(event: evt.Event) -> int:
        seen.append((event.request.MessageID, event.message_id, event.context.abstract_syntax))
        return 0x0000

    server = storage_scp(serve, [(evt.EVT_C_ECHO, on_echo)])
    assoc = storage_scu().associate("127.0.0.1", server.server_address[1])
    assert assoc.send_c_echo(msg_id=3).Status == 0x0000
    assoc.release()
    assert seen == [(3, 3, VERIFICATION_SOP_CLASS)]


def _raises(_event: evt.Event) -> int:
    raise RuntimeError("the disk is on fire")


def _answers_dataset(_event: evt.Event) -> Dataset:
    answer = Dataset()
    answer.Status = 0xA700
    answer.ErrorComment = "out of resources"
    return answer


def _answers_nonsense(_event: evt.Event) -> str:
    return "fine, thanks"


# (event, handler or None, expected status, expected ErrorComment or None)
ANSWERS = {
    "C-ECHO, no handler": ("echo", None, 0x0000, None),
    "C-ECHO, handler raises": ("echo", _raises, PROCESSING_FAILURE, None),
    "C-ECHO, Dataset answer": ("echo", _answers_dataset, 0xA700, "out of resources"),
    "C-ECHO, nonsense answer": ("echo", _answers_nonsense, STATUS_INVALID_RETURN, None),
    "C-STORE, no handler": ("store", None, STATUS_HANDLER_FAILED, "no storage handler"),
    "C-STORE, handler raises": ("store", _raises, STATUS_HANDLER_FAILED, "the disk is on fire"),
    "C-STORE, Dataset answer": ("store", _answers_dataset, 0xA700, "out of resources"),
    "C-STORE, nonsense answer": ("store", _answers_nonsense, STATUS_INVALID_RETURN, None),
}


@pytest.mark.parametrize(
    ("service", "handler", "status", "comment"), ANSWERS.values(), ids=ANSWERS.keys()
)
def test_intervention_answers_become_response_statuses(
    serve: Serve,
    service: str,
    handler: Callable[[evt.Event], Any] | None,
    status: int,
    comment: str | None,
) -> None:
    event = evt.EVT_C_ECHO if service == "echo" else evt.EVT_C_STORE
    server = storage_scp(serve, [(event, handler)] if handler else [])
    assoc = storage_scu().associate("127.0.0.1", server.server_address[1])
    response = assoc.send_c_echo() if service == "echo" else assoc.send_c_store(small_dataset())
    assoc.release()
    assert response.Status == status
    assert response.get("ErrorComment") == comment
    assert assoc.is_released


def _identity(password: bytes) -> UserIdentityRQSubItem:
    return UserIdentityRQSubItem(
        user_identity_type=2,  # PS3.7 D.3.3.7.1: username and passcode
        positive_response_requested=True,
        primary_field=b"alice",
        secondary_field=password,
    )


def test_user_identity_is_accepted_or_rejected_by_its_handler(serve: Serve) -> None:
    seen: list[tuple[int, bytes, bytes]] = []

    def check_identity(event: evt.Event) -> tuple[bool, bytes | None]:
        seen.append((event.user_id_type, event.primary_field, event.secondary_field))
        if event.secondary_field == b"open sesame":
            return True, None
        return False, None

    server = echo_scp(dicombus, serve, [(evt.EVT_USER_ID, check_identity)])
    port = server.server_address[1]
    accepted = echo_scu().associate(
        "127.0.0.1", port, ae_title="ECHOSCP", ext_neg=[_identity(b"open sesame")]
    )
    assert accepted.is_established
    info = accepted.acceptor.user_information
    # PS3.7 D.3.3.7.2: the positive response to a username identity is empty.
    assert [i for i in info if isinstance(i, UserIdentityACSubItem)] == [
        UserIdentityACSubItem(server_response=b"")
    ]
    accepted.release()
    refused = echo_scu().associate(
        "127.0.0.1", port, ae_title="ECHOSCP", ext_neg=[_identity(b"guess")]
    )
    assert refused.is_rejected
    assert refused.rejection is not None
    # PS3.8 Table 9-21: rejected permanent, by the service user, no reason given.
    assert refused.rejection[:3] == (1, 1, 1)
    assert seen == [(2, b"alice", b"open sesame"), (2, b"alice", b"guess")]


# -- binding rules -------------------------------------------------------------------------


def test_handlers_bind_as_2_and_3_tuples_on_associate_and_start_server(serve: Serve) -> None:
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def note(event: evt.Event, *args: Any) -> int:
        calls.append((event.event.name, args))
        return 0x0000

    server = echo_scp(
        dicombus, serve, [(evt.EVT_C_ECHO, note), (evt.EVT_ACCEPTED, note, ["scp", 1])]
    )
    assoc = echo_scu().associate(
        "127.0.0.1",
        server.server_address[1],
        ae_title="ECHOSCP",
        evt_handlers=[(evt.EVT_ESTABLISHED, note), (evt.EVT_DIMSE_RECV, note, ("scu", 2))],
    )
    assoc.send_c_echo()
    assoc.release()
    wait_idle(server)
    assert sorted(calls) == sorted(
        [
            ("EVT_ACCEPTED", ("scp", 1)),
            ("EVT_ESTABLISHED", ()),
            ("EVT_C_ECHO", ()),
            ("EVT_DIMSE_RECV", ("scu", 2)),
        ]
    )


def test_bind_and_unbind_on_an_association(serve: Serve) -> None:
    received: list[CommandField] = []

    def on_dimse(event: evt.Event) -> None:
        received.append(event.message.command.command_field)

    server = echo_scp(dicombus, serve)
    assoc = echo_scu().associate("127.0.0.1", server.server_address[1], ae_title="ECHOSCP")
    assoc.send_c_echo()
    assoc.bind(evt.EVT_DIMSE_RECV, on_dimse)
    assert assoc.get_handlers(evt.EVT_DIMSE_RECV) == [(on_dimse, None)]
    assoc.send_c_echo()
    assoc.unbind(evt.EVT_DIMSE_RECV, on_dimse)
    assoc.send_c_echo()
    assoc.release()
    assert received == [CommandField.C_ECHO_RSP]


def test_server_binds_reach_running_and_later_associations_until_unbound(serve: Serve) -> None:
    echoes: list[int] = []
    messages: list[int] = []

    def on_echo(event: evt.Event) -> int:
        echoes.append(event.message_id)
        return 0x0000

    def on_dimse(event: evt.Event) -> None:
        messages.append(event.message.command.MessageID)

    server = echo_scp(dicombus, serve)
    port = server.server_address[1]
    running = echo_scu().associate("127.0.0.1", port, ae_title="ECHOSCP")
    running.send_c_echo(msg_id=1)
    server.bind(evt.EVT_C_ECHO, on_echo)
    server.bind(evt.EVT_DIMSE_RECV, on_dimse)
    later = echo_scu().associate("127.0.0.1", port, ae_title="ECHOSCP")
    running.send_c_echo(msg_id=2)
    later.send_c_echo(msg_id=3)
    server.unbind(evt.EVT_C_ECHO, on_echo)
    server.unbind(evt.EVT_DIMSE_RECV, on_dimse)
    running.send_c_echo(msg_id=4)
    later.send_c_echo(msg_id=5)
    assert echo_scu().associate("127.0.0.1", port, ae_title="ECHOSCP").send_c_echo(6).Status == 0
    for assoc in (running, later):
        assoc.release()
    assert sorted(echoes) == [2, 3]
    assert sorted(messages) == [2, 3]


def test_notification_handlers_all_run_in_binding_order(serve: Serve) -> None:
    order: list[tuple[str, int]] = []

    def handler(number: int) -> Callable[[evt.Event, str], None]:
        def record(_event: evt.Event, side: str) -> None:
            order.append((side, number))

        return record

    def three(side: str) -> list[Any]:
        return [(evt.EVT_ESTABLISHED, handler(n), [side]) for n in (1, 2, 3)]

    server = echo_scp(dicombus, serve, three("acceptor"))
    assoc = echo_scu().associate(
        "127.0.0.1", server.server_address[1], ae_title="ECHOSCP", evt_handlers=three("requestor")
    )
    assoc.release()
    wait_idle(server)
    for side in SIDES:
        assert [n for s, n in order if s == side] == [1, 2, 3]


def test_a_second_intervention_binding_replaces_the_first(serve: Serve) -> None:
    def first(_event: evt.Event) -> int:
        return 0xA701

    def second(_event: evt.Event) -> int:
        return 0xA702

    server = echo_scp(dicombus, serve)
    server.bind(evt.EVT_C_ECHO, first)
    server.bind(evt.EVT_C_ECHO, second)
    assert server.get_handlers(evt.EVT_C_ECHO) == (second, None)
    assoc = echo_scu().associate("127.0.0.1", server.server_address[1], ae_title="ECHOSCP")
    assert assoc.send_c_echo().Status == 0xA702
    assoc.release()


def test_a_raising_notification_handler_is_logged_and_the_association_goes_on(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    after: list[str] = []

    def broken(_event: evt.Event) -> None:
        raise ValueError("handler bug")

    def fine(event: evt.Event) -> None:
        after.append(event.event.name)

    handlers = [(evt.EVT_ESTABLISHED, broken), (evt.EVT_ESTABLISHED, fine)]
    handlers += [(evt.EVT_DIMSE_RECV, broken)]
    server = echo_scp(dicombus, serve, handlers)
    assoc = echo_scu().associate(
        "127.0.0.1", server.server_address[1], ae_title="ECHOSCP", evt_handlers=handlers
    )
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    wait_idle(server)
    assert assoc.is_released
    assert after == ["EVT_ESTABLISHED", "EVT_ESTABLISHED"]
    failures = [
        r for r in caplog.records if r.name == "dicombus.events" and r.levelno == logging.ERROR
    ]
    assert len(failures) == 4  # EVT_ESTABLISHED and EVT_DIMSE_RECV, on both sides
    assert all(r.exc_info and "handler bug" in str(r.exc_info[1]) for r in failures)


@pytest.mark.parametrize("level", ["standard", "none"])
def test_log_handler_level_none_silences_association_messages(
    serve: Serve,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    level: str,
) -> None:
    monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", level)  # restored after the test
    caplog.set_level(logging.DEBUG, logger="dicombus")
    server = echo_scp(dicombus, serve)
    assoc = echo_scu().associate("127.0.0.1", server.server_address[1], ae_title="ECHOSCP")
    assoc.send_c_echo()
    assoc.release()
    wait_idle(server)
    messages = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("dicombus") and r.name != "dicombus.server"  # "listening on..."
    ]
    if level == "none":
        assert messages == []
    else:
        assert "Association Accepted" in messages
        assert "Association Released" in messages


# -- what an unbound event costs -------------------------------------------------------------

PER_PDU_EVENTS = (evt.EVT_PDU_RECV, evt.EVT_DATA_RECV, evt.EVT_FSM_TRANSITION, evt.EVT_DIMSE_RECV)


def test_unbound_per_pdu_events_build_no_event_object(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spy on Event.__init__ counts the Events built while 50 instances are stored:
    none for the per-PDU notifications while nothing is bound to them, some once bound."""
    built: Counter[str] = Counter()
    construct = evt.Event.__init__

    def counting(self: evt.Event, assoc: Any, event: Any, attrs: Any = None) -> None:
        built[event.name] += 1
        construct(self, assoc, event, attrs)

    monkeypatch.setattr(evt.Event, "__init__", counting)

    def store_50(handlers: Sequence[Any]) -> None:
        server = storage_scp(serve, [(evt.EVT_C_STORE, lambda _event: 0x0000), *handlers])
        assoc = storage_scu().associate(
            "127.0.0.1", server.server_address[1], evt_handlers=handlers
        )
        for message_id in range(1, 51):
            assert assoc.send_c_store(small_dataset(), msg_id=message_id).Status == 0x0000
        assoc.release()
        wait_idle(server)

    store_50([])
    assert built["EVT_C_STORE"] == 50  # the spy sees what is built
    assert all(built[event.name] == 0 for event in PER_PDU_EVENTS), built
    store_50([(event, lambda _event: None) for event in PER_PDU_EVENTS])
    assert built["EVT_DIMSE_RECV"] == 100  # 50 requests at the SCP, 50 responses at the SCU
    assert all(built[event.name] >= 100 for event in PER_PDU_EVENTS), built
