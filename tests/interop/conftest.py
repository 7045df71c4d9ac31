"""Fixtures for the interoperability suite: servers of either stack, DCMTK processes."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from dicombus.server import AssociationServer
from helpers import DcmtkProcess, free_port, wait_for_port

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder talks to a real third-party peer."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def peer_shutdowns() -> Iterator[list[threading.Thread]]:
    """Shutdowns of pynetdicom servers still finishing; all joined when the session ends."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(5)


@pytest.fixture
def serve(peer_shutdowns: list[threading.Thread]) -> Iterator[Callable[..., Any]]:
    """``serve(ae, handlers)`` starts ``ae`` (dicombus or pynetdicom: same API) on a free
    loopback port and returns its server; every server is shut down after the test."""
    servers: list[Any] = []

    def start(ae: Any, handlers: Sequence[Any] = ()) -> Any:
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=list(handlers))
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        if isinstance(server, AssociationServer):
            server.shutdown()
            continue
        # pynetdicom's accept loop wakes every 0.5 s to notice a shutdown; let it finish in the
        # background instead of stalling every test for it.
        thread = threading.Thread(target=server.shutdown, name="peer-shutdown", daemon=True)
        thread.start()
        peer_shutdowns.append(thread)


@pytest.fixture
def storescp(
    require_tool: Callable[[str], str], tmp_path: Path
) -> Iterator[Callable[..., DcmtkProcess]]:
    """``storescp(*options)`` runs DCMTK's storescp writing into a fresh folder, once it listens."""
    started: list[DcmtkProcess] = []

    def start(*options: str) -> DcmtkProcess:
        output_dir = tmp_path / f"storescp-{len(started)}"
        output_dir.mkdir()
        port = free_port()
        process = subprocess.Popen(
            [require_tool("storescp"), "-od", str(output_dir), *options, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peer = DcmtkProcess(process, port, output_dir)
        started.append(peer)
        try:
            wait_for_port(port)
        except TimeoutError:
            pytest.fail(f"storescp did not start: {peer.stop()}")
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def run_tool(require_tool: Callable[[str], str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_tool("echoscu", *args)`` runs a DCMTK tool to completion (bounded) and returns it."""

    def run(name: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [require_tool(name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
