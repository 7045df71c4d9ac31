"""The publisher child process: Celery messages built and sent off the edge's GIL.

In the publisher thread, building and sending an event (about 120 us of CPU
for a C-STORE) comes out of the interpreter the association threads share:
the edge process spent about 250 us more per stored instance with publishing
on than off, and about 110 us with this child doing the work
(bench/bus_run.py row 4). :class:`ProcessSender` hands each batch to the child
(pickled, over a socket pair) and waits for its answer. Only the publisher
thread talks to it, one request at a time, so the publisher's order and
outbox rules do not change.

The child is a fresh interpreter running :func:`child_main` (``python -c``):
not multiprocessing's spawn or fork server, which import the user's main
script again in the child (a script that starts an edge without an
``if __name__ == "__main__"`` guard would start another edge there), and not
fork, which would copy the edge's threads and locks mid-flight. It runs in a
session of its own (terminal signals go to the edge, which stops it after
flushing through it), ends when its socket closes (the edge stopped or died),
and sends its log records back with each answer, to the edge's loggers.

Whenever the child cannot do the work, the calling thread does it, as
:class:`~dicombus.bus.sender.LocalSender` does: while the child starts, after
it died or hung (every exchange has one deadline: a stopped child is killed
at it), when a batch does not pickle here or does not unpickle there. A
failed child is replaced on a later request, :data:`RESPAWN_FIRST` seconds
after at the earliest, doubling up to :data:`RESPAWN_CAP` while replacements
fail too.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dicombus.bus.outbox import OutboxMessage
from dicombus.bus.sender import (
    BrokerError,
    LocalSender,
    SendItem,
    SendResult,
    TaskMessageBuilder,
    describe,
)
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.bus.publisher_child")

# A child imports Celery, kombu and pydicom as it starts (about a second of
# CPU); until it is ready the edge publishes itself. Past this it counts as
# failed (a machine so loaded that a start-up stalls).
CHILD_START_TIMEOUT = 30.0
# One exchange (request out, answer back) may include one Redis round trip that
# times out (connect, then the pipeline) plus the building; past this the child
# counts as hung and is killed.
ANSWER_TIMEOUT_FACTOR = 3
ANSWER_TIMEOUT_SLACK = 5.0
# How long a stopping child gets to exit before it is killed.
CHILD_EXIT_TIMEOUT = 5.0
# After a child failed, the wait before starting another: doubled while the
# replacements fail too (each start costs a Python start-up).
RESPAWN_FIRST = 1.0
RESPAWN_CAP = 60.0
# The child's argv: the socket's descriptor, then where dicombus is (appended
# to sys.path, after the standard library and site-packages: a source checkout
# that is not installed still imports).
_CHILD_COMMAND = (
    "import sys; sys.path.append(sys.argv[2]); "
    "from dicombus.bus.publisher_child import child_main; child_main()"
)
_FRAME = struct.Struct("!I")  # each message: its length, then the pickle

# Requests (edge -> child) and answers (child -> edge) are pickled tuples:
#   ("init", sys.path, broker URL, timeout, origin, level) -> ("ready", pid, [])
#   ("send", items) -> ("ok", SendResult, records)
#   ("publish", messages) -> ("ok", None, records) | ("error", text, records)
#   ("ping",) -> ("ok", bool, records)
# and to any request the child cannot unpickle: ("unpicklable", text, records).
# Records are dicts of a log record's plain attributes.
_RECORD_FIELDS = (
    "name", "levelno", "levelname", "msg", "created", "msecs", "relativeCreated",
    "pathname", "filename", "module", "lineno", "funcName", "process", "processName",
    "thread", "threadName", "exc_text", "stack_info",
)  # fmt: skip


_T = TypeVar("_T")


@dataclass(slots=True)
class _Child:
    """A started child process, the edge's end of its socket pair, and whether it said
    it is ready."""

    process: subprocess.Popen[bytes]
    sock: socket.socket
    spawned_at: float  # time.monotonic()
    ready: bool = False


class _ChildUnavailable(DicombusError, RuntimeError):
    """The child cannot take this request; the caller does the work itself."""


class _Unpicklable(DicombusError, RuntimeError):
    """The child could not unpickle the request (a function only the edge can import)."""


# -- framing ------------------------------------------------------------------------------------


def _write(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_FRAME.pack(len(payload)) + payload)


def _read(sock: socket.socket, deadline: float | None) -> bytes:
    """One message; waits until ``deadline`` (time.monotonic()) at most, None: no limit."""
    (length,) = _FRAME.unpack(_read_exactly(sock, _FRAME.size, deadline))
    return _read_exactly(sock, length, deadline)


def _read_exactly(sock: socket.socket, size: int, deadline: float | None) -> bytes:
    data = bytearray()
    while len(data) < size:
        if deadline is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.0))
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the socket")
        data += chunk
    return bytes(data)


# -- the child ----------------------------------------------------------------------------------


class _RecordCollector(logging.Handler):
    """Keeps the child's log records of one request, to send back with its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        # Plain values only: a record's args or `extra` may hold anything.
        fields = {name: getattr(record, name, None) for name in _RECORD_FIELDS}
        fields["msg"] = record.getMessage()
        self.records.append(fields)

    def take(self) -> list[dict[str, Any]]:
        taken, self.records = self.records, []
        return taken


