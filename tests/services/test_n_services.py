"""DIMSE-N services, dicombus to dicombus on 127.0.0.1: every operation, the handler
contract (pynetdicom's), the SCU's context rules, and Storage Commitment end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from dicombus import build_context, build_role, evt
from dicombus.association import Association
from dicombus.server import AssociationServer
from dicombus.sop_class import (
    BasicFilmSession,
    BasicGrayscalePrintManagementMeta,
    CTImageStorage,
    DisplaySystem,
    ModalityPerformedProcedureStep,
    UnifiedProcedureStepPush,
    UnifiedProcedureStepWatch,
    Verification,
)
from loopback import associated, quick_ae, serving, wait_until
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from storage_commitment import (
    COMMITTED,
    FAILURES_EXIST,
    NO_SUCH_OBJECT_INSTANCE,
    REQUEST_STORAGE_COMMITMENT,
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    CommitmentResults,
    CommitmentScp,
    new_transaction,
)

INSTANCE = "1.2.826.0.1.3680043.9.7433.3.1"
PROCESSING_FAILURE = 0x0110
DATASET_WITHOUT_STATUS = 0xC001
INVALID_RETURN = 0xC002

Handler = Callable[[evt.Event], Any]


@contextmanager
def n_peer(
    event: evt.InterventionEvent | None,
    handler: Handler | None,
    sop_class: str = ModalityPerformedProcedureStep,
) -> Iterator[Association]:
    """An association to a server that answers ``event`` with ``handler``, for ``sop_class``."""
    handlers = [] if event is None else [(event, handler)]
    scp = quick_ae("NSCP", supported=[sop_class])
    scu = quick_ae("NSCU", requested=[sop_class])
    with serving(scp, handlers) as server, associated(scu, server) as assoc:
        assert assoc.is_established
        yield assoc


def _acceptor_of(server: AssociationServer) -> Association:
    """The server's one association, once established on its side too (the requestor may
    read the A-ASSOCIATE-AC a moment before the acceptor's thread marks it established)."""
    (acceptor,) = server.active_associations
    wait_until(lambda: acceptor.is_established)
    return acceptor


