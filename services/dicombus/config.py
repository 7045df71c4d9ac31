"""Process-wide switches, named as pynetdicom's ``_config`` so its users find them.

Change them before creating associations: ``from dicombus import _config``
(or ``dicombus.config``) then ``_config.LOG_HANDLER_LEVEL = "none"``.
"""

from __future__ import annotations

# "standard": the association logs what happens on it through the "dicombus"
# logger (requested / accepted / rejected / released / aborted, DIMSE
# messages at INFO, PDUs at DEBUG when the logger is at DEBUG). "none": silent.
LOG_HANDLER_LEVEL: str = "standard"

# False: the Storage SCP answers only on presentation contexts whose abstract
# syntax is a storage SOP class. True: any context may carry a C-STORE, for
# private SOP classes (pynetdicom's switch of the same name).
UNRESTRICTED_STORAGE_SERVICE: bool = False

# True: every received C-STORE dataset is written to a temporary file as its
# fragments arrive (event.dataset_path), whatever its size. False: only those
# larger than STORE_SPOOL_THRESHOLD bytes are.
STORE_RECV_CHUNKED_DATASET: bool = False
STORE_SPOOL_THRESHOLD: int = 32 * 1024 * 1024

# The folder for spooled datasets; None means the system temporary folder.
STORE_SPOOL_DIRECTORY: str | None = None
