"""Query/Retrieve between two dicombus AEs on 127.0.0.1: C-FIND, C-GET, C-MOVE, C-CANCEL.

The SCP's handlers run in the association's reader thread; these tests cover
what that takes: C-STORE sub-operations whose responses the SCP reads while
its handler runs, a C-CANCEL noticed between two yields, requests that
arrive mid-retrieve and wait their turn, and every wait bounded by the DIMSE
timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from dicombus import AE, build_role, evt
from dicombus.association import Association
from dicombus.dataset_codec import encode_dataset
from dicombus.presentation import PresentationContext
from dicombus.protocol.commands import (
    CommandField,
    c_cancel_rq,
    c_echo_rq,
    c_find_rq,
    encode_command_set,
)
from dicombus.protocol.connection import MAX_QUEUED_REQUESTS
from dicombus.protocol.pdus import PDataTF, PresentationDataValue
from dicombus.server import AssociationServer
from dicombus.services import query_retrieve as qr
from dicombus.sop_class import CTImageStorage, MRImageStorage, Verification
from helpers import StoreRecorder, free_port, small_dataset
from loopback import quick_ae, serving
from pydicom.dataset import Dataset
from qr_support import (
    ALL_SUB_OPERATIONS_FAILED,
    CANCEL,
    CANCELLABLE_ITEMS,
    MOVE_DESTINATION_UNKNOWN,
    OUT_OF_RESOURCES,
    PATIENT_FIND,
    PATIENT_GET,
    PATIENT_MOVE,
    PENDING,
    STUDY_FIND,
    STUDY_GET,
    SUB_OPERATIONS_WITH_FAILURES,
    SUCCESS,
    WAIT,
    WORKLIST_FIND,
    Archive,
    archive_instances,
    configure_scp,
    configure_scu,
    configure_storage_scp,
    failed_uids,
    patient_query,
    refusing_store,
    storage_roles,
    study_query,
    unencodable_identifier,
    worklist_query,
)

Handlers = list[tuple[Any, ...]]
RETRIEVE_WITHOUT_BULK_DATA = qr.RETRIEVE_WITHOUT_BULK_DATA
REPOSITORY_QUERY = "1.2.840.10008.5.1.4.1.1.201.6"


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as resources:
        yield resources


def start_scp(stack: ExitStack, handlers: Handlers, **settings: Any) -> AssociationServer:
    ae = configure_scp(quick_ae("QRSCP"))
    for extra in (Verification, RETRIEVE_WITHOUT_BULK_DATA, REPOSITORY_QUERY):
        ae.add_supported_context(extra)
    for name, value in settings.items():
        setattr(ae, name, value)
    return stack.enter_context(serving(ae, handlers))


def open_scu(
    stack: ExitStack,
    server: AssociationServer,
    *,
    store: Callable[[Any], Any] | None = None,
    roles: bool = True,
    **settings: Any,
) -> Association:
    """A dicombus SCU associated with ``server``; C-GET sub-operations go to ``store``."""
    ae = configure_scu(quick_ae("QRSCU"))
    for extra in (Verification, RETRIEVE_WITHOUT_BULK_DATA, REPOSITORY_QUERY):
        ae.add_requested_context(extra)
    for name, value in settings.items():
        setattr(ae, name, value)
    assoc = ae.associate(
        "127.0.0.1",
        server.server_address[1],
        ae_title="QRSCP",
        ext_neg=storage_roles(build_role) if roles else None,
        evt_handlers=[(evt.EVT_C_STORE, store or StoreRecorder())],
    )
    assert assoc.is_established
    stack.callback(assoc.abort)
    stack.callback(lambda: assoc.release() if assoc.is_established else None)
    return assoc


def statuses(responses: list[tuple[Dataset, Dataset | None]]) -> list[int]:
    return [int(status.Status) for status, _ in responses]


def start_destination(stack: ExitStack, store: Callable[[Any], Any]) -> AssociationServer:
    ae = configure_storage_scp(quick_ae("DEST"))
    return stack.enter_context(serving(ae, [(evt.EVT_C_STORE, store)]))


# -- C-FIND ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "query", "key"),
    [
        (PATIENT_FIND, patient_query(), "PatientID"),
        (STUDY_FIND, study_query(), "StudyInstanceUID"),
    ],
    ids=["patient-root", "study-root"],
)
def test_find_yields_each_match_then_success(
    stack: ExitStack, model: str, query: Dataset, key: str
) -> None:
    archive = Archive(archive_instances(3))
    server = start_scp(stack, [(evt.EVT_C_FIND, archive.on_find)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_find(query, model))

    assert statuses(responses) == [PENDING] * 3 + [SUCCESS]
    matches = [identifier for _, identifier in responses[:3]]
    assert [m[key].value for m in matches if m is not None] == [
        i[key].value for i in archive.instances
    ]
    assert responses[-1][1] is None
    assert archive.identifiers[0].QueryRetrieveLevel == query.QueryRetrieveLevel


def test_find_worklist(stack: ExitStack) -> None:
    archive = Archive()
    server = start_scp(stack, [(evt.EVT_C_FIND, archive.on_worklist)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_find(worklist_query(), WORKLIST_FIND))

    assert statuses(responses) == [PENDING, SUCCESS]
    item = responses[0][1]
    assert item is not None
    assert item.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT1"
    assert archive.identifiers[0].ScheduledProcedureStepSequence[0].Modality == "CT"


def test_find_handler_final_status_and_comment(stack: ExitStack) -> None:
    def handler(event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        yield PENDING, patient_query("A")
        failure = Dataset()
        failure.Status = OUT_OF_RESOURCES
        failure.ErrorComment = "index offline"
        yield failure, None
        yield PENDING, patient_query("never sent")

    server = start_scp(stack, [(evt.EVT_C_FIND, handler)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_find(patient_query(), PATIENT_FIND))

    assert statuses(responses) == [PENDING, OUT_OF_RESOURCES]
    assert responses[-1][0].ErrorComment == "index offline"


def test_find_handler_that_returns_none_means_success(stack: ExitStack) -> None:
    server = start_scp(stack, [(evt.EVT_C_FIND, lambda event: None)])
    assoc = open_scu(stack, server)

    assert statuses(list(assoc.send_c_find(patient_query(), PATIENT_FIND))) == [SUCCESS]


def _raises_at_once(event: Any) -> Any:
    raise RuntimeError("index unavailable")


def _raises_after_one_match(event: Any) -> Iterator[Any]:
    yield PENDING, patient_query("A")
    raise RuntimeError("index unavailable")


def _yields_a_bare_status(event: Any) -> Iterator[Any]:
    yield PENDING


def _yields_unencodable_identifier(event: Any) -> Iterator[Any]:
    yield PENDING, unencodable_identifier()


def _yields_pending_without_identifier(event: Any) -> Iterator[Any]:
    yield PENDING, "PATIENT-1"


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (_raises_at_once, [qr.FIND_HANDLER_FAILED]),
        (_raises_after_one_match, [PENDING, qr.FIND_HANDLER_FAILED]),
        (_yields_a_bare_status, [qr.FIND_HANDLER_FAILED]),
        (_yields_unencodable_identifier, [qr.FIND_IDENTIFIER_NOT_ENCODABLE]),
        (_yields_pending_without_identifier, [qr.FIND_IDENTIFIER_NOT_ENCODABLE]),
        (None, [qr.FIND_HANDLER_FAILED]),
    ],
    ids=["raises", "raises-later", "bare-status", "unencodable", "not-a-dataset", "unbound"],
)
def test_find_handler_mistakes_become_failure_statuses(
    stack: ExitStack, handler: Callable[[Any], Any] | None, expected: list[int]
) -> None:
    server = start_scp(stack, [(evt.EVT_C_FIND, handler)] if handler else [])
    assoc = open_scu(stack, server)

    assert statuses(list(assoc.send_c_find(patient_query(), PATIENT_FIND))) == expected
    assert assoc.send_c_echo().Status == SUCCESS  # the association goes on


def test_find_cancelled_by_the_scu(stack: ExitStack) -> None:
    archive = Archive(archive_instances(1))
    server = start_scp(stack, [(evt.EVT_C_FIND, archive.cancellable_find)])
    assoc = open_scu(stack, server)

    responses = []
    for response in assoc.send_c_find(patient_query(), PATIENT_FIND, msg_id=9):
        responses.append(response)
        if len(responses) == 1:
            assoc.send_c_cancel(9, query_model=PATIENT_FIND)
            archive.gate.set()

    assert statuses(responses) == [PENDING, CANCEL]
    assert archive.cancel_seen.is_set()


def test_cancel_ends_a_find_whose_handler_never_checks(stack: ExitStack) -> None:
    """The service looks for a C-CANCEL after each yield itself."""
    gate = threading.Event()
    closed = threading.Event()

    def handler(event: Any) -> Iterator[Any]:
        try:
            for index in range(CANCELLABLE_ITEMS):
                if index == 1:
                    gate.wait(WAIT)
                yield PENDING, patient_query(str(index))
        finally:
            closed.set()

    server = start_scp(stack, [(evt.EVT_C_FIND, handler)])
    assoc = open_scu(stack, server)
    context_id = next(
        c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == PATIENT_FIND
    )

    responses = []
    for response in assoc.send_c_find(patient_query(), PATIENT_FIND):
        responses.append(response)
        if len(responses) == 1:
            assoc.send_c_cancel(1, context_id=context_id)
            gate.set()

    assert statuses(responses) == [PENDING, CANCEL]
    assert closed.wait(WAIT), "the handler's generator is closed when the operation ends"


def test_a_late_cancel_does_not_cancel_the_next_request(stack: ExitStack) -> None:
    archive = Archive(archive_instances(2))
    server = start_scp(stack, [(evt.EVT_C_FIND, archive.on_find)])
    assoc = open_scu(stack, server)

    assert statuses(list(assoc.send_c_find(patient_query(), PATIENT_FIND))) == [
        PENDING,
        PENDING,
        SUCCESS,
    ]
    assoc.send_c_cancel(1, query_model=PATIENT_FIND)  # after the final response: moot
    assert assoc.send_c_echo().Status == SUCCESS  # the C-CANCEL has been read by now

    again = list(assoc.send_c_find(patient_query(), PATIENT_FIND))
    assert statuses(again) == [PENDING, PENDING, SUCCESS]


def test_a_cancel_in_the_same_pdu_as_its_request(stack: ExitStack) -> None:
    """PS3.8 9.3.5 lets one P-DATA-TF carry both messages: the C-CANCEL is known before
    the request is served, and the handler's first yield is answered with Cancel."""
    archive = Archive(archive_instances(3))
    server = start_scp(stack, [(evt.EVT_C_FIND, archive.on_find)])
    assoc = open_scu(stack, server)
    received: list[int] = []
    done = threading.Event()

    def on_dimse(event: Any) -> None:
        command = event.message.command
        if command.command_field is CommandField.C_FIND_RSP:
            received.append(command.Status)
            if command.Status != PENDING:
                done.set()

    assoc.bind(evt.EVT_DIMSE_RECV, on_dimse)
    context = next(c for c in assoc.accepted_contexts if c.abstract_syntax == PATIENT_FIND)
    context_id = context.context_id or 0

    def pdv(data: bytes, *, is_command: bool) -> PresentationDataValue:
        return PresentationDataValue(
            context_id=context_id, is_command=is_command, is_last=True, data=data
        )

    query = encode_dataset(patient_query(), context.transfer_syntax[0])
    both = PDataTF(
        pdvs=(
            pdv(encode_command_set(c_find_rq(5, PATIENT_FIND)), is_command=True),
            pdv(query, is_command=False),
            pdv(encode_command_set(c_cancel_rq(5)), is_command=True),
        )
    )
    assert assoc.link is not None
    assoc.link.send_pdata([both.encode()])

    assert done.wait(WAIT)
    assert received == [CANCEL]