def dataset(**elements: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


# -- each operation ------------------------------------------------------------------------


def test_n_get_passes_the_attribute_identifiers_and_returns_the_attribute_list() -> None:
    seen: dict[str, Any] = {}

    def on_get(event: evt.Event) -> tuple[int, Dataset]:
        seen["tags"] = event.attribute_identifiers
        seen["instance"] = event.request.RequestedSOPInstanceUID
        return 0x0000, dataset(PatientName="Test^N-GET", PatientID="N1")

    with n_peer(evt.EVT_N_GET, on_get, DisplaySystem) as assoc:
        status, attributes = assoc.send_n_get(
            [0x00100010, "PatientID"], DisplaySystem, INSTANCE, msg_id=7
        )
    assert status.Status == 0x0000
    assert attributes == dataset(PatientName="Test^N-GET", PatientID="N1")
    assert seen == {"tags": [Tag(0x00100010), Tag(0x00100020)], "instance": INSTANCE}


def test_n_set_decodes_the_modification_list() -> None:
    seen: list[Dataset] = []

    def on_set(event: evt.Event) -> tuple[int, Dataset]:
        seen.append(event.modification_list)
        return 0x0000, dataset(PerformedProcedureStepStatus="COMPLETED")

    changes = dataset(PerformedProcedureStepStatus="COMPLETED")
    with n_peer(evt.EVT_N_SET, on_set) as assoc:
        status, attributes = assoc.send_n_set(changes, ModalityPerformedProcedureStep, INSTANCE)
    assert status.Status == 0x0000
    assert seen == [changes]
    assert attributes == changes


def test_n_action_passes_the_action_type_and_information() -> None:
    seen: list[tuple[int | None, Dataset]] = []

    def on_action(event: evt.Event) -> tuple[int, Dataset]:
        seen.append((event.action_type, event.action_information))
        return 0x0000, dataset(TransactionUID="1.2.3")

    with n_peer(evt.EVT_N_ACTION, on_action, STORAGE_COMMITMENT) as assoc:
        status, reply = assoc.send_n_action(
            dataset(PatientID="A"), 1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
    assert status.Status == 0x0000
    assert reply == dataset(TransactionUID="1.2.3")
    assert seen == [(1, dataset(PatientID="A"))]


def test_n_action_without_information_and_reply() -> None:
    def on_action(event: evt.Event) -> tuple[int, None]:
        assert event.action_information == Dataset()
        return 0x0000, None

    with n_peer(evt.EVT_N_ACTION, on_action, STORAGE_COMMITMENT) as assoc:
        status, reply = assoc.send_n_action(
            None, 1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
    # pynetdicom's convention: Success without a dataset gives an empty one, not None.
    assert (status.Status, reply) == (0x0000, Dataset())


def test_n_create_with_the_instance_uid_named_by_the_scu() -> None:
    seen: list[tuple[str, Dataset]] = []

    def on_create(event: evt.Event) -> tuple[int, Dataset]:
        seen.append((event.request.AffectedSOPInstanceUID, event.attribute_list))
        return 0x0000, event.attribute_list

    attributes = dataset(Modality="CT")
    with n_peer(evt.EVT_N_CREATE, on_create) as assoc:
        status, created = assoc.send_n_create(attributes, ModalityPerformedProcedureStep, INSTANCE)
    assert status.Status == 0x0000
    assert status.AffectedSOPInstanceUID == INSTANCE
    assert created == attributes
    assert seen == [(INSTANCE, attributes)]


def test_n_create_with_the_instance_uid_assigned_by_the_scp() -> None:
    """PS3.7 10.1.5.1.4; the handler names the new instance as pynetdicom's does."""
    assigned = generate_uid()
    reply = dataset(AffectedSOPInstanceUID=assigned, Modality="CT")

    def on_create(event: evt.Event) -> tuple[int, Dataset]:
        assert event.request.AffectedSOPInstanceUID is None
        return 0x0000, reply

    with n_peer(evt.EVT_N_CREATE, on_create) as assoc:
        status, created = assoc.send_n_create(
            dataset(Modality="CT"), ModalityPerformedProcedureStep
        )
    assert status.AffectedSOPInstanceUID == assigned
    assert created == dataset(Modality="CT")
    assert "AffectedSOPInstanceUID" in reply  # the handler's own Dataset is left alone


def test_n_create_naming_no_instance_anywhere_is_a_processing_failure() -> None:
    with n_peer(evt.EVT_N_CREATE, lambda event: (0x0000, dataset(Modality="CT"))) as assoc:
        status, created = assoc.send_n_create(None, ModalityPerformedProcedureStep)
    assert (status.Status, created) == (PROCESSING_FAILURE, None)


def test_n_delete_returns_the_status_only() -> None:
    seen: list[str] = []

    def on_delete(event: evt.Event) -> int:
        seen.append(event.request.RequestedSOPInstanceUID)
        return 0x0000

    with n_peer(evt.EVT_N_DELETE, on_delete, BasicFilmSession) as assoc:
        status = assoc.send_n_delete(BasicFilmSession, INSTANCE)
    assert status.Status == 0x0000
    assert seen == [INSTANCE]


def test_n_event_report_from_the_acceptor_is_served_on_the_requestor() -> None:
    """The SCP of a service reports to its SCU on the association the SCU requested."""
    seen: list[tuple[int | None, Dataset]] = []

    def on_report(event: evt.Event) -> tuple[int, Dataset]:
        seen.append((event.event_type, event.event_information))
        return 0x0000, dataset(PatientID="REPLY")

    scp = quick_ae("NSCP", supported=[ModalityPerformedProcedureStep])
    scu = quick_ae("NSCU", requested=[ModalityPerformedProcedureStep])
    with (
        serving(scp) as server,
        associated(scu, server, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]) as assoc,
    ):
        acceptor = _acceptor_of(server)
        status, reply = acceptor.send_n_event_report(
            dataset(PatientID="EVENT"), 5, ModalityPerformedProcedureStep, INSTANCE
        )
        assert assoc.is_established
    assert status.Status == 0x0000
    assert status.EventTypeID == 5
    assert status.AffectedSOPInstanceUID == INSTANCE
    assert reply == dataset(PatientID="REPLY")
    assert seen == [(5, dataset(PatientID="EVENT"))]


# -- what a handler may return -------------------------------------------------------------


def _raise(event: evt.Event) -> Any:
    raise RuntimeError("handler bug")


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        pytest.param(None, PROCESSING_FAILURE, id="no handler"),
        pytest.param(_raise, PROCESSING_FAILURE, id="raises"),
        pytest.param(lambda event: True, INVALID_RETURN, id="bool"),
        pytest.param(lambda event: ("x", None), INVALID_RETURN, id="status of the wrong type"),
        pytest.param(lambda event: (Dataset(), None), DATASET_WITHOUT_STATUS, id="no Status"),
        pytest.param(lambda event: (0x0000, "x"), PROCESSING_FAILURE, id="reply not a Dataset"),
    ],
)
def test_handler_mistakes_get_pynetdicoms_failure_statuses(
    handler: Handler | None, expected: int
) -> None:
    event = None if handler is None else evt.EVT_N_GET
    with n_peer(event, handler, DisplaySystem) as assoc:
        status, attributes = assoc.send_n_get(None, DisplaySystem, INSTANCE)
        assert assoc.is_established  # a failure status, not an abort
    assert (status.Status, attributes) == (expected, None)


