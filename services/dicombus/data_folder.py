"""The node's data folder: one owner at a time, private, and the record of how to reach it.

``dicombus up`` and ``dicombus edge`` keep everything in one folder (storage,
outbox, the embedded Redis's append-only file, the audit store, logs). This
module is what they agree on:

- **One owner.** The owner holds an exclusive ``flock`` on ``node.lock``. Its
  children inherit the lock's descriptor (:attr:`DataFolder.lock_fd`), so the
  lock is free only once the owner *and* every child it started are gone: a
  second node can never run a second Redis on the same append-only file.
- **Private.** The folder is 0700 and the node runs with umask 077, so the
  instances, the outbox, the audit store and the AOF (all PHI) are readable
  by the node's user only.
- **Discoverable.** ``node.json`` (0600) records the broker URL with its
  credentials, the pids and the DICOM address; every command that needs the
  broker reads it from ``--data`` (default ``./dicombus-data``).
- **A secret.** ``redis.secret`` (0600), generated at the first start, is the
  password of the embedded Redis.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dicombus.protocol.errors import DicombusError

DEFAULT_DATA = Path("dicombus-data")
LOCK_FILE = "node.lock"
NODE_FILE = "node.json"
SECRET_FILE = "redis.secret"
BROKER_URL_ENV = "DICOMBUS_BROKER_URL"
# Where a broker is looked for when neither the environment nor a data folder names one.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
# An owner that died leaves children stopping (Redis fsyncs its AOF, workers finish
# their task): a new owner waits this long for them before it gives up.
ORPHAN_WAIT = 20.0
_ORPHAN_POLL = 0.1
PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077
SECRET_BYTES = 32


class DataFolderError(DicombusError, RuntimeError):
    """The data folder cannot be used (in use by another node, unreadable record)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """What ``node.json`` says about the node that owns the folder."""

    command: str  # "up" or "edge"
    pid: int
    broker_url: str  # with credentials: the file is 0600
    embedded_redis: bool
    redis_pid: int | None = None
    redis_port: int | None = None
    ae_title: str = ""
    address: tuple[str, int] | None = None
    audit_db: str | None = None
    worker_pids: tuple[int, ...] = field(default_factory=tuple)
    started: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> NodeRecord:
        values: dict[str, Any] = json.loads(text)
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        if known.get("address") is not None:
            host, port = known["address"]
            known["address"] = (str(host), int(port))
        known["worker_pids"] = tuple(known.get("worker_pids") or ())
        return cls(**known)


class DataFolder:
    """A node's data folder; :meth:`acquire` makes this process its owner."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    @property
    def lock_fd(self) -> int:
        """The locked descriptor: pass it to children (``pass_fds``) so that the folder
        stays locked until they are gone too."""
        if self._lock_fd is None:
            raise DataFolderError(f"the data folder {self.path} is not locked by this process")
        return self._lock_fd

    @property
    def node_file(self) -> Path:
        return self.path / NODE_FILE

    def acquire(self, command: str, *, orphan_wait: float = ORPHAN_WAIT) -> None:
        """Create the folder (0700), set umask 077 and lock it for this process.

        Raises :class:`DataFolderError` naming the owner when another node runs on
        it. When the recorded owner is dead but its children still hold the lock
        (they are stopping), waits up to ``orphan_wait`` seconds for them.
        """
        os.umask(PRIVATE_UMASK)
        self.path.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # not ours to change: leave it
            os.chmod(self.path, PRIVATE_FOLDER)
        descriptor = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        deadline = time.monotonic() + orphan_wait
        try:
            while not _try_lock(descriptor):
                owner_pid, owner_command = _lock_owner(descriptor)
                if owner_pid is not None and _alive(owner_pid):
                    raise DataFolderError(
                        f"the data folder {self.path.resolve()} is in use by "
                        f"'dicombus {owner_command}' (pid {owner_pid}); stop it first, "
                        "or give this node a folder of its own with --data"
                    )
                if time.monotonic() >= deadline:
                    raise DataFolderError(
                        f"the data folder {self.path.resolve()} is still locked by processes "
                        f"of a node that is gone (waited {orphan_wait:.0f} s); "
                        f"'fuser {self.path.resolve() / LOCK_FILE}' names them"
                    )
                time.sleep(_ORPHAN_POLL)
            # The owner's pid in the lock file itself: whoever finds the folder locked
            # learns who holds it, even before node.json is written.
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()} {command}\n".encode(), 0)
        except BaseException:
            os.close(descriptor)
            raise
        self._lock_fd = descriptor

    def release(self) -> None:
        """Unlock (children that inherited the descriptor keep it locked until they exit)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def redis_secret(self) -> str:
        """The embedded Redis's password, generated (0600) at the first start."""
        path = self.path / SECRET_FILE
        try:
            secret = path.read_text().strip()
        except FileNotFoundError:
            secret = ""
        if not secret:
            secret = secrets.token_urlsafe(SECRET_BYTES)
            _write_private(path, secret + "\n")
        return secret

    def write_record(self, record: NodeRecord) -> None:
        _write_private(self.node_file, record.to_json() + "\n")

    def read_record(self) -> NodeRecord | None:
        """The recorded node, or None when no node ever ran here."""
        try:
            text = self.node_file.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DataFolderError(f"cannot read {self.node_file}: {exc}") from exc
        try:
            return NodeRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise DataFolderError(f"{self.node_file} is not a node record: {exc}") from exc


def broker_url_for(data: Path | None) -> str:
    """The broker a command should use: ``DICOMBUS_BROKER_URL`` if set, else the one the
    node in ``data`` (default ``./dicombus-data``) recorded, else the default URL."""
    configured = os.environ.get(BROKER_URL_ENV, "").strip()
    if configured:
        return configured
    record = DataFolder(data if data is not None else DEFAULT_DATA).read_record()
    return record.broker_url if record is not None else DEFAULT_BROKER_URL


def node_not_running(data: Path | None) -> str | None:
    """A warning when the broker would come from a node record whose node is gone (its
    workers and tails would wait on a Redis nobody runs), else None."""
    if os.environ.get(BROKER_URL_ENV, "").strip():
        return None
    folder = data if data is not None else DEFAULT_DATA
    record = DataFolder(folder).read_record()
    if record is None or _alive(record.pid):
        return None
    return (
        f"the node recorded in {folder.resolve() / NODE_FILE} ('dicombus {record.command}', "
        f"pid {record.pid}) is not running; waiting for its broker until it is started again"
    )


def redact(url: str) -> str:
    """``url`` with its password replaced, for logs and banners."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not separator or not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{location}"


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    return True


def _lock_owner(descriptor: int) -> tuple[int | None, str]:
    """The pid and command written in the lock file by its owner (None: unreadable)."""
    pid, _, command = os.pread(descriptor, 64, 0).decode(errors="replace").partition(" ")
    return (int(pid), command.strip()) if pid.isdigit() else (None, "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(handle, PRIVATE_FILE)
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