def test_repository_query_goes_on_after_a_batch_end(stack: ExitStack) -> None:
    def handler(event: Any) -> Iterator[Any]:
        yield PENDING, patient_query("A")
        yield 0xB001, None  # PS3.4 C.6.4: response limit reached; more may follow
        yield PENDING, patient_query("B")

    server = start_scp(stack, [(evt.EVT_C_FIND, handler)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_find(patient_query(), REPOSITORY_QUERY))

    assert statuses(responses) == [PENDING, 0xB001, PENDING, SUCCESS]


def test_no_response_within_the_dimse_timeout_aborts(stack: ExitStack) -> None:
    gate = threading.Event()

    def handler(event: Any) -> Iterator[Any]:
        gate.wait(WAIT)
        yield PENDING, patient_query("late")

    server = start_scp(stack, [(evt.EVT_C_FIND, handler)])
    assoc = open_scu(stack, server, dimse_timeout=0.3)
    stack.callback(gate.set)  # first thing at teardown: the server waits for its handler

    responses = list(assoc.send_c_find(patient_query(), PATIENT_FIND))

    assert len(responses) == 1
    assert responses[0][0] == Dataset()
    assert responses[0][1] is None
    assert assoc.is_aborted


def test_scu_argument_errors(stack: ExitStack) -> None:
    server = start_scp(stack, [])
    assoc = open_scu(stack, server)
    with pytest.raises(ValueError, match="no presentation context"):
        assoc.send_c_find(patient_query(), "1.2.840.10008.5.1.4.31.99")
    with pytest.raises(ValueError, match="query_model"):
        assoc.send_c_cancel(1)
    with pytest.raises(ValueError, match="encode"):
        assoc.send_c_find(unencodable_identifier(), PATIENT_FIND)
    assoc.release()
    with pytest.raises(RuntimeError, match="established"):
        assoc.send_c_get(patient_query(), PATIENT_GET)


# -- C-GET ----------------------------------------------------------------------------


def test_get_sends_each_instance_as_a_sub_operation(stack: ExitStack) -> None:
    archive = Archive(archive_instances(3))
    server = start_scp(stack, [(evt.EVT_C_GET, archive.on_get)])
    received = StoreRecorder()
    assoc = open_scu(stack, server, store=received)

    responses = list(assoc.send_c_get(study_query(), STUDY_GET))

    assert statuses(responses) == [PENDING] * 3 + [SUCCESS]
    assert [int(s.NumberOfRemainingSuboperations) for s, _ in responses[:3]] == [2, 1, 0]
    final = responses[-1][0]
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (3, 0)
    assert "NumberOfRemainingSuboperations" not in final
    assert responses[-1][1] is None
    assert set(received.by_uid()) == {str(i.SOPInstanceUID) for i in archive.instances}


def test_the_outcome_of_a_retrieval_is_reported(stack: ExitStack) -> None:
    archive = Archive(archive_instances(3))
    refused = {str(archive.instances[0].SOPInstanceUID)}
    server = start_scp(stack, [(evt.EVT_C_GET, archive.on_get), (evt.EVT_C_FIND, archive.on_find)])
    reports: list[Any] = []
    server.outcome_observers.append(reports.append)
    assoc = open_scu(stack, server, store=refusing_store(refused))

    list(assoc.send_c_get(patient_query(), PATIENT_GET))
    list(assoc.send_c_find(patient_query(), PATIENT_FIND))
    assoc.release()

    get, find = reports
    assert (get.event, get.status) == (evt.EVT_C_GET, SUB_OPERATIONS_WITH_FAILURES)
    assert get.details == {
        "completed_suboperations": 2,
        "failed_suboperations": 1,
        "warning_suboperations": 0,
    }
    assert (find.event, find.status, find.details) == (evt.EVT_C_FIND, SUCCESS, {"matches": 3})


def test_get_with_failed_sub_operations_warns_with_their_uids(stack: ExitStack) -> None:
    archive = Archive(archive_instances(3))
    refused = {str(archive.instances[1].SOPInstanceUID)}
    server = start_scp(stack, [(evt.EVT_C_GET, archive.on_get)])
    assoc = open_scu(stack, server, store=refusing_store(refused))

    responses = list(assoc.send_c_get(patient_query("QR-1"), PATIENT_GET))

    final, identifier = responses[-1]
    assert final.Status == SUB_OPERATIONS_WITH_FAILURES
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert failed_uids(identifier) == sorted(refused)


def test_get_whose_sub_operations_all_fail(stack: ExitStack) -> None:
    archive = Archive(archive_instances(2))
    refused = {str(i.SOPInstanceUID) for i in archive.instances}
    server = start_scp(stack, [(evt.EVT_C_GET, archive.on_get)])
    assoc = open_scu(stack, server, store=refusing_store(refused))

    final, identifier = list(assoc.send_c_get(patient_query("QR-1"), PATIENT_GET))[-1]

    assert final.Status == ALL_SUB_OPERATIONS_FAILED
    assert sorted(failed_uids(identifier)) == sorted(refused)


def test_get_without_role_selection_cannot_store(stack: ExitStack) -> None:
    """No SCP role for the SCU, no storage context the SCP may use: every sub-operation fails."""
    archive = Archive(archive_instances(2))
    server = start_scp(stack, [(evt.EVT_C_GET, archive.on_get)])
    assoc = open_scu(stack, server, roles=False)

    final, identifier = list(assoc.send_c_get(patient_query("QR-1"), PATIENT_GET))[-1]

    assert final.Status == ALL_SUB_OPERATIONS_FAILED
    assert len(failed_uids(identifier)) == 2


def _count_then(count: Any) -> Callable[[Any], Iterator[Any]]:
    def handler(event: Any) -> Iterator[Any]:
        yield count
        yield PENDING, small_dataset()

    return handler


def _raises_before_count(event: Any) -> Iterator[Any]:
    raise RuntimeError("archive offline")
    yield 1  # a generator function


def _ends_before_count(event: Any) -> Iterator[Any]:
    return
    yield 1  # a generator function


@pytest.mark.parametrize(
    ("handler", "expected", "logged"),
    [
        (_count_then(65536), qr.GET_TOO_MANY_SUB_OPERATIONS, "at most 65535"),
        (_count_then("3"), qr.GET_INVALID_COUNT, "number of sub-operations as an int"),
        (_count_then(2.5), qr.GET_INVALID_COUNT, "number of sub-operations as an int"),
        (_count_then(-1), qr.GET_INVALID_COUNT, "from 0 to 65535"),
        (_count_then(True), qr.GET_INVALID_COUNT, "as an int"),
        (_raises_before_count, qr.GET_INVALID_COUNT, "archive offline"),
        (_ends_before_count, qr.GET_INVALID_COUNT, "ended before yielding"),
        (None, qr.GET_HANDLER_FAILED, "no handler is bound"),
    ],
    ids=["65536", "str", "float", "negative", "bool", "raises", "ends", "unbound"],
)
def test_get_count_mistakes(
    stack: ExitStack,
    caplog: pytest.LogCaptureFixture,
    handler: Callable[[Any], Any] | None,
    expected: int,
    logged: str,
) -> None:
    server = start_scp(stack, [(evt.EVT_C_GET, handler)] if handler else [])
    assoc = open_scu(stack, server)

    with caplog.at_level(logging.ERROR, logger="dicombus"):
        responses = list(assoc.send_c_get(patient_query(), PATIENT_GET))

    assert statuses(responses) == [expected]
    assert logged in caplog.text


def test_get_of_nothing_is_success(stack: ExitStack) -> None:
    server = start_scp(stack, [(evt.EVT_C_GET, Archive([]).on_get)])
    assoc = open_scu(stack, server)

    [(final, identifier)] = list(assoc.send_c_get(patient_query(), PATIENT_GET))

    assert final.Status == SUCCESS
    assert final.NumberOfCompletedSuboperations == 0
    assert identifier is None


def test_get_pending_without_a_dataset_to_store_counts_as_failed(stack: ExitStack) -> None:
    def handler(event: Any) -> Iterator[Any]:
        yield 2
        yield PENDING, "not a dataset"
        yield PENDING, small_dataset()

    server = start_scp(stack, [(evt.EVT_C_GET, handler)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_get(patient_query(), PATIENT_GET))

    final = responses[-1][0]
    assert statuses(responses) == [PENDING, PENDING, SUB_OPERATIONS_WITH_FAILURES]
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 1)


def test_get_ended_by_the_handler_counts_the_rest_as_failed(stack: ExitStack) -> None:
    def handler(event: Any) -> Iterator[Any]:
        yield 3
        yield PENDING, small_dataset()
        yield OUT_OF_RESOURCES, None

    server = start_scp(stack, [(evt.EVT_C_GET, handler)])
    assoc = open_scu(stack, server)

    final, identifier = list(assoc.send_c_get(patient_query(), PATIENT_GET))[-1]

    assert final.Status == OUT_OF_RESOURCES
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 2)
    assert failed_uids(identifier) == []


