"""Durable storage of received instances as DICOM Part 10 files.

:func:`store_instance` is what a Storage SCP calls before it answers Success:
it writes the preamble, the File Meta Information and the dataset bytes
exactly as the peer sent them to a temporary file in the root's ``.incoming``
folder (unnamed, ``O_TMPFILE``, where the file system has them), fsyncs it,
links it under its final name and fsyncs that folder. Only then has the
instance survived a power cut, and only then may the peer forget it.

File names come from UIDs after checking them against PS3.5 9.1, never from
anything else a peer sent: a UID holds only digits and dots, so it cannot
climb out of the storage root.

Layouts (:class:`Layout`):

- ``study`` (the default): ``root/<Study Instance UID>/<Series Instance UID>/
  <SOP Instance UID>.dcm``, the Study and Series UIDs read from the data set;
  no folder grows past the size of one series.
- ``sop-class``: ``root/<SOP Class UID>/<SOP Instance UID>.dcm``.
- ``flat``: ``root/<SOP Instance UID>.dcm``.

An instance received again (same SOP Instance UID) with the same content is a
retry after a lost response: nothing is rewritten. The same content is the
same bytes, or the same data set in another transfer syntax (a retry that
negotiated Implicit instead of Explicit VR Little Endian, say: see
:mod:`dicombus.instance_content`). With different content, :class:`Duplicates`
decides: keep the first (the default; DuplicateInstanceError), replace it, or
keep both (the second as ``<SOP Instance UID>-<digest>.dcm``). Different
content is never replaced or set aside without a warning in the log.

Concurrent stores can share the folder fsyncs (:class:`FolderSync`, group
commit, opt-in per call): a store waits for an fsync of its folder that began
after its file was linked, and one such fsync answers every store waiting for
that folder meanwhile. Success still follows the durable file and entry.

Everything transient -- partly written instances, and the spool files of
datasets still arriving when the node uses the same folder for them -- lives
in ``root/.incoming``, which :func:`prepare_storage_root` empties at start.
Files are created 0600 and folders 0700 whatever the umask: they hold PHI.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydicom.dataset import FileMetaDataset

from dicombus.dataset_codec import DatasetCodecError, InstanceMeta, encode_part10_header
from dicombus.group_commit import GroupCommit
from dicombus.instance_content import EncodedDataSet, same_data_set
from dicombus.instance_uids import InstanceUIDs
from dicombus.protocol.errors import DicombusError
from dicombus.protocol.limits import MAX_UID_LENGTH
from dicombus.scatter_gather import IOV_MAX, advance

LOGGER = logging.getLogger("dicombus.storage")

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

# A new file is written unnamed (O_TMPFILE, Linux 3.11) and named by linking it from
# /proc: no name to make up, nothing to remove, nothing left behind by a crash.
_PROC_FD = "/proc/self/fd"
_UNNAMED = hasattr(os, "O_TMPFILE") and os.path.isdir(_PROC_FD)
_UNNAMED_FLAGS = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | os.O_CLOEXEC
_FOLDER_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_DIRECTORY", 0)
# open(2) refusing O_TMPFILE: a file system without it (EOPNOTSUPP), a kernel older
# than it (EISDIR or EINVAL). Those folders get named temporary files from then on.
_NO_UNNAMED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
# linkat(2) refusing to name one from /proc: a security module's policy (EPERM, EACCES)
# or a file system that cannot (EOPNOTSUPP, EINVAL). Not a full disk or an I/O error:
# those refuse a named file too, and the store fails as it should.
_NO_LINK_FROM_PROC = frozenset({errno.EPERM, errno.EACCES, errno.EOPNOTSUPP, errno.EINVAL})
_NAMED_ONLY: set[str] = set()

# Hidden (UIDs never start with a dot), so no layout ever names a file in it,
# and the Q/R index's walk skips it.
INCOMING_FOLDER = ".incoming"
# PHI: only the node's own user reads what it stores.
FILE_MODE = 0o600
FOLDER_MODE = 0o700
# Hex digits of the SHA-256 of a second, different instance kept beside the
# first: 64 bits, so two different contents do not meet by chance.
_DIGEST_LENGTH = 16


class Layout(StrEnum):
    """Where under the storage root an instance goes."""

    STUDY = "study"
    SOP_CLASS = "sop-class"
    FLAT = "flat"


DEFAULT_LAYOUT = Layout.STUDY


class Duplicates(StrEnum):
    """What to do with an instance whose SOP Instance UID is stored with other content."""

    KEEP_FIRST = "keep-first"
    REPLACE = "replace"
    KEEP_BOTH = "keep-both"


class Duplicate(StrEnum):
    """What a store found under the instance's name (published as outcome["duplicate"])."""

    IDENTICAL = "identical"
    DIFFERENT = "different"