@pytest.mark.parametrize(
    "returned",
    [pytest.param(0x0107, id="int"), pytest.param(dataset(Status=0x0107), id="status Dataset")],
)
def test_a_status_alone_answers_without_a_dataset(returned: Any) -> None:
    """pynetdicom's Print SCU example binds an N-EVENT-REPORT handler that returns 0x0000;
    a status alone is answered as (status, None), for every N-service."""
    with n_peer(evt.EVT_N_GET, lambda event: returned, DisplaySystem) as assoc:
        status, attributes = assoc.send_n_get(None, DisplaySystem, INSTANCE)
    assert (status.Status, attributes) == (0x0107, Dataset())


def test_n_delete_handler_mistakes() -> None:
    with n_peer(evt.EVT_N_DELETE, lambda event: (0x0000, None), BasicFilmSession) as assoc:
        assert assoc.send_n_delete(BasicFilmSession, INSTANCE).Status == INVALID_RETURN
        assert assoc.send_n_delete(BasicFilmSession, INSTANCE, msg_id=2).Status == INVALID_RETURN


def test_a_status_dataset_sets_the_response_elements() -> None:
    status_ds = dataset(
        Status=0x0107,  # PS3.7 C.4.2: a warning, attribute list error
        ErrorComment="x" * 80,
        ErrorID=9,
        AttributeIdentifierList=[0x00100010, 0x00100020],
        PatientName="not a command element",
    )
    reply = dataset(PatientID="N1")
    with n_peer(evt.EVT_N_SET, lambda event: (status_ds, reply)) as assoc:
        status, attributes = assoc.send_n_set(reply, ModalityPerformedProcedureStep, INSTANCE)
    assert status.Status == 0x0107
    assert status.ErrorComment == "x" * 64  # LO: cut to 64 characters
    assert status.ErrorID == 9
    assert status.AttributeIdentifierList == [Tag(0x00100010), Tag(0x00100020)]
    assert "PatientName" not in status
    assert attributes == reply  # Warning: the dataset goes along


def test_a_failure_status_sends_no_dataset() -> None:
    failure = dataset(Status=0x0112, ErrorComment="no such instance")
    with n_peer(evt.EVT_N_GET, lambda event: (failure, dataset(PatientID="X")), DisplaySystem) as (
        assoc
    ):
        status, attributes = assoc.send_n_get(None, DisplaySystem, INSTANCE)
    assert (status.Status, status.ErrorComment, attributes) == (0x0112, "no such instance", None)


