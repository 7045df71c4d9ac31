"""``dicombus move``: have a peer send instances to an AE with C-MOVE (DCMTK's movescu).

With ``--store-port`` the command is its own move destination: it runs a
Storage SCP (every storage SOP class, AE title = our calling AE title) on
that port for the duration of the move, writing what arrives under
``--output`` as ``dicombus storescp`` does. The peer must know that AE title
and address as the Move Destination.
"""

from __future__ import annotations

import argparse

from pydicom.dataset import Dataset

from dicombus import build_context
from dicombus.cli.common import (
    ExitCode,
    ProblemRecorder,
    add_network_options,
    add_output_option,
    error,
    make_ae,
    make_folder,
    port_number,
)
from dicombus.cli.qr_common import (
    add_qr_command,
    final_outcome,
    model_uid,
    open_association,
    prepare_query,
    report_outcome,
)
from dicombus.cli.storescp import add_layout_option, storage_ae, store_handlers
from dicombus.server import AssociationServer

COMMAND = "move"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_qr_command(
        commands,
        COMMAND,
        help="have a peer send instances to an AE with C-MOVE",
        description="Send one C-MOVE request built from the -k keys. With --store-port, "
        "receive the instances here. Exits 0 when the peer ends the move with Success.",
        worklist=False,
    )
    parser.add_argument(
        "-aem",
        "--move-destination",
        dest="aem",
        required=True,
        metavar="TITLE",
        help="the AE title the peer sends the instances to",
    )
    parser.add_argument(
        "--store-port",
        type=port_number,
        metavar="PORT",
        help="receive the instances here: run a Storage SCP on PORT during the move",
    )
    add_output_option(
        parser,
        required=False,
        help="with --store-port: the folder to store the instances in (created if missing)",
    )
    parser.add_argument(
        "--store-bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="with --store-port: the address to listen on (default 127.0.0.1; 0.0.0.0 for a "
        "peer on another machine)",
    )
    add_layout_option(parser)
    add_network_options(parser, default_aet="MOVESCU")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recorder, identifier = prepare_query(args, COMMAND)
    if identifier is None:
        return ExitCode.USAGE
    if args.store_port is not None and args.output is None:
        error(COMMAND, "--store-port needs --output DIR for the instances it receives")
        return ExitCode.USAGE
    server = None
    if args.store_port is not None:
        server = _start_store_scp(args)
        if server is None:
            return ExitCode.LOCAL_ERROR
    try:
        return _move(args, identifier, recorder)
    finally:
        if server is not None:
            server.shutdown()


def _start_store_scp(args: argparse.Namespace) -> AssociationServer | None:
    if not make_folder(COMMAND, args.output, "output"):
        return None
    handlers = store_handlers(args.output, args.layout)
    address = (args.store_bind, args.store_port)
    try:
        server = storage_ae(args).start_server(address, block=False, evt_handlers=handlers)
    except OSError as exc:
        error(COMMAND, f"cannot listen on {address[0]}:{address[1]}: {exc}")
        return None
    return server


def _move(args: argparse.Namespace, identifier: Dataset, recorder: ProblemRecorder) -> int:
    model = model_uid(args, "move")
    assoc = open_association(
        make_ae(args), args, COMMAND, recorder, contexts=[build_context(model)]
    )
    if assoc is None:
        return ExitCode.NO_ASSOCIATION
    try:
        outcome = final_outcome(assoc.send_c_move(identifier, args.aem, model))
    finally:
        assoc.release()
    where = f"; stored in {args.output}" if args.store_port is not None else f" to {args.aem}"
    return report_outcome(COMMAND, outcome, where)
