"""Query/Retrieve with pynetdicom as the peer, both ways round, on 127.0.0.1.

pynetdicom SCU -> dicombus SCP, and dicombus SCU -> pynetdicom SCP: C-FIND
(patient root, study root, worklist), C-GET with role selection and failed
sub-operations, C-MOVE to a third AE of either stack, C-CANCEL from the SCU,
the statuses for a handler's mistakes, and an unknown move destination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from dicombus import AE, build_role, evt
from dicombus.services import query_retrieve as qr
from helpers import StoreRecorder, import_peer, small_dataset
from pydicom.dataset import Dataset
from qr_support import (
    CANCEL,
    CANCELLABLE_ITEMS,
    MOVE_DESTINATION_UNKNOWN,
    PATIENT_FIND,
    PATIENT_GET,
    PATIENT_MOVE,
    PENDING,
    STORAGE_CLASSES,
    STUDY_FIND,
    STUDY_GET,
    STUDY_MOVE,
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

pynetdicom = import_peer("pynetdicom")

Responses = list[tuple[Dataset, Dataset | None]]
Serve = Callable[..., Any]


def with_timeouts(ae: Any) -> Any:
    """Short timeouts on either stack's AE, so a broken exchange fails in seconds."""
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    return ae


def statuses(responses: Responses) -> list[int]:
    return [int(status.Status) for status, _ in responses]


def uids(instances: Iterable[Dataset]) -> set[str]:
    return {str(instance.SOPInstanceUID) for instance in instances}


# -- the two directions -----------------------------------------------------------------


def dicombus_scp(serve: Serve, handlers: list[tuple[Any, ...]]) -> int:
    server = serve(configure_scp(with_timeouts(AE("QRSCP"))), handlers)
    port: int = server.server_address[1]
    return port


def pynetdicom_scp(serve: Serve, handlers: list[tuple[Any, ...]]) -> int:
    """A pynetdicom Q/R SCP; its AE requests the storage contexts it moves instances over."""
    ae = configure_scp(with_timeouts(pynetdicom.AE("PYQRSCP")))
    for storage in STORAGE_CLASSES:
        ae.add_requested_context(storage)
    server = serve(ae, [(getattr(pynetdicom.evt, event.name), h) for event, h in handlers])
    port: int = server.server_address[1]
    return port


def pynetdicom_scu(port: int, store: Callable[[Any], Any] | None = None) -> Any:
    ae = configure_scu(with_timeouts(pynetdicom.AE("PYQRSCU")))
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="QRSCP",
        ext_neg=storage_roles(pynetdicom.build_role),
        evt_handlers=[(pynetdicom.evt.EVT_C_STORE, store or StoreRecorder())],
    )
    assert assoc.is_established
    return assoc


def dicombus_scu(port: int, store: Callable[[Any], Any] | None = None) -> Any:
    ae = configure_scu(with_timeouts(AE("DBQRSCU")))
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="QRSCP",
        ext_neg=storage_roles(build_role),
        evt_handlers=[(evt.EVT_C_STORE, store or StoreRecorder())],
    )
    assert assoc.is_established
    return assoc


def pynetdicom_storage_scp(serve: Serve, store: Callable[[Any], Any]) -> int:
    ae = configure_storage_scp(with_timeouts(pynetdicom.AE("DEST")))
    port: int = serve(ae, [(pynetdicom.evt.EVT_C_STORE, store)]).server_address[1]
    return port


def dicombus_storage_scp(serve: Serve, store: Callable[[Any], Any]) -> int:
    ae = configure_storage_scp(with_timeouts(AE("DEST")))
    port: int = serve(ae, [(evt.EVT_C_STORE, store)]).server_address[1]
    return port


# Which stack plays which role: (SCP starter, SCU opener).
DIRECTIONS = {
    "pynetdicom-scu-dicombus-scp": (dicombus_scp, pynetdicom_scu),
    "dicombus-scu-pynetdicom-scp": (pynetdicom_scp, dicombus_scu),
}


@pytest.fixture(params=sorted(DIRECTIONS))
def direction(request: pytest.FixtureRequest) -> tuple[Callable[..., int], Callable[..., Any]]:
    return DIRECTIONS[request.param]


@pytest.fixture
def open_qr(
    serve: Serve, direction: tuple[Callable[..., int], Callable[..., Any]]
) -> Iterator[Callable[..., Any]]:
    """``open_qr(handlers, store=None)``: a Q/R SCP of one stack and an SCU of the other,
    associated; every association is released (or aborted) after the test."""
    start_scp, open_scu = direction
    opened: list[Any] = []

    def open_pair(handlers: list[tuple[Any, ...]], store: Any = None) -> Any:
        assoc = open_scu(start_scp(serve, handlers), store)
        opened.append(assoc)
        return assoc

    yield open_pair
    for assoc in opened:
        if assoc.is_established:
            assoc.release()
        if assoc.is_established:
            assoc.abort()


