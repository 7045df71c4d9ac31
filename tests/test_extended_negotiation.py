"""Extended negotiation and user identity as real associations between dicombus and
pynetdicom, both ways on 127.0.0.1: SCP/SCU role selection, the Asynchronous
Operations Window, SOP Class Extended and SOP Class Common Extended negotiation
(PS3.7 D.3.3.3 - D.3.3.6) and User Identity negotiation of every type (D.3.3.7).

Each test proposes items in the requestor's own types -- ``dicombus.protocol.items``
sub-items or pynetdicom's ``pdu_primitives`` -- and reads the outcome through the API
the two stacks share (``assoc.acceptor.user_identity``, ``.asynchronous_operations``,
``.sop_class_extended``, ``context.as_scu`` ...).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import dicombus
import dicombus.server
import pytest
from dicombus.protocol.items import (
    AsynchronousOperationsWindowSubItem,
    SOPClassCommonExtendedNegotiationSubItem,
    SOPClassExtendedNegotiationSubItem,
    UserIdentityRQSubItem,
)
from dicombus.sop_class import CTImageStorage, MRImageStorage, Verification
from helpers import StoreRecorder, import_peer, small_dataset

pynetdicom = import_peer("pynetdicom")
primitives = import_peer("pynetdicom.pdu_primitives")

WAIT = 5.0  # seconds: the ACSE and DIMSE timeouts of both stacks
STORAGE_SERVICE_CLASS = "1.2.840.10008.4.2"  # PS3.4 B.5: the Storage Service Class UID

# (requestor stack, acceptor stack): one of them is always the third-party peer.
DIRECTIONS = [
    pytest.param(pynetdicom, dicombus, id="pynetdicom-requestor-dicombus-acceptor"),
    pytest.param(dicombus, pynetdicom, id="dicombus-requestor-pynetdicom-acceptor"),
]
Serve = Callable[..., Any]


@pytest.fixture(scope="module")
def shutdowns() -> Iterator[list[threading.Thread]]:
    """pynetdicom servers still shutting down; joined (bounded) when the module ends."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(WAIT)


@pytest.fixture
def serve(shutdowns: list[threading.Thread]) -> Iterator[Serve]:
    """``serve(stack, contexts, handlers)``: a server of either stack on a free port."""
    servers: list[Any] = []

    def start(stack: ModuleType, contexts: list[tuple[str, Any, Any]], handlers: Any) -> Any:
        ae = make_ae(stack, "ACCEPTOR")
        for uid, scu_role, scp_role in contexts:
            ae.add_supported_context(uid, scu_role=scu_role, scp_role=scp_role)
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=list(handlers))
        servers.append(server)
        return server

    yield start
    for server in servers:
        if isinstance(server, dicombus.server.AssociationServer):
            server.shutdown()
            continue
        # pynetdicom's accept loop notices a shutdown only every 0.5 s: let it
        # finish in the background rather than stall each test for it.
        thread = threading.Thread(target=server.shutdown, name="peer-shutdown", daemon=True)
        thread.start()
        shutdowns.append(thread)


