"""``dicombus storescp``: a Storage SCP writing Part 10 files (DCMTK's storescp).

Instances are stored by :func:`dicombus.storage_handler.handle_store`, the
C-STORE handler the edge node serves storage with too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

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
)
from dicombus.sop_class import Verification
from dicombus.storage_files import (
    DEFAULT_LAYOUT,
    Duplicates,
    Layout,
    StorageRootError,
    prepare_storage_root,
)
from dicombus.storage_handler import handle_store

COMMAND = "storescp"

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
    add_duplicates_option(parser)
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
        default=DEFAULT_LAYOUT,
        help="study: DIR/<Study Instance UID>/<Series Instance UID>/<SOP Instance UID>.dcm "
        "(default); sop-class: DIR/<SOP Class UID>/<SOP Instance UID>.dcm; "
        "flat: DIR/<SOP Instance UID>.dcm",
    )


def add_duplicates_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duplicates",
        type=Duplicates,
        choices=list(Duplicates),
        default=Duplicates.KEEP_FIRST,
        help="an instance whose SOP Instance UID is stored with different content: keep-first "
        "refuses it (0x0111, the default), replace overwrites the stored file, keep-both "
        "stores it beside as <SOP Instance UID>-<digest>.dcm; the same instance again (even "
        "in another uncompressed transfer syntax) is a Success that writes nothing",
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
        args,
        storage_root=args.output,
        layout=args.layout,
        duplicates=args.duplicates,
        command=COMMAND,
        announce=announce,
    )


def store_handlers(
    root: Path, layout: Layout, duplicates: Duplicates = Duplicates.KEEP_FIRST
) -> list[evt.HandlerBinding]:
    """The EVT_C_STORE binding that writes each received instance under ``root``."""
    return [(evt.EVT_C_STORE, handle_store, [root, layout, duplicates])]


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
    duplicates: Duplicates,
    command: str,
    announce: Announce,
) -> int:
    """Serve storage until SIGINT or SIGTERM; then stop the server and its associations."""
    try:
        incoming = prepare_storage_root(storage_root, "--output")
    except StorageRootError as exc:
        error(command, str(exc))
        return ExitCode.LOCAL_ERROR
    ae = storage_ae(args)
    # Spooled datasets in the root's .incoming folder: the start-up sweep finds
    # what an aborted or killed run left there.
    ae.spool_directory = incoming
    handlers = store_handlers(storage_root, layout, duplicates)
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