def child_main() -> None:
    """The publisher child process: answer the edge's requests until its socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the edge decides when this ends
    sock = socket.socket(fileno=int(sys.argv[1]))
    _, path, broker_url, timeout, origin, level = pickle.loads(_read(sock, None))
    # The edge's import path: events may be built by functions of its modules.
    sys.path[:] = [*path, *(entry for entry in sys.path if entry not in path)]
    collector = _RecordCollector()
    logging.getLogger().handlers[:] = [collector]
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("dicombus").setLevel(level)
    sender = LocalSender(broker_url, timeout=timeout, builder=TaskMessageBuilder(origin))
    _write(sock, pickle.dumps(("ready", os.getpid(), [])))
    try:
        while True:
            try:
                request = _read(sock, None)
            except (EOFError, OSError):  # the edge closed its end, or died
                return
            _write(sock, _answer_bytes(_answer(sender, request), collector.take()))
    finally:
        sender.close()


def _answer(sender: LocalSender, request: bytes) -> tuple[str, Any]:
    try:
        kind, *arguments = pickle.loads(request)
    except Exception as exc:
        return ("unpicklable", describe(exc))
    if kind == "send":
        return ("ok", sender.send(arguments[0]))
    if kind == "publish":
        try:
            sender.publish(arguments[0])
        except BrokerError as exc:
            return ("error", str(exc))
        return ("ok", None)
    return ("ok", sender.ping())


def _answer_bytes(answer: tuple[str, Any], records: list[dict[str, Any]]) -> bytes:
    try:
        return pickle.dumps((*answer, records), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        if not records:
            raise  # the answer itself: a bug, and the edge replaces this child
        # A record's value that does not pickle: the answer must get through, or
        # the edge would publish the batch a second time.
        note = {**records[0], "levelno": logging.WARNING, "levelname": "WARNING"}
        note["msg"] = f"{len(records)} log records of the publisher child were lost: {exc}"
        note["exc_text"] = note["stack_info"] = None
        return pickle.dumps((*answer, [note]), protocol=pickle.HIGHEST_PROTOCOL)


# -- the edge's side ----------------------------------------------------------------------------


class ProcessSender:
    """Builds and publishes in a child process; see the module docstring."""

    def __init__(self, broker_url: str, *, timeout: float, builder: TaskMessageBuilder) -> None:
        self._url = broker_url
        self._timeout = timeout
        self._origin = builder.origin
        self._local = LocalSender(broker_url, timeout=timeout, builder=builder)
        self._answer_timeout = ANSWER_TIMEOUT_FACTOR * timeout + ANSWER_TIMEOUT_SLACK
        self._child: _Child | None = None
        self._spawned = 0
        self._respawn_delay = RESPAWN_FIRST
        self._respawn_at = 0.0  # time.monotonic() from which a new child may start

    @property
    def restarts(self) -> int:
        """Children started after the first (each after one died, hung or did not start)."""
        return max(0, self._spawned - 1)

    @property
    def pid(self) -> int | None:
        """The process id of the child doing the work (None while none is ready)."""
        child = self._child  # read once: the publisher thread may replace it
        return child.process.pid if child is not None and child.ready else None

    def start(self) -> None:
        if self._child is None:
            self._try(self._spawn)

    def send(self, items: Sequence[SendItem]) -> SendResult:
        try:
            # A user's build_data may not pickle (a closure, a lock ...): any error.
            request = pickle.dumps(("send", items), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            LOGGER.debug("a batch does not pickle (%s); built in the edge", describe(exc))
            return self._local.send(items)
        try:
            result: SendResult = self._ask(request)
        except (_ChildUnavailable, _Unpicklable) as exc:
            LOGGER.debug("a batch built in the edge: %s", exc)
            return self._local.send(items)
        return result

    def publish(self, messages: Sequence[OutboxMessage]) -> None:
        request = pickle.dumps(("publish", list(messages)), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._ask(request)
        except (_ChildUnavailable, _Unpicklable):
            self._local.publish(messages)

    def ping(self) -> bool:
        try:
            return bool(self._ask(pickle.dumps(("ping",))))
        except (_ChildUnavailable, _Unpicklable):
            return self._local.ping()

    def kill(self) -> None:
        """Kill the child (from any thread): a request in flight fails at once, and the
        caller does its work itself. For a stop that cannot wait for it."""
        child = self._child
        if child is not None and child.process.poll() is None:
            child.process.kill()

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.sock.close()  # the child sees its socket close and returns
            try:
                child.process.wait(CHILD_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                LOGGER.warning("the publisher child %d did not exit; killing it", child.process.pid)
                child.process.kill()
                child.process.wait()
        self._local.close()

    # -- internals ------------------------------------------------------------------------

    def _ask(self, request: bytes) -> Any:
        """Send ``request``, return the answer's value; any failure of the child is
        :class:`_ChildUnavailable` (the child discarded first)."""
        sock = self._try(self._running)
        deadline = time.monotonic() + self._answer_timeout
        try:
            sock.settimeout(self._answer_timeout)
            _write(sock, request)
            kind, value = self._decode(_read(sock, deadline))
        except Exception as exc:
            self._discard(f"the exchange failed: {describe(exc)}")
            raise _ChildUnavailable(describe(exc)) from exc
        self._respawn_delay = RESPAWN_FIRST  # it works: a later failure respawns soon
        if kind == "error":
            raise BrokerError(value)
        if kind == "unpicklable":
            raise _Unpicklable(value)
        return value

    def _try(self, step: Callable[[], _T]) -> _T:
        """``step()``; any unexpected failure discards the child: never the caller's problem."""
        try:
            return step()
        except _ChildUnavailable:
            raise
        except Exception as exc:
            self._discard(describe(exc))
            raise _ChildUnavailable(describe(exc)) from exc

    def _running(self) -> socket.socket:
        """The ready child's socket; starts one if allowed. Raises _ChildUnavailable while
        none is ready (the caller works meanwhile: nothing waits for a start-up)."""
        child = self._child
        if child is not None and child.process.poll() is not None:
            self._discard(f"it exited with code {child.process.returncode}")
            child = None
        if child is None:
            if time.monotonic() < self._respawn_at:
                raise _ChildUnavailable("waiting before starting a new child")
            child = self._spawn()
        if not child.ready:
            if not select.select([child.sock], [], [], 0)[0]:
                if time.monotonic() - child.spawned_at < CHILD_START_TIMEOUT:
                    raise _ChildUnavailable("the child is starting")
                self._discard(f"it did not start within {CHILD_START_TIMEOUT:.0f} s")
                raise _ChildUnavailable("the child did not start")
            deadline = time.monotonic() + self._answer_timeout
            kind, pid = self._decode(_read(child.sock, deadline))
            if kind != "ready":
                self._discard(f"it sent {kind!r} instead of 'ready'")
                raise _ChildUnavailable("the child did not start")
            child.ready = True
            LOGGER.debug("publisher child process %s is ready", pid)
        return child.sock

    def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _CHILD_COMMAND,
                        str(theirs.fileno()),
                        str(Path(__file__).resolve().parents[2]),
                    ],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except BaseException:
            ours.close()
            raise
        child = self._child = _Child(process, ours, spawned_at=time.monotonic())
        self._spawned += 1
        level = logging.getLogger("dicombus").getEffectiveLevel()
        init = ("init", list(sys.path), self._url, self._timeout, self._origin, level)
        # Into the socket's buffer: the child reads it once it has started.
        _write(ours, pickle.dumps(init))
        return child

    def _decode(self, answer: bytes) -> tuple[str, Any]:
        kind, value, records = pickle.loads(answer)
        for fields in records:
            record = logging.makeLogRecord(fields)
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        return str(kind), value

    def _discard(self, reason: str) -> None:
        """Forget a child that failed (killing it if it still runs); a new one may start
        after the respawn delay, and until then the caller does the work."""
        child, self._child = self._child, None
        if child is None:
            return
        child.sock.close()
        process = child.process
        if process.poll() is None:
            process.kill()
        process.wait()  # killed: it goes at once
        LOGGER.warning(
            "publisher child process %d is gone (%s); the edge publishes itself until a new "
            "one starts (in %.0f s at the earliest)",
            process.pid,
            reason,
            self._respawn_delay,
        )
        self._respawn_at = time.monotonic() + self._respawn_delay
        self._respawn_delay = min(self._respawn_delay * 2, RESPAWN_CAP)
