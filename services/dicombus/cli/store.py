"""``dicombus store``: send DICOM files and folders with C-STORE (DCMTK's storescu).

Planning reads only each file's File Meta Information; the association then
proposes, for every SOP class found, a context for each transfer syntax its
files are in (so each file goes out byte for byte as it lies on disk) plus
the uncompressed defaults for files a peer will not take as they are. PS3.8
allows 128 contexts: past that, classes get one merged context each, and only
files of more than 128 SOP classes need a second association."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombus import AE, Association, build_context
from dicombus.cli.common import (
    ExitCode,
    ProblemRecorder,
    add_network_options,
    add_peer_options,
    configure_logging,
    describe_failure,
    error,
    make_ae,
)
from dicombus.cli.progress import Progress, megabytes, rate
from dicombus.dataset_codec import DatasetCodecError, Part10Header, read_part10_header
from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.limits import MAX_PRESENTATION_CONTEXTS

COMMAND = "store"
LOGGER = logging.getLogger("dicombus.cli")

# What a file is converted to when the peer refuses its own transfer syntax
# (only uncompressed data can be converted; dicombus does not transcode pixels).
UNCOMPRESSED_DEFAULTS = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

# PS3.7 C.4: the Message ID is an unsigned 16-bit number.
_MAX_MESSAGE_ID = 0xFFFF


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        COMMAND,
        help="send DICOM files and folders with C-STORE",
        description="Send DICOM Part 10 files, and every file under the given folders, to a "
        "peer over one association. Files that are not DICOM are reported and skipped. "
        "Exits non-zero if any file was not stored.",
    )
    add_peer_options(parser)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    parser.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="accepted for DCMTK habits: folders are always scanned recursively",
    )
    add_network_options(parser, default_aet="STORESCU")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class Instance:
    """A file to send, as planned from its File Meta Information."""

    path: Path
    header: Part10Header
    size: int


@dataclass(slots=True)
class Batch:
    """The presentation contexts of one association and the files it carries."""

    contexts: list[PresentationContext] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)


@dataclass(slots=True)
class Tally:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    no_association: bool = False


# -- finding and planning --------------------------------------------------------------


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """The files named and those under the folders named (sorted); and what was not found."""
    files: list[Path] = []
    missing: list[str] = []
    for path in paths:
        if path.is_dir():
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                files.extend(Path(folder, name) for name in sorted(names))
        elif path.exists():
            files.append(path)
        else:
            missing.append(f"{path}: no such file or folder")
    return files, missing


def read_instances(files: Iterable[Path]) -> tuple[list[Instance], list[str]]:
    """The DICOM files among ``files``; for the others, why they are skipped."""
    instances: list[Instance] = []
    skipped: list[str] = []
    for path in files:
        try:
            header = read_part10_header(path)
            size = path.stat().st_size
            # Checks both UIDs now, so a malformed one skips its file instead of
            # failing the plan of the whole association.
            build_context(header.sop_class_uid, header.transfer_syntax)
        except DatasetCodecError as exc:
            skipped.append(str(exc))  # it names the file
        except ValueError as exc:  # a malformed UID in the file meta
            skipped.append(f"{path}: {exc}")
        except OSError as exc:
            skipped.append(f"{path}: unreadable: {exc.strerror or exc}")
        else:
            instances.append(Instance(path=path, header=header, size=size))
    return instances, skipped


def contexts_for(sop_class: str, syntaxes: Sequence[str]) -> list[PresentationContext]:
    """One context per transfer syntax the files are in, plus the uncompressed defaults
    when some file could be converted to them."""
    contexts = [build_context(sop_class, syntax) for syntax in syntaxes]
    # Every Storage SCP accepts Implicit VR Little Endian (PS3.5 10.1), so files
    # already in it, and compressed files that cannot be converted, need no fallback.
    convertible = any(
        not UID(syntax).is_compressed and syntax != ImplicitVRLittleEndian for syntax in syntaxes
    )
    fallback = [syntax for syntax in UNCOMPRESSED_DEFAULTS if syntax not in syntaxes]
    if convertible and fallback:
        contexts.append(build_context(sop_class, fallback))
    return contexts


def merged_context(sop_class: str, syntaxes: Sequence[str]) -> PresentationContext:
    """One context for the class, for when contexts run short: the acceptor picks one
    syntax, files in another are converted if uncompressed and fail otherwise."""
    return build_context(sop_class, [*syntaxes, *UNCOMPRESSED_DEFAULTS])


def plan_batches(
    instances: Sequence[Instance], limit: int = MAX_PRESENTATION_CONTEXTS
) -> list[Batch]:
    """Group by SOP class into associations of at most ``limit`` contexts.

    One association unless there are more than ``limit`` SOP classes. Each
    class gets its own context per transfer syntax while they fit, and one
    merged context once they do not.
    """
    syntaxes_by_class: dict[str, list[str]] = {}
    for instance in instances:
        syntaxes = syntaxes_by_class.setdefault(instance.header.sop_class_uid, [])
        if instance.header.transfer_syntax not in syntaxes:
            syntaxes.append(instance.header.transfer_syntax)
    classes = list(syntaxes_by_class)
    batches: list[Batch] = []
    batch_of_class: dict[str, Batch] = {}
    for first in range(0, len(classes), limit):
        group = classes[first : first + limit]
        batch = Batch()
        # Every class needs one context; the rest of the limit buys classes
        # a context per syntax, in the order they were found.
        spare = limit - len(group)
        for sop_class in group:
            syntaxes = syntaxes_by_class[sop_class]
            contexts = contexts_for(sop_class, syntaxes)
            if len(contexts) - 1 > spare:
                contexts = [merged_context(sop_class, syntaxes)]
            spare -= len(contexts) - 1
            batch.contexts.extend(contexts)
            batch_of_class[sop_class] = batch
        batches.append(batch)
    for instance in instances:
        batch_of_class[instance.header.sop_class_uid].instances.append(instance)
    return batches


# -- sending -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    recorder = configure_logging(args, quiet_by_default=True)
    started = time.monotonic()
    files, missing = find_files(args.paths)
    instances, unreadable = read_instances(files)
    progress = Progress(len(instances), sys.stderr, enabled=sys.stderr.isatty())
    tally = Tally(skipped=len(missing) + len(unreadable))
    for reason in (*missing, *unreadable):
        progress.note(f"dicombus {COMMAND}: skipped {reason}")
    if not instances:
        error(COMMAND, "no DICOM files to send")
        return ExitCode.FAILED
    ae = make_ae(args)
    try:
        for batch in plan_batches(instances):
            _send_batch(ae, batch, args, recorder, progress, tally)
    finally:
        progress.close()
    elapsed = time.monotonic() - started
    print(
        f"sent {tally.sent}, failed {tally.failed}, skipped {tally.skipped}: "
        f"{megabytes(progress.size):.1f} MB in {elapsed:.2f} s "
        f"({rate(progress.size, elapsed):.1f} MB/s)",
        flush=True,
    )
    if tally.no_association:
        return ExitCode.NO_ASSOCIATION
    return ExitCode.FAILED if tally.failed else ExitCode.OK


def _send_batch(
    ae: AE,
    batch: Batch,
    args: argparse.Namespace,
    recorder: ProblemRecorder,
    progress: Progress,
    tally: Tally,
) -> None:
    where = f"{args.aec} at {args.host}:{args.port}"
    recorder.reset()
    assoc = ae.associate(
        args.host, args.port, contexts=batch.contexts, ae_title=args.aec, max_pdu=args.max_pdu
    )
    if not assoc.is_established:
        progress.note(f"dicombus {COMMAND}: error: {describe_failure(assoc, where, recorder)}")
        tally.no_association = True
        _give_up(batch.instances, progress, tally)
        return
    try:
        for index, instance in enumerate(batch.instances):
            if not assoc.is_established:
                reason = describe_failure(assoc, where, recorder)
                progress.note(f"dicombus {COMMAND}: association lost: {reason}")
                _give_up(batch.instances[index:], progress, tally)
                return
            message_id = index % _MAX_MESSAGE_ID + 1
            stored = _send_one(assoc, instance, message_id, where, recorder, progress)
            if stored:
                tally.sent += 1
            else:
                tally.failed += 1
            progress.advance(instance.size if stored else 0)
    finally:
        assoc.release()


def _send_one(
    assoc: Association,
    instance: Instance,
    message_id: int,
    where: str,
    recorder: ProblemRecorder,
    progress: Progress,
) -> bool:
    """Send one file; report anything but Success; return whether the peer stored it."""
    try:
        reply = assoc.send_c_store(instance.path, msg_id=message_id)
    except Exception as exc:
        # One unsendable file (no accepted context, unreadable, not convertible)
        # must not stop the others.
        progress.note(f"dicombus {COMMAND}: failed {instance.path}: {exc}")
        return False
    if "Status" not in reply:
        reason = describe_failure(assoc, where, recorder)
        progress.note(f"dicombus {COMMAND}: failed {instance.path}: no response ({reason})")
        return False
    code = int(reply.Status)
    category = status.status_category(code)
    if category == status.STATUS_SUCCESS:
        LOGGER.info("stored %s", instance.path)
        return True
    comment = f": {reply.ErrorComment}" if reply.get("ErrorComment") else ""
    outcome = "stored with a warning" if category == status.STATUS_WARNING else "failed"
    progress.note(
        f"dicombus {COMMAND}: {outcome} {instance.path}: status 0x{code:04X} ({category}){comment}"
    )
    return category == status.STATUS_WARNING


def _give_up(instances: Sequence[Instance], progress: Progress, tally: Tally) -> None:
    tally.failed += len(instances)
    for _ in instances:
        progress.advance(0)
