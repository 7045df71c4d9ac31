"""``debug_logger()``: everything dicombus logs, to stderr, as pynetdicom's helper does."""

from __future__ import annotations

import logging

_FORMAT = "%(levelname).1s: %(name)s: %(message)s"


def debug_logger() -> None:
    """Send the "dicombus" logger's output, DEBUG and up, to stderr."""
    logger = logging.getLogger("dicombus")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
