"""Running the real ``dicombus`` command line as subprocesses, servers included."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

CLI = [sys.executable, "-m", "dicombus.cli.main"]

# Every wait is bounded: a client command finishes in well under this on
# loopback, a server prints its address or stops within STARTUP / STOP.
COMMAND_TIMEOUT = 60.0
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

_ADDRESS = re.compile(r"(\d+\.\d+\.\d+\.\d+):(\d+)")


def run_cli(*args: object, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run one ``dicombus`` command to completion."""
    return subprocess.run(
        [*CLI, *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class RunningServer:
    """A ``dicombus storescp`` / ``dicombus up`` process and everything it printed."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.output: list[str] = []
        # A thread drains the pipe so reads can have deadlines and the server
        # never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self.port = self._wait_for_address()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, deadline: float) -> str | None:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is not None:
            self.output.append(line)
        return line

    def _wait_for_address(self) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (line := self._next_line(deadline)) is not None:
            found = _ADDRESS.search(line)
            if found:
                return int(found.group(2))
        self.kill()
        raise AssertionError(f"the server printed no address; it said: {self.text()!r}")

    def read_until(self, marker: str) -> str:
        """Everything printed up to the line that holds ``marker`` (fails after a while)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while marker not in self.text():
            if self._next_line(deadline) is None:
                raise AssertionError(f"the server never printed {marker!r}: {self.text()!r}")
        return self.text()

    def stop(self, sig: signal.Signals = signal.SIGINT) -> float:
        """Send ``sig``; return the seconds until the process exited (fails past STOP_TIMEOUT)."""
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the server ignored {sig.name} for {STOP_TIMEOUT} s") from None
        elapsed = time.monotonic() - started
        self.collect()
        return elapsed

    def collect(self) -> None:
        """Take in what the exited process printed last."""
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._next_line(deadline) is not None:
            pass

    def text(self) -> str:
        return "".join(self.output)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