@pytest.mark.parametrize("encodable", [True, False], ids=["handlers-list", "unencodable"])
def test_get_failure_with_the_handlers_own_failed_list(stack: ExitStack, encodable: bool) -> None:
    offered = unencodable_identifier() if not encodable else Dataset()
    offered.FailedSOPInstanceUIDList = ["1.2.3.4"]

    def handler(event: Any) -> Iterator[Any]:
        yield 1
        yield OUT_OF_RESOURCES, offered

    server = start_scp(stack, [(evt.EVT_C_GET, handler)])
    assoc = open_scu(stack, server)

    final, identifier = list(assoc.send_c_get(patient_query(), PATIENT_GET))[-1]

    assert final.Status == OUT_OF_RESOURCES
    assert failed_uids(identifier) == (["1.2.3.4"] if encodable else [])


def test_get_cancelled_by_the_scu(stack: ExitStack) -> None:
    archive = Archive(archive_instances(1))
    server = start_scp(stack, [(evt.EVT_C_GET, archive.cancellable_get)])
    received = StoreRecorder()
    assoc = open_scu(stack, server, store=received)

    responses = []
    for response in assoc.send_c_get(patient_query(), PATIENT_GET):
        responses.append(response)
        if len(responses) == 1:
            assoc.send_c_cancel(1, query_model=PATIENT_GET)
            archive.gate.set()

    final, identifier = responses[-1]
    assert statuses(responses) == [PENDING, CANCEL]
    assert final.NumberOfRemainingSuboperations == CANCELLABLE_ITEMS - 1
    assert final.NumberOfCompletedSuboperations == 1
    assert failed_uids(identifier) == []
    assert len(received.received) == 1


