"""A storage folder and its index kept together: what ``dicombus qrscp`` and the edge serve.

:meth:`IndexedStorage.open` brings the index up to date with the folder
before anything is served (a file stored but not indexed when the last run
died is indexed, a row whose file is gone is dropped); from then on
:meth:`IndexedStorage.handle_store` (bound to EVT_C_STORE) queues each
instance for the index once :func:`dicombus.storage_handler.store_received`
has made it durable, with the header that function parsed to check the
instance, and answers. The :class:`~dicombus.qr.index_writer.IndexWriter`
writes the queue in batches, and every read of the index writes what is
still queued first, so an instance answered Success is found by the next
C-FIND and committed by the next Storage Commitment request.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType

from pydicom.dataset import Dataset

from dicombus import evt
from dicombus.qr.index import LAST_INDEXED_TAG, Index, IndexEntry, ScanReport
from dicombus.qr.index_writer import IndexWriter
from dicombus.storage_files import Duplicate, Duplicates, Layout
from dicombus.storage_handler import store_received

LOGGER = logging.getLogger("dicombus.qr")


class IndexedStorage:
    """The instances under ``root``, written with ``layout`` / ``duplicates``, indexed in
    ``index`` (an SQLite file kept between runs)."""

    def __init__(
        self,
        root: Path,
        index: Path | str,
        *,
        layout: Layout,
        duplicates: Duplicates = Duplicates.KEEP_FIRST,
    ) -> None:
        self.root = root
        self.layout = layout
        self.duplicates = duplicates
        self.index = Index(index)
        self.writer = IndexWriter(self.index)
        # The index names files by their resolved paths (as a scan finds them); the
        # store names them under the root as given. Below the root, the layouts'
        # folders are the node's own, never links.
        self._given_root = os.path.join(root.absolute(), "")
        self._resolved_root = os.path.join(root.resolve(), "")

    def open(self) -> ScanReport:
        """Index what the folder holds and the index lacks, forget what it lost; then
        start the writer."""
        report = self.index.scan(self.root)
        self.writer.start()
        return report

    def close(self) -> None:
        """Write what is queued, then close the index."""
        self.writer.close()
        self.index.close()

    def __enter__(self) -> IndexedStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def handle_store(self, event: evt.Event) -> int | Dataset:
        """EVT_C_STORE: store durably, queue for the index, answer."""
        result = store_received(
            event, self.root, self.layout, self.duplicates, read_until=LAST_INDEXED_TAG
        )
        stored, meta = result.stored, result.meta
        if stored is None or meta is None:
            return result.reply
        # The same instance found stored may be in another transfer syntax than the
        # one received: its file's own header is read then.
        parsed = stored.duplicate is not Duplicate.IDENTICAL
        self.writer.submit(
            IndexEntry(
                self._resolved(str(stored.path.absolute())),
                result.header if parsed else None,
                meta.transfer_syntax,
            )
        )
        return result.reply

    def _resolved(self, stored_path: str) -> str:
        if stored_path.startswith(self._given_root):
            return self._resolved_root + stored_path[len(self._given_root) :]
        return os.path.realpath(stored_path)
