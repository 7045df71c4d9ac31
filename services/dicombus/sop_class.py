"""SOP Class UIDs by name, and the DICOM service each one belongs to.

Every SOP Class and Meta SOP Class in pydicom's UID registry (PS3.6 Annex A)
is a module attribute named by its pydicom keyword, the name pynetdicom uses::

    from dicombus.sop_class import CTImageStorage, Verification

The values are :class:`pydicom.uid.UID` instances. The registry is read at
import, so a newer pydicom brings newer SOP Classes with it. The well-known
SOP Instances (``PrinterInstance``, ``StorageCommitmentPushModelInstance``, ...)
are attributes too, and so are the few spellings in which pynetdicom departs
from pydicom's keywords, so code written for ``pynetdicom.sop_class`` works
after changing only the import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from pydicom._uid_dict import UID_dictionary
from pydicom.uid import UID

# PS3.6 Table A-1 "UID Type" values that name something a presentation
# context can carry as its abstract syntax.
_SOP_CLASS_TYPES = frozenset({"SOP Class", "Meta SOP Class"})
_WELL_KNOWN_INSTANCE_TYPE = "Well-known SOP Instance"

# Storage SOP Classes published after the pydicom release we run on (PS3.4
# Table B.5-1, 2024 editions); pynetdicom already exports them. Added only
# while pydicom's registry lacks them, so a newer pydicom's entry wins.
_NEWER_THAN_PYDICOM: Mapping[str, str] = {
    "LabelMapSegmentationStorage": "1.2.840.10008.5.1.4.1.1.66.7",
    "HeightMapSegmentationStorage": "1.2.840.10008.5.1.4.1.1.66.8",
    "WaveformPresentationStateStorage": "1.2.840.10008.5.1.4.1.1.9.100.1",
    "WaveformAcquisitionPresentationStateStorage": "1.2.840.10008.5.1.4.1.1.9.100.2",
}

# pynetdicom's name -> pydicom's keyword, where they differ (some of
# pynetdicom's are misspellings, kept so that its users' imports still work).
_PYNETDICOM_SPELLINGS: Mapping[str, str] = {
    "ColorPaletteInformationModelFind": "ColorPaletteQueryRetrieveInformationModelFind",
    "ColorPaletteInformationModelGet": "ColorPaletteQueryRetrieveInformationModelGet",
    "ColorPaletteInformationModelMove": "ColorPaletteQueryRetrieveInformationModelMove",
    "ModalityWorklistInformationFind": "ModalityWorklistInformationModelFind",
    "OphthlamicOpticalCoherenceTomographyBscanVolumeAnalysisStorage": (
        "OphthalmicOpticalCoherenceTomographyBscanVolumeAnalysisStorage"
    ),
    "PseudoColorSoftcopyPresentationStageStorage": "PseudoColorSoftcopyPresentationStateStorage",
    "RTBrachyApplicationSetupDeliveryInstructionsStorage": (
        "RTBrachyApplicationSetupDeliveryInstructionStorage"
    ),
    "RoboticArmRadiationRecordStorage": "RoboticRadiationRecordStorage",
    "VariableModalityLUTSoftcopyPresentationStageStorage": (
        "VariableModalityLUTSoftcopyPresentationStateStorage"
    ),
}

# The service each SOP Class belongs to, decided from its keyword; the first
# rule whose pattern matches wins, so the specific rules come before the broad
# ones (Hanging Protocol Storage is Non-Patient Object Storage, not Storage).
# Query/Retrieve (PS3.4 Annex C) is split by the DIMSE operation its SOP Class
# uses, since one association can carry Find, Get and Move for one model.
_SERVICE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (service, re.compile(pattern))
    for service, pattern in (
        ("Verification", r"^Verification$"),  # PS3.4 Annex A
        # PS3.4 Annex GG: objects that describe no patient.
        (
            "NonPatientObjectStorage",
            r"^(HangingProtocol|ColorPalette|GenericImplantTemplate|ImplantAssemblyTemplate"
            r"|ImplantTemplateGroup|CTDefinedProcedureProtocol|XADefinedProcedureProtocol"
            r"|ProtocolApproval|Inventory)Storage$",
        ),
        ("MediaStorage", r"^MediaStorageDirectoryStorage$"),  # PS3.4 Annex I
        ("Storage", r"Storage(For(Presentation|Processing))?(Trial|Retired)?$"),  # Annex B
        ("StorageCommitment", r"^StorageCommitment"),  # PS3.4 Annex J
        ("HangingProtocolQueryRetrieve", r"^HangingProtocolInformationModel"),  # Annex U
        ("ColorPaletteQueryRetrieve", r"^ColorPalette\w*InformationModel"),  # Annex X
        (
            "ImplantTemplateQueryRetrieve",  # PS3.4 Annex BB
            r"^(GenericImplantTemplate|ImplantAssemblyTemplate|ImplantTemplateGroup)"
            r"InformationModel",
        ),
        (
            "DefinedProcedureProtocolQueryRetrieve",  # PS3.4 Annex HH
            r"^DefinedProcedureProtocolInformationModel",
        ),
        ("ProtocolApprovalQueryRetrieve", r"^ProtocolApprovalInformationModel"),  # Annex II
        ("InventoryQueryRetrieve", r"^Inventory(Find|Get|Move)$"),  # PS3.4 Annex KK
        ("QueryRetrieveFind", r"^(\w+QueryRetrieveInformationModelFind|RepositoryQuery)$"),
        ("QueryRetrieveGet", r"^(\w+QueryRetrieveInformationModel|CompositeInstance\w+)Get$"),
        ("QueryRetrieveMove", r"^(\w+QueryRetrieveInformationModel|CompositeInstance\w+)Move$"),
        ("BasicWorklistManagement", r"^ModalityWorklistInformationModelFind$"),  # Annex K
        ("ModalityPerformedProcedureStep", r"^ModalityPerformedProcedureStep"),  # Annex F
        ("UnifiedProcedureStep", r"^UnifiedProcedureStep"),  # PS3.4 Annex CC
        ("RTMachineVerification", r"^RT(Conventional|Ion)MachineVerification"),  # Annex DD
        ("Print", r"Print|Film|Box$|^PresentationLUT$"),  # PS3.4 Annex H
        (
            "ApplicationEventLogging",  # PS3.4 Annex P
            r"^(ProceduralEventLogging|SubstanceAdministrationLogging)$",
        ),
        ("InstanceAvailabilityNotification", r"^InstanceAvailabilityNotification$"),  # Annex R
        ("MediaCreationManagement", r"^MediaCreationManagement$"),  # PS3.4 Annex S
        ("DisplaySystemManagement", r"^DisplaySystem$"),  # PS3.4 Annex EE
        ("RelevantPatientInformationQuery", r"RelevantPatientInformationQuery$"),  # Annex Q
        (
            "SubstanceAdministrationQuery",  # PS3.4 Annex V
            r"^(ProductCharacteristics|SubstanceApproval)Query$",
        ),
        ("StorageManagement", r"^InventoryCreation$"),  # PS3.4 Annex JJ
    )
)
OTHER_SERVICE = "Other"


def _registry_entries(types: Iterable[str]) -> dict[str, UID]:
    """Return keyword -> UID for the registry entries of the given types.

    Entries without a keyword (two retired SOP Classes that PS3.6 lists with no
    name) cannot become attributes and are left out.
    """
    wanted = frozenset(types)
    return {
        entry[4]: UID(uid)
        for uid, entry in UID_dictionary.items()
        if entry[1] in wanted and entry[4]
    }


def _sop_classes() -> dict[str, UID]:
    found = _registry_entries(_SOP_CLASS_TYPES)
    known = set(found.values())
    for keyword, uid in _NEWER_THAN_PYDICOM.items():
        if uid not in known:
            found[keyword] = UID(uid)
    return found


def _service_of(keyword: str) -> str:
    for service, pattern in _SERVICE_RULES:
        if pattern.search(keyword):
            return service
    return OTHER_SERVICE


SOP_CLASSES: Mapping[str, UID] = MappingProxyType(_sop_classes())
"""Keyword -> UID of every SOP Class and Meta SOP Class we know by name."""

WELL_KNOWN_SOP_INSTANCES: Mapping[str, UID] = MappingProxyType(
    _registry_entries({_WELL_KNOWN_INSTANCE_TYPE})
)
"""Keyword -> UID of every well-known SOP Instance (PS3.6 Table A-1)."""

_SERVICE_BY_UID: Mapping[str, str] = MappingProxyType(
    {uid: _service_of(keyword) for keyword, uid in SOP_CLASSES.items()}
)


def _members(service: str) -> tuple[UID, ...]:
    return tuple(uid for uid in SOP_CLASSES.values() if _SERVICE_BY_UID[uid] == service)


SERVICE_SOP_CLASSES: Mapping[str, tuple[UID, ...]] = MappingProxyType(
    {service: _members(service) for service in sorted(set(_SERVICE_BY_UID.values()))}
)
"""Service name -> the SOP Classes that belong to it, in registry order."""

STORAGE_SOP_CLASSES: tuple[UID, ...] = SERVICE_SOP_CLASSES["Storage"]
QR_FIND_SOP_CLASSES: tuple[UID, ...] = SERVICE_SOP_CLASSES["QueryRetrieveFind"]
QR_GET_SOP_CLASSES: tuple[UID, ...] = SERVICE_SOP_CLASSES["QueryRetrieveGet"]
QR_MOVE_SOP_CLASSES: tuple[UID, ...] = SERVICE_SOP_CLASSES["QueryRetrieveMove"]


def uid_to_service_class(uid: str) -> str:
    """Return the name of the service that SOP Class ``uid`` belongs to.

    One of the keys of :data:`SERVICE_SOP_CLASSES` (``"Verification"``,
    ``"Storage"``, ``"QueryRetrieveFind"``, ``"QueryRetrieveGet"``,
    ``"QueryRetrieveMove"``, ``"BasicWorklistManagement"``, ...), or
    ``"Other"`` for a UID we do not know, a private one included.
    """
    return _SERVICE_BY_UID.get(uid, OTHER_SERVICE)


def _attributes() -> dict[str, UID]:
    names: dict[str, UID] = dict(WELL_KNOWN_SOP_INSTANCES)
    names.update(SOP_CLASSES)
    names.update({alias: SOP_CLASSES[keyword] for alias, keyword in _PYNETDICOM_SPELLINGS.items()})
    return names


# Real module attributes: `from dicombus.sop_class import CTImageStorage` and
# attribute access cost a dict lookup, as for any hand-written constant.
globals().update(_attributes())


def __getattr__(name: str) -> UID:
    """Tell type checkers that every other attribute is a UID, and fail clearly.

    Only reached for names that are not module attributes, i.e. SOP Classes
    that neither pydicom's registry nor pynetdicom's spellings know.
    """
    raise AttributeError(f"module {__name__!r} has no SOP Class named {name!r}")