def test_get_without_bulk_data_strips_pixel_data(stack: ExitStack) -> None:
    archive = Archive(archive_instances(1))
    server = start_scp(stack, [(evt.EVT_C_GET, archive.on_get)])
    stored: list[Dataset] = []

    def store(event: Any) -> int:
        stored.append(event.dataset)
        return SUCCESS

    assoc = open_scu(stack, server, store=store)

    responses = list(assoc.send_c_get(patient_query(), RETRIEVE_WITHOUT_BULK_DATA))

    assert statuses(responses) == [PENDING, SUCCESS]
    assert "PixelData" not in stored[0]
    assert stored[0].SOPInstanceUID == archive.instances[0].SOPInstanceUID
    assert "PixelData" in archive.instances[0], "the handler's dataset is left alone"


def test_sub_operation_without_a_response_times_out(stack: ExitStack) -> None:
    """The SCP reads the C-STORE response inline; it too waits no longer than its DIMSE timeout."""
    scp_aborted = threading.Event()
    archive = Archive(archive_instances(1))
    server = start_scp(
        stack,
        [(evt.EVT_C_GET, archive.on_get), (evt.EVT_ABORTED, lambda event: scp_aborted.set())],
        dimse_timeout=0.3,
    )

    def slow_store(event: Any) -> int:
        scp_aborted.wait(WAIT)
        return SUCCESS

    assoc = open_scu(stack, server, store=slow_store)

    responses = list(assoc.send_c_get(patient_query(), PATIENT_GET))

    assert scp_aborted.is_set()
    assert responses == [(Dataset(), None)]


