"""Group commit, leader style: concurrent callers share one expensive commit (an fsync).

A caller :meth:`GroupCommit.submit`\\ s its item and returns once a commit that
began *after* the item was submitted has finished: only such a commit can
cover it (an fsync that started before a file was linked may not include its
directory entry). The caller that finds no commit running commits itself,
with every item waiting at that moment; callers that arrive meanwhile wait,
and the first of them to wake commits their items together next. Under load N
concurrent callers cost about two commits instead of N; alone, a caller pays
one commit in its own thread and no hand-off to another (a committer thread
would add two thread switches per item).

Used by the event journal (:mod:`dicombus.bus.journal`: one write and one
fdatasync per group) and the storage folder (:mod:`dicombus.storage_files`: one fsync
per distinct folder per group).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(slots=True)
class _Entry(Generic[Item]):
    item: Item
    done: bool = False
    error: BaseException | None = None


class GroupCommit(Generic[Item]):
    """Runs ``commit(items)`` for groups of concurrently submitted items; thread-safe.

    ``commit`` runs without the lock held (the next group gathers meanwhile). If it
    raises, every caller of that group gets the error: a group succeeds or fails
    whole, so no caller is told its item is durable when it may not be.
    """

    def __init__(self, commit: Callable[[list[Item]], None]) -> None:
        self._commit = commit
        self._cond = threading.Condition()
        self._waiting: list[_Entry[Item]] = []
        self._committing = False

    def submit(self, item: Item) -> None:
        """Return once a commit covering ``item`` finished; raise its error if it failed."""
        entry = _Entry(item)
        with self._cond:
            self._waiting.append(entry)
            while self._committing and not entry.done:
                self._cond.wait()
            if not entry.done:
                self._lead()  # commits this item, and every other one waiting
        if entry.error is not None:
            raise entry.error

    def flush(self) -> None:
        """Commit now, with whatever waits (possibly nothing), unless a commit is running.

        For owners whose ``commit`` also writes state of their own (the journal's
        deletes); an error is the caller's to handle, as ``commit`` raised it.
        """
        with self._cond:
            if not self._committing:
                self._lead()

    @property
    def waiting(self) -> int:
        """Items submitted and not yet taken into a commit (for tests and metrics)."""
        with self._cond:
            return len(self._waiting)

    @property
    def committing(self) -> bool:
        """Whether a commit runs now (a hint: it may end at once)."""
        return self._committing

    @contextmanager
    def idle(self) -> Iterator[None]:
        """Hold the lock with no commit running: the owner may use what ``commit`` uses."""
        with self._cond:
            while self._committing:
                self._cond.wait()
            yield

    def _lead(self) -> None:
        """Commit what waits; called with the lock held and no commit running."""
        entries, self._waiting = self._waiting, []
        self._committing = True
        self._cond.release()
        error: BaseException | None = None
        try:
            self._commit([entry.item for entry in entries])
        except BaseException as exc:
            error = exc
        finally:
            self._cond.acquire()
            self._committing = False
            for entry in entries:
                entry.error = error
                entry.done = True
            self._cond.notify_all()
        if error is not None and not entries:
            raise error  # a flush() with nothing submitted: its caller gets the error