class InvalidUIDError(DicombusError, ValueError):
    """A UID that PS3.5 9.1 does not allow, so no file name is made from it."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


class DuplicateInstanceError(DicombusError):
    """The SOP Instance UID is stored with different content, and the first was kept."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} holds a different instance with the same SOP Instance UID")
        self.path = path


class StorageRootError(DicombusError, OSError):
    """The storage root cannot be used: not creatable, or not writable."""


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """Where the received bytes now are, their size, and whether the name was taken before."""

    path: Path
    size: int
    duplicate: Duplicate | None = None


def check_uid(value: object, what: str) -> str:
    """Return ``value`` if it is a valid UID (PS3.5 9.1), else raise InvalidUIDError."""
    if not isinstance(value, str):
        raise InvalidUIDError(f"{what} is missing or not text: {value!r}", what)
    if len(value) > MAX_UID_LENGTH or not _UID.fullmatch(value):
        raise InvalidUIDError(
            f"{what} {value!r} is not a valid UID (PS3.5 9.1: digits in dot-separated "
            f"components without leading zeros, at most {MAX_UID_LENGTH} characters)",
            what,
        )
    return value


def instance_path(
    root: Path,
    file_meta: FileMetaDataset | InstanceMeta,
    layout: Layout,
    uids: InstanceUIDs | None = None,
) -> Path:
    """The final path of the instance that ``file_meta`` describes.

    The study layout takes the Study and Series Instance UIDs from ``uids``
    (read from the data set); a missing one is an InvalidUIDError.
    """
    folder, name = _place(root, file_meta, layout, uids)
    return folder / name


def _place(
    root: Path,
    file_meta: FileMetaDataset | InstanceMeta,
    layout: Layout,
    uids: InstanceUIDs | None,
) -> tuple[Path, str]:
    """:func:`instance_path` as its folder and the file's name."""
    instance = check_uid(
        _meta_uid(file_meta, "MediaStorageSOPInstanceUID"), "Media Storage SOP Instance UID"
    )
    name = f"{instance}.dcm"
    if layout is Layout.FLAT:
        return root, name
    if layout is Layout.STUDY:
        study = uids.study_instance_uid if uids else None
        series = uids.series_instance_uid if uids else None
        return _series_folder(root, study, series), name
    sop_class = _meta_uid(file_meta, "MediaStorageSOPClassUID")
    return _sop_class_folder(root, sop_class), name


# The instances of a series share their folder: one Path (and its text, what every
# system call takes) made and its UIDs checked once, not per instance.
@functools.lru_cache(maxsize=256)
def _series_folder(root: Path, study: str | None, series: str | None) -> Path:
    return root.joinpath(
        check_uid(study, "Study Instance UID"), check_uid(series, "Series Instance UID")
    )


@functools.lru_cache(maxsize=256)
def _sop_class_folder(root: Path, sop_class: object) -> Path:
    return root / check_uid(sop_class, "Media Storage SOP Class UID")


def _meta_uid(file_meta: FileMetaDataset | InstanceMeta, keyword: str) -> object:
    if isinstance(file_meta, InstanceMeta):
        if keyword == "MediaStorageSOPInstanceUID":
            return file_meta.sop_instance_uid
        return file_meta.sop_class_uid
    return _text(file_meta.get(keyword))


def _text(value: object) -> object:
    # pydicom's UID is a str subclass; anything else (None, bytes) stays as
    # it is for check_uid to refuse.
    return str(value) if isinstance(value, str) else value


@functools.lru_cache(maxsize=16)
def incoming_folder(root: Path) -> Path:
    """The folder of partly written instances (and of the node's spool files)."""
    return root / INCOMING_FOLDER


def prepare_storage_root(root: Path, what: str = "storage root") -> Path:
    """Make ``root`` ready at start: created (0700), writable, ``.incoming`` emptied.

    Whatever a killed node left in ``.incoming`` (partly written instances,
    spool files of datasets that were arriving) is removed: one node owns its
    storage root. Writability is proven by creating a file, since permission
    bits say nothing for root, and a read-only mount or an immutable folder
    refuses even root. Raises StorageRootError naming ``what`` (the config key
    or option the root came from). Returns the ``.incoming`` folder.
    """
    incoming = incoming_folder(root)
    try:
        _make_folders(incoming)
        removed = 0
        for entry in os.scandir(incoming):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        handle, probe = tempfile.mkstemp(prefix="probe-", dir=incoming)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise StorageRootError(f"{what} {root} is not writable: {exc.strerror or exc}") from exc
    if removed:
        LOGGER.warning("removed %d leftover temporary files from %s", removed, incoming)
    return incoming