def cancel_after_first(
    assoc: Any, responses: Iterator[tuple[Dataset, Dataset | None]], model: str, archive: Archive
) -> Responses:
    """Collect the responses, sending a C-CANCEL after the first and then opening the gate."""
    collected = []
    for response in responses:
        collected.append(response)
        if len(collected) == 1:
            assoc.send_c_cancel(1, query_model=model)
            archive.gate.set()
    return collected


# -- C-FIND ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "query", "key"),
    [(PATIENT_FIND, patient_query(), "PatientID"), (STUDY_FIND, study_query(), "StudyInstanceUID")],
    ids=["patient-root", "study-root"],
)
def test_find(open_qr: Callable[..., Any], model: str, query: Dataset, key: str) -> None:
    archive = Archive(archive_instances(3))
    assoc = open_qr([(evt.EVT_C_FIND, archive.on_find)])

    responses = list(assoc.send_c_find(query, model))

    assert statuses(responses) == [PENDING] * 3 + [SUCCESS]
    found = [identifier[key].value for _, identifier in responses[:3] if identifier is not None]
    assert found == [instance[key].value for instance in archive.instances]
    assert archive.identifiers[0].QueryRetrieveLevel == query.QueryRetrieveLevel


def test_find_worklist(open_qr: Callable[..., Any]) -> None:
    archive = Archive()
    assoc = open_qr([(evt.EVT_C_FIND, archive.on_worklist)])

    responses = list(assoc.send_c_find(worklist_query(), WORKLIST_FIND))

    assert statuses(responses) == [PENDING, SUCCESS]
    item = responses[0][1]
    assert item is not None
    assert item.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT1"


def test_find_cancelled_by_the_scu(open_qr: Callable[..., Any]) -> None:
    archive = Archive(archive_instances(1))
    assoc = open_qr([(evt.EVT_C_FIND, archive.cancellable_find)])

    responses = cancel_after_first(
        assoc, assoc.send_c_find(patient_query(), PATIENT_FIND), PATIENT_FIND, archive
    )

    assert statuses(responses)[-1] == CANCEL
    assert len(responses) < CANCELLABLE_ITEMS


# -- C-GET ----------------------------------------------------------------------------


def test_get_with_role_selection(open_qr: Callable[..., Any]) -> None:
    archive = Archive(archive_instances(3))
    received = StoreRecorder()
    assoc = open_qr([(evt.EVT_C_GET, archive.on_get)], received)

    responses = list(assoc.send_c_get(study_query(), STUDY_GET))

    assert statuses(responses) == [PENDING] * 3 + [SUCCESS]
    assert [int(s.NumberOfRemainingSuboperations) for s, _ in responses[:3]] == [2, 1, 0]
    assert responses[-1][0].NumberOfCompletedSuboperations == 3
    assert set(received.by_uid()) == uids(archive.instances)


def test_get_failures_warn_with_the_failed_uids(open_qr: Callable[..., Any]) -> None:
    archive = Archive(archive_instances(3))
    refused = {str(archive.instances[2].SOPInstanceUID)}
    assoc = open_qr([(evt.EVT_C_GET, archive.on_get)], refusing_store(refused))

    final, identifier = list(assoc.send_c_get(patient_query("QR-1"), PATIENT_GET))[-1]

    assert final.Status == SUB_OPERATIONS_WITH_FAILURES
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert failed_uids(identifier) == sorted(refused)


def test_get_cancelled_by_the_scu(open_qr: Callable[..., Any]) -> None:
    archive = Archive(archive_instances(1))
    received = StoreRecorder()
    assoc = open_qr([(evt.EVT_C_GET, archive.cancellable_get)], received)

    responses = cancel_after_first(
        assoc, assoc.send_c_get(patient_query(), PATIENT_GET), PATIENT_GET, archive
    )

    final = responses[-1][0]
    assert final.Status == CANCEL
    assert final.NumberOfRemainingSuboperations > 0
    assert len(received.received) < CANCELLABLE_ITEMS


# -- C-MOVE ---------------------------------------------------------------------------

DESTINATIONS = {
    "pynetdicom-destination": pynetdicom_storage_scp,
    "dicombus-destination": dicombus_storage_scp,
}


