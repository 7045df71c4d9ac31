"""interpret_status: what an intervention handler returned, as a response status.

A handler's mistake becomes a failure status and a log line that says what
was wrong; it never breaks the association.
"""

from __future__ import annotations

import logging
from enum import IntEnum
from typing import Any

import pytest
from dicombus import evt
from dicombus.services.handler_status import (
    STATUS_DATASET_WITHOUT_STATUS,
    STATUS_INVALID_RETURN,
    HandlerStatus,
    interpret_status,
)
from dicombus.sop_class import CTImageStorage
from helpers import small_dataset
from loopback import associated, quick_ae, serving
from pydicom.dataset import Dataset

EVENT = "EVT_C_STORE"


class Status(IntEnum):
    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700


def status_dataset(**elements: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize("value", [0x0000, 0x0001, 0xA700, 0xB000, 0xFF00, 0xFFFF])
def test_ints_in_range_are_the_status(value: int, caplog: pytest.LogCaptureFixture) -> None:
    assert interpret_status(value, EVENT) == HandlerStatus(value)
    assert caplog.records == []


def test_int_enum_members_are_ints() -> None:
    assert interpret_status(Status.OUT_OF_RESOURCES, EVENT) == HandlerStatus(0xA700)


@pytest.mark.parametrize("value", [-1, 0x10000, 1 << 40])
def test_ints_out_of_range_are_invalid(value: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="dicombus.services"):
        assert interpret_status(value, EVENT) == HandlerStatus(STATUS_INVALID_RETURN)
    assert f"the {EVENT} handler returned {value!r}, which is not a 16-bit status" in caplog.text


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_invalid_not_statuses(value: bool, caplog: pytest.LogCaptureFixture) -> None:
    """``return True`` means nothing in DICOM; True == 1 would be a Warning status."""
    with caplog.at_level(logging.ERROR, logger="dicombus.services"):
        assert interpret_status(value, EVENT) == HandlerStatus(STATUS_INVALID_RETURN)
    assert "returned a bool" in caplog.text


@pytest.mark.parametrize("value", [None, "0x0000", 0.0, [0], (0x0000, None)])
def test_other_types_are_invalid(value: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="dicombus.services"):
        assert interpret_status(value, EVENT) == HandlerStatus(STATUS_INVALID_RETURN)
    assert f"returned {type(value).__name__}" in caplog.text
    assert "return an int status or a Dataset" in caplog.text


def test_dataset_with_status_only() -> None:
    assert interpret_status(status_dataset(Status=0xB007), EVENT) == HandlerStatus(0xB007)


def test_dataset_with_error_comment_and_offending_elements() -> None:
    ds = status_dataset(
        Status=0xA900, ErrorComment="bad tag", OffendingElement=[0x00100010, 0x00100020]
    )
    assert interpret_status(ds, EVENT) == HandlerStatus(
        0xA900, error_comment="bad tag", offending_element=[0x00100010, 0x00100020]
    )


def test_a_single_offending_element_becomes_a_list() -> None:
    ds = status_dataset(Status=0xC000, OffendingElement=0x00080018)
    assert interpret_status(ds, EVENT).offending_element == [0x00080018]


def test_dataset_extra_elements_are_ignored() -> None:
    ds = status_dataset(Status=0x0000, PatientName="Doe^Jo", ErrorID=3)
    assert interpret_status(ds, EVENT) == HandlerStatus(0x0000)


def test_dataset_without_status(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="dicombus.services"):
        result = interpret_status(status_dataset(ErrorComment="forgot the status"), EVENT)
    assert result == HandlerStatus(STATUS_DATASET_WITHOUT_STATUS)
    assert "without a (0000,0900) Status" in caplog.text


def test_handler_mistake_codes_match_pynetdicom() -> None:
    assert (STATUS_DATASET_WITHOUT_STATUS, STATUS_INVALID_RETURN) == (0xC001, 0xC002)


def test_the_peer_sees_what_the_handler_returned() -> None:
    """Over a real association: status, comment and offending elements reach the SCU."""

    def refuse(event: evt.Event) -> Dataset:
        return status_dataset(
            Status=0xA900, ErrorComment="bad tag", OffendingElement=[0x00100010, 0x00100020]
        )

    scp = quick_ae("SCP", supported=[CTImageStorage])
    scu = quick_ae("SCU", requested=[CTImageStorage])
    with (
        serving(scp, [(evt.EVT_C_STORE, refuse)]) as server,
        associated(scu, server) as assoc,
    ):
        response = assoc.send_c_store(small_dataset())
    assert response.Status == 0xA900
    assert response.ErrorComment == "bad tag"
    assert list(response.OffendingElement) == [0x00100010, 0x00100020]