def store_instance(
    root: Path,
    *,
    file_meta: FileMetaDataset | InstanceMeta,
    dataset_bytes: bytes | memoryview | Path,
    layout: Layout = DEFAULT_LAYOUT,
    uids: InstanceUIDs | None = None,
    duplicates: Duplicates = Duplicates.KEEP_FIRST,
    folder_sync: FolderSync | None = None,
    unnamed: bool = True,
) -> StoredInstance:
    """Store one instance durably, unless the same instance is already stored.

    ``file_meta`` is written as the file's File Meta Information; an
    :class:`~dicombus.dataset_codec.InstanceMeta` (what a Storage SCP received)
    writes the same bytes as the FileMetaDataset it stands for, for less CPU.
    ``dataset_bytes`` is the dataset as received (no file meta): bytes, or the
    path of a file holding them (a spooled dataset, copied in chunks without
    reading it into memory). ``folder_sync`` makes the new entry durable (by
    default the process's :data:`SHARED_FOLDER_SYNC`, one fsync per store). The bytes
    go to an unnamed temporary file (O_TMPFILE) where the system has them, else (and
    with ``unnamed`` off) to a named one in ``.incoming``. Raises
    InvalidUIDError before touching the disk when a UID is invalid,
    DuplicateInstanceError when a different instance holds the name and is kept,
    and OSError when the disk refuses (full, read-only, not a folder); no
    temporary file is left behind in any case.
    """
    folder, name = _place(root, file_meta, layout, uids)
    if isinstance(file_meta, InstanceMeta):
        header, transfer_syntax = file_meta.part10_header(), file_meta.transfer_syntax
    else:
        header, transfer_syntax = encode_part10_header(file_meta), str(file_meta.TransferSyntaxUID)
    content = _Content(
        header,
        dataset_bytes,
        transfer_syntax,
        folder_sync or SHARED_FOLDER_SYNC,
        unnamed=unnamed and _UNNAMED,
    )
    incoming = incoming_folder(root)
    # Linked, never renamed, into place: of two associations storing the
    # same new instance at once, the second finds the first's file. The link
    # finding the name taken is the test (a retry writes its bytes for nothing,
    # a new instance, the common case, saves a stat).
    if content.write(incoming, folder, name, replace=False):
        return StoredInstance(folder / name, content.size)
    final = folder / name
    if content.is_stored_in(final):
        return _found(content.make_durable(final))
    if duplicates is Duplicates.REPLACE:
        LOGGER.warning("replacing %s with a different instance of the same UID", final)
        content.write(incoming, folder, name, replace=True)
        return StoredInstance(final, content.size, Duplicate.DIFFERENT)
    if duplicates is Duplicates.KEEP_BOTH:
        # A retry of the second instance in another syntax has another digest:
        # every copy kept beside is looked at, not only the one of this digest.
        for kept in sorted(folder.glob(f"{final.stem}-*.dcm")):
            if content.is_stored_in(kept):
                return _found(content.make_durable(kept))
        beside = final.with_name(f"{final.stem}-{content.digest()}.dcm")
        if content.write(incoming, folder, beside.name, replace=False):
            LOGGER.warning("%s holds a different instance of the same UID; kept %s", final, beside)
            return StoredInstance(beside, content.size, Duplicate.DIFFERENT)
    raise DuplicateInstanceError(final)


def _found(stored: Path) -> StoredInstance:
    """The instance found stored at ``stored``: its size is the file's (it may have
    come in another transfer syntax than the bytes that found it)."""
    return StoredInstance(stored, stored.stat().st_size, Duplicate.IDENTICAL)