def test_an_unencodable_reply_is_a_processing_failure() -> None:
    broken = Dataset()
    broken.add_new(0x00100010, "US", "not a number")  # PatientName as US with a str value
    with n_peer(evt.EVT_N_GET, lambda event: (0x0000, broken), DisplaySystem) as assoc:
        status, attributes = assoc.send_n_get(None, DisplaySystem, INSTANCE)
    assert (status.Status, attributes) == (PROCESSING_FAILURE, None)


def test_a_handler_that_aborts_gets_no_response_sent() -> None:
    def abort(event: evt.Event) -> tuple[int, None]:
        event.assoc.abort()
        return 0x0000, None

    with n_peer(evt.EVT_N_GET, abort, DisplaySystem) as assoc:
        status, attributes = assoc.send_n_get(None, DisplaySystem, INSTANCE)
        assert assoc.is_aborted
    assert (status, attributes) == (Dataset(), None)


# -- choosing the context ------------------------------------------------------------------


def test_meta_uid_selects_the_meta_sop_class_context() -> None:
    """Print Management: the command names the SOP class, the context its Meta SOP class."""
    seen: list[tuple[str, str]] = []

    def on_create(event: evt.Event) -> tuple[int, Dataset]:
        seen.append((event.request.AffectedSOPClassUID, event.context.abstract_syntax))
        return 0x0000, dataset(AffectedSOPInstanceUID=generate_uid())

    meta = BasicGrayscalePrintManagementMeta
    with n_peer(evt.EVT_N_CREATE, on_create, meta) as assoc:
        with pytest.raises(ValueError, match="Basic Film Session"):
            assoc.send_n_create(None, BasicFilmSession)
        status, _ = assoc.send_n_create(None, BasicFilmSession, meta_uid=meta)
    assert status.Status == 0x0000
    assert seen == [(BasicFilmSession, meta)]


def test_ups_push_may_use_another_ups_context() -> None:
    with n_peer(evt.EVT_N_ACTION, lambda e: (0x0000, None), UnifiedProcedureStepWatch) as assoc:
        status, _ = assoc.send_n_action(None, 3, UnifiedProcedureStepPush, INSTANCE)
    assert status.Status == 0x0000


def test_requests_need_an_established_association_and_an_scu_context() -> None:
    scp = quick_ae("NSCP", supported=[DisplaySystem, Verification])
    scu = quick_ae("NSCU", requested=[Verification])
    with serving(scp) as server:
        with associated(scu, server) as assoc, pytest.raises(ValueError, match="no presentation"):
            assoc.send_n_get(None, DisplaySystem, INSTANCE)
        with pytest.raises(RuntimeError, match="established"):
            assoc.send_n_delete(DisplaySystem, INSTANCE)


def test_the_acceptor_may_report_events_but_not_act_as_scu_without_roles() -> None:
    """pynetdicom's rule: N-EVENT-REPORT goes on any accepted context; the other requests
    need one where this side is SCU, which an acceptor is only after role selection."""
    scp = quick_ae("NSCP", supported=[DisplaySystem])
    scu = quick_ae("NSCU", requested=[DisplaySystem])
    with (
        serving(scp) as server,
        associated(scu, server, evt_handlers=[(evt.EVT_N_EVENT_REPORT, lambda e: (0, None))]),
    ):
        acceptor = _acceptor_of(server)
        with pytest.raises(ValueError, match="for the SCU role"):
            acceptor.send_n_get(None, DisplaySystem, INSTANCE)
        status, _ = acceptor.send_n_event_report(None, 1, DisplaySystem, INSTANCE)
        assert status.Status == 0x0000


def test_the_dataset_is_encoded_in_the_accepted_transfer_syntax() -> None:
    seen: list[str] = []

    def on_set(event: evt.Event) -> tuple[int, Dataset]:
        seen.append(event.context.transfer_syntax)
        return 0x0000, event.modification_list

    scp = quick_ae("NSCP")
    scp.add_supported_context(ModalityPerformedProcedureStep, ImplicitVRLittleEndian)
    scu = quick_ae("NSCU")
    changes = dataset(PatientID="IMPLICIT")
    with (
        serving(scp, [(evt.EVT_N_SET, on_set)]) as server,
        associated(scu, server, contexts=[build_context(ModalityPerformedProcedureStep)]) as assoc,
    ):
        status, attributes = assoc.send_n_set(changes, ModalityPerformedProcedureStep, INSTANCE)
    assert (status.Status, attributes) == (0x0000, changes)
    assert seen == [ImplicitVRLittleEndian]