def test_requests_that_arrive_during_a_retrieve_wait_their_turn(stack: ExitStack) -> None:
    archive = Archive(archive_instances(3))
    order: list[str] = []

    def on_get(event: Any) -> Iterator[Any]:
        yield from archive.on_get(event)
        order.append("get done")

    def on_echo(event: Any) -> int:
        order.append("echo")
        return SUCCESS

    server = start_scp(stack, [(evt.EVT_C_GET, on_get), (evt.EVT_C_ECHO, on_echo)])
    assoc = open_scu(stack, server)

    responses = []
    echo: Dataset | None = None
    for response in assoc.send_c_get(patient_query(), PATIENT_GET, msg_id=3):
        responses.append(response)
        if echo is None:
            echo = assoc.send_c_echo(msg_id=4)

    assert echo is not None
    assert echo.Status == SUCCESS
    assert statuses(responses) == [PENDING] * 3 + [SUCCESS]
    assert order == ["get done", "echo"]


def test_a_peer_flooding_requests_during_a_retrieve_is_aborted(stack: ExitStack) -> None:
    gate = threading.Event()

    def handler(event: Any) -> Iterator[Any]:
        yield PENDING, patient_query("A")
        gate.wait(WAIT)
        yield PENDING, patient_query("B")

    server = start_scp(stack, [(evt.EVT_C_FIND, handler)])
    assoc = open_scu(stack, server)
    stack.callback(gate.set)
    echo_context = next(c for c in assoc.accepted_contexts if c.abstract_syntax == Verification)

    responses = []
    for response in assoc.send_c_find(patient_query(), PATIENT_FIND):
        responses.append(response)
        if len(responses) == 1:
            for message_id in range(100, 101 + MAX_QUEUED_REQUESTS):
                assoc.send_message(echo_context.context_id or 0, c_echo_rq(message_id), None)
            gate.set()

    assert responses[0][0].Status == PENDING
    assert responses[-1] == (Dataset(), None)
    assert assoc.is_aborted


