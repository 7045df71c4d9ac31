"""A storage folder and its index kept together: what ``dicombus qrscp`` and the edge serve.

:meth:`IndexedStorage.open` brings the index up to date with the folder
before anything is served (a file stored but not indexed when the last run
died is indexed, a row whose file is gone is dropped); from then on
:meth:`IndexedStorage.handle_store` (bound to EVT_C_STORE) indexes each
instance after :func:`dicombus.storage_handler.handle_store` has made it
durable, and before the response leaves, so an instance answered Success is
found by the next C-FIND and committed by the next Storage Commitment request.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from pydicom.dataset import Dataset

from dicombus import evt
from dicombus.protocol import status
from dicombus.qr.index import Index, ScanReport
from dicombus.services.storage import withdraw_stored_file
from dicombus.storage_files import Duplicates, Layout
from dicombus.storage_handler import failure_reply, handle_store

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

    def open(self) -> ScanReport:
        """Index what the folder holds and the index lacks, forget what it lost."""
        return self.index.scan(self.root)

    def close(self) -> None:
        self.index.close()

    def handle_store(self, event: evt.Event) -> int | Dataset:
        """EVT_C_STORE: store durably, then index, then answer.

        An instance stored but not indexed is answered 0xA700: Success would
        promise that a query finds it. The file this request wrote goes too, so
        the disk agrees with the answer (a copy stored before stays); the peer
        may send it again.
        """
        result = handle_store(event, self.root, self.layout, self.duplicates)
        if result != status.SUCCESS:
            return result
        path = Path(event.request.outcome["stored_path"])  # type: ignore[attr-defined]
        try:
            if not self.index.add_file(path):
                LOGGER.warning("stored %s, which is not an instance of the Q/R hierarchy", path)
        except (OSError, sqlite3.Error) as exc:
            LOGGER.error("stored %s but could not index it: %s", path, exc)
            withdraw_stored_file(event.request.outcome)  # type: ignore[attr-defined]
            return failure_reply(status.OUT_OF_RESOURCES, "stored but not indexed; send again")
        return result
