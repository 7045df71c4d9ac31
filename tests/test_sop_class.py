"""dicombus.sop_class: the SOP Class registry and the service each class belongs to.

pynetdicom is the peer whose names we promise: its sop_class module is imported
here (never by the library) to check that every name it exports exists here
with the same UID, and that both map each SOP Class to the same service.
"""

from __future__ import annotations

import pynetdicom.sop_class as pynetdicom_sop_class
import pytest
from dicombus import sop_class
from dicombus.sop_class import (  # the import style pynetdicom users write
    CTImageStorage,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    Verification,
)
from pydicom._uid_dict import UID_dictionary
from pydicom.uid import UID

# What pynetdicom's service classes are called here. Query/Retrieve is split by
# DIMSE operation, so that one is checked separately.
PYNETDICOM_SERVICE_NAMES = {
    "ApplicationEventLoggingServiceClass": "ApplicationEventLogging",
    "BasicWorklistManagementServiceClass": "BasicWorklistManagement",
    "ColorPaletteQueryRetrieveServiceClass": "ColorPaletteQueryRetrieve",
    "DefinedProcedureProtocolQueryRetrieveServiceClass": "DefinedProcedureProtocolQueryRetrieve",
    "DisplaySystemManagementServiceClass": "DisplaySystemManagement",
    "HangingProtocolQueryRetrieveServiceClass": "HangingProtocolQueryRetrieve",
    "ImplantTemplateQueryRetrieveServiceClass": "ImplantTemplateQueryRetrieve",
    "InstanceAvailabilityNotificationServiceClass": "InstanceAvailabilityNotification",
    "InventoryQueryRetrieveServiceClass": "InventoryQueryRetrieve",
    "MediaCreationManagementServiceClass": "MediaCreationManagement",
    "NonPatientObjectStorageServiceClass": "NonPatientObjectStorage",
    "PrintManagementServiceClass": "Print",
    "ProcedureStepServiceClass": "ModalityPerformedProcedureStep",
    "ProtocolApprovalQueryRetrieveServiceClass": "ProtocolApprovalQueryRetrieve",
    "RTMachineVerificationServiceClass": "RTMachineVerification",
    "RelevantPatientInformationQueryServiceClass": "RelevantPatientInformationQuery",
    "StorageCommitmentServiceClass": "StorageCommitment",
    "StorageManagementServiceClass": "StorageManagement",
    "StorageServiceClass": "Storage",
    "SubstanceAdministrationQueryServiceClass": "SubstanceAdministrationQuery",
    "UnifiedProcedureStepServiceClass": "UnifiedProcedureStep",
    "VerificationServiceClass": "Verification",
    # pynetdicom has no service for the DICOMDIR class (PS3.4 Annex I).
    "ServiceClass": "MediaStorage",
}


def pynetdicom_names() -> dict[str, str]:
    return {
        name: str(value)
        for name in dir(pynetdicom_sop_class)
        if isinstance(value := getattr(pynetdicom_sop_class, name), UID)
    }


def registry_sop_classes() -> dict[str, str]:
    return {
        entry[4]: uid
        for uid, entry in UID_dictionary.items()
        if entry[1] in ("SOP Class", "Meta SOP Class") and entry[4]
    }


# --- the registry ----------------------------------------------------------


def test_every_registry_sop_class_is_a_module_attribute() -> None:
    registry = registry_sop_classes()
    assert len(registry) > 300  # pydicom 3.0 knows 311 named ones
    for keyword, uid in registry.items():
        value = getattr(sop_class, keyword)
        assert isinstance(value, UID)
        assert value == uid
        assert sop_class.SOP_CLASSES[keyword] == uid


def test_sop_classes_is_the_registry_plus_newer_classes_only() -> None:
    registry = registry_sop_classes()
    extra = set(sop_class.SOP_CLASSES) - set(registry)
    assert set(registry) <= set(sop_class.SOP_CLASSES)
    assert extra <= {
        "LabelMapSegmentationStorage",
        "HeightMapSegmentationStorage",
        "WaveformPresentationStateStorage",
        "WaveformAcquisitionPresentationStateStorage",
    }
    # No SOP Class is listed under two keywords.
    assert len(set(sop_class.SOP_CLASSES.values())) == len(sop_class.SOP_CLASSES)


