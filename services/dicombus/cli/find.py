"""``dicombus find``: query a peer with C-FIND (DCMTK's findscu).

Each match is printed as ``Keyword=value`` lines under a ``# match N``
heading, or with ``--table`` as one row of a table whose columns are the
keys of the matches. The count and any failure go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydicom.dataset import Dataset

from dicombus import build_context
from dicombus.cli.common import (
    ExitCode,
    add_network_options,
    error,
    make_ae,
    positive_int,
)
from dicombus.cli.qr_common import (
    add_qr_command,
    display_value,
    element_lines,
    model_uid,
    open_association,
    prepare_query,
)
from dicombus.protocol import status

COMMAND = "find"
# A table column wider than this is cut, so one long description does not
# push every other column off the screen.
_MAX_COLUMN_WIDTH = 40
_SPECIFIC_CHARACTER_SET = 0x00080005


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = add_qr_command(
        commands,
        COMMAND,
        help="query a peer with C-FIND",
        description="Send one C-FIND request built from the -k keys and print every match. "
        "Exits 0 when the peer ends the query with Success.",
        worklist=True,
    )
    parser.add_argument(
        "--table", action="store_true", help="print the matches as a table, one row each"
    )
    parser.add_argument(
        "--cancel",
        type=positive_int,
        metavar="N",
        help="send a C-CANCEL after N matches (the peer then ends the query with Cancel)",
    )
    add_network_options(parser, default_aet="FINDSCU")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recorder, identifier = prepare_query(args, COMMAND)
    if identifier is None:
        return ExitCode.USAGE
    model = model_uid(args, "find")
    ae = make_ae(args)
    assoc = open_association(ae, args, COMMAND, recorder, contexts=[build_context(model)])
    if assoc is None:
        return ExitCode.NO_ASSOCIATION
    matches: list[Dataset] = []
    final: Dataset | None = None
    try:
        for result, found in assoc.send_c_find(identifier, model):
            if "Status" not in result:
                break  # no response in time, or the association ended
            if status.status_category(int(result.Status)) != status.STATUS_PENDING:
                final = result
                break
            match = found if found is not None else Dataset()
            matches.append(match)
            if not args.table:
                _print_match(len(matches), match)
            if args.cancel is not None and len(matches) == args.cancel:
                assoc.send_c_cancel(1, query_model=model)
    finally:
        assoc.release()
    if args.table:
        _print_table(matches)
    return _report(args, final, len(matches))


def _report(args: argparse.Namespace, final: Dataset | None, count: int) -> int:
    plural = "match" if count == 1 else "matches"
    if final is None:
        error(COMMAND, f"no final C-FIND response after {count} {plural}")
        return ExitCode.FAILED
    code = int(final.Status)
    if code == status.SUCCESS or (code == status.CANCEL and args.cancel is not None):
        print(f"dicombus {COMMAND}: {count} {plural}", file=sys.stderr, flush=True)
        return ExitCode.OK
    comment = final.get("ErrorComment")
    reason = f"C-FIND answered 0x{code:04X} ({status.status_category(code)})"
    error(COMMAND, f"{reason}{': ' + str(comment) if comment else ''} after {count} {plural}")
    return ExitCode.FAILED


def _print_match(number: int, match: Dataset) -> None:
    lines = [f"# match {number}", *element_lines(match), ""]
    print("\n".join(lines), flush=True)


def _print_table(matches: Sequence[Dataset]) -> None:
    columns: dict[int, str] = {}
    for match in matches:
        for element in match:
            # How the text is encoded says nothing about the match.
            if element.tag != _SPECIFIC_CHARACTER_SET:
                columns.setdefault(int(element.tag), element.keyword or str(element.tag))
    if not columns:
        return
    rows = [[_cell(match, tag) for tag in columns] for match in matches]
    header = list(columns.values())
    widths = [
        min(_MAX_COLUMN_WIDTH, max(len(text) for text in column))
        for column in zip(header, *rows, strict=True)
    ]
    for line in (header, *rows):
        print(
            "  ".join(
                text[:width].ljust(width) for text, width in zip(line, widths, strict=True)
            ).rstrip()
        )


def _cell(match: Dataset, tag: int) -> str:
    element = match.get(tag)
    return "" if element is None else display_value(element)
