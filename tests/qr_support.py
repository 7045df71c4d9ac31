"""Query/Retrieve test support shared by the dicombus-only and the pynetdicom suites.

dicombus and pynetdicom give handlers the same Event API and take the same
AE configuration calls, so the handlers and AE set-ups here serve either
stack, on either side.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dicombus.sop_class import (
    CTImageStorage,
    ModalityWorklistInformationFind,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from helpers import MR_IMAGE_STORAGE, small_dataset
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

PATIENT_FIND = PatientRootQueryRetrieveInformationModelFind
PATIENT_GET = PatientRootQueryRetrieveInformationModelGet
PATIENT_MOVE = PatientRootQueryRetrieveInformationModelMove
STUDY_FIND = StudyRootQueryRetrieveInformationModelFind
STUDY_GET = StudyRootQueryRetrieveInformationModelGet
STUDY_MOVE = StudyRootQueryRetrieveInformationModelMove
WORKLIST_FIND = ModalityWorklistInformationFind

QUERY_MODELS = (
    PATIENT_FIND,
    PATIENT_GET,
    PATIENT_MOVE,
    STUDY_FIND,
    STUDY_GET,
    STUDY_MOVE,
    WORKLIST_FIND,
)
STORAGE_CLASSES = (CTImageStorage, MRImageStorage)

# Every wait on another thread in these tests is bounded by this.
WAIT = 5.0
# A cancellable handler stops after this many items even if it never hears
# the C-CANCEL, so a broken cancel fails the test instead of hanging it.
CANCELLABLE_ITEMS = 50

# Statuses (PS3.4 Annex C; the 0xCxxx ones are pynetdicom's handler-failure codes).
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
SUB_OPERATIONS_WITH_FAILURES = 0xB000
ALL_SUB_OPERATIONS_FAILED = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
OUT_OF_RESOURCES = 0xA700


def configure_scp(ae: Any, *, storage_roles: bool = True) -> Any:
    """Support the Q/R models and, for C-GET, the storage classes in the SCU role
    (the requestor takes the SCP role when it proposes it)."""
    for model in QUERY_MODELS:
        ae.add_supported_context(model)
    for storage in STORAGE_CLASSES:
        if storage_roles:
            ae.add_supported_context(storage, scu_role=False, scp_role=True)
        else:
            ae.add_supported_context(storage)
    return ae


def configure_scu(ae: Any) -> Any:
    for model in QUERY_MODELS:
        ae.add_requested_context(model)
    for storage in STORAGE_CLASSES:
        ae.add_requested_context(storage)
    return ae


def storage_roles(build_role: Callable[..., Any]) -> list[Any]:
    """The SCP/SCU role selection items a C-GET SCU proposes (``build_role`` of either stack)."""
    return [build_role(storage, scp_role=True) for storage in STORAGE_CLASSES]


def configure_storage_scp(ae: Any) -> Any:
    for storage in STORAGE_CLASSES:
        ae.add_supported_context(storage)
    return ae


def archive_instances(count: int = 3) -> list[Dataset]:
    """Small CT and MR instances of one patient."""
    instances = []
    for index in range(count):
        instance = small_dataset(MR_IMAGE_STORAGE) if index % 2 else small_dataset()
        instance.PatientID = "QR-1"
        instances.append(instance)
    return instances


def patient_query(patient_id: str = "") -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = patient_id
    query.PatientName = ""
    return query


def study_query() -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.PatientID = "QR-1"
    return query


def worklist_query() -> Dataset:
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = ""
    query = Dataset()
    query.PatientName = ""
    query.ScheduledProcedureStepSequence = [step]
    return query


def match_of(instance: Dataset, level: str) -> Dataset:
    match = Dataset()
    match.QueryRetrieveLevel = level
    match.PatientID = instance.PatientID
    match.PatientName = instance.PatientName
    if level != "PATIENT":
        match.StudyInstanceUID = instance.StudyInstanceUID
    return match


class Archive:
    """An in-memory archive whose methods are the EVT_C_FIND / GET / MOVE handlers.

    ``gate`` is for cancel tests: the cancellable handlers yield one item, then
    wait (bounded) until the test has sent its C-CANCEL and set the gate.
    """

    def __init__(
        self,
        instances: Sequence[Dataset] = (),
        destination: tuple[Any, ...] | None = None,
    ) -> None:
        self.instances = list(instances)
        self.destination = destination
        self.gate = threading.Event()
        self.identifiers: list[Dataset] = []
        self.move_destinations: list[str] = []
        self.cancel_seen = threading.Event()

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        query = event.identifier
        self.identifiers.append(query)
        level = query.get("QueryRetrieveLevel", "PATIENT")
        for instance in self.instances:
            yield PENDING, match_of(instance, level)

    def on_worklist(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        self.identifiers.append(event.identifier)
        step = Dataset()
        step.Modality = "CT"
        step.ScheduledStationAETitle = "CT1"
        item = Dataset()
        item.PatientName = "Worklist^Patient"
        item.ScheduledProcedureStepSequence = [step]
        yield PENDING, item

    def on_get(self, event: Any) -> Iterator[Any]:
        self.identifiers.append(event.identifier)
        yield len(self.instances)
        for instance in self.instances:
            yield PENDING, instance

    def on_move(self, event: Any) -> Iterator[Any]:
        self.identifiers.append(event.identifier)
        self.move_destinations.append(event.move_destination)
        yield self.destination
        yield len(self.instances)
        for instance in self.instances:
            yield PENDING, instance

    def _cancellable(self, event: Any, items: Sequence[Any]) -> Iterator[Any]:
        """Yield ``items[0]``; once the gate opens, answer Cancel as soon as the
        C-CANCEL is in (pynetdicom sends it from another thread, a little later);
        without one, yield the rest."""
        yield items[0]
        self.gate.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if event.is_cancelled:
                self.cancel_seen.set()
                yield CANCEL, None
                return
            time.sleep(0.002)  # test code: a bounded poll of the peer's progress
        yield from items[1:]

    def cancellable_find(self, event: Any) -> Iterator[Any]:
        match = match_of(self.instances[0], "PATIENT")
        yield from self._cancellable(event, [(PENDING, match)] * CANCELLABLE_ITEMS)

    def cancellable_get(self, event: Any) -> Iterator[Any]:
        yield CANCELLABLE_ITEMS
        yield from self._cancellable(event, self._many_instances())

    def cancellable_move(self, event: Any) -> Iterator[Any]:
        yield self.destination
        yield CANCELLABLE_ITEMS
        yield from self._cancellable(event, self._many_instances())

    def _many_instances(self) -> list[tuple[int, Dataset]]:
        return [(PENDING, small_dataset()) for _ in range(CANCELLABLE_ITEMS)]


def refusing_store(refused: set[str], status: int = OUT_OF_RESOURCES) -> Callable[[Any], int]:
    """An EVT_C_STORE handler that answers ``status`` for the instances in ``refused``."""

    def handler(event: Any) -> int:
        return status if event.request.AffectedSOPInstanceUID in refused else SUCCESS

    return handler


def failed_uids(identifier: Dataset | None) -> list[str]:
    """The Failed SOP Instance UID List of a final C-GET/C-MOVE response, as a list."""
    assert identifier is not None, "a Warning/Failure/Cancel response must carry an identifier"
    value = identifier.get("FailedSOPInstanceUIDList")
    if value is None or isinstance(value, str):
        return [value] if value else []
    return [str(uid) for uid in value]


def unencodable_identifier() -> Dataset:
    """A Dataset that pydicom holds but cannot write: Rows (US) of 70000."""
    identifier = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the value it keeps
        identifier.add(DataElement(0x00280010, "US", 70000))
    return identifier
