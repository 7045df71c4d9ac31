"""The EVT_C_FIND / EVT_C_GET / EVT_C_MOVE handlers of a Query/Retrieve SCP over an index.

The handlers follow pynetdicom's contract, so the service classes drive them
as they would a pynetdicom handler:

- C-FIND yields ``(status, identifier)``: Pending with each match, Cancel
  once a C-CANCEL arrived, or one failure status.
- C-GET yields the number of sub-operations, then ``(Pending, dataset)``
  per instance to send over the requestor's association; each file is read
  only when its turn comes.
- C-MOVE first yields the destination ``(host, port, {"contexts": ...})`` --
  ``(None, None)`` for an unknown Move Destination -- then the same as C-GET.

An identifier the SCP cannot answer gets its failure status with an error
comment. A retrieve can only report one after announcing its number of
sub-operations, so it announces one and answers the failure in its place.

Move destinations come from a TOML file (:func:`load_destinations`)::

    [destinations]
    STORESCP = {host = "127.0.0.1", port = 11113}
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombus import evt
from dicombus.ae import AE
from dicombus.presentation import ALL_TRANSFER_SYNTAXES, PresentationContext, build_context
from dicombus.protocol import status
from dicombus.protocol.errors import DicombusError
from dicombus.protocol.limits import AE_TITLE_LENGTH, MAX_PRESENTATION_CONTEXTS
from dicombus.qr.index import Index, StoredInstance
from dicombus.qr.query import MODEL_BY_SOP_CLASS, QueryError, find, model_for, retrieve
from dicombus.services.query_retrieve import MAX_SUB_OPERATIONS

LOGGER = logging.getLogger("dicombus.qr")

# PS3.7 C.4: Error Comment is an LO, at most 64 characters.
_MAX_ERROR_COMMENT = 64


FindYield = tuple[int | Dataset, Dataset | None]


class ConfigError(DicombusError, ValueError):
    """A qrscp configuration file that cannot be used; the message names the place."""


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a Move Destination AE title listens."""

    host: str
    port: int


def load_destinations(path: Path) -> dict[str, Destination]:
    """The ``[destinations]`` table of a TOML configuration file, by AE title.

    Raises ConfigError: for a syntax error with tomllib's line and column,
    for a bad value with its key (and the line the destination starts on).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - {"destinations"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (the file has [destinations])")
    table = document.get("destinations", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'destinations' must be a table of AE titles")
    return {title: _destination(path, text, title, entry) for title, entry in table.items()}


def _destination(path: Path, text: str, title: str, entry: Any) -> Destination:
    try:
        return parse_destination(title, entry)
    except DestinationError as exc:
        line = _line_of(text, title)
        where = f"{path}, line {line}" if line else str(path)
        key = ".".join(part for part in ("destinations", title, exc.key) if part)
        raise ConfigError(f"{where}: {key}: {exc.problem}") from None


class DestinationError(DicombusError, ValueError):
    """A move destination entry that cannot be used: ``key`` (within the entry; "" for
    the AE title itself) and what is wrong with it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def parse_destination(title: str, entry: Any) -> Destination:
    """The destination ``title = {host = "...", port = N}`` of a TOML table; raises
    DestinationError naming the bad key."""
    stripped = title.strip(" ")
    if (
        not stripped
        or len(stripped) > AE_TITLE_LENGTH
        or "\\" in stripped
        or any(not " " <= c <= "~" for c in stripped)
    ):
        raise DestinationError(
            "", f"{title!r} is not an AE title (1-{AE_TITLE_LENGTH} printable ASCII)"
        )
    if not isinstance(entry, dict):
        raise DestinationError("", 'expected {host = "...", port = N}')
    extra = sorted(set(entry) - {"host", "port"})
    if extra:
        raise DestinationError(extra[0], "unknown key (expected host and port)")
    host = entry.get("host")
    if not isinstance(host, str) or not host:
        raise DestinationError("host", f"expected a host name or address, got {host!r}")
    port = entry.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise DestinationError("port", f"expected a TCP port 1-65535, got {port!r}")
    return Destination(host, port)


def _line_of(text: str, title: str) -> int | None:
    """The line where the destination ``title`` is defined, if it can be found."""
    name = re.escape(title)
    pattern = re.compile(
        rf"^\s*(?:\[\s*destinations\s*\.\s*)?(?:{name}|\"{name}\"|'{name}')\s*(?:=|\])"
    )
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


