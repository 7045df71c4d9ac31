"""DIMSE-N services between dicombus and pynetdicom, both ways, on 127.0.0.1.

The two stacks share one API, so each test runs twice: pynetdicom as the SCU
with dicombus as the SCP, and the other way round. Storage Commitment runs end
to end in both arrangements, its result reported on the same association and on
a new one that the SCP requests with the roles reversed.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import dicombus
import pytest
from dicombus.sop_class import (
    BasicFilmSession,
    CTImageStorage,
    DisplaySystem,
    ModalityPerformedProcedureStep,
)
from helpers import import_peer
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from storage_commitment import (
    COMMITTED,
    FAILURES_EXIST,
    REQUEST_STORAGE_COMMITMENT,
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    CommitmentResults,
    CommitmentScp,
    Report,
    new_transaction,
)

pynetdicom = import_peer("pynetdicom")

WAIT = 5.0  # seconds: the ACSE and DIMSE timeouts of both stacks
INSTANCE = "1.2.826.0.1.3680043.9.7433.3.2"

# (SCU stack, SCP stack): one of them is always the real third-party peer.
DIRECTIONS = [
    pytest.param(pynetdicom, dicombus, id="pynetdicom-scu-dicombus-scp"),
    pytest.param(dicombus, pynetdicom, id="dicombus-scu-pynetdicom-scp"),
]
Serve = Callable[..., Any]


def make_ae(stack: ModuleType, title: str) -> Any:
    ae = stack.AE(title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae


def associate(
    scu: ModuleType,
    scp: ModuleType,
    serve: Serve,
    sop_class: str,
    handlers: list[Any],
    **kwargs: Any,
) -> Any:
    """An established association from a ``scu``-stack AE to a ``scp``-stack server."""
    server_ae = make_ae(scp, "NSCP")
    server_ae.add_supported_context(sop_class)
    server = serve(server_ae, handlers)
    client = make_ae(scu, "NSCU")
    client.add_requested_context(sop_class)
    assoc = client.associate("127.0.0.1", server.server_address[1], ae_title="NSCP", **kwargs)
    assert assoc.is_established
    return assoc


def dataset(**elements: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


# -- the six operations --------------------------------------------------------------------


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_n_get(scu: ModuleType, scp: ModuleType, serve: Serve) -> None:
    seen: list[Any] = []

    def on_get(event: Any) -> tuple[int, Dataset]:
        seen.append([int(tag) for tag in event.attribute_identifiers])
        return 0x0000, dataset(PatientName="Interop^Get")

    assoc = associate(scu, scp, serve, DisplaySystem, [(scp.evt.EVT_N_GET, on_get)])
    status, attributes = assoc.send_n_get([0x00100010], DisplaySystem, INSTANCE)
    assoc.release()
    assert status.Status == 0x0000
    assert attributes == dataset(PatientName="Interop^Get")
    assert seen == [[0x00100010]]


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_n_set(scu: ModuleType, scp: ModuleType, serve: Serve) -> None:
    seen: list[Dataset] = []

    def on_set(event: Any) -> tuple[Dataset, Dataset]:
        seen.append(event.modification_list)
        return dataset(Status=0x0001, ErrorID=4), event.modification_list  # a warning

    changes = dataset(PerformedProcedureStepStatus="COMPLETED")
    sop_class = ModalityPerformedProcedureStep
    assoc = associate(scu, scp, serve, sop_class, [(scp.evt.EVT_N_SET, on_set)])
    status, attributes = assoc.send_n_set(changes, sop_class, INSTANCE)
    assoc.release()
    assert (status.Status, status.ErrorID) == (0x0001, 4)
    assert attributes == changes
    assert seen == [changes]


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_n_action(scu: ModuleType, scp: ModuleType, serve: Serve) -> None:
    seen: list[tuple[int, Dataset]] = []

    def on_action(event: Any) -> tuple[int, Dataset]:
        seen.append((event.action_type, event.action_information))
        return 0x0000, dataset(PatientID="REPLY")

    assoc = associate(scu, scp, serve, STORAGE_COMMITMENT, [(scp.evt.EVT_N_ACTION, on_action)])
    status, reply = assoc.send_n_action(
        dataset(PatientID="ASK"), 1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
    )
    assoc.release()
    assert status.Status == 0x0000
    assert reply == dataset(PatientID="REPLY")
    assert seen == [(1, dataset(PatientID="ASK"))]


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_n_create_with_an_instance_uid_from_the_scp(
    scu: ModuleType, scp: ModuleType, serve: Serve
) -> None:
    assigned = generate_uid()

    def on_create(event: Any) -> tuple[int, Dataset]:
        assert event.request.AffectedSOPInstanceUID is None
        return 0x0000, dataset(
            AffectedSOPInstanceUID=assigned, Modality=event.attribute_list.Modality
        )

    sop_class = ModalityPerformedProcedureStep
    assoc = associate(scu, scp, serve, sop_class, [(scp.evt.EVT_N_CREATE, on_create)])
    status, attributes = assoc.send_n_create(dataset(Modality="CT"), sop_class)
    assoc.release()
    assert status.Status == 0x0000
    assert attributes == dataset(Modality="CT")
    if scu is dicombus:  # pynetdicom's status Dataset leaves the UID out
        assert status.AffectedSOPInstanceUID == assigned


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_n_delete(scu: ModuleType, scp: ModuleType, serve: Serve) -> None:
    seen: list[str] = []

    def on_delete(event: Any) -> Dataset:
        seen.append(event.request.RequestedSOPInstanceUID)
        return dataset(Status=0x0112, ErrorComment="gone already")

    assoc = associate(scu, scp, serve, BasicFilmSession, [(scp.evt.EVT_N_DELETE, on_delete)])
    status = assoc.send_n_delete(BasicFilmSession, INSTANCE)
    assoc.release()
    assert (status.Status, status.ErrorComment) == (0x0112, "gone already")
    assert seen == [INSTANCE]


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_n_event_report_and_handler_failures(
    scu: ModuleType, scp: ModuleType, serve: Serve
) -> None:
    def on_report(event: Any) -> tuple[int, Dataset]:
        if event.event_type == 2:
            raise RuntimeError("handler bug")
        return 0x0000, dataset(PatientID=event.event_information.PatientID)

    handlers = [(scp.evt.EVT_N_EVENT_REPORT, on_report)]
    assoc = associate(scu, scp, serve, STORAGE_COMMITMENT, handlers)
    info = dataset(PatientID="EVENT")
    ok, reply = assoc.send_n_event_report(info, 1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE)
    failed, no_reply = assoc.send_n_event_report(
        info, 2, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, msg_id=2
    )
    assoc.release()
    assert (ok.Status, ok.EventTypeID, reply) == (0x0000, 1, info)
    assert (failed.Status, no_reply) == (0x0110, None)  # both stacks: processing failure


# -- Storage Commitment Push Model ---------------------------------------------------------


def _references() -> tuple[list[tuple[str, str]], set[str]]:
    stored, missing = generate_uid(), generate_uid()
    return [(CTImageStorage, stored), (CTImageStorage, missing)], {stored}


def _send(report: Report, assoc: Any) -> None:
    status, _ = assoc.send_n_event_report(
        report.event_information, report.event_type, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
    )
    assert status.Status == 0x0000


def _request(assoc: Any, references: list[tuple[str, str]]) -> str:
    transaction_uid, request = new_transaction(references)
    status, _ = assoc.send_n_action(
        request, REQUEST_STORAGE_COMMITMENT, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
    )
    assert status.Status == 0x0000
    return transaction_uid


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_storage_commitment_on_the_same_association(
    scu: ModuleType, scp: ModuleType, serve: Serve
) -> None:
    references, stored = _references()
    commitment = CommitmentScp(stored)
    results = CommitmentResults()
    assoc = associate(
        scu,
        scp,
        serve,
        STORAGE_COMMITMENT,
        commitment.handlers(scp.evt),
        evt_handlers=[(scu.evt.EVT_N_EVENT_REPORT, results)],
    )
    transaction_uid = _request(assoc, references)
    report = commitment.next_report()
    _send(report, report.assoc)
    received = results.next()
    assoc.release()
    assert (received.event_type, received.on_new_association) == (FAILURES_EXIST, False)
    assert received.event_information.TransactionUID == transaction_uid
    (failed,) = received.event_information.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == references[1][1]


@pytest.mark.parametrize(("scu", "scp"), DIRECTIONS)
def test_storage_commitment_on_a_new_association(
    scu: ModuleType, scp: ModuleType, serve: Serve
) -> None:
    """The SCP reports on an association it requests, proposing the SCP role (PS3.4 J.3.3)."""
    references, stored = _references()
    stored.add(references[1][1])
    commitment = CommitmentScp(stored)
    results = CommitmentResults()
    modality = make_ae(scu, "MODALITY")
    modality.add_supported_context(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
    modality_server = serve(modality, [(scu.evt.EVT_N_EVENT_REPORT, results)])
    assoc = associate(scu, scp, serve, STORAGE_COMMITMENT, commitment.handlers(scp.evt))
    transaction_uid = _request(assoc, references)
    assoc.release()

    archive = make_ae(scp, "ARCHIVE")
    archive.add_requested_context(STORAGE_COMMITMENT)
    back = archive.associate(
        "127.0.0.1",
        modality_server.server_address[1],
        ae_title="MODALITY",
        ext_neg=[scp.build_role(STORAGE_COMMITMENT, scp_role=True)],
    )
    assert back.is_established
    (context,) = back.accepted_contexts
    assert (context.as_scu, context.as_scp) == (False, True)
    _send(commitment.next_report(), back)
    back.release()
    received = results.next()
    assert (received.event_type, received.on_new_association) == (COMMITTED, True)
    assert received.roles == (True, False)
    assert received.event_information.TransactionUID == transaction_uid
