"""The Q/R SCP handlers over real loopback associations (dicombus SCU API -> dicombus SCP),
their cancel checks, and the move destinations file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from dicombus import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    build_role,
    evt,
)
from dicombus.protocol import status
from dicombus.qr.index import Index
from dicombus.qr.scp import (
    ConfigError,
    Destination,
    QueryRetrieveSCP,
    load_destinations,
    support_query_retrieve,
)
from dicombus.server import AssociationServer
from dicombus.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from helpers import StoreRecorder
from loopback import associated, quick_ae, serving
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit
from qr_archive import ENTRIES, build_archive

STORE_TITLE = "STORE-HERE"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    folder = tmp_path_factory.mktemp("archive")
    build_archive(folder)
    with Index(":memory:") as opened:
        opened.scan(folder)
        yield opened


@pytest.fixture
def store_scp() -> Iterator[tuple[AssociationServer, StoreRecorder]]:
    """A dicombus storage SCP, the move destination of these tests."""
    ae = quick_ae(STORE_TITLE)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    recorder = StoreRecorder()
    with serving(ae, [(evt.EVT_C_STORE, recorder)]) as server:
        yield server, recorder


@pytest.fixture
def qr_server(
    index: Index, store_scp: tuple[AssociationServer, StoreRecorder]
) -> Iterator[AssociationServer]:
    destination = Destination("127.0.0.1", store_scp[0].server_address[1])
    scp = QueryRetrieveSCP(index, ae_title="QRSCP", destinations={STORE_TITLE: destination})
    ae = quick_ae("QRSCP", supported=[Verification])
    for uid in (CTImageStorage, MRImageStorage):
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
    support_query_retrieve(ae)
    with serving(ae, scp.handlers()) as server:
        yield server


def query(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_find_answers_each_match_then_success(qr_server: AssociationServer) -> None:
    requestor = quick_ae("FINDSCU", requested=[StudyRootQueryRetrieveInformationModelFind])
    with associated(requestor, qr_server) as assoc:
        responses = list(
            assoc.send_c_find(
                query("SERIES", StudyInstanceUID=ENTRIES[0].study_uid, Modality=""),
                StudyRootQueryRetrieveInformationModelFind,
            )
        )
    statuses = [int(result.Status) for result, _ in responses]
    assert statuses == [status.PENDING, status.PENDING, status.SUCCESS]
    assert [found.Modality for _, found in responses[:2]] == ["CT", "MR"]
    assert {found.RetrieveAETitle for _, found in responses[:2]} == {"QRSCP"}


def test_find_refuses_an_identifier_with_a_reason(qr_server: AssociationServer) -> None:
    requestor = quick_ae("FINDSCU", requested=[StudyRootQueryRetrieveInformationModelFind])
    with associated(requestor, qr_server) as assoc:
        ((result, found),) = list(
            assoc.send_c_find(query("PATIENT"), StudyRootQueryRetrieveInformationModelFind)
        )
    assert int(result.Status) == status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert "PATIENT" in result.ErrorComment
    assert found is None


def get_requestor(model: str) -> tuple[AE, list[Any]]:
    requestor = quick_ae("GETSCU", requested=[model, CTImageStorage, MRImageStorage])
    # The acceptor picks one syntax per context: a second CT context lets the
    # compressed instance travel as it is stored.
    requestor.add_requested_context(CTImageStorage, JPEGBaseline8Bit)
    roles = [build_role(uid, scp_role=True) for uid in (CTImageStorage, MRImageStorage)]
    return requestor, roles


def test_get_sends_each_instance_over_the_association(qr_server: AssociationServer) -> None:
    requestor, roles = get_requestor(PatientRootQueryRetrieveInformationModelGet)
    received = StoreRecorder()
    with associated(
        requestor, qr_server, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, received)]
    ) as assoc:
        responses = list(
            assoc.send_c_get(
                query("PATIENT", PatientID="P3"), PatientRootQueryRetrieveInformationModelGet
            )
        )
    final = responses[-1][0]
    assert int(final.Status) == status.SUCCESS
    assert final.NumberOfCompletedSuboperations == 2
    by_uid = received.by_uid()
    assert set(by_uid) == {ENTRIES[6].sop_uid, ENTRIES[7].sop_uid}
    # The compressed instance went out as it is stored, in its own syntax.
    assert by_uid[ENTRIES[7].sop_uid].transfer_syntax == JPEGBaseline8Bit


def test_get_counts_instances_the_requestor_cannot_take(qr_server: AssociationServer) -> None:
    requestor = quick_ae("GETSCU", requested=[StudyRootQueryRetrieveInformationModelGet])
    requestor.add_requested_context(CTImageStorage)  # MR is not offered
    with associated(
        requestor,
        qr_server,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, StoreRecorder())],
    ) as assoc:
        responses = list(
            assoc.send_c_get(
                query("STUDY", StudyInstanceUID=ENTRIES[0].study_uid),
                StudyRootQueryRetrieveInformationModelGet,
            )
        )
    final, failed = responses[-1]
    assert int(final.Status) == status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert failed is not None and failed.FailedSOPInstanceUIDList == ENTRIES[2].sop_uid


def test_move_stores_at_the_configured_destination(
    qr_server: AssociationServer, store_scp: tuple[AssociationServer, StoreRecorder]
) -> None:
    requestor = quick_ae("MOVESCU", requested=[StudyRootQueryRetrieveInformationModelMove])
    with associated(requestor, qr_server) as assoc:
        responses = list(
            assoc.send_c_move(
                query("SERIES", SeriesInstanceUID=ENTRIES[0].series_uid),
                STORE_TITLE,
                StudyRootQueryRetrieveInformationModelMove,
            )
        )
    final = responses[-1][0]
    assert int(final.Status) == status.SUCCESS
    assert final.NumberOfCompletedSuboperations == 2
    assert set(store_scp[1].by_uid()) == {ENTRIES[0].sop_uid, ENTRIES[1].sop_uid}


@pytest.mark.parametrize(
    ("destination", "identifier", "expected"),
    [
        ("NOWHERE", query("PATIENT", PatientID="P1"), status.MOVE_DESTINATION_UNKNOWN),
        (STORE_TITLE, query("PATIENT"), status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
    ],
)
def test_move_refusals(
    qr_server: AssociationServer,
    store_scp: tuple[AssociationServer, StoreRecorder],
    destination: str,
    identifier: Dataset,
    expected: int,
) -> None:
    requestor = quick_ae("MOVESCU", requested=[StudyRootQueryRetrieveInformationModelMove])
    with associated(requestor, qr_server) as assoc:
        responses = list(
            assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove)
        )
    assert int(responses[-1][0].Status) == expected
    assert store_scp[1].received == []


# -- cancel, driven deterministically through the handlers ------------------------------


class HandlerEvent:
    """What the handlers read from an event; ``is_cancelled`` turns True after some reads."""

    def __init__(self, identifier: Dataset, model: str, cancel_after: int) -> None:
        self.identifier = identifier
        self.request = SimpleNamespace(AffectedSOPClassUID=model)
        self.move_destination = STORE_TITLE
        self.event = evt.EVT_C_GET
        self._reads_left = cancel_after

    @property
    def is_cancelled(self) -> bool:
        self._reads_left -= 1
        return self._reads_left < 0


def test_find_stops_with_cancel_when_asked(index: Index) -> None:
    scp = QueryRetrieveSCP(index, ae_title="QRSCP", destinations={})
    event = HandlerEvent(
        query("IMAGE", SOPInstanceUID=""), StudyRootQueryRetrieveInformationModelFind, 2
    )
    yields = list(scp.handle_find(event))
    assert [code for code, _ in yields] == [status.PENDING, status.PENDING, status.CANCEL]


def test_get_stops_with_cancel_when_asked(index: Index) -> None:
    scp = QueryRetrieveSCP(index, ae_title="QRSCP", destinations={})
    identifier = query("STUDY", StudyInstanceUID=ENTRIES[0].study_uid)
    yields = list(
        scp.handle_get(HandlerEvent(identifier, StudyRootQueryRetrieveInformationModelGet, 1))
    )
    assert yields[0] == 3
    assert [code for code, _ in yields[1:]] == [status.PENDING, status.CANCEL]
    assert isinstance(yields[1][1], Dataset)


def test_move_proposes_each_instance_in_its_own_syntax(index: Index) -> None:
    scp = QueryRetrieveSCP(
        index, ae_title="QRSCP", destinations={STORE_TITLE: Destination("127.0.0.1", 104)}
    )
    identifier = query("PATIENT", PatientID="P3")
    steps = scp.handle_move(
        HandlerEvent(identifier, PatientRootQueryRetrieveInformationModelMove, 9)
    )
    host, port, options = next(steps)
    assert (host, port) == ("127.0.0.1", 104)
    offered = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in options["contexts"]}
    assert offered == {(CTImageStorage, ENTRIES[6].syntax), (CTImageStorage, JPEGBaseline8Bit)}


# -- the destinations file ---------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qrscp.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_destinations_are_read_by_ae_title(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[destinations]\nSTORESCP = {host = "127.0.0.1", port = 11113}\n'
        '[destinations."WITH SPACE"]\nhost = "10.0.0.1"\nport = 104\n',
    )
    assert load_destinations(path) == {
        "STORESCP": Destination("127.0.0.1", 11113),
        "WITH SPACE": Destination("10.0.0.1", 104),
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[destinations]\nA = {host = '127.0.0.1', port = }\n", ["line 2"]),
        (
            "[destinations]\nA = {host = 'h', port = 1}\nB = {host = 'h', port = 70000}\n",
            ["line 3", "destinations.B.port", "70000"],
        ),
        ("[destinations]\nA = {host = 'h', port = '104'}\n", ["destinations.A.port"]),
        ("[destinations]\nA = {hots = 'h', port = 104}\n", ["destinations.A.hots", "unknown"]),
        ("[destinations.A]\nport = 104\n", ["line 1", "destinations.A.host"]),
        ("[destinations]\nTHIS-TITLE-IS-TOO-LONG = {host = 'h', port = 1}\n", ["AE title"]),
        ("[destination]\nA = {host = 'h', port = 1}\n", ["'destination'"]),
    ],
)
def test_config_errors_name_the_place(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_destinations(write_config(tmp_path, text))
    message = str(raised.value)
    assert str(tmp_path / "qrscp.toml") in message
    for word in words:
        assert word in message