@pytest.mark.parametrize("start_destination", DESTINATIONS.values(), ids=list(DESTINATIONS))
def test_move_to_a_third_ae(
    open_qr: Callable[..., Any], serve: Serve, start_destination: Callable[..., int]
) -> None:
    received = StoreRecorder()
    archive = Archive(archive_instances(3))
    archive.destination = ("127.0.0.1", start_destination(serve, received))
    assoc = open_qr([(evt.EVT_C_MOVE, archive.on_move)])

    responses = list(assoc.send_c_move(patient_query("QR-1"), "DEST", STUDY_MOVE))

    assert statuses(responses) == [PENDING] * 3 + [SUCCESS]
    assert set(received.by_uid()) == uids(archive.instances)
    assert archive.move_destinations == ["DEST"]


def test_move_with_refused_instances(open_qr: Callable[..., Any], serve: Serve) -> None:
    archive = Archive(archive_instances(2))
    refused = {str(archive.instances[0].SOPInstanceUID)}
    archive.destination = ("127.0.0.1", dicombus_storage_scp(serve, refusing_store(refused)))
    assoc = open_qr([(evt.EVT_C_MOVE, archive.on_move)])

    final, identifier = list(assoc.send_c_move(patient_query(), "DEST", PATIENT_MOVE))[-1]

    assert final.Status == SUB_OPERATIONS_WITH_FAILURES
    assert failed_uids(identifier) == sorted(refused)


def test_move_cancelled_by_the_scu(open_qr: Callable[..., Any], serve: Serve) -> None:
    received = StoreRecorder()
    archive = Archive(archive_instances(1))
    archive.destination = ("127.0.0.1", dicombus_storage_scp(serve, received))
    assoc = open_qr([(evt.EVT_C_MOVE, archive.cancellable_move)])

    responses = cancel_after_first(
        assoc, assoc.send_c_move(patient_query(), "DEST", PATIENT_MOVE), PATIENT_MOVE, archive
    )

    assert responses[-1][0].Status == CANCEL
    assert len(received.received) < CANCELLABLE_ITEMS


def test_move_to_an_unknown_destination(open_qr: Callable[..., Any]) -> None:
    archive = Archive(archive_instances(1), (None, None))
    assoc = open_qr([(evt.EVT_C_MOVE, archive.on_move)])

    responses = list(assoc.send_c_move(patient_query(), "NOWHERE", PATIENT_MOVE))

    assert statuses(responses) == [MOVE_DESTINATION_UNKNOWN]


# -- a handler's mistakes, as a pynetdicom SCU sees them from a dicombus SCP ---------------


def _get_count(count: Any) -> Callable[[Any], Iterator[Any]]:
    def handler(event: Any) -> Iterator[Any]:
        yield count
        yield PENDING, small_dataset()

    return handler


def _move_count(count: Any) -> Callable[[Any], Iterator[Any]]:
    def handler(event: Any) -> Iterator[Any]:
        yield "127.0.0.1", 104
        yield count

    return handler


def _find_unencodable(event: Any) -> Iterator[Any]:
    yield PENDING, unencodable_identifier()


@pytest.mark.parametrize(
    ("event", "handler", "expected"),
    [
        (evt.EVT_C_GET, _get_count(65536), qr.GET_TOO_MANY_SUB_OPERATIONS),
        (evt.EVT_C_GET, _get_count("many"), qr.GET_INVALID_COUNT),
        (evt.EVT_C_MOVE, _move_count(65536), qr.MOVE_TOO_MANY_SUB_OPERATIONS),
        (evt.EVT_C_MOVE, _move_count(None), qr.MOVE_INVALID_COUNT),
        (evt.EVT_C_FIND, _find_unencodable, qr.FIND_IDENTIFIER_NOT_ENCODABLE),
    ],
    ids=["get-65536", "get-not-int", "move-65536", "move-not-int", "find-unencodable"],
)
def test_handler_mistakes_seen_by_pynetdicom(
    serve: Serve, event: Any, handler: Callable[[Any], Any], expected: int
) -> None:
    assoc = pynetdicom_scu(dicombus_scp(serve, [(event, handler)]))
    try:
        if event is evt.EVT_C_GET:
            responses = list(assoc.send_c_get(patient_query(), PATIENT_GET))
        elif event is evt.EVT_C_MOVE:
            responses = list(assoc.send_c_move(patient_query(), "DEST", PATIENT_MOVE))
        else:
            responses = list(assoc.send_c_find(patient_query(), PATIENT_FIND))
        assert statuses(responses) == [expected]
    finally:
        assoc.release()
