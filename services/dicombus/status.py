"""Status codes by service class, as pynetdicom's ``pynetdicom.status`` offers them.

Code written for pynetdicom imports ``from pynetdicom.status import ...``; the
same names are here, so ``from dicombus.status import code_to_category`` works
after changing the import. The codes and their categories come from PS3.7
Annex C (the general codes every DIMSE service may use) and from the service
annexes of PS3.4 that define their own; the category rules themselves live in
:mod:`dicombus.protocol.status`, which the protocol layer uses.

Each ``*_STATUS`` table maps a code to ``(category, description)``. A range
the standard reserves for one meaning (PS3.4 B.2.3: A7xx "Refused: Out of
Resources", C000-CFFF "Cannot understand") has every code of it in the table,
so a lookup needs no range logic.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, TypeAlias

from pydicom.dataset import Dataset

from dicombus.protocol import status as _codes
from dicombus.protocol.status import (
    STATUS_CANCEL,
    STATUS_FAILURE,
    STATUS_PENDING,
    STATUS_SUCCESS,
    STATUS_UNKNOWN,
    STATUS_WARNING,
)

__all__ = [
    "APPLICATION_EVENT_LOGGING_SERVICE_CLASS_STATUS",
    "GENERAL_STATUS",
    "MEDIA_CREATION_MANAGEMENT_SERVICE_CLASS_STATUS",
    "MODALITY_WORKLIST_SERVICE_CLASS_STATUS",
    "NON_PATIENT_SERVICE_CLASS_STATUS",
    "PRINT_JOB_MANAGEMENT_SERVICE_CLASS_STATUS",
    "PROCEDURE_STEP_STATUS",
    "QR_FIND_SERVICE_CLASS_STATUS",
    "QR_GET_SERVICE_CLASS_STATUS",
    "QR_MOVE_SERVICE_CLASS_STATUS",
    "RELEVANT_PATIENT_SERVICE_CLASS_STATUS",
    "RT_MACHINE_VERIFICATION_SERVICE_CLASS_STATUS",
    "STATUS_CANCEL",
    "STATUS_FAILURE",
    "STATUS_PENDING",
    "STATUS_SUCCESS",
    "STATUS_UNKNOWN",
    "STATUS_WARNING",
    "STORAGE_COMMITMENT_SERVICE_CLASS_STATUS",
    "STORAGE_MANAGEMENT_SERVICE_CLASS_STATUS",
    "STORAGE_SERVICE_CLASS_STATUS",
    "SUBSTANCE_ADMINISTRATION_SERVICE_CLASS_STATUS",
    "UNIFIED_PROCEDURE_STEP_SERVICE_CLASS_STATUS",
    "VERIFICATION_SERVICE_CLASS_STATUS",
    "Status",
    "StatusDictType",
    "code_to_category",
    "code_to_status",
]

StatusDictType: TypeAlias = dict[int, tuple[str, str]]

# One row of a table: the first and last code (equal for a single code), the
# category and what the standard says the code means.
_Row: TypeAlias = tuple[int, int, str, str]


def _single(code: int, category: str, meaning: str) -> _Row:
    return (code, code, category, meaning)


def _table(*rows: _Row, base: StatusDictType | None = None) -> StatusDictType:
    table = dict(base or {})
    for first, last, category, meaning in rows:
        for code in range(first, last + 1):
            table[code] = (category, meaning)
    return table


# PS3.7 C.1, C.3, C.4 and C.5: Success, Cancel, and the general warning and
# failure codes that any DIMSE service may return. 0x0001 and the Pending
# codes are not here: they belong to the services that define them.
GENERAL_STATUS: Final[StatusDictType] = _table(
    _single(_codes.SUCCESS, STATUS_SUCCESS, ""),
    _single(_codes.CANCEL, STATUS_CANCEL, ""),
    _single(_codes.ATTRIBUTE_LIST_ERROR, STATUS_WARNING, "Attribute list error"),
    _single(_codes.ATTRIBUTE_VALUE_OUT_OF_RANGE, STATUS_WARNING, "Attribute value out of range"),
    _single(_codes.NO_SUCH_ATTRIBUTE, STATUS_FAILURE, "No such attribute"),
    _single(_codes.INVALID_ATTRIBUTE_VALUE, STATUS_FAILURE, "Invalid attribute value"),
    _single(_codes.PROCESSING_FAILURE, STATUS_FAILURE, "Processing failure"),
    _single(_codes.DUPLICATE_SOP_INSTANCE, STATUS_FAILURE, "Duplicate SOP Instance"),
    _single(_codes.NO_SUCH_SOP_INSTANCE, STATUS_FAILURE, "No such SOP Instance"),
    _single(_codes.NO_SUCH_EVENT_TYPE, STATUS_FAILURE, "No such event type"),
    _single(_codes.NO_SUCH_ARGUMENT, STATUS_FAILURE, "No such argument"),
    _single(_codes.INVALID_ARGUMENT_VALUE, STATUS_FAILURE, "Invalid argument value"),
    _single(_codes.INVALID_OBJECT_INSTANCE, STATUS_FAILURE, "Invalid object instance"),
    _single(_codes.NO_SUCH_SOP_CLASS, STATUS_FAILURE, "No such SOP Class"),
    _single(_codes.CLASS_INSTANCE_CONFLICT, STATUS_FAILURE, "Class-instance conflict"),
    _single(_codes.MISSING_ATTRIBUTE, STATUS_FAILURE, "Missing attribute"),
    _single(_codes.MISSING_ATTRIBUTE_VALUE, STATUS_FAILURE, "Missing attribute value"),
    _single(_codes.SOP_CLASS_NOT_SUPPORTED, STATUS_FAILURE, "Refused: SOP Class not supported"),
    _single(_codes.NO_SUCH_ACTION_TYPE, STATUS_FAILURE, "No such action type"),
    _single(_codes.NOT_AUTHORIZED, STATUS_FAILURE, "Refused: not authorized"),
    _single(_codes.DUPLICATE_INVOCATION, STATUS_FAILURE, "Duplicate invocation"),
    _single(_codes.UNRECOGNIZED_OPERATION, STATUS_FAILURE, "Unrecognized operation"),
    _single(_codes.MISTYPED_ARGUMENT, STATUS_FAILURE, "Mistyped argument"),
    _single(_codes.RESOURCE_LIMITATION, STATUS_FAILURE, "Resource limitation"),
)

# PS3.4 A.4: C-ECHO uses the general codes only.
VERIFICATION_SERVICE_CLASS_STATUS: Final = GENERAL_STATUS

_UNABLE_TO_PROCESS: Final = (0xC000, 0xCFFF, STATUS_FAILURE, "Unable to process")
_OPTIONAL_KEYS_NOT_SUPPORTED: Final = _single(
    _codes.REQUESTED_OPTIONAL_ATTRIBUTES_NOT_SUPPORTED,
    STATUS_WARNING,
    "Requested optional attributes are not supported",
)
_MATCHES_CONTINUING: Final = _single(
    _codes.PENDING, STATUS_PENDING, "Matches are continuing, current match supplied"
)
_MATCHES_CONTINUING_OPTIONAL_KEYS: Final = _single(
    _codes.PENDING_WARNING,
    STATUS_PENDING,
    "Matches are continuing, one or more Optional Keys were not supported",
)

# PS3.4 B.2.3: C-STORE.
STORAGE_SERVICE_CLASS_STATUS: Final = _table(
    (0xA700, 0xA7FF, STATUS_FAILURE, "Refused: out of resources"),
    (0xA900, 0xA9FF, STATUS_FAILURE, "Data set does not match SOP Class"),
    _single(_codes.COERCION_OF_DATA_ELEMENTS, STATUS_WARNING, "Coercion of data elements"),
    _single(_codes.ELEMENTS_DISCARDED, STATUS_WARNING, "Elements discarded"),
    _single(
        _codes.DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING,
        STATUS_WARNING,
        "Data set does not match SOP Class",
    ),
    (0xC000, 0xCFFF, STATUS_FAILURE, "Cannot understand"),
    base=GENERAL_STATUS,
)

# PS3.4 C.4.1.1.4: C-FIND of Query/Retrieve.
QR_FIND_SERVICE_CLASS_STATUS: Final = _table(
    _single(_codes.OUT_OF_RESOURCES, STATUS_FAILURE, "Refused: out of resources"),
    _single(0xA710, STATUS_FAILURE, "Invalid Prior Record Key"),
    _single(0xA900, STATUS_FAILURE, "Identifier does not match SOP Class"),
    _single(0xB001, STATUS_WARNING, "Matching reached the response limit; more matches may exist"),
    _UNABLE_TO_PROCESS,
    _MATCHES_CONTINUING,
    _MATCHES_CONTINUING_OPTIONAL_KEYS,
    base=GENERAL_STATUS,
)

# PS3.4 C.4.2.1.5 / C.4.3.1.4 and the frame-level retrieve codes of PS3.4 Y/Z:
# what C-MOVE and C-GET share.
_RETRIEVE_ROWS: Final = (
    _single(
        _codes.OUT_OF_RESOURCES_NUMBER_OF_MATCHES,
        STATUS_FAILURE,
        "Refused: out of resources, unable to calculate the number of matches",
    ),
    _single(
        _codes.OUT_OF_RESOURCES_SUB_OPERATIONS,
        STATUS_FAILURE,
        "Refused: out of resources, unable to perform sub-operations",
    ),
    _single(0xA900, STATUS_FAILURE, "Identifier does not match SOP Class"),
    _single(0xAA00, STATUS_FAILURE, "None of the requested frames were found in the instance"),
    _single(0xAA01, STATUS_FAILURE, "Unable to create a new object for this SOP Class"),
    _single(0xAA02, STATUS_FAILURE, "Unable to extract frames"),
    _single(0xAA03, STATUS_FAILURE, "Time-based request for an instance that is not time-based"),
    _single(0xAA04, STATUS_FAILURE, "Invalid request"),
    _UNABLE_TO_PROCESS,
    _single(_codes.PENDING, STATUS_PENDING, "Sub-operations are continuing"),
)

QR_MOVE_SERVICE_CLASS_STATUS: Final = _table(
    *_RETRIEVE_ROWS,
    _single(_codes.MOVE_DESTINATION_UNKNOWN, STATUS_FAILURE, "Move destination unknown"),
    _single(
        _codes.SUB_OPERATIONS_COMPLETE_WITH_FAILURES,
        STATUS_WARNING,
        "Sub-operations complete, one or more failures",
    ),
    base=GENERAL_STATUS,
)

QR_GET_SERVICE_CLASS_STATUS: Final = _table(
    *_RETRIEVE_ROWS,
    _single(
        _codes.SUB_OPERATIONS_COMPLETE_WITH_FAILURES,
        STATUS_WARNING,
        "Sub-operations complete, one or more failures or warnings",
    ),
    base=GENERAL_STATUS,
)

# PS3.4 K.4.1.1.4: Modality Worklist C-FIND; PS3.4 V: Substance Administration
# Query answers with the same codes.
_WORKLIST_ROWS: Final = (
    _single(_codes.OUT_OF_RESOURCES, STATUS_FAILURE, "Refused: out of resources"),
    _single(0xA900, STATUS_FAILURE, "Identifier does not match SOP Class"),
    _UNABLE_TO_PROCESS,
    _MATCHES_CONTINUING,
    _MATCHES_CONTINUING_OPTIONAL_KEYS,
)
MODALITY_WORKLIST_SERVICE_CLASS_STATUS: Final = _table(*_WORKLIST_ROWS, base=GENERAL_STATUS)
SUBSTANCE_ADMINISTRATION_SERVICE_CLASS_STATUS: Final = _table(*_WORKLIST_ROWS, base=GENERAL_STATUS)

# PS3.4 Q.2.1.1.4: Relevant Patient Information Query.
RELEVANT_PATIENT_SERVICE_CLASS_STATUS: Final = _table(
    _single(_codes.OUT_OF_RESOURCES, STATUS_FAILURE, "Refused: out of resources"),
    _single(0xA900, STATUS_FAILURE, "Identifier does not match SOP Class"),
    _single(0xC000, STATUS_FAILURE, "Unable to process"),
    _single(0xC100, STATUS_FAILURE, "More than one match found"),
    _single(0xC200, STATUS_FAILURE, "Unable to support the requested template"),
    _single(_codes.PENDING, STATUS_PENDING, "Current match is supplied"),
    base=GENERAL_STATUS,
)

# PS3.4 GG: Non-Patient Object Storage.
NON_PATIENT_SERVICE_CLASS_STATUS: Final = _table(
    _single(_codes.OUT_OF_RESOURCES, STATUS_FAILURE, "Refused: out of resources"),
    _single(0xA900, STATUS_FAILURE, "Data set does not match SOP Class"),
    _single(0xC000, STATUS_FAILURE, "Cannot understand"),
    base=GENERAL_STATUS,
)

# PS3.4 F: Modality Performed Procedure Step and the other procedure steps.
PROCEDURE_STEP_STATUS: Final = _table(_OPTIONAL_KEYS_NOT_SUPPORTED, base=GENERAL_STATUS)

# PS3.4 H.4: Print Management.
PRINT_JOB_MANAGEMENT_SERVICE_CLASS_STATUS: Final = _table(
    _single(0xB600, STATUS_WARNING, "Memory allocation not supported"),
    _single(0xB601, STATUS_WARNING, "Film session printing (collation) is not supported"),
    _single(0xB602, STATUS_WARNING, "Film Session hierarchy holds no Image Box (empty page)"),
    _single(0xB603, STATUS_WARNING, "Film Box hierarchy holds no Image Box (empty page)"),
    _single(0xB604, STATUS_WARNING, "Image larger than its image box: demagnified"),
    _single(0xB605, STATUS_WARNING, "Requested density outside the printer's range: clamped"),
    _single(0xB609, STATUS_WARNING, "Image larger than its image box: cropped to fit"),
    _single(0xB60A, STATUS_WARNING, "Image larger than its image box: decimated to fit"),
    _single(0xC600, STATUS_FAILURE, "Film Session hierarchy holds no Film Box"),
    _single(0xC601, STATUS_FAILURE, "Unable to create a Print Job: the print queue is full"),
    _single(0xC602, STATUS_FAILURE, "Unable to create a Print Job: the print queue is full"),
    _single(0xC603, STATUS_FAILURE, "Image larger than its image box"),
    _single(0xC605, STATUS_FAILURE, "Insufficient printer memory to store the image"),
    _single(0xC613, STATUS_FAILURE, "Combined print image larger than its image box"),
    _single(
        0xC616,
        STATUS_FAILURE,
        "An earlier Film Box is not printed yet and film-session-level printing is not supported",
    ),
    base=GENERAL_STATUS,
)

# PS3.4 J: Storage Commitment uses the general codes only.
STORAGE_COMMITMENT_SERVICE_CLASS_STATUS: Final = GENERAL_STATUS

# PS3.4 KK: Storage Management (Inventory).
STORAGE_MANAGEMENT_SERVICE_CLASS_STATUS: Final = _table(
    _single(0xB010, STATUS_WARNING, "One or more Key Attributes are not supported for matching"),
    base=GENERAL_STATUS,
)

# PS3.4 P: Application Event Logging.
APPLICATION_EVENT_LOGGING_SERVICE_CLASS_STATUS: Final = _table(
    _single(0xB101, STATUS_WARNING, "Synchronization Frame of Reference UID does not match"),
    _single(0xB102, STATUS_WARNING, "Study Instance UID coerced; logged under another study"),
    _single(0xB104, STATUS_WARNING, "IDs inconsistent with the current study; event logged"),
    _single(0xC101, STATUS_FAILURE, "Procedural logging not available for the study"),
    _single(0xC102, STATUS_FAILURE, "Event Information does not match the template"),
    _single(0xC103, STATUS_FAILURE, "Cannot match the event to a current study"),
    _single(0xC104, STATUS_FAILURE, "IDs inconsistent with the current study; not logged"),
    _single(0xC10E, STATUS_FAILURE, "Operator not authorized to add to the administration record"),
    _single(0xC110, STATUS_FAILURE, "Patient cannot be identified from Patient ID or Admission ID"),
    _single(0xC111, STATUS_FAILURE, "Update of the Medication Administration Record failed"),
    base=GENERAL_STATUS,
)

# PS3.4 S: Media Creation Management.
MEDIA_CREATION_MANAGEMENT_SERVICE_CLASS_STATUS: Final = _table(
    _OPTIONAL_KEYS_NOT_SUPPORTED,
    _single(0xA510, STATUS_FAILURE, "Initiate Media Creation already received for this instance"),
    _single(0xC201, STATUS_FAILURE, "Media creation request already completed"),
    _single(0xC202, STATUS_FAILURE, "Media creation in progress and cannot be interrupted"),
    _single(0xC203, STATUS_FAILURE, "Cancellation denied for an unspecified reason"),
    base=GENERAL_STATUS,
)

# PS3.4 CC.2: Unified Procedure Step. Its Cxxx codes are laid over the
# "Unable to process" range they refine.
UNIFIED_PROCEDURE_STEP_SERVICE_CLASS_STATUS: Final = _table(
    _OPTIONAL_KEYS_NOT_SUPPORTED,
    _single(_codes.OUT_OF_RESOURCES, STATUS_FAILURE, "Refused: out of resources"),
    _single(0xA900, STATUS_FAILURE, "Identifier does not match SOP Class"),
    _single(0xB300, STATUS_WARNING, "The UPS was created with modifications"),
    _single(0xB301, STATUS_WARNING, "Deletion lock not granted"),
    _single(0xB304, STATUS_WARNING, "The UPS is already CANCELED"),
    _single(0xB305, STATUS_WARNING, "Invalid values were coerced to valid values"),
    _single(0xB306, STATUS_WARNING, "The UPS is already COMPLETED"),
    _UNABLE_TO_PROCESS,
    _single(0xC300, STATUS_FAILURE, "The UPS may no longer be updated"),
    _single(0xC301, STATUS_FAILURE, "The correct Transaction UID was not provided"),
    _single(0xC302, STATUS_FAILURE, "The UPS is already IN PROGRESS"),
    _single(0xC303, STATUS_FAILURE, "The UPS may become SCHEDULED only by N-CREATE"),
    _single(0xC304, STATUS_FAILURE, "The UPS has not met the final state requirements"),
    _single(0xC307, STATUS_FAILURE, "No UPS instance with that SOP Instance UID is managed here"),
    _single(0xC308, STATUS_FAILURE, "The Receiving AE title is unknown to this SCP"),
    _single(0xC309, STATUS_FAILURE, "The UPS State provided was not SCHEDULED"),
    _single(0xC310, STATUS_FAILURE, "The UPS is not yet IN PROGRESS"),
    _single(0xC311, STATUS_FAILURE, "The UPS is already COMPLETED"),
    _single(0xC312, STATUS_FAILURE, "The performer cannot be contacted"),
    _single(0xC313, STATUS_FAILURE, "The performer chooses not to cancel"),
    _single(0xC314, STATUS_FAILURE, "The action is not appropriate for the instance"),
    _single(0xC315, STATUS_FAILURE, "The SCP does not support Event Reports"),
    _MATCHES_CONTINUING,
    _MATCHES_CONTINUING_OPTIONAL_KEYS,
    base=GENERAL_STATUS,
)

# PS3.4 DD: RT Machine Verification.
RT_MACHINE_VERIFICATION_SERVICE_CLASS_STATUS: Final = _table(
    _single(0xC112, STATUS_FAILURE, "No Machine Verification instance found"),
    _single(0xC221, STATUS_FAILURE, "Referenced Fraction Group Number not in the plan"),
    _single(0xC222, STATUS_FAILURE, "No beams in the referenced fraction group"),
    _single(0xC223, STATUS_FAILURE, "Already verifying; cannot process this request now"),
    _single(0xC224, STATUS_FAILURE, "Referenced Beam Number not in the fraction group"),
    _single(0xC225, STATUS_FAILURE, "Referenced device or accessory not supported"),
    _single(0xC226, STATUS_FAILURE, "Referenced device or accessory not in the beam"),
    _single(0xC227, STATUS_FAILURE, "Referenced RT Plan not found"),
    base=GENERAL_STATUS,
)


def _checked(code: object) -> int:
    # bool is an int to Python, but a status is never True or False.
    if isinstance(code, bool) or not isinstance(code, int) or code < 0:
        raise ValueError(f"a status code is a non-negative int, not {code!r}")
    return code


def code_to_status(code: int) -> Dataset:
    """A Dataset whose (0000,0900) Status is ``code``, as a handler may return it."""
    ds = Dataset()
    ds.Status = _checked(code)
    return ds


def code_to_category(code: int) -> str:
    """The category of ``code`` (``"Success"``, ``"Pending"`` ... or ``"Unknown"``).

    Raises ValueError for anything but a non-negative int, as pynetdicom does.
    """
    return _codes.status_category(_checked(code))


class Status(IntEnum):
    """Named status codes for handlers: ``return Status.SUCCESS``.

    ``Status.add("UNABLE_TO_PROCESS", 0xC000)`` adds a name (as a plain int
    class attribute, as pynetdicom does).
    """

    SUCCESS = _codes.SUCCESS
    CANCEL = _codes.CANCEL
    PENDING = _codes.PENDING
    MOVE_DESTINATION_UNKNOWN = _codes.MOVE_DESTINATION_UNKNOWN

    @classmethod
    def add(cls, name: str, code: int) -> None:
        """Add ``name`` for ``code``; ``name`` must be an identifier not yet taken."""
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"{name!r} is not a public Python identifier")
        if name in cls.__members__ or name in cls.__dict__:
            raise ValueError(f"Status already has {name!r}")
        setattr(cls, name, _checked(code))
