"""Fixtures for the runtime tests: live servers of either stack, and scripted raw peers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from raw_peers import WAIT, RawConnection, RawScript


@pytest.fixture
def serve() -> Iterator[Callable[..., Any]]:
    """``serve(ae, handlers)`` starts ``ae`` (dicombus or pynetdicom: same API) on a free
    loopback port and returns its server; every server is shut down after the test."""
    servers: list[Any] = []

    def start(ae: Any, handlers: Sequence[Any] = ()) -> Any:
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=list(handlers))
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.shutdown()


@pytest.fixture
def raw_peer() -> Iterator[Callable[[RawScript], int]]:
    """``raw_peer(script)`` listens on a free loopback port and runs ``script(conn)`` in a
    thread on the first connection (a RawConnection); returns the port. Use it to play a
    broken or silent acceptor byte by byte; its reads are bounded by the socket timeout."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def start(script: RawScript) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(WAIT)
        listeners.append(listener)

        def run() -> None:
            try:
                conn, _ = listener.accept()
                with RawConnection(conn, WAIT) as raw:
                    script(raw)
            except OSError:
                pass  # the requestor hung up first: what several scripts expect
            except BaseException as exc:  # reported by the fixture, not lost in a thread
                failures.append(exc)

        thread = threading.Thread(target=run, name="raw-peer", daemon=True)
        thread.start()
        threads.append(thread)
        port: int = listener.getsockname()[1]
        return port

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(WAIT)
    if failures:
        raise failures[0]
