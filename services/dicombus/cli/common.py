"""What every ``dicombus`` command shares: options, logging, exit codes, failure messages."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import Any

from dicombus import AE, Association, debug_logger
from dicombus.data_folder import DataFolder, DataFolderError
from dicombus.protocol.limits import DEFAULT_MAXIMUM_PDU_SIZE, MINIMUM_PDU_LENGTH


class ExitCode(IntEnum):
    """The process exit status of every command (documented in docs/cli.md)."""

    OK = 0
    # A DIMSE operation did not succeed: a failure status, no response, a file not stored.
    FAILED = 1
    # argparse's own code for a bad command line.
    USAGE = 2
    # No association: connection refused or timed out, association rejected or aborted.
    NO_ASSOCIATION = 3
    # The local system refused: port in use, output folder not writable.
    LOCAL_ERROR = 4


def add_verbosity_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", action="store_true", help="log associations and DIMSE messages"
    )
    group.add_argument("-d", "--debug", action="store_true", help="log everything, PDUs included")


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data``: the folder of the node to join (its node.json names the broker)."""
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="the data folder of the node to join (default ./dicombus-data); "
        "DICOMBUS_BROKER_URL, if set, names the broker instead",
    )


def add_http_options(
    parser: argparse.ArgumentParser, *, default_port: int, exposure: str = ""
) -> None:
    """``--port`` and ``--bind`` of a command that serves HTTP; loopback unless told.
    ``exposure`` is added to ``--bind``'s help: what an exposed server would give away."""
    parser.add_argument(
        "--port", type=port_number, default=default_port, help=f"default {default_port}"
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address to listen on (default 127.0.0.1: this host only)"
        + (f". {exposure}" if exposure else ""),
    )


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port`` and ``--metrics-bind``: this process also serves the node's
    Prometheus metrics (the same as ``dicombus metrics``), so each can be scraped."""
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="also serve the node's Prometheus metrics at http://BIND:PORT/metrics",
    )
    parser.add_argument(
        "--metrics-bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="the address --metrics-port listens on (default 127.0.0.1: this host only)",
    )


def add_include_option(parser: argparse.ArgumentParser, *, where: str) -> None:
    """``--include MODULE``: a module of ``@on_event`` tasks to import ``where``."""
    parser.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        metavar="MODULE",
        help=f"import MODULE (your @on_event tasks) {where}; repeatable",
    )


def owning_data_folder(command: str, path: Path, serve: Callable[[DataFolder], int]) -> int:
    """Run ``serve`` as the owner of the data folder ``path`` (locked, private), or
    report why the folder cannot be had."""
    folder = DataFolder(path)
    try:
        folder.acquire(command)
    except (DataFolderError, OSError) as exc:
        error(command, f"cannot start: {exc}")
        return ExitCode.LOCAL_ERROR
    try:
        return serve(folder)
    finally:
        folder.release()


def add_network_options(parser: argparse.ArgumentParser, *, default_aet: str) -> None:
    """Our AE title, timeouts, verbosity and largest PDU: options of both SCUs and SCPs
    (DCMTK's names)."""
    parser.add_argument(
        "-aet",
        "--calling-aet",
        dest="aet",
        default=default_aet,
        metavar="TITLE",
        help=f"our AE title (default {default_aet})",
    )
    timeouts = (
        ("-to", "--connection-timeout", None, "TCP connection (default: the system's)"),
        ("-ta", "--acse-timeout", 30.0, "association messages (default 30)"),
        ("-td", "--dimse-timeout", 30.0, "DIMSE responses (default 30)"),
        ("-tn", "--network-timeout", 60.0, "a silent network (default 60)"),
    )
    for short, long, default, what in timeouts:
        parser.add_argument(
            short, long, type=_seconds, default=default, metavar="S", help=f"seconds: {what}"
        )
    add_verbosity_options(parser)
    _add_max_pdu_option(parser)


def _add_max_pdu_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-pdu",
        "--max-pdu",
        type=_max_pdu,
        default=DEFAULT_MAXIMUM_PDU_SIZE,
        metavar="N",
        help="largest P-DATA PDU we receive, in bytes; 0 means no limit "
        f"(default {DEFAULT_MAXIMUM_PDU_SIZE})",
    )


def add_peer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", help="the peer's host name or IP address")
    parser.add_argument("port", type=port_number, help="the peer's TCP port")
    parser.add_argument(
        "-aec",
        "--called-aet",
        dest="aec",
        default="ANY-SCP",
        metavar="TITLE",
        help="the peer's AE title (default ANY-SCP)",
    )


