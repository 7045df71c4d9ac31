"""``dicombus get``: retrieve instances with C-GET (DCMTK's getscu).

The instances come back as C-STORE requests on the same association, in the
SCP role this command proposes for the common storage SOP classes; each is
written durably under ``--output`` before it is acknowledged, as
``dicombus storescp`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from dicombus import (
    DEFAULT_TRANSFER_SYNTAXES,
    StoragePresentationContexts,
    build_context,
    build_role,
    evt,
)
from dicombus.cli.common import (
    ExitCode,
    add_max_pdu_option,
    add_network_options,
    add_peer_options,
    configure_logging,
    error,
    make_ae,
)
from dicombus.cli.qr_common import (
    add_query_options,
    final_outcome,
    model_uid,
    open_association,
    prepare_identifier,
    report_outcome,
)
from dicombus.cli.storescp import add_layout_option, handle_store
from dicombus.protocol.limits import MAX_PRESENTATION_CONTEXTS

COMMAND = "get"

# What each storage context offers. Not every syntax dicombus knows: DCMTK
# refuses a whole association whose context lists more than 50. The peer
# picks one per context, usually the first it has: uncompressed ones come first.
TRANSFER_SYNTAXES = (
    *DEFAULT_TRANSFER_SYNTAXES,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="retrieve instances with C-GET",
        description="Send one C-GET request built from the -k keys and store the instances "
        "the peer sends back. Exits 0 when the peer ends the retrieve with Success.",
    )
    add_peer_options(parser)
    add_query_options(parser, worklist=False)
    parser.add_argument(
        "-od",
        "--output",
        "--output-directory",
        dest="output",
        type=Path,
        required=True,
        metavar="DIR",
        help="the folder to store the retrieved instances in (created if missing)",
    )
    add_layout_option(parser)
    add_network_options(parser, default_aet="GETSCU")
    add_max_pdu_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recorder = configure_logging(args, quiet_by_default=True)
    identifier = prepare_identifier(args, COMMAND)
    if identifier is None:
        return ExitCode.USAGE
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error(COMMAND, f"cannot create the output folder {args.output}: {exc}")
        return ExitCode.LOCAL_ERROR
    model = model_uid(args, "get")
    # PS3.8 allows 128 contexts: the Get model's and as many storage classes as fit.
    storage = [c.abstract_syntax for c in StoragePresentationContexts]
    storage = storage[: MAX_PRESENTATION_CONTEXTS - 1]
    contexts = [build_context(model)]
    contexts += [build_context(uid, TRANSFER_SYNTAXES) for uid in storage]
    # PS3.4 C.4.3.1: we take the SCP role of each storage class (and not its SCU role).
    roles = [build_role(uid, scp_role=True) for uid in storage]
    handlers: list[evt.HandlerBinding] = [
        (evt.EVT_C_STORE, handle_store, [args.output, args.layout])
    ]
    assoc = open_association(
        make_ae(args),
        args,
        COMMAND,
        recorder,
        contexts=contexts,
        ext_neg=roles,
        evt_handlers=handlers,
    )
    if assoc is None:
        return ExitCode.NO_ASSOCIATION
    try:
        outcome = final_outcome(assoc.send_c_get(identifier, model))
    finally:
        assoc.release()
    return report_outcome(COMMAND, outcome, f"; stored in {args.output}")