# -- C-MOVE ---------------------------------------------------------------------------


class OriginRecorder(StoreRecorder):
    """Also records each C-STORE's Move Originator AE title and message ID."""

    def __init__(self) -> None:
        super().__init__()
        self.originators: list[tuple[str, int]] = []

    def __call__(self, event: Any) -> int:
        request = event.request
        self.originators.append(
            (request.MoveOriginatorApplicationEntityTitle, request.MoveOriginatorMessageID)
        )
        return super().__call__(event)


def test_move_stores_at_the_destination(stack: ExitStack) -> None:
    received = OriginRecorder()
    destination = start_destination(stack, received)
    archive = Archive(archive_instances(3), ("127.0.0.1", destination.server_address[1]))
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.on_move)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_move(patient_query("QR-1"), "DEST", PATIENT_MOVE, msg_id=21))

    assert statuses(responses) == [PENDING] * 3 + [SUCCESS]
    assert responses[-1][0].NumberOfCompletedSuboperations == 3
    assert set(received.by_uid()) == {str(i.SOPInstanceUID) for i in archive.instances}
    assert received.originators == [("QRSCU", 21)] * 3
    assert archive.move_destinations == ["DEST"]


def test_move_to_an_unknown_destination(stack: ExitStack) -> None:
    archive = Archive(archive_instances(1), (None, None))
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.on_move)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_move(patient_query(), "NOWHERE", PATIENT_MOVE))

    assert statuses(responses) == [MOVE_DESTINATION_UNKNOWN]