# -- Storage Commitment Push Model, end to end ----------------------------------------------


def _stored_and_missing() -> tuple[list[tuple[str, str]], set[str]]:
    stored, missing = generate_uid(), generate_uid()
    return [(CTImageStorage, stored), (CTImageStorage, missing)], {stored}


def _request_commitment(assoc: Association, references: list[tuple[str, str]]) -> str:
    transaction_uid, request = new_transaction(references)
    status, reply = assoc.send_n_action(
        request, REQUEST_STORAGE_COMMITMENT, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
    )
    assert (status.Status, reply) == (0x0000, Dataset())
    return transaction_uid


def _check_result(event_info: Dataset, transaction_uid: str, references: list[Any]) -> None:
    committed, missing = references
    assert event_info.TransactionUID == transaction_uid
    assert [i.ReferencedSOPInstanceUID for i in event_info.ReferencedSOPSequence] == [committed[1]]
    (failed,) = event_info.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
        missing[1],
        NO_SUCH_OBJECT_INSTANCE,
    )


def test_storage_commitment_result_on_the_same_association() -> None:
    references, stored = _stored_and_missing()
    commitment = CommitmentScp(stored)
    results = CommitmentResults()
    scp = quick_ae("ARCHIVE", supported=[STORAGE_COMMITMENT])
    scu = quick_ae("MODALITY", requested=[STORAGE_COMMITMENT])
    with (
        serving(scp, commitment.handlers(evt)) as server,
        associated(scu, server, evt_handlers=[(evt.EVT_N_EVENT_REPORT, results)]) as assoc,
    ):
        transaction_uid = _request_commitment(assoc, references)
        report = commitment.next_report()
        status, _ = report.assoc.send_n_event_report(
            report.event_information,
            report.event_type,
            STORAGE_COMMITMENT,
            STORAGE_COMMITMENT_INSTANCE,
        )
        assert status.Status == 0x0000
        received = results.next()
    assert (received.event_type, received.on_new_association) == (FAILURES_EXIST, False)
    _check_result(received.event_information, transaction_uid, references)


def test_storage_commitment_result_on_a_new_association_with_roles_reversed() -> None:
    """PS3.4 J.3.3: the SCP may report on an association it requests itself, proposing
    the SCP role through SCP/SCU Role Selection; the SCU's server accepts that role."""
    references, stored = _stored_and_missing()
    stored.add(references[1][1])  # everything is committed this time
    commitment = CommitmentScp(stored)
    results = CommitmentResults()
    archive = quick_ae("ARCHIVE", supported=[STORAGE_COMMITMENT])
    modality = quick_ae("MODALITY", requested=[STORAGE_COMMITMENT])
    modality.add_supported_context(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
    with (
        serving(archive, commitment.handlers(evt)) as archive_server,
        serving(modality, [(evt.EVT_N_EVENT_REPORT, results)]) as modality_server,
    ):
        with associated(modality, archive_server) as assoc:
            transaction_uid = _request_commitment(assoc, references)
        report = commitment.next_report()
        with associated(
            archive,
            modality_server,
            contexts=[build_context(STORAGE_COMMITMENT)],
            ext_neg=[build_role(STORAGE_COMMITMENT, scp_role=True)],
        ) as back:
            (context,) = back.accepted_contexts
            assert (context.as_scu, context.as_scp) == (False, True)
            status, _ = back.send_n_event_report(
                report.event_information,
                report.event_type,
                STORAGE_COMMITMENT,
                STORAGE_COMMITMENT_INSTANCE,
            )
            assert status.Status == 0x0000
        received = results.next()
    assert received.event_type == COMMITTED
    assert received.on_new_association
    assert received.roles == (True, False)  # the modality is the SCU here too
    info = received.event_information
    assert info.TransactionUID == transaction_uid
    assert len(info.ReferencedSOPSequence) == 2
    assert "FailedSOPSequence" not in info
