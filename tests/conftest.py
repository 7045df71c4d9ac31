"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# DCMTK's network tools. pynetdicom installs console scripts with the same
# names (its "apps"), and they may come first on PATH; for these we insist on
# the binary that reports itself as DCMTK.
DCMTK_TOOLS = frozenset(
    {"echoscu", "storescu", "storescp", "findscu", "movescu", "getscu", "termscu", "dcmqrscp"}
)


def _is_dcmtk(path: str) -> bool:
    try:
        with open(path, "rb") as executable:
            if executable.read(2) == b"#!":
                return False  # a script, as pynetdicom's apps are; DCMTK's tools are binaries
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "$dcmtk:" in result.stdout


def _find_tool(name: str) -> str | None:
    if name not in DCMTK_TOOLS:
        return shutil.which(name)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which(name, path=folder) if folder else None
        if candidate and _is_dcmtk(str(Path(candidate).resolve())):
            return str(Path(candidate).resolve())
    return None


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str], str]:
    """``require_tool("storescp")`` -> the tool's path.

    A missing tool skips the test on a developer machine and fails it on CI
    (``CI=true``), where every real peer is expected to be installed.
    """
    found: dict[str, str | None] = {}

    def require(name: str) -> str:
        if name not in found:
            found[name] = _find_tool(name)
        path = found[name]
        if path is None:
            message = f"the external tool {name!r} is not installed (or not on PATH)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        return path

    return require