def add_listen_options(parser: argparse.ArgumentParser) -> None:
    """Where an SCP listens: the port, and ``--bind`` for the address."""
    parser.add_argument("port", type=port_number, help="TCP port to listen on (0: any free one)")
    parser.add_argument(
        "--bind", default="127.0.0.1", metavar="ADDRESS", help="address to listen on"
    )


def add_output_option(parser: argparse.ArgumentParser, *, required: bool, help: str) -> None:
    """``-od``: the folder received instances are written to (storescu's, getscu's name)."""
    parser.add_argument(
        "-od",
        "--output",
        "--output-directory",
        dest="output",
        type=Path,
        required=required,
        metavar="DIR",
        help=help,
    )


def make_folder(command: str, folder: Path, what: str) -> bool:
    """Create ``folder`` (and its parents); False after printing why that failed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error(command, f"cannot create the {what} folder {folder}: {exc}")
        return False
    return True


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative number of seconds")
    return value


def port_number(text: str) -> int:
    """A TCP port; 0 (for a server) asks the system for a free one."""
    value = _integer(text, "a port")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return value


def _max_pdu(text: str) -> int:
    value = _integer(text, "a PDU size")
    if value != 0 and value < MINIMUM_PDU_LENGTH:
        raise argparse.ArgumentTypeError(f"the PDU size is 0 or at least {MINIMUM_PDU_LENGTH}")
    return value


def positive_int(text: str) -> int:
    value = _integer(text, "a count")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive count")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def make_ae(args: argparse.Namespace) -> AE:
    """An AE with the title, timeouts and PDU size from the command line."""
    ae = AE(args.aet)
    ae.connection_timeout = args.connection_timeout
    ae.acse_timeout = args.acse_timeout
    ae.dimse_timeout = args.dimse_timeout
    ae.network_timeout = args.network_timeout
    ae.maximum_pdu_size = args.max_pdu
    return ae


class ProblemRecorder(logging.Handler):
    """Keeps what the library logged at WARNING and above, to explain a failure in one line.

    The library reports why a connection or an association failed through its
    log (the exception never reaches the caller of ``associate``); this is how
    the command learns it without printing the whole log. The first error
    names the cause; what follows it is consequence.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._guard = threading.Lock()
        self._error: str | None = None
        self._warning: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            if record.levelno >= logging.ERROR:
                self._error = self._error or record.getMessage()
            else:
                self._warning = self._warning or record.getMessage()

    def reset(self) -> None:
        with self._guard:
            self._error = self._warning = None

    def first(self) -> str | None:
        """The first error since the last reset, else the first warning."""
        with self._guard:
            return self._error or self._warning


def configure_logging(args: argparse.Namespace, *, quiet_by_default: bool) -> ProblemRecorder:
    """Log the library to stderr as -v / -d ask; return the recorder of its problems.

    ``quiet_by_default``: the SCU commands print their own one-line errors, so
    without -v / -d the library's log lines are kept, not printed.
    """
    debug_logger()  # the library's stderr handler and format
    logger = logging.getLogger("dicombus")
    if args.debug:
        logger.setLevel(logging.DEBUG)
    elif args.verbose:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.WARNING)
        if quiet_by_default:
            for handler in logger.handlers:
                handler.setLevel(logging.CRITICAL + 1)
    recorder = ProblemRecorder()
    logger.addHandler(recorder)
    return recorder


def describe_failure(assoc: Association, where: str, recorder: ProblemRecorder) -> str:
    """Why ``assoc`` is not (or no longer) established, in one line."""
    if assoc.is_rejected and assoc.rejection is not None:
        return f"association rejected by {where} ({assoc.rejection.explanation})"
    cause = recorder.first()
    if cause is not None:
        return cause
    if assoc.is_aborted:
        return f"association with {where} aborted"
    return f"no association with {where}"


def error(command: str, message: str) -> None:
    print(f"dicombus {command}: error: {message}", file=sys.stderr, flush=True)


class StopSignals:
    """SIGINT and SIGTERM, caught from ``__enter__`` on, so a server stops in order.

    Enter before the server starts: a signal that arrives while it starts is
    then kept, not lost or turned into an exception at a random point. The
    handler only sets an Event; :meth:`wait` returns and the caller shuts the
    server down, its associations included.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._received: list[str] = []
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._received.append(signal.Signals(signum).name)
        self._stop.set()

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until a signal arrives (or ``timeout`` seconds pass: None); return its
        name (SIGINT or SIGTERM)."""
        if not self._stop.wait(timeout):
            return None
        return self._received[0]