def make_ae(stack: ModuleType, title: str) -> Any:
    ae = stack.AE(title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae


def request(
    stack: ModuleType,
    server: Any,
    ext_neg: list[Any],
    contexts: tuple[str, ...] = (Verification,),
    handlers: list[Any] | None = None,
) -> Any:
    ae = make_ae(stack, "REQUESTOR")
    for uid in contexts:
        ae.add_requested_context(uid)
    port = server.server_address[1]
    return ae.associate(
        "127.0.0.1", port, ae_title="ACCEPTOR", ext_neg=ext_neg, evt_handlers=handlers or []
    )


class RejectRecorder:
    """EVT_PDU_RECV handler for either stack: the (result, source, reason) of each
    A-ASSOCIATE-RJ received. Read from the wire because pynetdicom's requestor may report
    a rejection that arrives very fast as an abort (it checks its socket after the reply
    has already closed it)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def __call__(self, event: Any) -> None:
        pdu = event.pdu
        if type(pdu).__name__ in ("AAssociateRJ", "A_ASSOCIATE_RJ"):
            reason = pdu.reason if hasattr(pdu, "reason") else pdu.reason_diagnostic
            self.seen.append((pdu.result, pdu.source, reason))


def verification_server(serve: Serve, stack: ModuleType, handlers: Any) -> Any:
    return serve(stack, [(Verification, None, None)], handlers)


# -- the requestor's items, in its own stack's types ------------------------------------


def async_window(stack: ModuleType, invoked: int, performed: int) -> Any:
    if stack is dicombus:
        return AsynchronousOperationsWindowSubItem(
            max_operations_invoked=invoked, max_operations_performed=performed
        )
    item = primitives.AsynchronousOperationsWindowNegotiation()
    item.maximum_number_operations_invoked = invoked
    item.maximum_number_operations_performed = performed
    return item


def sop_extended(stack: ModuleType, uid: str, info: bytes) -> Any:
    if stack is dicombus:
        return SOPClassExtendedNegotiationSubItem(
            sop_class_uid=uid, service_class_application_information=info
        )
    item = primitives.SOPClassExtendedNegotiation()
    item.sop_class_uid = uid
    item.service_class_application_information = info
    return item


def sop_common(stack: ModuleType, uid: str, related: tuple[str, ...]) -> Any:
    if stack is dicombus:
        return SOPClassCommonExtendedNegotiationSubItem(
            sop_class_uid=uid,
            service_class_uid=STORAGE_SERVICE_CLASS,
            related_general_sop_class_uids=related,
        )
    item = primitives.SOPClassCommonExtendedNegotiation()
    item.sop_class_uid = uid
    item.service_class_uid = STORAGE_SERVICE_CLASS
    item.related_general_sop_class_identification = list(related)
    return item


def user_identity(
    stack: ModuleType, kind: int, primary: bytes, secondary: bytes, positive: bool
) -> Any:
    if stack is dicombus:
        return UserIdentityRQSubItem(
            user_identity_type=kind,
            positive_response_requested=positive,
            primary_field=primary,
            secondary_field=secondary,
        )
    item = primitives.UserIdentityNegotiation()
    item.user_identity_type = kind
    item.positive_response_requested = positive
    item.primary_field = primary
    if kind == 2:
        item.secondary_field = secondary
    return item


# -- SCP/SCU role selection (PS3.7 D.3.3.4) ---------------------------------------------


@pytest.mark.parametrize(("requestor", "acceptor"), DIRECTIONS)
@pytest.mark.parametrize(
    ("proposed", "accepted", "requestor_roles"),
    [
        pytest.param((True, True), (True, True), (True, True), id="both-granted"),
        pytest.param((True, True), (True, False), (True, False), id="scp-role-refused"),
        pytest.param((False, True), (True, True), (False, True), id="scp-only-proposed"),
        pytest.param(None, (True, True), (True, False), id="no-role-item"),
    ],
)
def test_role_selection(
    requestor: ModuleType,
    acceptor: ModuleType,
    proposed: tuple[bool, bool] | None,
    accepted: tuple[bool, bool],
    requestor_roles: tuple[bool, bool],
    serve: Serve,
) -> None:
    server = serve(acceptor, [(CTImageStorage, *accepted)], [])
    ext_neg = [] if proposed is None else [requestor.build_role(CTImageStorage, *proposed)]
    assoc = request(requestor, server, ext_neg, contexts=(CTImageStorage,))
    assert assoc.is_established
    (context,) = assoc.accepted_contexts
    (acceptor_side,) = server.active_associations
    (their_context,) = acceptor_side.accepted_contexts
    assoc.release()
    assert (context.as_scu, context.as_scp) == requestor_roles
    # The acceptor's roles mirror the requestor's.
    assert (their_context.as_scu, their_context.as_scp) == requestor_roles[::-1]


def test_role_selection_lets_the_acceptor_send_c_store_to_pynetdicom(serve: Serve) -> None:
    """With the SCP role granted to the requestor (as for C-GET), our acceptor acts as the
    Storage SCU on that context and a pynetdicom requestor stores what it sends."""
    recorder = StoreRecorder()
    server = serve(dicombus, [(CTImageStorage, True, True)], [])
    ae = make_ae(pynetdicom, "REQUESTOR")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(
        "127.0.0.1",
        server.server_address[1],
        ae_title="ACCEPTOR",
        ext_neg=[pynetdicom.build_role(CTImageStorage, scu_role=True, scp_role=True)],
        evt_handlers=[(pynetdicom.evt.EVT_C_STORE, recorder)],
    )
    assert assoc.is_established
    (ours,) = server.active_associations
    instance = small_dataset()
    status = ours.send_c_store(instance)
    assoc.release()
    assert status.Status == 0x0000
    assert list(recorder.by_uid()) == [instance.SOPInstanceUID]


# -- Asynchronous Operations Window (PS3.7 D.3.3.3) -------------------------------------


@pytest.mark.parametrize(("requestor", "acceptor"), DIRECTIONS)
def test_async_ops_window_is_answered_with_one_operation(
    requestor: ModuleType, acceptor: ModuleType, serve: Serve
) -> None:
    """Neither stack performs operations asynchronously: a bound handler sees the proposal
    and the answer is (1, 1), whatever it returns; without a handler there is no answer."""
    seen: list[tuple[int, int]] = []

    def on_async_ops(event: Any) -> tuple[int, int]:
        seen.append((event.nr_invoked, event.nr_performed))
        return 5, 4

    window = async_window(requestor, 5, 4)
    with_handler = verification_server(
        serve, acceptor, [(acceptor.evt.EVT_ASYNC_OPS, on_async_ops)]
    )
    without_handler = verification_server(serve, acceptor, [])
    answered = request(requestor, with_handler, [window])
    unanswered = request(requestor, without_handler, [window])
    assert answered.is_established and unanswered.is_established
    answered.release()
    unanswered.release()
    assert seen == [(5, 4)]
    assert answered.acceptor.asynchronous_operations == (1, 1)
    windows = [
        item
        for item in unanswered.acceptor.user_information
        if type(item).__name__.startswith("AsynchronousOperationsWindow")
    ]
    assert windows == []


# -- SOP Class Extended (PS3.7 D.3.3.5) --------------------------------------------------


@pytest.mark.parametrize(("requestor", "acceptor"), DIRECTIONS)
def test_sop_class_extended_negotiation(
    requestor: ModuleType, acceptor: ModuleType, serve: Serve
) -> None:
    seen: dict[str, bytes] = {}

    def on_sop_extended(event: Any) -> dict[str, bytes]:
        seen.update(event.app_info)
        return {CTImageStorage: b"\x01\x00"}  # accepted for CT only

    server = serve(
        acceptor,
        [(CTImageStorage, None, None), (MRImageStorage, None, None)],
        [(acceptor.evt.EVT_SOP_EXTENDED, on_sop_extended)],
    )
    asked = [
        sop_extended(requestor, CTImageStorage, b"\x01\x01"),
        sop_extended(requestor, MRImageStorage, b"\x01\x01"),
    ]
    assoc = request(requestor, server, asked, contexts=(CTImageStorage, MRImageStorage))
    assert assoc.is_established
    assoc.release()
    assert seen == {CTImageStorage: b"\x01\x01", MRImageStorage: b"\x01\x01"}
    assert assoc.acceptor.sop_class_extended == {CTImageStorage: b"\x01\x00"}


# -- SOP Class Common Extended (PS3.7 D.3.3.6) -------------------------------------------


@pytest.mark.parametrize(("requestor", "acceptor"), DIRECTIONS)
def test_sop_class_common_extended_negotiation(
    requestor: ModuleType, acceptor: ModuleType, serve: Serve
) -> None:
    """The item has no answer on the wire; the acceptor's handler sees what was proposed."""
    seen: dict[str, tuple[str, tuple[str, ...]]] = {}

    def on_sop_common(event: Any) -> dict[str, Any]:
        for uid, item in event.items.items():
            related = getattr(item, "related_general_sop_class_uids", None)
            if related is None:  # pynetdicom's name for the same field
                related = item.related_general_sop_class_identification
            seen[str(uid)] = (str(item.service_class_uid), tuple(str(u) for u in related))
        return dict(event.items)

    private_ct = "1.2.826.0.1.3680043.9.7433.5.1"
    server = serve(
        acceptor,
        [(private_ct, None, None)],
        [(acceptor.evt.EVT_SOP_COMMON, on_sop_common)],
    )
    item = sop_common(requestor, private_ct, (CTImageStorage,))
    assoc = request(requestor, server, [item], contexts=(private_ct,))
    assert assoc.is_established
    assoc.release()
    assert seen == {private_ct: (STORAGE_SERVICE_CLASS, (CTImageStorage,))}


# -- User Identity (PS3.7 D.3.3.7) -------------------------------------------------------

IDENTITIES = [
    pytest.param(1, b"alice", b"", id="1-username"),
    pytest.param(2, b"alice", b"open sesame", id="2-username-and-passcode"),
    pytest.param(3, b"\x60\x82kerberos-ticket", b"", id="3-kerberos"),
    pytest.param(4, b"<saml:Assertion/>", b"", id="4-saml"),
    pytest.param(5, b"eyJhbGciOiJIUzI1NiJ9.e30.sig", b"", id="5-jwt"),
]
SERVER_RESPONSE = b"server-response"


def identity_checker(seen: list[Any], verified: bool = True) -> Callable[[Any], Any]:
    def on_user_id(event: Any) -> tuple[bool, bytes | None]:
        seen.append((event.user_id_type, event.primary_field, event.secondary_field))
        return verified, SERVER_RESPONSE

    return on_user_id


@pytest.mark.parametrize(("requestor", "acceptor"), DIRECTIONS)
@pytest.mark.parametrize(("kind", "primary", "secondary"), IDENTITIES)
@pytest.mark.parametrize("positive", [True, False], ids=["response-requested", "no-response"])
def test_user_identity_accepted(
    requestor: ModuleType,
    acceptor: ModuleType,
    kind: int,
    primary: bytes,
    secondary: bytes,
    positive: bool,
    serve: Serve,
) -> None:
    seen: list[Any] = []
    handlers = [(acceptor.evt.EVT_USER_ID, identity_checker(seen))]
    server = verification_server(serve, acceptor, handlers)
    assoc = request(
        requestor, server, [user_identity(requestor, kind, primary, secondary, positive)]
    )
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    # Both stacks hand the handler the fields as received: the secondary one is
    # empty except for type 2.
    assert seen == [(kind, primary, secondary)]
    answer = assoc.acceptor.user_identity
    if not positive:
        assert answer is None  # a response only when one was asked for
    elif kind in (3, 4, 5):
        assert answer.server_response == SERVER_RESPONSE
    elif acceptor is dicombus:
        # PS3.7 D.3.3.7.2: for a username the server response is zero length.
        assert answer.server_response in (b"", None)
    else:
        assert answer is None  # pynetdicom answers types 1 and 2 with nothing


@pytest.mark.parametrize(("requestor", "acceptor"), DIRECTIONS)
@pytest.mark.parametrize(("kind", "primary", "secondary"), IDENTITIES)
def test_user_identity_rejected_by_the_handler(
    requestor: ModuleType,
    acceptor: ModuleType,
    kind: int,
    primary: bytes,
    secondary: bytes,
    serve: Serve,
) -> None:
    seen: list[Any] = []
    handlers = [(acceptor.evt.EVT_USER_ID, identity_checker(seen, verified=False))]
    server = verification_server(serve, acceptor, handlers)
    identity = user_identity(requestor, kind, primary, secondary, True)
    rejections = RejectRecorder()
    assoc = request(
        requestor, server, [identity], handlers=[(requestor.evt.EVT_PDU_RECV, rejections)]
    )
    assert not assoc.is_established
    assert len(seen) == 1
    # dicombus: permanent, by the service user, no reason given;
    # pynetdicom: transient, by the ACSE service provider, no reason given.
    assert rejections.seen == [(1, 1, 1) if acceptor is dicombus else (2, 2, 1)]
    # The server goes on serving.
    again = request(requestor, verification_server(serve, acceptor, []), [])
    assert again.is_established
    again.release()


@pytest.mark.parametrize("returned", [RuntimeError("handler bug"), "yes", (True, "text")])
def test_a_broken_user_identity_handler_rejects(returned: Any, serve: Serve) -> None:
    def on_user_id(event: Any) -> Any:
        if isinstance(returned, Exception):
            raise returned
        return returned

    server = verification_server(serve, dicombus, [(dicombus.evt.EVT_USER_ID, on_user_id)])
    assoc = request(dicombus, server, [user_identity(dicombus, 1, b"alice", b"", False)])
    assert assoc.is_rejected
    assert assoc.rejection is not None and assoc.rejection[:3] == (1, 1, 1)


def test_without_a_handler_the_identity_is_not_checked(serve: Serve) -> None:
    server = verification_server(serve, dicombus, [])
    assoc = request(pynetdicom, server, [user_identity(pynetdicom, 3, b"ticket", b"", True)])
    assert assoc.is_established
    assoc.release()
    assert assoc.acceptor.user_identity is None
