"""``dicombus get``: retrieve instances with C-GET (DCMTK's getscu).

The instances come back as C-STORE requests on the same association, in the
SCP role this command proposes for the common storage SOP classes; each is
written durably under ``--output`` before it is acknowledged, as
``dicombus storescp`` does.
"""

from __future__ import annotations

import argparse

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
)
from dicombus.cli.common import (
    ExitCode,
    add_network_options,
    add_output_option,
    make_ae,
    make_folder,
)
from dicombus.cli.qr_common import (
    add_qr_command,
    final_outcome,
    model_uid,
    open_association,
    prepare_query,
    report_outcome,
)
from dicombus.cli.storescp import add_layout_option, store_handlers
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
    parser = add_qr_command(
        commands,
        COMMAND,
        help="retrieve instances with C-GET",
        description="Send one C-GET request built from the -k keys and store the instances "
        "the peer sends back. Exits 0 when the peer ends the retrieve with Success.",
        worklist=False,
    )
    add_output_option(
        parser,
        required=True,
        help="the folder to store the retrieved instances in (created if missing)",
    )
    add_layout_option(parser)
    add_network_options(parser, default_aet="GETSCU")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recorder, identifier = prepare_query(args, COMMAND)
    if identifier is None:
        return ExitCode.USAGE
    if not make_folder(COMMAND, args.output, "output"):
        return ExitCode.LOCAL_ERROR
    model = model_uid(args, "get")
    # PS3.8 allows 128 contexts: the Get model's and as many storage classes as fit.
    storage = [c.abstract_syntax for c in StoragePresentationContexts]
    storage = storage[: MAX_PRESENTATION_CONTEXTS - 1]
    contexts = [build_context(model)]
    contexts += [build_context(uid, TRANSFER_SYNTAXES) for uid in storage]
    # PS3.4 C.4.3.1: we take the SCP role of each storage class (and not its SCU role).
    roles = [build_role(uid, scp_role=True) for uid in storage]
    assoc = open_association(
        make_ae(args),
        args,
        COMMAND,
        recorder,
        contexts=contexts,
        ext_neg=roles,
        evt_handlers=store_handlers(args.output, args.layout),
    )
    if assoc is None:
        return ExitCode.NO_ASSOCIATION
    try:
        outcome = final_outcome(assoc.send_c_get(identifier, model))
    finally:
        assoc.release()
    return report_outcome(COMMAND, outcome, f"; stored in {args.output}")
