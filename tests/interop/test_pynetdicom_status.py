"""dicombus.status holds the same codes, in the same categories, as pynetdicom.status."""

from __future__ import annotations

import pytest
from dicombus import status
from helpers import import_peer

peer_status = import_peer("pynetdicom.status")

TABLES = [name for name in peer_status.__all__ if name.endswith("STATUS")]


def test_same_public_names() -> None:
    assert set(peer_status.__all__) <= set(status.__all__)


@pytest.mark.parametrize("name", [*TABLES, "STORAGE_MANAGEMENT_SERVICE_CLASS_STATUS"])
def test_same_codes_and_categories(name: str) -> None:
    ours, theirs = getattr(status, name), getattr(peer_status, name)
    assert {code: category for code, (category, _) in ours.items()} == {
        code: category for code, (category, _) in theirs.items()
    }


def test_same_categories_everywhere() -> None:
    for code in range(0x10000):
        assert status.code_to_category(code) == peer_status.code_to_category(code), hex(code)
