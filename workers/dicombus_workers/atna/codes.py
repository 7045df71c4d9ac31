"""Coded values of the DICOM audit messages (PS3.15 A.5.3, PS3.16 Annex D "DCM").

Each is ``(csd-code, codeSystemName, originalText)``: the A.5.1.1 schema makes
``originalText`` (the Code Meaning) mandatory on every coded value.
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    value: str
    scheme: str
    meaning: str


DCM = "DCM"
RFC_3881 = "RFC-3881"

# PS3.15 A.5.3: EventID of each message.
APPLICATION_ACTIVITY = Code("110100", DCM, "Application Activity")  # A.5.3.1
BEGIN_TRANSFERRING = Code("110102", DCM, "Begin Transferring DICOM Instances")  # A.5.3.3
INSTANCES_TRANSFERRED = Code("110104", DCM, "DICOM Instances Transferred")  # A.5.3.7
QUERY = Code("110112", DCM, "Query")  # A.5.3.10
SECURITY_ALERT = Code("110113", DCM, "Security Alert")  # A.5.3.11
USER_AUTHENTICATION = Code("110114", DCM, "User Authentication")  # A.5.3.12

# EventTypeCode (PS3.16 CID 401 Application Activity, CID 403 Security Alert,
# CID 404 User Authentication).
APPLICATION_START = Code("110120", DCM, "Application Start")
APPLICATION_STOP = Code("110121", DCM, "Application Stop")
LOGIN = Code("110122", DCM, "Login")
NODE_AUTHENTICATION = Code("110126", DCM, "Node Authentication")

# RoleIDCode (PS3.16 CID 402 Audit Active Participant Role ID).
ROLE_APPLICATION = Code("110150", DCM, "Application")
ROLE_APPLICATION_LAUNCHER = Code("110151", DCM, "Application Launcher")
ROLE_DESTINATION = Code("110152", DCM, "Destination Role ID")
ROLE_SOURCE = Code("110153", DCM, "Source Role ID")

# ParticipantObjectIDTypeCode (PS3.15 A.5.1.2.4: RFC 3881 codes, and DCM).
PATIENT_NUMBER = Code("2", RFC_3881, "Patient Number")
URI = Code("12", RFC_3881, "URI")
STUDY_INSTANCE_UID = Code("110180", DCM, "Study Instance UID")
SOP_CLASS_UID = Code("110181", DCM, "SOP Class UID")
NODE_ID = Code("110182", DCM, "Node ID")

# EventActionCode (PS3.15 A.5.1.1).
ACTION_CREATE = "C"
ACTION_READ = "R"
ACTION_EXECUTE = "E"

# EventOutcomeIndicator (PS3.15 A.5.1.1).
SUCCESS = "0"
MINOR_FAILURE = "4"
SERIOUS_FAILURE = "8"

# ParticipantObjectTypeCode and ParticipantObjectTypeCodeRole (A.5.1.2.2).
TYPE_PERSON = "1"
TYPE_SYSTEM_OBJECT = "2"
ROLE_PATIENT = "1"
ROLE_REPORT = "3"
ROLE_SECURITY_RESOURCE = "13"
ROLE_QUERY = "24"

# NetworkAccessPointTypeCode (A.5.1.1).
MACHINE_NAME = "1"
IP_ADDRESS = "2"

# AuditSourceTypeCode (A.5.1.2.1): an application server process.
APPLICATION_SERVER = "4"

# The syntax ParticipantObjectQuery is encoded in (A.5.3.10: the TransferSyntax detail).
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
