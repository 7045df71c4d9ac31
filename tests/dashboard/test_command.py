"""``dicombus dashboard`` as a command: it listens on loopback by default, says where, stops
cleanly on SIGTERM, and names the address it cannot listen on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from dicombus.cli.common import ExitCode

STOP_TIMEOUT = 20.0


def dashboard(tmp_path: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dicombus.cli.main", "dashboard", f"--data={tmp_path}", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # No Redis is asked until a request comes: any URL will do.
        env={**os.environ, "DICOMBUS_BROKER_URL": "redis://127.0.0.1:1/0"},
    )


def test_it_serves_on_loopback_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = dashboard(tmp_path, "--port=0")
    assert process.stdout is not None
    banner = process.stdout.readline()
    assert banner.startswith("dicombus dashboard: serving http://127.0.0.1:"), banner
    process.send_signal(signal.SIGTERM)
    assert process.wait(STOP_TIMEOUT) == ExitCode.OK


def test_a_port_in_use_is_an_error_naming_it(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = dashboard(tmp_path, f"--port={port}")
        _out, err = process.communicate(timeout=STOP_TIMEOUT)
    assert process.returncode == ExitCode.LOCAL_ERROR
    assert f"cannot listen on 127.0.0.1:{port}" in err
