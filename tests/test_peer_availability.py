"""A missing peer skips a test on a developer machine and fails it on CI.

Each case runs pytest in a subprocess on a small test file whose tests need a package and a
tool that do not exist, once per value of the ``CI`` environment variable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

NEEDS_MISSING_PEERS = """
from helpers import import_peer, require_tool


def test_needs_a_tool():
    require_tool("dicombus-no-such-tool")


def test_needs_a_package():
    import_peer("dicombus_no_such_package")
"""

# Most interop modules import their peer at module level.
NEEDS_A_MISSING_PEER_TO_IMPORT = """
from helpers import import_peer

peer = import_peer("dicombus_no_such_package")


def test_uses_the_peer():
    assert peer
"""


def run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (folder / "test_needs_missing_peers.py").write_text(NEEDS_MISSING_PEERS)
    (folder / "test_needs_a_missing_peer_to_import.py").write_text(NEEDS_A_MISSING_PEER_TO_IMPORT)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    # --continue-on-collection-errors: run the two tests beside the module that fails to import.
    options = ["-p", "no:cacheprovider", "--continue-on-collection-errors", "-q", "-rfEs"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_on_ci_a_missing_peer_fails_the_test(tmp_path: Path, ci: str) -> None:
    result = run_pytest(tmp_path, ci)
    assert result.returncode != 0, result.stdout
    assert "2 failed" in result.stdout and "1 error" in result.stdout, result.stdout
    assert "skipped" not in result.stdout
    for peer in ("'dicombus-no-such-tool'", "'dicombus_no_such_package'"):
        assert f"{peer} is not installed" in result.stdout


@pytest.mark.parametrize("ci", [None, ""], ids=["unset", "empty"])
def test_elsewhere_a_missing_peer_skips_the_test(tmp_path: Path, ci: str | None) -> None:
    result = run_pytest(tmp_path, ci)
    assert result.returncode == 0, result.stdout
    assert "3 skipped" in result.stdout, result.stdout


def test_no_test_skips_around_the_helper() -> None:
    """A direct pytest.skip / importorskip / skip mark would skip on CI too."""
    direct_skip = re.compile(r"pytest\.(skip|importorskip)\(|mark\.skip")
    offenders = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "helpers.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if direct_skip.search(line)
    ]
    assert offenders == [], "skip through helpers.peer_missing / import_peer / require_tool"