def test_move_to_a_destination_that_does_not_answer(stack: ExitStack) -> None:
    archive = Archive(archive_instances(2), ("127.0.0.1", free_port()))
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.on_move)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_move(patient_query(), "GONE", PATIENT_MOVE))

    assert statuses(responses) == [MOVE_DESTINATION_UNKNOWN]


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("127.0.0.1:104", qr.MOVE_INVALID_DESTINATION),
        (("127.0.0.1", "104"), qr.MOVE_INVALID_DESTINATION),
        (("127.0.0.1", 104, "kwargs"), qr.MOVE_INVALID_DESTINATION),
    ],
    ids=["string", "port-as-text", "bad-kwargs"],
)
def test_move_invalid_destinations(stack: ExitStack, destination: Any, expected: int) -> None:
    archive = Archive(archive_instances(1), destination)
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.on_move)])
    assoc = open_scu(stack, server)

    assert statuses(list(assoc.send_c_move(patient_query(), "X", PATIENT_MOVE))) == [expected]


def test_move_handler_that_yields_nothing(stack: ExitStack) -> None:
    server = start_scp(stack, [(evt.EVT_C_MOVE, _ends_before_count)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_move(patient_query(), "X", PATIENT_MOVE))

    assert statuses(responses) == [qr.MOVE_NO_DESTINATION]


def test_move_with_refused_instances(stack: ExitStack) -> None:
    instances = archive_instances(3)
    refused = {str(instances[0].SOPInstanceUID)}
    destination = start_destination(stack, refusing_store(refused))
    archive = Archive(instances, ("127.0.0.1", destination.server_address[1]))
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.on_move)])
    assoc = open_scu(stack, server)

    final, identifier = list(assoc.send_c_move(patient_query(), "DEST", PATIENT_MOVE))[-1]

    assert final.Status == SUB_OPERATIONS_WITH_FAILURES
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert failed_uids(identifier) == sorted(refused)


def test_move_kwargs_from_the_handler_reach_associate(stack: ExitStack) -> None:
    """The third item of the destination overrides the called AE title (the move
    destination by default): a destination that checks it accepts only the right one."""
    received = StoreRecorder()
    ae = configure_storage_scp(quick_ae("DEST"))
    ae.require_called_aet = True
    destination = stack.enter_context(serving(ae, [(evt.EVT_C_STORE, received)]))
    port = destination.server_address[1]
    archive = Archive(archive_instances(1))
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.on_move)])
    assoc = open_scu(stack, server)

    archive.destination = ("127.0.0.1", port, {"ae_title": "DEST", "max_pdu": 16384})
    moved = list(assoc.send_c_move(patient_query(), "ALIAS", PATIENT_MOVE))
    archive.destination = ("127.0.0.1", port)
    refused = list(assoc.send_c_move(patient_query(), "ALIAS", PATIENT_MOVE))

    assert statuses(moved) == [PENDING, SUCCESS]
    assert statuses(refused) == [MOVE_DESTINATION_UNKNOWN]
    assert len(received.received) == 1


