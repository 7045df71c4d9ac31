"""``dicombus storescp``: a Storage SCP writing Part 10 files (DCMTK's storescp).

The C-STORE handler answers Success only after
:func:`dicombus.storage_files.write_instance` has made the file durable;
``dicombus up`` serves storage with the same code.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset

from dicombus import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from dicombus.cli.common import (
    ExitCode,
    StopSignals,
    add_listen_options,
    add_network_options,
    add_output_option,
    configure_logging,
    error,
    make_ae,
    make_folder,
)
from dicombus.protocol import status
from dicombus.service_request import ServiceRequest
from dicombus.sop_class import Verification
from dicombus.storage_files import InvalidUIDError, Layout, write_instance

COMMAND = "storescp"
LOGGER = logging.getLogger("dicombus.cli")

# PS3.7 C.4: ErrorComment is an LO, at most 64 characters.
_MAX_ERROR_COMMENT = 64

Announce = Callable[[AE, tuple[str, int]], None]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="receive C-STORE requests and write Part 10 files",
        description="A Storage SCP (every storage SOP class, every transfer syntax pydicom "
        "knows, and Verification) writing each instance it receives as a DICOM Part 10 file. "
        "Runs until SIGINT (Ctrl-C) or SIGTERM.",
    )
    add_listen_options(parser)
    add_output_option(
        parser, required=True, help="the folder to store instances in (created if missing)"
    )
    add_network_options(parser, default_aet="STORESCP")
    add_layout_option(parser)
    parser.add_argument(
        "-pm",
        "--accept-all-storage",
        "--promiscuous",
        dest="accept_all_storage",
        action="store_true",
        help="also accept SOP classes we do not know (private or newer storage classes) "
        "and store C-STORE requests made on them",
    )
    parser.set_defaults(run=run)


def add_layout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layout",
        type=Layout,
        choices=list(Layout),
        default=Layout.SOP_CLASS,
        help="sop-class: DIR/<SOP Class UID>/<SOP Instance UID>.dcm (default); "
        "flat: DIR/<SOP Instance UID>.dcm",
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args, quiet_by_default=False)
    if args.accept_all_storage:
        _config.UNRESTRICTED_STORAGE_SERVICE = True

    def announce(ae: AE, address: tuple[str, int]) -> None:
        print(
            f"dicombus {COMMAND}: {ae.ae_title} listening on {address[0]}:{address[1]}, "
            f"storing to {args.output.resolve()}",
            flush=True,
        )

    return serve_storage(
        args, storage_root=args.output, layout=args.layout, command=COMMAND, announce=announce
    )


def store_handlers(root: Path, layout: Layout) -> list[evt.HandlerBinding]:
    """The EVT_C_STORE binding that writes each received instance under ``root``."""
    return [(evt.EVT_C_STORE, handle_store, [root, layout])]


def storage_ae(args: argparse.Namespace) -> AE:
    """An AE that accepts every storage SOP class in every known syntax, and C-ECHO."""
    ae = make_ae(args)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    return ae


def serve_storage(
    args: argparse.Namespace,
    *,
    storage_root: Path,
    layout: Layout,
    command: str,
    announce: Announce,
) -> int:
    """Serve storage until SIGINT or SIGTERM; then stop the server and its associations."""
    if not make_folder(command, storage_root, "storage"):
        return ExitCode.LOCAL_ERROR
    ae = storage_ae(args)
    handlers = store_handlers(storage_root, layout)
    # Signals are caught before the port opens: one sent as soon as the port
    # answers must stop the server, not kill it halfway.
    with StopSignals() as signals:
        try:
            server = ae.start_server((args.bind, args.port), block=False, evt_handlers=handlers)
        except OSError as exc:
            error(command, f"cannot listen on {args.bind}:{args.port}: {exc}")
            return ExitCode.LOCAL_ERROR
        announce(ae, server.server_address)
        received = signals.wait()
        server.shutdown()
    print(f"dicombus {command}: {received} received, stopped", flush=True)
    return ExitCode.OK


def handle_store(event: evt.Event, root: Path, layout: Layout) -> int | Dataset:
    """EVT_C_STORE: write the instance durably, then answer; 0xA700 when the disk refuses."""
    try:
        path = write_instance(
            root, file_meta=event.file_meta, dataset_bytes=_received_dataset(event), layout=layout
        )
    except InvalidUIDError as exc:
        LOGGER.error("refused an instance from %s: %s", event.assoc.requestor.ae_title, exc)
        # PS3.7 C.5.7: the SOP Instance UID violates the UID construction rules.
        return _failure(status.INVALID_OBJECT_INSTANCE, "invalid UID")
    except OSError as exc:
        LOGGER.error("cannot store an instance under %s: %s", root, exc)
        return _failure(status.OUT_OF_RESOURCES, f"storage failed: {exc.strerror or exc}")
    LOGGER.info("stored %s", path)
    # Published with the C-STORE outcome: where the event's bulk data lives.
    outcome = event.request.outcome  # type: ignore[attr-defined]
    outcome["stored_path"] = str(path.absolute())
    outcome["stored_size"] = path.stat().st_size
    return status.SUCCESS


def _received_dataset(event: evt.Event) -> bytes | Path:
    """The dataset as received: from the spool file when the association spooled it.

    The association spools a C-STORE dataset to disk once it outgrows
    STORE_SPOOL_THRESHOLD (every one with STORE_RECV_CHUNKED_DATASET); reading
    such a dataset back into memory is what spooling avoids, and asking for
    the path of one still in memory would write it out for nothing.
    """
    # Event attributes such as ``request`` are set per event type, unknown to mypy.
    request: ServiceRequest = event.request  # type: ignore[attr-defined]
    spooled = (
        _config.STORE_RECV_CHUNKED_DATASET or request.dataset_size > _config.STORE_SPOOL_THRESHOLD
    )
    return event.dataset_path if spooled else event.encoded_dataset(include_meta=False)


def _failure(code: int, comment: str) -> Dataset:
    reply = Dataset()
    reply.Status = code
    reply.ErrorComment = comment[:_MAX_ERROR_COMMENT]
    return reply