def test_meta_sop_classes_are_included() -> None:
    assert sop_class.BasicGrayscalePrintManagementMeta == "1.2.840.10008.5.1.1.9"
    assert sop_class.BasicColorPrintManagementMeta == "1.2.840.10008.5.1.1.18"


@pytest.mark.parametrize(
    ("value", "uid"),
    [
        (Verification, "1.2.840.10008.1.1"),
        (CTImageStorage, "1.2.840.10008.5.1.4.1.1.2"),
        (PatientRootQueryRetrieveInformationModelFind, "1.2.840.10008.5.1.4.1.2.1.1"),
        (sop_class.StudyRootQueryRetrieveInformationModelMove, "1.2.840.10008.5.1.4.1.2.2.2"),
        (sop_class.CompositeInstanceRetrieveWithoutBulkDataGet, "1.2.840.10008.5.1.4.1.2.5.3"),
        (sop_class.ModalityWorklistInformationModelFind, "1.2.840.10008.5.1.4.31"),
        (ModalityWorklistInformationFind, "1.2.840.10008.5.1.4.31"),  # pynetdicom's spelling
        (sop_class.StorageCommitmentPushModel, "1.2.840.10008.1.20.1"),
        (sop_class.StorageCommitmentPushModelInstance, "1.2.840.10008.1.20.1.1"),
        (sop_class.ModalityPerformedProcedureStep, "1.2.840.10008.3.1.2.3.3"),
        (sop_class.UnifiedProcedureStepPush, "1.2.840.10008.5.1.4.34.6.1"),
        (sop_class.EncapsulatedPDFStorage, "1.2.840.10008.5.1.4.1.1.104.1"),
        (sop_class.RoboticArmRadiationRecordStorage, "1.2.840.10008.5.1.4.1.1.481.20"),
    ],
)
def test_sample_names(value: UID, uid: str) -> None:
    assert isinstance(value, UID)
    assert value == uid


def test_every_pynetdicom_name_exists_with_the_same_uid() -> None:
    # The promise: a pynetdicom user changes the import and nothing else.
    ours = {name: getattr(sop_class, name) for name in pynetdicom_names()}
    assert ours == pynetdicom_names()


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchStorage"):
        _ = sop_class.NoSuchStorage
    with pytest.raises(ImportError):
        from dicombus.sop_class import NoSuchStorage  # noqa: F401


def test_module_helpers_are_not_shadowed_by_keywords() -> None:
    assert callable(sop_class.uid_to_service_class)
    assert isinstance(sop_class.SOP_CLASSES, type(sop_class.SERVICE_SOP_CLASSES))
    assert sop_class.UID is UID


# --- services ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("uid", "service"),
    [
        ("1.2.840.10008.1.1", "Verification"),
        ("1.2.840.10008.5.1.4.1.1.2", "Storage"),  # CT Image Storage
        ("1.2.840.10008.5.1.4.1.1.1.1", "Storage"),  # Digital X-Ray ... For Presentation
        ("1.2.840.10008.5.1.4.1.1.88.1", "Storage"),  # Text SR Storage - Trial (retired)
        ("1.2.840.10008.5.1.4.1.1.66.7", "Storage"),  # Label Map Segmentation (newer)
        ("1.2.840.10008.5.1.4.38.1", "NonPatientObjectStorage"),  # Hanging Protocol Storage
        ("1.2.840.10008.1.3.10", "MediaStorage"),
        ("1.2.840.10008.5.1.4.1.2.1.1", "QueryRetrieveFind"),
        ("1.2.840.10008.5.1.4.1.1.201.6", "QueryRetrieveFind"),  # Repository Query
        ("1.2.840.10008.5.1.4.1.2.2.3", "QueryRetrieveGet"),
        ("1.2.840.10008.5.1.4.1.2.4.3", "QueryRetrieveGet"),  # Composite Instance Root
        ("1.2.840.10008.5.1.4.1.2.2.2", "QueryRetrieveMove"),
        ("1.2.840.10008.5.1.4.39.2", "ColorPaletteQueryRetrieve"),
        ("1.2.840.10008.5.1.4.31", "BasicWorklistManagement"),
        ("1.2.840.10008.1.20.1", "StorageCommitment"),
        ("1.2.840.10008.3.1.2.3.3", "ModalityPerformedProcedureStep"),
        ("1.2.840.10008.5.1.4.34.6.3", "UnifiedProcedureStep"),
        ("1.2.840.10008.5.1.1.1", "Print"),  # Basic Film Session
        ("1.2.840.10008.5.1.1.9", "Print"),  # Basic Grayscale Print Management Meta
        ("1.2.840.10008.5.1.1.23", "Print"),  # Presentation LUT
        ("1.2.840.10008.5.1.4.32.1", "Other"),  # General Purpose Worklist (retired)
        ("1.2.840.10008.1.2", "Other"),  # a transfer syntax, not a SOP Class
        ("1.2.826.0.1.3680043.2.1143.99", "Other"),  # private
        ("", "Other"),
    ],
)
def test_uid_to_service_class(uid: str, service: str) -> None:
    assert sop_class.uid_to_service_class(uid) == service
    assert sop_class.uid_to_service_class(UID(uid)) == service


