"""``dicombus echo`` as a subprocess against real servers on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from cli_helpers import RunningServer, run_cli
from dicombus import AE
from dicombus.cli.common import ExitCode
from dicombus.sop_class import Verification
from helpers import free_port


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dicombus echo: error: ")
    return lines[0]


def test_echo_succeeds_against_dicombus_storescp(
    storescp: Callable[..., RunningServer],
) -> None:
    server = storescp()
    result = run_cli("echo", "127.0.0.1", server.port, "-aec", "STORESCP", "--repeat", "3")
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stderr == ""


def test_echo_verbose_logs_the_association(storescp: Callable[..., RunningServer]) -> None:
    server = storescp()
    result = run_cli("echo", "127.0.0.1", server.port, "-v")
    assert result.returncode == ExitCode.OK
    assert "Association Accepted" in result.stderr
    assert "Association Released" in result.stderr


def test_echo_connection_refused() -> None:
    result = run_cli("echo", "127.0.0.1", free_port(), "-to", "5")
    assert result.returncode == ExitCode.NO_ASSOCIATION
    assert "Connection refused" in _one_error_line(result.stderr)


@pytest.fixture
def picky_server() -> Iterator[int]:
    """A dicombus Verification SCP titled PICKY that rejects any other called AE title."""
    ae = AE("PICKY")
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    yield server.server_address[1]
    server.shutdown()


def test_echo_rejected_says_why(picky_server: int) -> None:
    result = run_cli("echo", "127.0.0.1", picky_server, "-aec", "SOMEONE")
    assert result.returncode == ExitCode.NO_ASSOCIATION
    line = _one_error_line(result.stderr)
    assert "rejected" in line
    assert "called AE title not recognized" in line


def test_echo_with_the_right_called_title_is_accepted(picky_server: int) -> None:
    result = run_cli("echo", "127.0.0.1", picky_server, "-aec", "PICKY")
    assert result.returncode == ExitCode.OK, result.stderr


def test_echo_acse_timeout_against_a_silent_peer() -> None:
    """A peer that accepts the TCP connection and never answers the A-ASSOCIATE-RQ."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        result = run_cli("echo", "127.0.0.1", silent.getsockname()[1], "-ta", "0.5", timeout=30)
    assert result.returncode == ExitCode.NO_ASSOCIATION
    assert "timeout" in _one_error_line(result.stderr).lower()


def test_echo_bad_option_is_a_usage_error() -> None:
    result = run_cli("echo", "127.0.0.1", "not-a-port")
    assert result.returncode == ExitCode.USAGE
    assert "not-a-port" in result.stderr
