"""Turning what an intervention handler returned into a response status.

Handlers return an int status or a pydicom Dataset holding (0000,0900)
Status and optionally ErrorComment / OffendingElement / ErrorID, as in
pynetdicom. Anything else is the handler author's bug: it is logged in words
that say what was wrong, and the peer gets a failure status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

LOGGER = logging.getLogger("dicombus.services")

# pynetdicom's codes for handler mistakes, so peers see the same statuses.
STATUS_DATASET_WITHOUT_STATUS = 0xC001
STATUS_INVALID_RETURN = 0xC002


@dataclass(frozen=True, slots=True)
class HandlerStatus:
    status: int
    error_comment: str | None = None
    offending_element: list[int] | None = None


def interpret_status(value: Any, event_name: str) -> HandlerStatus:
    if isinstance(value, bool):
        LOGGER.error(
            "the %s handler returned a bool; return an int status such as 0x0000", event_name
        )
        return HandlerStatus(STATUS_INVALID_RETURN)
    if isinstance(value, int):
        if 0 <= value <= 0xFFFF:
            return HandlerStatus(value)
        LOGGER.error("the %s handler returned %r, which is not a 16-bit status", event_name, value)
        return HandlerStatus(STATUS_INVALID_RETURN)
    if isinstance(value, Dataset):
        if "Status" not in value:
            LOGGER.error(
                "the %s handler returned a Dataset without a (0000,0900) Status", event_name
            )
            return HandlerStatus(STATUS_DATASET_WITHOUT_STATUS)
        offending = value.get("OffendingElement")
        # pydicom gives one tag as an int and several as a MultiValue (a Sequence).
        if offending is not None and not isinstance(offending, Sequence):
            offending = [offending]
        return HandlerStatus(
            int(value.Status),
            error_comment=value.get("ErrorComment"),
            offending_element=[int(tag) for tag in offending] if offending else None,
        )
    LOGGER.error(
        "the %s handler returned %s; return an int status or a Dataset with a Status element",
        event_name,
        type(value).__name__,
    )
    return HandlerStatus(STATUS_INVALID_RETURN)
