"""What ``dicombus find``, ``get`` and ``move`` share: keys, information models, the
association, and reading the responses of a retrieve."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from dicombus import AE, Association, evt, sop_class
from dicombus.cli.common import (
    ExitCode,
    ProblemRecorder,
    add_peer_options,
    configure_logging,
    describe_failure,
    error,
)
from dicombus.presentation import PresentationContext
from dicombus.protocol import status
from dicombus.protocol.items import UserSubItem

# (Find, Get, Move) SOP classes of each information model, by option.
MODELS: dict[str, tuple[str, str | None, str | None]] = {
    "patient": (
        sop_class.PatientRootQueryRetrieveInformationModelFind,
        sop_class.PatientRootQueryRetrieveInformationModelGet,
        sop_class.PatientRootQueryRetrieveInformationModelMove,
    ),
    "study": (
        sop_class.StudyRootQueryRetrieveInformationModelFind,
        sop_class.StudyRootQueryRetrieveInformationModelGet,
        sop_class.StudyRootQueryRetrieveInformationModelMove,
    ),
    "psonly": (
        sop_class.PatientStudyOnlyQueryRetrieveInformationModelFind,
        sop_class.PatientStudyOnlyQueryRetrieveInformationModelGet,
        sop_class.PatientStudyOnlyQueryRetrieveInformationModelMove,
    ),
    "worklist": (sop_class.ModalityWorklistInformationModelFind, None, None),
}
SERVICE_INDEX = {"find": 0, "get": 1, "move": 2}

_TAG = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?")


@dataclass(frozen=True, slots=True)
class Key:
    """One ``-k`` option: an attribute and the value to match (None: universal)."""

    tag: BaseTag
    value: str | None


def parse_key(text: str) -> Key:
    """``-k`` as DCMTK spells it: ``PatientName=DOE^*``, ``(0010,0010)=DOE^*``, or a bare
    keyword or tag (an empty value: return it, match everything)."""
    name, equals, value = text.partition("=")
    name = name.strip()
    found = _TAG.fullmatch(name)
    if found:
        tag = Tag(int(found.group(1), 16), int(found.group(2), 16))
    else:
        number = tag_for_keyword(name)
        if number is None:
            raise argparse.ArgumentTypeError(
                f"{name!r} is neither a DICOM keyword (PatientName) nor a tag ((0010,0010))"
            )
        tag = Tag(number)
    return Key(tag, value if equals and value else None)


def add_qr_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: str,
    *,
    help: str,
    description: str,
    worklist: bool,
) -> argparse.ArgumentParser:
    """The parser of ``find``, ``get`` or ``move`` with the peer and query options."""
    parser = commands.add_parser(command, help=help, description=description)
    add_peer_options(parser)
    add_query_options(parser, worklist=worklist)
    return parser


def prepare_query(args: argparse.Namespace, command: str) -> tuple[ProblemRecorder, Dataset | None]:
    """Set up logging and check the ``-k`` identifier (None: it cannot be sent)."""
    recorder = configure_logging(args, quiet_by_default=True)
    return recorder, prepare_identifier(args, command)


def add_query_options(parser: argparse.ArgumentParser, *, worklist: bool) -> None:
    parser.add_argument(
        "-k",
        "--key",
        dest="keys",
        action="append",
        type=parse_key,
        default=[],
        metavar="KEY[=VALUE]",
        help="an identifier key: a keyword or (gggg,eeee) tag with the value to match "
        "(empty: return it for every match); repeat for more keys",
    )
    models = parser.add_mutually_exclusive_group()
    models.add_argument(
        "-P",
        "--patient",
        dest="model",
        action="store_const",
        const="patient",
        help="use the Patient Root information model (default)",
    )
    models.add_argument(
        "-S",
        "--study",
        dest="model",
        action="store_const",
        const="study",
        help="use the Study Root information model",
    )
    models.add_argument(
        "-O",
        "--psonly",
        dest="model",
        action="store_const",
        const="psonly",
        help="use the (retired) Patient/Study Only information model",
    )
    if worklist:
        models.add_argument(
            "-W",
            "--worklist",
            dest="model",
            action="store_const",
            const="worklist",
            help="use the Modality Worklist information model",
        )
    parser.set_defaults(model="patient")


def model_uid(args: argparse.Namespace, service: str) -> str:
    uid = MODELS[args.model][SERVICE_INDEX[service]]
    if uid is None:
        raise ValueError(f"the {args.model} information model has no {service} SOP class")
    return uid


def build_identifier(keys: Sequence[Key]) -> Dataset:
    """The identifier of the ``-k`` options; a later key replaces an earlier one.

    Raises ValueError for a value its VR cannot hold at all (a number that is not one).
    """
    identifier = Dataset()
    for key in keys:
        vr = _vr(key.tag)
        value: object = key.value
        if vr == "SQ":
            value = []
        elif isinstance(value, str) and "\\" in value:
            value = value.split("\\")
        try:
            # Query values (ranges, wildcards) are not valid attribute values:
            # pydicom is told not to validate them.
            element = DataElement(key.tag, vr, value, validation_mode=config.IGNORE)
        except ValueError:
            name = keyword_for_tag(key.tag) or str(key.tag)
            raise ValueError(f"{name}={key.value} is not a valid {vr} value") from None
        identifier.add(element)
    return identifier


def _vr(tag: BaseTag) -> str:
    try:
        vr: str = dictionary_VR(tag)
    except KeyError:
        return "UN" if tag.is_private else "LO"
    # Some dictionary entries allow two VRs ("US or SS"); a query key is text either way.
    return vr.split(" or ")[0]


def prepare_identifier(args: argparse.Namespace, command: str) -> Dataset | None:
    """The identifier of the ``-k`` options, checked before connecting; None after
    printing why it cannot be sent."""
    has_level = any(key.tag == 0x00080052 for key in args.keys)
    if args.model != "worklist" and not has_level:
        error(command, "give the level with -k QueryRetrieveLevel=PATIENT|STUDY|SERIES|IMAGE")
        return None
    try:
        return build_identifier(args.keys)
    except ValueError as exc:
        error(command, str(exc))
        return None


def open_association(
    ae: AE,
    args: argparse.Namespace,
    command: str,
    recorder: ProblemRecorder,
    *,
    contexts: Sequence[PresentationContext],
    ext_neg: Sequence[UserSubItem] = (),
    evt_handlers: Sequence[evt.HandlerBinding] = (),
) -> Association | None:
    """Associate with the peer; print why and return None when that fails."""
    assoc = ae.associate(
        args.host,
        args.port,
        contexts,
        ae_title=args.aec,
        ext_neg=list(ext_neg) or None,
        evt_handlers=list(evt_handlers),
    )
    if assoc.is_established:
        return assoc
    error(command, describe_failure(assoc, f"{args.aec} at {args.host}:{args.port}", recorder))
    return None


def element_lines(identifier: Dataset) -> Iterator[str]:
    """``Keyword=value`` per element (``(gggg,eeee)=value`` without a keyword)."""
    for element in identifier:
        name = (
            keyword_for_tag(element.tag) or f"({element.tag.group:04X},{element.tag.element:04X})"
        )
        yield f"{name}={display_value(element)}"


def display_value(element: DataElement) -> str:
    if element.VR == "SQ":
        return f"<{len(element.value)} items>"
    value = element.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(item) for item in value)
    return str(value)


@dataclass(slots=True)
class RetrieveOutcome:
    """The final response of a C-GET or C-MOVE, as the command reports it."""

    status: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    error_comment: str | None = None
    failed_uids: tuple[str, ...] = ()

    def summary(self) -> str:
        text = f"{self.completed} completed, {self.failed} failed, {self.warning} warning"
        if self.status is None:
            return f"no final response ({text})"
        category = status.status_category(self.status)
        text = f"0x{self.status:04X} ({category}): {text}"
        if self.error_comment:
            text += f"; {self.error_comment}"
        return text

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.status == status.SUCCESS else ExitCode.FAILED


def report_outcome(command: str, outcome: RetrieveOutcome, suffix: str = "") -> int:
    """Print how the retrieve ended (an error line unless it succeeded); its exit code."""
    report = outcome.summary() + suffix
    if outcome.exit_code == ExitCode.OK:
        print(f"dicombus {command}: {report}", file=sys.stderr, flush=True)
    else:
        error(command, report)
    for uid in outcome.failed_uids:
        print(f"dicombus {command}: not retrieved: {uid}", file=sys.stderr, flush=True)
    return outcome.exit_code


def final_outcome(responses: Iterator[tuple[Dataset, Dataset | None]]) -> RetrieveOutcome:
    """Read a retrieve's responses to the end; the last one decides."""
    outcome = RetrieveOutcome()
    for result, identifier in responses:
        if "Status" not in result:
            break  # no response: timeout or the association went away
        code = int(result.Status)
        outcome = RetrieveOutcome(
            status=code,
            completed=int(result.get("NumberOfCompletedSuboperations") or 0),
            failed=int(result.get("NumberOfFailedSuboperations") or 0),
            warning=int(result.get("NumberOfWarningSuboperations") or 0),
            error_comment=result.get("ErrorComment"),
        )
        if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
            outcome.failed_uids = tuple(
                str(uid) for uid in _as_list(identifier.FailedSOPInstanceUIDList) if uid
            )
        if status.status_category(code) != status.STATUS_PENDING:
            return outcome
    outcome.status = None
    return outcome


def _as_list(value: object) -> list[object]:
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [] if value is None else [value]