class _Content:
    """A Part 10 file to be: its header, then the dataset bytes (in memory or a file)."""

    def __init__(
        self,
        header: bytes,
        dataset: bytes | memoryview | Path,
        transfer_syntax: str,
        folder_sync: FolderSync,
        *,
        unnamed: bool,
    ) -> None:
        self.header = header
        self.dataset = dataset
        self.transfer_syntax = transfer_syntax
        self.folder_sync = folder_sync
        self.unnamed = unnamed

    @property
    def size(self) -> int:
        if isinstance(self.dataset, Path):
            return len(self.header) + self.dataset.stat().st_size
        return len(self.header) + memoryview(self.dataset).nbytes

    def chunks(self) -> Iterator[bytes | memoryview]:
        yield self.header
        if isinstance(self.dataset, Path):
            with self.dataset.open("rb") as reader:
                while chunk := reader.read(_COPY_CHUNK):
                    yield chunk
            return
        view = memoryview(self.dataset).cast("B")
        for offset in range(0, len(view), _COPY_CHUNK):
            yield view[offset : offset + _COPY_CHUNK]

    def same_as(self, path: Path) -> bool:
        """Whether ``path`` holds exactly these bytes (False when it does not exist)."""
        try:
            with path.open("rb") as stored:
                if os.fstat(stored.fileno()).st_size != self.size:
                    return False
                return all(stored.read(len(chunk)) == chunk for chunk in self.chunks())
        except FileNotFoundError:
            return False

    def is_stored_in(self, path: Path) -> bool:
        """Whether ``path`` holds this instance: these very bytes, or the same data set
        whatever its transfer syntax and File Meta Information (False when absent)."""
        if self.same_as(path):
            return True
        try:
            stored = EncodedDataSet.in_part10_file(path)
        except (FileNotFoundError, DatasetCodecError):
            return False
        # Only on this rare path (a UID stored before) is anything decoded.
        return same_data_set(stored, EncodedDataSet(self.dataset, self.transfer_syntax))

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for chunk in self.chunks():
            hasher.update(chunk)
        return hasher.hexdigest()[:_DIGEST_LENGTH]

    def make_durable(self, stored: Path) -> Path:
        """Make an instance found already stored durable before it is answered Success.

        The store that linked it may still be in its folder fsync (another
        association storing the same instance now), or may have failed in it (a
        retry after an I/O error, or a restart after a crash): finding the file is
        no proof that it, or its entry, is on disk.
        """
        with stored.open("rb") as reader:
            os.fsync(reader.fileno())
        self.folder_sync.sync(stored.parent)
        return stored

    def write(self, incoming: Path, folder: Path, name: str, *, replace: bool) -> bool:
        """Write these bytes durably as ``name`` in ``folder``; False (nothing written)
        if it exists and ``replace`` is off. Makes ``incoming`` and ``folder`` if missing."""
        try:
            return self._write(incoming, folder, name, replace=replace)
        except FileNotFoundError:
            # The folders are looked for only when a write finds one missing: a store
            # into an existing series costs no stat of them (a new series, or a
            # folder removed meanwhile, comes here once).
            _make_folders(folder)
            _make_folders(incoming)
            return self._write(incoming, folder, name, replace=replace)

    def _write(self, incoming: Path, folder: Path, name: str, *, replace: bool) -> bool:
        if replace or not self.unnamed or (_NAMED_ONLY and str(incoming) in _NAMED_ONLY):
            return self._write_named(incoming, folder / name, replace=replace)
        # Opened first: a new series' missing folder is found before anything is written.
        entries = os.open(folder, _FOLDER_FLAGS)
        try:
            try:
                handle = os.open(incoming, _UNNAMED_FLAGS, FILE_MODE)
            except OSError as exc:
                if exc.errno not in _NO_UNNAMED:
                    raise
                _NAMED_ONLY.add(str(incoming))
                return self._write_named(incoming, folder / name, replace=False)
            try:
                self._fill(handle)
                try:
                    # linkat(2) with AT_SYMLINK_FOLLOW (a dst_dir_fd makes os.link call
                    # it): the only way to name an O_TMPFILE file without
                    # CAP_DAC_READ_SEARCH.
                    os.link(f"{_PROC_FD}/{handle}", name, dst_dir_fd=entries, follow_symlinks=True)
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in _NO_LINK_FROM_PROC:
                        raise
                    LOGGER.warning(
                        "storage: %s refuses to link unnamed files into place (%s); "
                        "new instances are written through named temporary files",
                        incoming,
                        exc,
                    )
                    _NAMED_ONLY.add(str(incoming))
                    return self._write_named(incoming, folder / name, replace=False)
            finally:
                os.close(handle)
            self.folder_sync.sync(folder, entries)
        finally:
            os.close(entries)
        return True

    def _write_named(self, incoming: Path, final: Path, *, replace: bool) -> bool:
        """:meth:`_write` through a temporary file with a name in ``incoming``: where
        the file system has no unnamed ones, and for a replace (rename is atomic)."""
        handle, temporary = tempfile.mkstemp(suffix=".part", dir=incoming)
        try:
            try:
                self._fill(handle)
            finally:
                os.close(handle)
            if replace:
                os.replace(temporary, final)
            else:
                try:
                    os.link(temporary, final)
                except FileExistsError:
                    return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        self.folder_sync.sync(final.parent)
        return True

    def _fill(self, handle: int) -> None:
        """Write the bytes to the new file ``handle``, set its mode, fsync it."""
        # The mode a file is created with is masked by the umask; PHI stays 0600.
        os.fchmod(handle, FILE_MODE)
        if isinstance(self.dataset, Path):
            _write_all(handle, [self.header])
            _copy_file(self.dataset, handle)
        else:
            _write_all(handle, [self.header, self.dataset])
        os.fsync(handle)


