"""ServiceRequest (``event.request``): command elements by keyword, the dataset
parameter under pynetdicom's name as a BytesIO, and its sink's lifetime."""

from __future__ import annotations

import copy
from io import BytesIO
from pathlib import Path

import pytest
from dicombus.protocol.commands import (
    CommandSet,
    Priority,
    c_echo_rq,
    c_find_rq,
    c_get_rq,
    c_move_rq,
    c_store_rq,
    n_action_rq,
    n_create_rq,
    n_delete_rq,
    n_event_report_rq,
    n_get_rq,
    n_set_rq,
)
from dicombus.protocol.fragments import DatasetSink, DimseMessage, MemoryDatasetSink
from dicombus.runtime.spool import SpoolingDatasetSink
from dicombus.service_request import PARAMETER_NAME_BY_REQUEST, ServiceRequest

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PRINTER = "1.2.840.10008.5.1.1.16"
INSTANCE = "1.2.826.0.1.3680043.9.7433.2.1"
DATASET = b"\x10\x00\x10\x00\x06\x00\x00\x00Doe^Jo"


def request(command: CommandSet, sink: DatasetSink | None = None) -> ServiceRequest:
    return ServiceRequest(DimseMessage(context_id=3, command=command, dataset=sink))


def memory_sink(data: bytes = DATASET) -> MemoryDatasetSink:
    sink = MemoryDatasetSink()
    sink.write(memoryview(data))
    return sink


def spool_sink(folder: Path, data: bytes = DATASET) -> SpoolingDatasetSink:
    sink = SpoolingDatasetSink(threshold=0, spool_dir=folder)
    sink.write(memoryview(data))
    return sink


def test_command_elements_by_keyword() -> None:
    command = c_store_rq(
        7,
        CT_IMAGE_STORAGE,
        INSTANCE,
        Priority.HIGH,
        move_originator_ae_title="MOVESCU",
        move_originator_message_id=3,
    )
    req = request(command, memory_sink())
    assert req.MessageID == req.message_id == 7
    assert req.AffectedSOPClassUID == CT_IMAGE_STORAGE
    assert req.AffectedSOPInstanceUID == INSTANCE
    assert req.Priority == Priority.HIGH
    assert req.MoveOriginatorApplicationEntityTitle == "MOVESCU"
    assert req.MoveOriginatorMessageID == 3
    assert req.MoveDestination is None  # a command element this message does not carry
    assert req.command is command and req.context_id == 3


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    req = request(c_echo_rq(1))
    with pytest.raises(AttributeError):
        _ = req.NoSuchElement
    assert not hasattr(req, "no_such_attribute")


def test_c_store_dataset_is_a_fresh_bytesio_each_time() -> None:
    req = request(c_store_rq(1, CT_IMAGE_STORAGE, INSTANCE), memory_sink())
    first = req.DataSet
    assert isinstance(first, BytesIO) and first.read() == DATASET
    assert req.DataSet.getvalue() == DATASET  # not the consumed one
    assert req.has_dataset and req.dataset_size == len(DATASET)
    assert req.parameter_bytes() == DATASET


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (c_store_rq(1, CT_IMAGE_STORAGE, INSTANCE), "DataSet"),
        (c_find_rq(1, STUDY_ROOT_FIND), "Identifier"),
        (c_get_rq(1, STUDY_ROOT_FIND), "Identifier"),
        (c_move_rq(1, STUDY_ROOT_FIND, "STORESCP"), "Identifier"),
        (n_action_rq(1, PRINTER, INSTANCE, 1, has_dataset=True), "ActionInformation"),
        (n_create_rq(1, PRINTER, INSTANCE, has_dataset=True), "AttributeList"),
        (n_event_report_rq(1, PRINTER, INSTANCE, 1, has_dataset=True), "EventInformation"),
        # pynetdicom's N-SET keeps its one dataset under both names.
        (n_set_rq(1, PRINTER, INSTANCE), "ModificationList AttributeList"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_request_names_its_dataset_parameter(command: CommandSet, name: str) -> None:
    names = set(name.split())
    req = request(command, memory_sink())
    assert req.dataset_parameters == names
    for each in names:
        assert getattr(req, each).getvalue() == DATASET
    # The other services' parameter names read as None, as unset primitive attributes do.
    for other in set(PARAMETER_NAME_BY_REQUEST.values()) - names:
        assert getattr(req, other) is None


def test_n_get_has_an_empty_attribute_list() -> None:
    """As pynetdicom's N-GET primitive: its Attribute List parameter is the response's."""
    req = request(n_get_rq(1, PRINTER, INSTANCE, None))
    assert req.dataset_parameters == {"AttributeList"}
    assert req.AttributeList.getvalue() == b""


@pytest.mark.parametrize("command", [c_echo_rq(1), n_delete_rq(1, PRINTER, INSTANCE)])
def test_requests_without_a_dataset_parameter(command: CommandSet) -> None:
    req = request(command)
    assert req.dataset_parameters == frozenset()
    assert req.DataSet is None and req.Identifier is None
    assert not req.has_dataset and req.dataset_size == 0
    assert req.parameter_bytes() == b""


def test_an_absent_optional_dataset_reads_as_empty() -> None:
    req = request(n_action_rq(1, PRINTER, INSTANCE, 1))
    assert req.ActionInformation.getvalue() == b""


def test_a_sink_that_cannot_give_its_bytes_back_is_a_type_error() -> None:
    class WriteOnlySink:
        size = 0

        def write(self, data: memoryview) -> None:
            raise AssertionError("not called")

    req = request(c_store_rq(1, CT_IMAGE_STORAGE, INSTANCE), WriteOnlySink())
    with pytest.raises(TypeError, match="WriteOnlySink cannot give back its bytes"):
        req.parameter_bytes()


def test_dataset_file_of_a_spooled_request_and_release_removes_it(tmp_path: Path) -> None:
    req = request(c_store_rq(1, CT_IMAGE_STORAGE, INSTANCE), spool_sink(tmp_path))
    path = req.dataset_file()
    assert path.read_bytes() == req.DataSet.getvalue() == DATASET
    req.release()
    assert not path.exists()
    req.release()  # twice: harmless


def test_dataset_file_of_an_in_memory_request_is_an_attribute_error() -> None:
    req = request(c_find_rq(1, STUDY_ROOT_FIND), memory_sink())
    with pytest.raises(AttributeError, match="not spooled"):
        req.dataset_file()
    req.release()  # nothing to free on disk; the bytes are still there
    assert req.parameter_bytes() == DATASET


def test_a_request_can_be_copied() -> None:
    req = request(c_store_rq(9, CT_IMAGE_STORAGE, INSTANCE), memory_sink())
    clone = copy.copy(req)
    assert clone.MessageID == 9
    assert clone.DataSet.getvalue() == DATASET


def test_repr_names_the_message() -> None:
    assert repr(request(c_echo_rq(5))) == "<ServiceRequest C_ECHO_RQ id=5>"
