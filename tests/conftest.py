"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable

import helpers
import pytest


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], str]:
    """``require_tool("storescp")`` -> the tool's path (``helpers.require_tool``).

    A missing tool skips the test on a developer machine and fails it on CI
    (``CI`` set to anything non-empty), where every real peer is installed.
    """
    return helpers.require_tool