def _write_all(handle: int, buffers: list[bytes | memoryview]) -> None:
    """Write ``buffers`` in order to ``handle``: one writev(2) unless the kernel writes
    less than asked (a signal, a huge buffer), then what is left."""
    views = [memoryview(buffer).cast("B") for buffer in buffers]
    while views:
        views = advance(views, os.writev(handle, views[:IOV_MAX]))


def _make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents (0700), each new entry made durable."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for created in reversed(missing):
        try:
            os.mkdir(created, FOLDER_MODE)
        except FileExistsError:
            if not created.is_dir():
                raise
            continue  # made meanwhile by another association
        # mkdir's mode is masked by the umask; PHI folders stay 0700 whatever it is.
        os.chmod(created, FOLDER_MODE)
        # A new folder exists after a crash only once its parent's entry is on disk.
        fsync_folder(created.parent)


def fsync_folder(folder: Path) -> None:
    """Make the entries of ``folder`` (files created, renamed, removed) durable."""
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class FolderSync:
    """fsync of folders, shared by concurrent stores (group commit); thread-safe.

    A store links its file into place, then calls :meth:`sync` for the folder.
    With ``grouped`` (the default) concurrent calls form groups
    (:class:`dicombus.group_commit.GroupCommit`): the group's leader fsyncs each
    distinct folder of the group once, and every member returns only after that
    fsync, which began after its link, finished. On ext4 and XFS a folder fsync
    commits the file system's journal, a disk flush: 1 to 10 ms on an SSD behind
    a VM, the largest single cost of a durable C-STORE. ``grouped=False`` fsyncs
    in the caller, one per store (measured against in bench/store_sync.py).
    ``sync_one`` makes one folder durable (:func:`fsync_folder`; a test wraps it to
    count the calls: Linux counts no fsyncs per process).
    """

    def __init__(
        self, *, grouped: bool = True, sync_one: Callable[[Path], None] | None = None
    ) -> None:
        self._sync_one = sync_one or fsync_folder
        self._group = GroupCommit(self._sync_all) if grouped else None

    def sync(self, folder: Path, descriptor: int | None = None) -> None:
        """Return once the entries ``folder`` holds now are durable; OSError if not.

        ``descriptor``: ``folder`` opened already by the caller, fsynced instead of
        opening it again when the fsync is the caller's own (not grouped).
        """
        if self._group is not None:
            self._group.submit(folder)
        elif descriptor is not None and self._sync_one is fsync_folder:
            os.fsync(descriptor)
        else:
            self._sync_one(folder)

    @property
    def waiting(self) -> int:
        """Stores waiting for their folder's fsync now (for tests and metrics)."""
        return 0 if self._group is None else self._group.waiting

    def _sync_all(self, folders: list[Path]) -> None:
        # One fsync per distinct folder, in the order they came. An error fails
        # every member of the group, whichever folder it was: conservative, no
        # store may answer Success for an entry that might not be durable.
        for folder in dict.fromkeys(folders):
            self._sync_one(folder)


# The process's folder syncs: every association of an edge stores through it.
# Not grouped: on ext4 (bench/store_sync.py, a VM disk) concurrent folder fsyncs
# already share the file system's journal commit, and grouping them cut the
# fsync calls (41 for 256 stores at 32 associations, one folder) but not the
# time, and serialised the fsyncs of different folders (the study layout: 280
# against 903 inst/s). A store may pass FolderSync() where fsyncs do not merge.
SHARED_FOLDER_SYNC = FolderSync(grouped=False)


def _copy_file(source: Path, target: int) -> None:
    """Append the bytes of ``source`` to the file ``target`` in chunks."""
    with source.open("rb") as reader:
        remaining = os.fstat(reader.fileno()).st_size
        kernel_copy = getattr(os, "copy_file_range", None)
        while remaining > 0 and kernel_copy is not None:
            try:
                copied = kernel_copy(reader.fileno(), target, min(remaining, _COPY_CHUNK))
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                break
            if copied == 0:
                break
            remaining -= copied
        # Both file offsets moved with every kernel copy, so the plain copy
        # (the fallback, or the whole job without copy_file_range) resumes there.
        while chunk := reader.read(_COPY_CHUNK):
            _write_all(target, [chunk])
