"""The C-STORE handler of every Storage SCP dicombus runs: the edge node,
``dicombus storescp`` and ``dicombus qrscp``.

:func:`handle_store` (bound to EVT_C_STORE) checks that the data set is the
instance the command names (PS3.4 B.2.3), and answers Success only after
:func:`dicombus.storage_files.store_instance` has made the file durable, or
found the same instance stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from dicombus import _config, evt
from dicombus.dataset_codec import InstanceMeta
from dicombus.instance_uids import (
    SERIES_INSTANCE_UID,
    InstanceUIDs,
    UnreadableDatasetError,
    instance_uids,
    read_instance_header,
)
from dicombus.protocol import status
from dicombus.service_request import ServiceRequest
from dicombus.storage_files import (
    Duplicate,
    DuplicateInstanceError,
    Duplicates,
    InvalidUIDError,
    Layout,
    StoredInstance,
    store_instance,
)

LOGGER = logging.getLogger("dicombus.storage")

# PS3.7 C.4: ErrorComment is an LO, at most 64 characters.
_MAX_ERROR_COMMENT = 64


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
    return store_received(event, root, layout, duplicates).reply


@dataclass(frozen=True, slots=True)
class StoreResult:
    """The answer to a C-STORE, and the header of the data set as parsed to check it."""

    reply: int | Dataset
    # The top-level elements up to the tag asked for, values as encoded (see
    # dicombus.instance_uids.read_instance_header); None when unreadable.
    header: Dataset | None = None
    # Where the instance is stored (or was found stored), and the UIDs and transfer
    # syntax it came with; None unless Success.
    stored: StoredInstance | None = None
    meta: InstanceMeta | None = None


def store_received(
    event: evt.Event,
    root: Path,
    layout: Layout,
    duplicates: Duplicates = Duplicates.KEEP_FIRST,
    *,
    read_until: int = SERIES_INSTANCE_UID,
) -> StoreResult:
    """What :func:`handle_store` does, parsing the data set up to tag ``read_until``
    (at least its UIDs) and handing back what it parsed: a caller that needs more of
    the header than the UIDs reads no byte twice."""
    # Event attributes such as ``request`` are set per event type, unknown to mypy.
    request: ServiceRequest = event.request  # type: ignore[attr-defined]
    received = _received_dataset(event, request)
    # The three UIDs, not event.file_meta: no pydicom FileMetaDataset per instance.
    file_meta = event.instance_meta
    try:
        header = read_instance_header(received, file_meta.transfer_syntax, read_until)
    except UnreadableDatasetError as exc:
        LOGGER.error("refused an instance from %s: %s", event.assoc.requestor.ae_title, exc)
        # PS3.4 B.2.3: Error, Cannot understand (as DCMTK's storescp answers).
        return StoreResult(failure_reply(status.CANNOT_UNDERSTAND, "cannot read the data set"))
    stored = _store(event, request.outcome, received, file_meta, root, layout, duplicates, header)
    if isinstance(stored, Dataset):
        return StoreResult(stored, header)
    return StoreResult(status.SUCCESS, header, stored, file_meta)


def _store(
    event: evt.Event,
    outcome: dict[str, object],
    received: bytes | Path,
    file_meta: InstanceMeta,
    root: Path,
    layout: Layout,
    duplicates: Duplicates,
    header: Dataset,
) -> StoredInstance | Dataset:
    """The instance stored (recorded in ``outcome``), or the failure to answer."""
    peer = event.assoc.requestor.ae_title
    uids = instance_uids(header)
    mismatch = _mismatch(file_meta, uids)
    if mismatch is not None:
        code, comment, detail = mismatch
        LOGGER.error("refused an instance from %s: %s", peer, detail)
        return failure_reply(code, comment)
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
        return failure_reply(
            status.DUPLICATE_SOP_INSTANCE, "SOP Instance UID stored with other content"
        )
    except OSError as exc:
        LOGGER.error("cannot store an instance under %s: %s", root, exc)
        return failure_reply(status.OUT_OF_RESOURCES, f"storage failed: {exc.strerror or exc}")
    LOGGER.info("stored %s", stored.path)
    # Published with the C-STORE outcome: where the event's bulk data lives.
    outcome["stored_path"] = str(stored.path.absolute())
    outcome["stored_size"] = stored.size
    if stored.duplicate is not None:
        outcome["duplicate"] = stored.duplicate.value
    return stored


def _mismatch(file_meta: InstanceMeta, uids: InstanceUIDs) -> tuple[int, str, str] | None:
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
        ("SOP Class UID", file_meta.sop_class_uid, uids.sop_class_uid),
        ("SOP Instance UID", file_meta.sop_instance_uid, uids.sop_instance_uid),
    ):
        if in_dataset != in_command:
            comment = f"data set {what} differs from command"
            detail = f"{comment}: {in_dataset!r} in the data set, '{in_command}' in the command"
            return status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, comment, detail
    return None


def _invalid_uid(exc: InvalidUIDError) -> Dataset:
    if "SOP Instance" in exc.what:
        # PS3.7 C.5: the SOP Instance UID violates the UID construction rules.
        return failure_reply(status.INVALID_OBJECT_INSTANCE, "invalid UID")
    # A Study or Series Instance UID (Type 1 in every composite IOD) that is
    # missing or malformed: the data set does not conform (PS3.4 B.2.3).
    return failure_reply(status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, f"invalid {exc.what}")


def _received_dataset(event: evt.Event, request: ServiceRequest) -> bytes | Path:
    """The dataset as received: from the spool file when the association spooled it.

    The association spools a C-STORE dataset to disk once it outgrows
    STORE_SPOOL_THRESHOLD (every one with STORE_RECV_CHUNKED_DATASET); reading
    such a dataset back into memory is what spooling avoids, and asking for
    the path of one still in memory would write it out for nothing.
    """
    spooled = (
        _config.STORE_RECV_CHUNKED_DATASET or request.dataset_size > _config.STORE_SPOOL_THRESHOLD
    )
    return event.dataset_path if spooled else event.encoded_dataset(include_meta=False)


def failure_reply(code: int, comment: str) -> Dataset:
    reply = Dataset()
    reply.Status = code
    reply.ErrorComment = comment[:_MAX_ERROR_COMMENT]
    return reply