class RecordingOpener:
    """An AssociationOpener of its own AE: opens with that AE's associate, and
    records what it was asked to open."""

    def __init__(self, ae: AE) -> None:
        self.ae = ae
        self.calls: list[tuple[str, int, dict[str, Any]]] = []
        self.opened: list[Association] = []

    @property
    def requested_contexts(self) -> list[PresentationContext]:
        return self.ae.requested_contexts

    def associate(
        self, address: str, port: int, contexts: list[PresentationContext], **options: Any
    ) -> Association:
        self.calls.append((address, port, options))
        assoc = self.ae.associate(address, port, contexts, **options)
        self.opened.append(assoc)
        return assoc


class CallingTitles(StoreRecorder):
    """Records the Calling AE Title of the association each instance came on."""

    def __init__(self) -> None:
        super().__init__()
        self.calling: list[str] = []

    def __call__(self, event: Any) -> int:
        self.calling.append(event.assoc.requestor.ae_title)
        return super().__call__(event)


def test_move_opens_its_sub_association_through_the_injected_opener(stack: ExitStack) -> None:
    """The sub-association goes through the AE's association_opener, not its own
    associate: the destination sees the opener's AE title, and the opener saw the call."""
    received = CallingTitles()
    destination = start_destination(stack, received)
    port = destination.server_address[1]
    archive = Archive(archive_instances(2), ("127.0.0.1", port))
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.on_move)])
    opener = RecordingOpener(quick_ae("MOVER"))
    server.ae.association_opener = opener
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_move(patient_query(), "DEST", PATIENT_MOVE))

    assert statuses(responses) == [PENDING, PENDING, SUCCESS]
    assert opener.calls == [("127.0.0.1", port, {"ae_title": "DEST"})]
    assert received.calling == ["MOVER", "MOVER"]
    (sub_association,) = opener.opened
    assert sub_association.is_released, "released before the final response"


def test_move_count_over_65535(stack: ExitStack) -> None:
    def handler(event: Any) -> Iterator[Any]:
        yield "127.0.0.1", 104
        yield 70000

    server = start_scp(stack, [(evt.EVT_C_MOVE, handler)])
    assoc = open_scu(stack, server)

    responses = list(assoc.send_c_move(patient_query(), "DEST", PATIENT_MOVE))

    assert statuses(responses) == [qr.MOVE_TOO_MANY_SUB_OPERATIONS]


def test_move_cancelled_by_the_scu(stack: ExitStack) -> None:
    received = StoreRecorder()
    destination = start_destination(stack, received)
    archive = Archive(archive_instances(1), ("127.0.0.1", destination.server_address[1]))
    server = start_scp(stack, [(evt.EVT_C_MOVE, archive.cancellable_move)])
    assoc = open_scu(stack, server)

    responses = []
    for response in assoc.send_c_move(patient_query(), "DEST", PATIENT_MOVE):
        responses.append(response)
        if len(responses) == 1:
            assoc.send_c_cancel(1, query_model=PATIENT_MOVE)
            archive.gate.set()

    final = responses[-1][0]
    assert statuses(responses) == [PENDING, CANCEL]
    assert final.NumberOfRemainingSuboperations == CANCELLABLE_ITEMS - 1
    assert len(received.received) == 1


def test_move_contexts_offer_the_first_instance_in_its_own_syntax() -> None:
    from pydicom.uid import JPEGBaseline8Bit

    jpeg = small_dataset(transfer_syntax=JPEGBaseline8Bit)
    contexts = qr._move_contexts([], jpeg)
    assert contexts[0].abstract_syntax == CTImageStorage
    assert contexts[0].transfer_syntax[0] == JPEGBaseline8Bit
    assert sum(c.abstract_syntax == CTImageStorage for c in contexts) == 1
    configured = AE()
    configured.add_requested_context(MRImageStorage)
    chosen = qr._move_contexts(configured.requested_contexts, jpeg)
    assert [c.abstract_syntax for c in chosen] == [MRImageStorage], "the AE's own come first"
