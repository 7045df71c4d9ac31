"""Durable storage of received instances as DICOM Part 10 files.

:func:`write_instance` is what a Storage SCP calls before it answers Success:
it writes the preamble, the File Meta Information and the dataset bytes
exactly as the peer sent them to a temporary file in the destination folder,
fsyncs it, renames it over the final name and fsyncs the folder. Only then
has the instance survived a power cut, and only then may the peer forget it.

File names come from the UIDs in the File Meta Information, after checking
them against PS3.5 9.1, never from anything else a peer sent: a UID holds
only digits and dots, so it cannot climb out of the storage root.

Layouts (:class:`Layout`):

- ``sop-class`` (the default): ``root/<SOP Class UID>/<SOP Instance UID>.dcm``.
- ``flat``: ``root/<SOP Instance UID>.dcm``.

An instance received again replaces the earlier file (the rename is atomic),
so a peer that retries after a lost response stores one copy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import FileMetaDataset

from dicombus.dataset_codec import encode_part10_header
from dicombus.protocol.limits import MAX_UID_LENGTH

# PS3.5 9.1: components of digits separated by dots; a component has no
# leading zero unless it is "0" itself. Stricter than the association layer
# (which tolerates leading zeros from the field), because here a UID becomes
# a file name and one instance must map to exactly one name.
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")

# Large enough that copying a spooled 1 GB dataset is a few hundred calls,
# small enough not to matter next to the association's own buffers.
_COPY_CHUNK = 1 << 20

# copy_file_range refuses some pairs of files (across file systems on older
# kernels, some network and overlay file systems); a plain copy then does it.
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


class Layout(StrEnum):
    """Where under the storage root an instance goes."""

    SOP_CLASS = "sop-class"
    FLAT = "flat"


class InvalidUIDError(ValueError):
    """A UID that PS3.5 9.1 does not allow, so no file name is made from it."""


def check_uid(value: object, what: str) -> str:
    """Return ``value`` if it is a valid UID (PS3.5 9.1), else raise InvalidUIDError."""
    if not isinstance(value, str):
        raise InvalidUIDError(f"{what} is missing or not text: {value!r}")
    if len(value) > MAX_UID_LENGTH or not _UID.fullmatch(value):
        raise InvalidUIDError(
            f"{what} {value!r} is not a valid UID (PS3.5 9.1: digits in dot-separated "
            f"components without leading zeros, at most {MAX_UID_LENGTH} characters)"
        )
    return value


def instance_path(root: Path, file_meta: FileMetaDataset, layout: Layout) -> Path:
    """The final path of the instance that ``file_meta`` describes."""
    instance = check_uid(
        _text(file_meta.get("MediaStorageSOPInstanceUID")), "Media Storage SOP Instance UID"
    )
    if layout is Layout.FLAT:
        return root / f"{instance}.dcm"
    sop_class = check_uid(
        _text(file_meta.get("MediaStorageSOPClassUID")), "Media Storage SOP Class UID"
    )
    return root / sop_class / f"{instance}.dcm"


def _text(value: object) -> object:
    # pydicom's UID is a str subclass; anything else (None, bytes) stays as
    # it is for check_uid to refuse.
    return str(value) if isinstance(value, str) else value


def write_instance(
    root: Path,
    *,
    file_meta: FileMetaDataset,
    dataset_bytes: bytes | memoryview | Path,
    layout: Layout = Layout.SOP_CLASS,
) -> Path:
    """Store one instance durably and return its path.

    ``dataset_bytes`` is the dataset as received (no file meta): bytes, or the
    path of a file holding them (a spooled dataset, copied in chunks without
    reading it into memory). Raises InvalidUIDError before touching the disk
    when a UID is invalid, and OSError when the disk refuses (full, read-only,
    not a folder); no temporary file is left behind either way.
    """
    final = instance_path(root, file_meta, layout)
    header = encode_part10_header(file_meta)
    folder = final.parent
    _make_folders(folder)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(header)
            if isinstance(dataset_bytes, Path):
                stream.flush()
                _copy_file(dataset_bytes, stream)
            else:
                stream.write(dataset_bytes)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)
    return final


def _make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each new entry made durable."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    # A new folder exists after a crash only once its parent's entry is on disk.
    for created in reversed(missing):
        _fsync_folder(created.parent)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _copy_file(source: Path, target: BinaryIO) -> None:
    """Append the bytes of ``source`` to ``target`` (whose buffer is flushed) in chunks."""
    with source.open("rb") as reader:
        remaining = os.fstat(reader.fileno()).st_size
        kernel_copy = getattr(os, "copy_file_range", None)
        while remaining > 0 and kernel_copy is not None:
            try:
                copied = kernel_copy(reader.fileno(), target.fileno(), min(remaining, _COPY_CHUNK))
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                break
            if copied == 0:
                break
            remaining -= copied
        # Both file offsets moved with every kernel copy, so the plain copy
        # (the fallback, or the whole job without copy_file_range) resumes there.
        shutil.copyfileobj(reader, target, _COPY_CHUNK)
