"""De-identification by the PS3.15 Annex E Basic Application Level Confidentiality Profile.

The action of every attribute comes from Table E.1-1 (:mod:`.basic_profile`), applied to the
whole data set and, as E.1.1 requires, inside every item of every sequence. Private
attributes are removed (E.2: the profile removes "private attributes"; the Retain Safe
Private Option is not offered). Attributes the table does not list are kept.

Without an IOD table at hand the choice the profile leaves open is made for the strictest IOD:
``X/Z`` empties, ``X/D`` and ``Z/D`` and ``X/Z/D`` replace with a dummy, ``X/Z/U*`` keeps the
sequence with the UIDs inside replaced. None of these keeps an identifying value; each keeps
a Type 1 or Type 2 attribute present, so the object stays conformant.

UIDs (action U) are replaced consistently: the same input UID gives the same output UID in
every process and every run, keyed by a secret (HMAC-SHA-256), so a study sent today and its
late series sent tomorrow stay one study at the destination, while nobody without the secret
can map a pseudonymous UID back or recompute it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicombus.routing.basic_profile import BASIC_PROFILE

# PS3.16 CID 7050: the code that says which profile was applied (PS3.3 C.7.1.1).
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
DEIDENTIFICATION_METHOD = "PS3.15 E.1-1 Basic Application Level Confidentiality Profile"

# PS3.15 E.1.1: a dummy value "consistent with the VR". Numbers 0, dates the first day
# DICOM dates commonly use as "unknown", text a word that says what happened.
_TEXT_DUMMY = "ANONYMIZED"
_DUMMIES: dict[str, Any] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "UR": "http://anonymized.invalid",  # RFC 2606: .invalid is reserved for this
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"), 0),
    **dict.fromkeys(("OB", "OW", "OD", "OF", "OL", "OV", "UN"), b"\x00\x00"),
}
_UID_ROOT = "2.25."  # PS3.5 B.2: a UID derived from a UUID


def pseudonymous_uid(uid: str, secret: bytes) -> str:
    """The UID that replaces ``uid``: ``2.25.<UUID>`` from HMAC-SHA-256(secret, uid).

    The first 128 bits of the digest become an RFC 9562 version 8 ("custom") UUID, so the
    result is the UUID-derived UID form of PS3.5 B.2, at most 44 characters long.
    """
    digest = hmac.new(secret, uid.strip().encode("ascii"), hashlib.sha256).digest()
    value = int.from_bytes(digest[:16], "big")
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC 9562 variant
    return f"{_UID_ROOT}{value}"


def _group_masks() -> list[tuple[int, int, str]]:
    """The repeating-group rows (50xx curves, 60xx overlays) as (mask, value, action)."""
    masks = []
    for tag, action in BASIC_PROFILE.items():
        if "x" in tag:
            mask = int("".join("0" if char == "x" else "F" for char in tag), 16)
            masks.append((mask, int(tag.replace("x", "0"), 16), action))
    return masks


class BasicProfile:
    """Applies the Basic Profile to pydicom data sets, with UIDs keyed by ``secret``."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the UID secret is empty")
        self._secret = secret
        self._actions = {int(tag, 16): a for tag, a in BASIC_PROFILE.items() if "x" not in tag}
        self._groups = _group_masks()

    def action(self, tag: int) -> str | None:
        """The table's action for ``tag``; None: not in the table (kept)."""
        found = self._actions.get(tag)
        if found is not None:
            return found
        for mask, value, action in self._groups:
            if tag & mask == value:
                return action
        return None

    def uid(self, uid: str) -> str:
        return pseudonymous_uid(uid, self._secret)

    def apply(self, dataset: Dataset) -> None:
        """De-identify ``dataset`` in place, its file meta's instance UID included."""
        self._clean(dataset)
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
        dataset.DeidentificationMethodCodeSequence = Sequence([code])
        # PS3.15 E.2: dates were removed or replaced, and no Retain Longitudinal Temporal
        # Information Option applies.
        dataset.LongitudinalTemporalInformationModified = "REMOVED"
        meta = getattr(dataset, "file_meta", None)
        if meta is not None and "SOPInstanceUID" in dataset:
            meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID

    def _clean(self, dataset: Dataset) -> None:
        for tag in list(dataset.keys()):
            element = dataset[tag]
            if tag.is_private:
                del dataset[tag]
                continue
            action = self.action(int(tag))
            if action is None:
                # K: "cleaned for sequences" -- what the items hold is in the table too.
                self._clean_items(element)
            elif action == "X":
                del dataset[tag]
            elif action in ("Z", "X/Z"):
                element.value = [] if element.VR == "SQ" else None
            elif action == "U" or (action == "X/Z/U*" and element.VR == "UI"):
                self._replace_uids(element)
            elif action == "X/Z/U*":
                self._clean_items(element)
            else:  # D, Z/D, X/D, X/Z/D
                self._dummy(element)

    def _clean_items(self, element: DataElement) -> None:
        if element.VR == "SQ":
            for item in element.value:
                self._clean(item)

    def _replace_uids(self, element: DataElement) -> None:
        if element.VM == 0:
            return
        if element.VM > 1:
            element.value = [self.uid(str(uid)) for uid in element.value]
        else:
            element.value = self.uid(str(element.value))

    def _dummy(self, element: DataElement) -> None:
        if element.VR == "SQ":
            self._clean_items(element)
        elif element.VR == "UI":
            self._replace_uids(element)
        else:
            element.value = _DUMMIES.get(element.VR, _TEXT_DUMMY)
