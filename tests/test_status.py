"""dicombus.status: pynetdicom's status module under dicombus's name (PS3.7 Annex C, PS3.4)."""

from __future__ import annotations

from typing import Any

import pytest
from dicombus import status
from dicombus.protocol import status as codes


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (0x0000, "Success"),
        (0xFF00, "Pending"),
        (0xFF01, "Pending"),
        (0xFE00, "Cancel"),
        (0x0001, "Warning"),
        (0x0107, "Warning"),
        (0xB000, "Warning"),
        (0xBFFF, "Warning"),
        (0x0110, "Failure"),
        (0xA700, "Failure"),
        (0xA801, "Failure"),
        (0xC000, "Failure"),
        (0xCFFF, "Failure"),
        (0x0002, "Unknown"),
        (0xD000, "Unknown"),
        (0x10000, "Unknown"),
    ],
)
def test_code_to_category(code: int, category: str) -> None:
    assert status.code_to_category(code) == category


@pytest.mark.parametrize("bad", [-1, "0x0000", 1.0, None, True])
def test_a_code_must_be_a_non_negative_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        status.code_to_category(bad)
    with pytest.raises(ValueError, match="non-negative int"):
        status.code_to_status(bad)


def test_code_to_status_is_a_status_dataset() -> None:
    ds = status.code_to_status(0xA801)
    assert list(ds.keys()) == [0x00000900] and ds.Status == 0xA801


def test_category_names_are_the_protocol_layers() -> None:
    assert (status.STATUS_SUCCESS, status.STATUS_FAILURE) == (
        codes.STATUS_SUCCESS,
        codes.STATUS_FAILURE,
    )


def test_tables_agree_with_code_to_category() -> None:
    """Every code of every table sits in the category the PS3.7 C rules give it."""
    tables = [getattr(status, name) for name in status.__all__ if name.endswith("_STATUS")]
    for table in tables:
        assert status.GENERAL_STATUS.items() <= table.items()
        for code, (category, _meaning) in table.items():
            assert status.code_to_category(code) == category, hex(code)


def test_ranges_are_spelled_out() -> None:
    table = status.STORAGE_SERVICE_CLASS_STATUS
    assert all(code in table for code in range(0xA700, 0xA800))
    assert table[0xA7FF] == ("Failure", "Refused: out of resources")
    assert 0xA800 not in table


def test_status_names_and_add() -> None:
    assert status.Status.SUCCESS == 0x0000 and status.Status.PENDING == 0xFF00
    assert status.Status.MOVE_DESTINATION_UNKNOWN == 0xA801
    status.Status.add("TEST_UNABLE_TO_PROCESS", 0xC000)
    assert status.Status.TEST_UNABLE_TO_PROCESS == 0xC000  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="already has"):
        status.Status.add("SUCCESS", 0x0001)
    with pytest.raises(ValueError, match="identifier"):
        status.Status.add("not a name", 0x0001)


def test_reachable_from_the_package() -> None:
    """As ``pynetdicom.status`` after ``import pynetdicom``."""
    import dicombus

    assert dicombus.status is status
