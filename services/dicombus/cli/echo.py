"""``dicombus echo``: verify a peer with C-ECHO (DCMTK's echoscu)."""

from __future__ import annotations

import argparse

from dicombus.cli.common import (
    ExitCode,
    add_network_options,
    add_peer_options,
    configure_logging,
    describe_failure,
    error,
    make_ae,
    positive_int,
)
from dicombus.protocol import status
from dicombus.sop_class import Verification

COMMAND = "echo"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="send C-ECHO requests to a peer",
        description="Associate with a peer, send C-ECHO requests and release. "
        "Exits 0 when every C-ECHO answered Success.",
    )
    add_peer_options(parser)
    add_network_options(parser, default_aet="ECHOSCU")
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        metavar="N",
        help="send N C-ECHO requests on the association (default 1)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recorder = configure_logging(args, quiet_by_default=True)
    ae = make_ae(args)
    ae.add_requested_context(Verification)
    where = f"{args.aec} at {args.host}:{args.port}"
    assoc = ae.associate(args.host, args.port, ae_title=args.aec)
    if not assoc.is_established:
        error(COMMAND, describe_failure(assoc, where, recorder))
        return ExitCode.NO_ASSOCIATION
    try:
        for number in range(1, args.repeat + 1):
            reply = assoc.send_c_echo(msg_id=number)
            if "Status" not in reply:
                error(COMMAND, f"no C-ECHO response: {describe_failure(assoc, where, recorder)}")
                return ExitCode.FAILED
            code = int(reply.Status)
            if code != status.SUCCESS:
                error(
                    COMMAND,
                    f"C-ECHO answered 0x{code:04X} ({status.status_category(code)}) by {where}",
                )
                return ExitCode.FAILED
    finally:
        assoc.release()
    return ExitCode.OK
