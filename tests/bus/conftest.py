"""Fixtures shared by the bus tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dicombus.bus.redis_server import EmbeddedRedis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A real Redis (EmbeddedRedis, AOF on) in the test's folder, stopped afterwards."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server
