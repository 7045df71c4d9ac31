"""dicombus talking to dicombus on 127.0.0.1: a server on an OS-chosen port, a
requestor associated with it, and cleanup that never waits unbounded.

Used by the AE, negotiation and Association API tests; the interop suite has
its own fixtures for third-party peers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dicombus import AE
from dicombus.association import Association
from dicombus.server import AssociationServer

# Every wait in these tests is bounded by this; loopback negotiation takes milliseconds.
WAIT_TIMEOUT = 5.0


def quick_ae(title: str, *, supported: Sequence[str] = (), requested: Sequence[str] = ()) -> AE:
    """An AE with short timeouts, so a test that goes wrong fails in seconds, not minutes."""
    ae = AE(title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT_TIMEOUT
    for uid in supported:
        ae.add_supported_context(uid)
    for uid in requested:
        ae.add_requested_context(uid)
    return ae


@contextmanager
def serving(ae: AE, handlers: Sequence[Any] = (), **kwargs: Any) -> Iterator[AssociationServer]:
    """``ae`` listening on a free loopback port until the block ends."""
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=list(handlers), **kwargs)
    assert server is not None
    try:
        yield server
    finally:
        server.shutdown()


def associate(ae: AE, server: AssociationServer, **kwargs: Any) -> Association:
    kwargs.setdefault("ae_title", server.ae_title)
    return ae.associate("127.0.0.1", server.server_address[1], **kwargs)


@contextmanager
def associated(ae: AE, server: AssociationServer, **kwargs: Any) -> Iterator[Association]:
    """An association from ``ae`` to ``server``, released (or aborted) when the block ends."""
    assoc = associate(ae, server, **kwargs)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        assoc.abort()


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> None:
    """Poll ``condition`` (for state another thread sets) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(0.005)
