"""DIMSE status codes (PS3.7 Annex C and the service annexes of PS3.4).

The (0000,0900) Status element of every response carries one of these codes.
Each code falls into a category -- Success, Pending, Cancel, Warning or
Failure -- that decides what a requestor does next; :func:`status_category`
maps a code to its category by the rules of PS3.7 Annex C.
"""

from __future__ import annotations

from typing import Final

# Category names, spelled as pynetdicom spells them so that users comparing
# against its strings keep working.
STATUS_SUCCESS: Final = "Success"
STATUS_PENDING: Final = "Pending"
STATUS_CANCEL: Final = "Cancel"
STATUS_WARNING: Final = "Warning"
STATUS_FAILURE: Final = "Failure"
STATUS_UNKNOWN: Final = "Unknown"

# PS3.7 C.1: Success.
SUCCESS: Final = 0x0000

# PS3.7 C.2 / PS3.4 C.4.1.1.4: Pending. 0xFF01 is "matches are continuing,
# one or more Optional Keys were not supported".
PENDING: Final = 0xFF00
PENDING_WARNING: Final = 0xFF01

# PS3.7 C.3: Cancel (the request was cancelled by a C-CANCEL-RQ).
CANCEL: Final = 0xFE00

# PS3.7 C.4 and PS3.4: Warning.
REQUESTED_OPTIONAL_ATTRIBUTES_NOT_SUPPORTED: Final = 0x0001
ATTRIBUTE_LIST_ERROR: Final = 0x0107
ATTRIBUTE_VALUE_OUT_OF_RANGE: Final = 0x0116
# PS3.4 B.2.3: Storage warnings.
COERCION_OF_DATA_ELEMENTS: Final = 0xB000
ELEMENTS_DISCARDED: Final = 0xB006
DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: Final = 0xB007
# PS3.4 C.4.2.1.5 / C.4.3.1.4: the same code in C-MOVE / C-GET responses.
SUB_OPERATIONS_COMPLETE_WITH_FAILURES: Final = 0xB000

# PS3.7 C.5: Failure, general codes shared by every service.
NO_SUCH_ATTRIBUTE: Final = 0x0105
INVALID_ATTRIBUTE_VALUE: Final = 0x0106
PROCESSING_FAILURE: Final = 0x0110
DUPLICATE_SOP_INSTANCE: Final = 0x0111
NO_SUCH_SOP_INSTANCE: Final = 0x0112
NO_SUCH_EVENT_TYPE: Final = 0x0113
NO_SUCH_ARGUMENT: Final = 0x0114
INVALID_ARGUMENT_VALUE: Final = 0x0115
INVALID_OBJECT_INSTANCE: Final = 0x0117
NO_SUCH_SOP_CLASS: Final = 0x0118
CLASS_INSTANCE_CONFLICT: Final = 0x0119
MISSING_ATTRIBUTE: Final = 0x0120
MISSING_ATTRIBUTE_VALUE: Final = 0x0121
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
NO_SUCH_ACTION_TYPE: Final = 0x0123
NOT_AUTHORIZED: Final = 0x0124
DUPLICATE_INVOCATION: Final = 0x0210
UNRECOGNIZED_OPERATION: Final = 0x0211
MISTYPED_ARGUMENT: Final = 0x0212
RESOURCE_LIMITATION: Final = 0x0213

# PS3.4 B.2.3 / C.4: service-specific failures. The ranged ones give the
# first code of the range as the usual value and the range for matching.
OUT_OF_RESOURCES: Final = 0xA700
OUT_OF_RESOURCES_RANGE: Final = range(0xA700, 0xA800)
OUT_OF_RESOURCES_NUMBER_OF_MATCHES: Final = 0xA701
OUT_OF_RESOURCES_SUB_OPERATIONS: Final = 0xA702
MOVE_DESTINATION_UNKNOWN: Final = 0xA801
DATA_SET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
DATA_SET_DOES_NOT_MATCH_SOP_CLASS_RANGE: Final = range(0xA900, 0xAA00)
CANNOT_UNDERSTAND: Final = 0xC000
CANNOT_UNDERSTAND_RANGE: Final = range(0xC000, 0xD000)

_PENDING_CODES: Final = frozenset({PENDING, PENDING_WARNING})

_GENERAL_WARNINGS: Final = frozenset(
    {
        REQUESTED_OPTIONAL_ATTRIBUTES_NOT_SUPPORTED,
        ATTRIBUTE_LIST_ERROR,
        ATTRIBUTE_VALUE_OUT_OF_RANGE,
    }
)

_GENERAL_FAILURES: Final = frozenset(
    {
        NO_SUCH_ATTRIBUTE,
        INVALID_ATTRIBUTE_VALUE,
        PROCESSING_FAILURE,
        DUPLICATE_SOP_INSTANCE,
        NO_SUCH_SOP_INSTANCE,
        NO_SUCH_EVENT_TYPE,
        NO_SUCH_ARGUMENT,
        INVALID_ARGUMENT_VALUE,
        INVALID_OBJECT_INSTANCE,
        NO_SUCH_SOP_CLASS,
        CLASS_INSTANCE_CONFLICT,
        MISSING_ATTRIBUTE,
        MISSING_ATTRIBUTE_VALUE,
        SOP_CLASS_NOT_SUPPORTED,
        NO_SUCH_ACTION_TYPE,
        NOT_AUTHORIZED,
        DUPLICATE_INVOCATION,
        UNRECOGNIZED_OPERATION,
        MISTYPED_ARGUMENT,
        RESOURCE_LIMITATION,
    }
)


def is_pending(code: int | None) -> bool:
    """Whether a response with this Status is followed by more (PS3.7 C.4.1: 0xFF00,
    0xFF01); a missing Status is not pending."""
    return code is not None and code in _PENDING_CODES


def status_category(code: int) -> str:
    """Return the category of a Status code, or ``"Unknown"``.

    PS3.7 C.4 / C.5 and PS3.4: service classes define their own codes inside
    reserved blocks -- warnings are Bxxx, failures Axxx and Cxxx -- so a code
    from those blocks has a category even when no annex names it.
    """
    if code == SUCCESS:
        return STATUS_SUCCESS
    if code in _PENDING_CODES:
        return STATUS_PENDING
    if code == CANCEL:
        return STATUS_CANCEL
    if code in _GENERAL_WARNINGS or 0xB000 <= code <= 0xBFFF:
        return STATUS_WARNING
    if code in _GENERAL_FAILURES or 0xA000 <= code <= 0xAFFF or 0xC000 <= code <= 0xCFFF:
        return STATUS_FAILURE
    return STATUS_UNKNOWN
