"""The DIMSE messages of one association, in threads: sent whole, answered, served.

The protocol core (:class:`~dicombus.protocol.connection.DimseConnection`)
reassembles and routes messages; this is what needs threads and clocks:

- sending: one message at a time on the wire (PS3.7 6.3.1, PS3.8 E.2 forbid
  interleaving the P-DATA-TFs of two messages; the reader thread, answering a
  request, and user threads, sending theirs, share one connection);
- requests we send: a waiter per message ID that the reader thread hands
  each response to, bounded by the DIMSE timeout;
- requests the peer sends: served one at a time, in order of arrival, in the
  reader thread, by the owner's ``serve``.

The owner (the :class:`~dicombus.association.Association`) supplies what is
not the runtime's business through :class:`ExchangeOwner`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Protocol

from dicombus.protocol.commands import CommandSet
from dicombus.protocol.connection import DimseConnection, DimseEvent, ResponseReceived
from dicombus.protocol.errors import RemoteProtocolError
from dicombus.protocol.fragments import DimseMessage
from dicombus.protocol.status import is_pending
from dicombus.runtime.link import UpperLayerLink
from dicombus.runtime.transport import Buffer

LOGGER = logging.getLogger("dicombus.assoc")

# A handler's check for C-CANCEL handles at most this many PDUs that are
# already waiting, so a peer that streams data cannot stall the handler in it.
MAX_PDUS_PER_POLL: Final = 64

_NO_RESPONSE: DimseMessage | None = None


class ExchangeOwner(Protocol):
    """What the exchange needs from its association."""

    @property
    def dimse_timeout(self) -> float | None: ...
    @property
    def is_aborted(self) -> bool: ...
    @property
    def peer_maximum_length(self) -> int: ...
    def abort(self) -> None: ...
    def message_received(self, message: DimseMessage) -> None: ...
    def message_sent(
        self, context_id: int, command: CommandSet, dataset: Buffer | None
    ) -> None: ...
    def serve(self, message: DimseMessage) -> None: ...


class MessageExchange:
    """Sending, awaiting and serving the DIMSE messages of one association."""

    def __init__(
        self,
        owner: ExchangeOwner,
        connection: DimseConnection,
        *,
        reader_thread: threading.Thread,
    ) -> None:
        self._owner = owner
        self._connection = connection
        self._reader_thread = reader_thread
        self.link: UpperLayerLink | None = None
        self._waiters: dict[int, queue.SimpleQueue[DimseMessage | None]] = {}
        self._waiters_lock = threading.Lock()
        # Held for a whole message, so no other message's PDUs come between.
        self.send_lock = threading.Lock()
        # Whether the reader thread is serving a request (the others wait in the connection).
        self._serving = False

    # -- sending ---------------------------------------------------------------------

    def send_message(self, context_id: int, command: CommandSet, dataset: Buffer | None) -> None:
        """Fragment (within the peer's Maximum Length) and send one message whole;
        ConnectionError when the association cannot carry it (any more)."""
        with self.send_lock:
            link = self.link
            # Aborted by the owner (a server shutting down, say) and not yet hung
            # up: nothing more goes out.
            if link is None or link.is_closed or self._owner.is_aborted:
                raise ConnectionError("the association is not open")
            for segments in self._connection.fragment(
                context_id, command, dataset, max_pdu_length=self._owner.peer_maximum_length
            ):
                link.send_pdata(segments)
        self._owner.message_sent(context_id, command, dataset)

    def start_request(
        self,
        context_id: int,
        command: CommandSet,
        dataset: Buffer | None,
        *,
        more_follow: Callable[[CommandSet], bool] | None = None,
    ) -> Iterator[DimseMessage | None]:
        """Send a request now; return an iterator over its responses.

        Sending before the first response is asked for lets the caller send a
        C-CANCEL for it straight away. ``more_follow(command)`` tells whether
        another response follows a received one (default: a Pending status).
        The iterator yields None, and stops, when no response came within the
        DIMSE timeout or the association ended; the association is then aborted.
        """
        message_id = command.MessageID or 0
        waiter: queue.SimpleQueue[DimseMessage | None] = queue.SimpleQueue()
        with self._waiters_lock:
            self._waiters[message_id] = waiter
        try:
            self.send_message(context_id, command, dataset)
        except ConnectionError as exc:
            # The association ended (say, the peer aborted) before the whole
            # request was sent: no response will come, as after a timeout.
            self._forget_waiter(message_id)
            LOGGER.error("the %s was not sent whole: %s", command.command_field.name, exc)
            self._owner.abort()
            return iter((_NO_RESPONSE,))
        except BaseException:
            self._forget_waiter(message_id)
            raise
        return self._responses(message_id, waiter, more_follow or _is_pending)

    def _responses(
        self,
        message_id: int,
        waiter: queue.SimpleQueue[DimseMessage | None],
        more_follow: Callable[[CommandSet], bool],
    ) -> Iterator[DimseMessage | None]:
        try:
            while True:
                response = self._next_response(message_id, waiter)
                yield response
                if response is None or not more_follow(response.command):
                    return
        finally:
            self._forget_waiter(message_id)

    def _forget_waiter(self, message_id: int) -> None:
        with self._waiters_lock:
            self._waiters.pop(message_id, None)

    def wake_waiters(self) -> None:
        """The association ended: every request still waiting gets no response."""
        with self._waiters_lock:
            waiters = list(self._waiters.values())
        for waiter in waiters:
            waiter.put(_NO_RESPONSE)

    def _next_response(
        self, message_id: int, waiter: queue.SimpleQueue[DimseMessage | None]
    ) -> DimseMessage | None:
        """The next response to ``message_id``; None (after aborting) if none came in time.

        Another thread waits for the reader thread to hand the response over.
        The reader thread itself -- a handler that sends a request on its own
        association, as a C-GET SCP sends its C-STORE sub-operations -- has
        nobody to read for it, so it reads PDUs here, one at a time, until the
        response is in: responses go to their waiters, a C-CANCEL is noted,
        and requests are queued behind the one being served. Each read waits
        at most until the DIMSE timeout; no polling, no sleep.
        """
        timeout = self._owner.dimse_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        if threading.current_thread() is not self._reader_thread:
            while True:
                try:
                    return waiter.get(timeout=timeout)
                except queue.Empty:
                    # The timeout is for the peer's silence. While the reader
                    # thread runs one of our handlers (a C-STORE sub-operation
                    # of our C-GET), the peer is waiting for us, not we for it.
                    if not self._serving:
                        break
        else:
            link = self.link
            while link is not None:
                try:
                    return waiter.get_nowait()
                except queue.Empty:
                    pass
                if link.is_closed:
                    return _NO_RESPONSE
                if not link.read_one(wait_until=deadline):
                    break
        LOGGER.error("no response to message %d within the DIMSE timeout; aborting", message_id)
        self._owner.abort()
        return _NO_RESPONSE

    # -- receiving -------------------------------------------------------------------

    def on_messages(self, events: Sequence[DimseEvent]) -> None:
        """Messages the connection routed: responses to their waiters; then serve the
        requests queued (a C-CANCEL is already noted by the connection)."""
        for event in events:
            message = event.message
            self._owner.message_received(message)
            if isinstance(event, ResponseReceived):
                self._hand_over(message)
        self._serve_queued()

    def _hand_over(self, response: DimseMessage) -> None:
        command = response.command
        with self._waiters_lock:
            waiter = self._waiters.get(command.MessageIDBeingRespondedTo or 0)
        if waiter is None:
            LOGGER.warning(
                "ignoring a %s for message %s, which we did not send or no longer wait for",
                command.command_field.name,
                command.MessageIDBeingRespondedTo,
            )
            return
        waiter.put(response)

    def _serve_queued(self) -> None:
        """Serve requests one at a time, in order of arrival, in the reader thread.

        Requests are queued as they are read, and served once the PDU that
        completed them is all taken in (so a C-CANCEL in the same PDU is
        already known). One that arrives while a handler runs (read by
        _next_response or poll_peer) waits for the current one to be answered.
        """
        if self._serving:
            return
        self._serving = True
        try:
            while self.link is not None and not self.link.is_closed:
                message = self._connection.next_request()
                if message is None:
                    break
                self._serve(message)
        finally:
            self._serving = False

    def _serve(self, message: DimseMessage) -> None:
        try:
            self._owner.serve(message)
        except RemoteProtocolError as exc:
            LOGGER.error("aborting: %s", exc)
            if self.link is not None:
                self.link.abort_invalid(exc)
        except ConnectionError as exc:
            # Aborted (say, by a server shutdown) while the handler ran.
            LOGGER.warning("the %s got no response: %s", message.command.command_field.name, exc)
        finally:
            self._connection.request_answered(message.command.MessageID or 0)

    def is_cancelled(self, message_id: int) -> bool:
        """Whether the peer sent a C-CANCEL for the request ``message_id`` being served.

        Called by a handler in the reader thread, it first handles the PDUs
        that have already arrived (see poll_peer).
        """
        self.poll_peer()
        return self._connection.is_cancelled(message_id)

    def poll_peer(self) -> None:
        """In the reader thread: handle what the peer has already sent, without waiting.

        A handler in the middle of a long operation keeps the reader thread
        from reading; between two of its steps, this takes in the PDUs waiting
        on the socket (a C-CANCEL, an A-ABORT, an A-RELEASE-RQ) so the service
        can act on them. From any other thread it does nothing: the reader
        thread is reading.
        """
        link = self.link
        if link is None or threading.current_thread() is not self._reader_thread:
            return
        for _ in range(MAX_PDUS_PER_POLL):
            if not link.input_ready():
                return
            link.read_one()


def _is_pending(command: CommandSet) -> bool:
    return is_pending(command.Status)