class QueryRetrieveSCP:
    """Find, Get and Move over an :class:`~dicombus.qr.index.Index`.

    ``ae_title`` is answered as the Retrieve AE Title (0008,0054) of each
    C-FIND match; ``destinations`` maps Move Destination AE titles to where
    they listen.
    """

    def __init__(
        self, index: Index, *, ae_title: str, destinations: Mapping[str, Destination]
    ) -> None:
        self.index = index
        self.ae_title = ae_title
        self.destinations = dict(destinations)

    def handlers(self) -> list[evt.HandlerBinding]:
        return [
            (evt.EVT_C_FIND, self.handle_find),
            (evt.EVT_C_GET, self.handle_get),
            (evt.EVT_C_MOVE, self.handle_move),
        ]

    def handle_find(self, event: evt.Event) -> Iterator[FindYield]:
        """EVT_C_FIND: a Pending response per match."""
        request: Any = event.request  # type: ignore[attr-defined]
        try:
            matches = find(self.index, event.identifier, model_for(request.AffectedSOPClassUID))
        except QueryError as exc:
            LOGGER.warning("C-FIND refused: %s", exc.comment)
            yield _failure(exc), None
            return
        for identifier in matches:
            if event.is_cancelled:
                yield status.CANCEL, None
                return
            identifier.RetrieveAETitle = self.ae_title
            yield status.PENDING, identifier

    def handle_get(self, event: evt.Event) -> Iterator[Any]:
        """EVT_C_GET: the number of instances, then each instance to send."""
        instances = self._select(event)
        if isinstance(instances, QueryError):
            yield 1
            yield _failure(instances), None
            return
        yield len(instances)
        yield from _sub_operations(event, instances)

    def handle_move(self, event: evt.Event) -> Iterator[Any]:
        """EVT_C_MOVE: the destination, the number of instances, then each instance."""
        title = (event.move_destination or "").strip(" ")
        destination = self.destinations.get(title)
        if destination is None:
            LOGGER.warning("C-MOVE refused: unknown Move Destination %r", title)
            yield None, None
            return
        instances = self._select(event)
        # The association to the destination opens with the first instance
        # sent, so a refused identifier never opens one.
        if isinstance(instances, QueryError) or not instances:
            yield destination.host, destination.port
        else:
            yield destination.host, destination.port, {"contexts": move_contexts(instances)}
        if isinstance(instances, QueryError):
            yield 1
            yield _failure(instances), None
            return
        yield len(instances)
        yield from _sub_operations(event, instances)

    def _select(self, event: evt.Event) -> list[StoredInstance] | QueryError:
        request: Any = event.request  # type: ignore[attr-defined]
        try:
            instances = retrieve(
                self.index, event.identifier, model_for(request.AffectedSOPClassUID)
            )
        except QueryError as exc:
            LOGGER.warning("%s refused: %s", event.event.name[4:].replace("_", "-"), exc.comment)
            return exc
        if len(instances) > MAX_SUB_OPERATIONS:
            return QueryError(
                f"{len(instances)} instances match; one retrieve sends at most "
                f"{MAX_SUB_OPERATIONS}",
                status.OUT_OF_RESOURCES_SUB_OPERATIONS,
            )
        return instances


def support_query_retrieve(ae: AE) -> None:
    """Make ``ae`` accept what a :class:`QueryRetrieveSCP` serves.

    Adds the Find, Get and Move SOP classes of the three models (every
    transfer syntax), and grants the roles a requestor proposes for each
    storage SOP class ``ae`` already supports: a C-GET requestor takes the
    SCP role there (PS3.4 C.4.3.1), a plain storage SCU the SCU role.
    """
    for context in ae.supported_contexts:
        # Its own syntaxes: with none, the default three would be added to a
        # context the AE was told to accept in fewer.
        ae.add_supported_context(
            context.abstract_syntax, context.transfer_syntax, scu_role=True, scp_role=True
        )
    for uid in MODEL_BY_SOP_CLASS:
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)


def _sub_operations(event: evt.Event, instances: list[StoredInstance]) -> Iterator[Any]:
    for instance in instances:
        if event.is_cancelled:
            yield status.CANCEL, None
            return
        try:
            dataset = dcmread(instance.path)
        except (OSError, InvalidDicomError, ValueError, EOFError) as exc:
            LOGGER.error("cannot read %s for %s: %s", instance.path, instance.sop_instance_uid, exc)
            # A Pending status without a Dataset is a failed sub-operation to
            # the service (as to pynetdicom's), and the retrieve goes on.
            yield status.PENDING, instance.path
            continue
        yield status.PENDING, dataset


def move_contexts(instances: list[StoredInstance]) -> list[PresentationContext]:
    """The contexts to propose to a move destination for ``instances``.

    One context per SOP class and transfer syntax, so each instance can go
    as it is stored; uncompressed ones also offer the two little endian
    syntaxes every SCP accepts. At most the 128 an association can hold.
    """
    pairs = dict.fromkeys((i.sop_class_uid, i.transfer_syntax) for i in instances)
    contexts = []
    for sop_class, syntax in list(pairs)[:MAX_PRESENTATION_CONTEXTS]:
        offered = [syntax]
        if not UID(syntax).is_compressed:
            offered += [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        contexts.append(build_context(sop_class, offered))
    return contexts


def _failure(error: QueryError) -> Dataset:
    reply = Dataset()
    reply.Status = error.status
    reply.ErrorComment = error.comment[:_MAX_ERROR_COMMENT]
    return reply