def test_services_agree_with_pynetdicom() -> None:
    classes = {
        name: value
        for name in dir(pynetdicom_sop_class)
        if isinstance(value := getattr(pynetdicom_sop_class, name), pynetdicom_sop_class.SOPClass)
    }
    assert len(classes) > 250
    for name, uid in classes.items():
        theirs = pynetdicom_sop_class.uid_to_service_class(uid).__name__
        ours = sop_class.uid_to_service_class(uid)
        if theirs == "QueryRetrieveServiceClass":
            assert ours in ("QueryRetrieveFind", "QueryRetrieveGet", "QueryRetrieveMove"), name
        else:
            assert ours == PYNETDICOM_SERVICE_NAMES[theirs], name


def test_service_sop_classes_partition_the_registry() -> None:
    seen: list[str] = []
    for service, uids in sop_class.SERVICE_SOP_CLASSES.items():
        assert uids, service
        for uid in uids:
            assert sop_class.uid_to_service_class(uid) == service
        seen.extend(uids)
    assert sorted(seen) == sorted(sop_class.SOP_CLASSES.values())


def test_storage_sop_classes() -> None:
    storage = sop_class.STORAGE_SOP_CLASSES
    assert len(storage) == len(set(storage)) == 199  # pydicom 3.0.2's 195 plus 4 newer
    assert all(isinstance(uid, UID) for uid in storage)
    assert all("Storage" in uid.keyword for uid in storage if uid.keyword)
    assert CTImageStorage in storage
    assert sop_class.HangingProtocolStorage not in storage  # non-patient object
    assert sop_class.MediaStorageDirectoryStorage not in storage  # not a network service
    theirs = set(pynetdicom_sop_class._STORAGE_CLASSES.values())
    assert theirs <= set(storage)


def test_query_retrieve_sop_classes() -> None:
    keywords = {
        "find": [uid.keyword for uid in sop_class.QR_FIND_SOP_CLASSES],
        "get": [uid.keyword for uid in sop_class.QR_GET_SOP_CLASSES],
        "move": [uid.keyword for uid in sop_class.QR_MOVE_SOP_CLASSES],
    }
    assert sorted(keywords["find"]) == [
        "PatientRootQueryRetrieveInformationModelFind",
        "PatientStudyOnlyQueryRetrieveInformationModelFind",
        "RepositoryQuery",
        "StudyRootQueryRetrieveInformationModelFind",
    ]
    assert sorted(keywords["get"]) == [
        "CompositeInstanceRetrieveWithoutBulkDataGet",
        "CompositeInstanceRootRetrieveGet",
        "PatientRootQueryRetrieveInformationModelGet",
        "PatientStudyOnlyQueryRetrieveInformationModelGet",
        "StudyRootQueryRetrieveInformationModelGet",
    ]
    assert sorted(keywords["move"]) == [
        "CompositeInstanceRootRetrieveMove",
        "PatientRootQueryRetrieveInformationModelMove",
        "PatientStudyOnlyQueryRetrieveInformationModelMove",
        "StudyRootQueryRetrieveInformationModelMove",
    ]
    ours = {
        *sop_class.QR_FIND_SOP_CLASSES,
        *sop_class.QR_GET_SOP_CLASSES,
        *sop_class.QR_MOVE_SOP_CLASSES,
    }
    assert ours == set(pynetdicom_sop_class._QR_CLASSES.values())
