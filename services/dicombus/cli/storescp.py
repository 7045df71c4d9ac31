"""``dicombus storescp``: a Storage SCP writing Part 10 files (DCMTK's storescp).

The C-STORE handler checks that the data set is the instance the command
names, and answers Success only after
:func:`dicombus.storage_files.store_instance` has made the file durable (or
found the very same bytes stored); the edge node serves storage with the same
code.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset

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
from dicombus.instance_uids import InstanceUIDs, UnreadableDatasetError, read_instance_uids
from dicombus.protocol import status
from dicombus.service_request import ServiceRequest
from dicombus.sop_class import Verification
from dicombus.storage_files import (
    DEFAULT_LAYOUT,
    Duplicate,
    DuplicateInstanceError,
    Duplicates,
    InvalidUIDError,
    Layout,
    StorageRootError,
    prepare_storage_root,
    store_instance,
)

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
        help="an instance whose SOP Instance UID is stored with different bytes: keep-first "
        "refuses it (0x0111, the default), replace overwrites the stored file, keep-both "
        "stores it beside as <SOP Instance UID>-<digest>.dcm; the same bytes again are a "
        "Success that writes nothing",
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


def handle_store(
    event: evt.Event,
    root: Path,
    layout: Layout,
    duplicates: Duplicates = Duplicates.KEEP_FIRST,
) -> int | Dataset:
    """EVT_C_STORE: check the data set against the command, store it durably, then answer.

    Records in the published outcome (``event.request.outcome``): ``stored_path``
    and ``stored_size`` when the received bytes are on disk, and ``duplicate``
    ("identical" or "different") when the SOP Instance UID was stored before.
    """
    peer = event.assoc.requestor.ae_title
    file_meta = event.file_meta
    received = _received_dataset(event)
    # Event attributes such as ``request`` are set per event type, unknown to mypy.
    outcome = event.request.outcome  # type: ignore[attr-defined]
    try:
        uids = read_instance_uids(received, str(file_meta.TransferSyntaxUID))
    except UnreadableDatasetError as exc:
        LOGGER.error("refused an instance from %s: %s", peer, exc)
        # PS3.4 B.2.3: Error, Cannot understand (as DCMTK's storescp answers).
        return _failure(status.CANNOT_UNDERSTAND, "cannot read the data set")
    mismatch = _mismatch(file_meta, uids)
    if mismatch is not None:
        code, comment, detail = mismatch
        LOGGER.error("refused an instance from %s: %s", peer, detail)
        return _failure(code, comment)
    try:
        stored = store_instance(
            root,
            file_meta=file_meta,
            dataset_bytes=received,
            layout=layout,
            uids=uids,
            duplicates=duplicates,
        )
    except InvalidUIDError as exc:
        LOGGER.error("refused an instance from %s: %s", peer, exc)
        return _invalid_uid(exc)
    except DuplicateInstanceError as exc:
        LOGGER.warning("refused an instance from %s, kept the stored one: %s", peer, exc)
        outcome["duplicate"] = Duplicate.DIFFERENT.value
        # PS3.7 C.5: 0x0111 Duplicate SOP Instance, a Failure: the sender must
        # learn that these bytes were not stored (a Success or Warning would
        # let it delete its copy of an instance we do not hold). A peer's retry
        # of what we hold is answered Success (Duplicate.IDENTICAL).
        return _failure(status.DUPLICATE_SOP_INSTANCE, "SOP Instance UID stored with other content")
    except OSError as exc:
        LOGGER.error("cannot store an instance under %s: %s", root, exc)
        return _failure(status.OUT_OF_RESOURCES, f"storage failed: {exc.strerror or exc}")
    LOGGER.info("stored %s", stored.path)
    # Published with the C-STORE outcome: where the event's bulk data lives.
    outcome["stored_path"] = str(stored.path.absolute())
    outcome["stored_size"] = stored.path.stat().st_size
    if stored.duplicate is not None:
        outcome["duplicate"] = stored.duplicate.value
    return status.SUCCESS


def _mismatch(file_meta: FileMetaDataset, uids: InstanceUIDs) -> tuple[int, str, str] | None:
    """(status, ErrorComment, log line) when the data set is not the instance the command names.

    As DCMTK's storescp: no SOP Class or Instance UID in the data set is
    0xC000 (Cannot understand); one that differs from the command's is 0xA900
    (PS3.4 B.2.3: Error, Data Set does not match SOP Class). Stored, such an
    instance would sit under a name that is not its own.
    """
    if uids.sop_class_uid is None or uids.sop_instance_uid is None:
        comment = "no SOP Class or Instance UID in the data set"
        return status.CANNOT_UNDERSTAND, comment, comment
    for what, in_command, in_dataset in (
        ("SOP Class UID", file_meta.MediaStorageSOPClassUID, uids.sop_class_uid),
        ("SOP Instance UID", file_meta.MediaStorageSOPInstanceUID, uids.sop_instance_uid),
    ):
        if in_dataset != str(in_command):
            comment = f"data set {what} differs from command"
            detail = f"{comment}: {in_dataset!r} in the data set, '{in_command}' in the command"
            return status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, comment, detail
    return None


def _invalid_uid(exc: InvalidUIDError) -> Dataset:
    if "SOP Instance" in exc.what:
        # PS3.7 C.5: the SOP Instance UID violates the UID construction rules.
        return _failure(status.INVALID_OBJECT_INSTANCE, "invalid UID")
    # A Study or Series Instance UID (Type 1 in every composite IOD) that is
    # missing or malformed: the data set does not conform (PS3.4 B.2.3).
    return _failure(status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, f"invalid {exc.what}")


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
