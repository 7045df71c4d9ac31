"""Errors raised by the protocol core, and the root of every dicombus error.

DicombusError                   every exception class dicombus defines (tests/test_errors.py)
 ├── ProtocolError
 │    ├── RemoteProtocolError   the peer sent bytes that break PS3.8 / PS3.7;
 │    │                         carries the A-ABORT source and reason to send
 │    └── LocalProtocolError    our own caller misused the core (a bug here)
 │         └── PresentationContextError (also ValueError)
 └── the other layers' errors, e.g. runtime.transport.ConnectionClosed,
     outcomes.OutcomeNotRecorded, bus.outbox.OutboxError, storage_files.StorageRootError

An error that callers (ours, or pynetdicom users') catch as a standard exception
keeps that class as a second base: ConnectionClosed is still a ConnectionError
(an OSError), DeadlineExpired a TimeoutError, StorageRootError an OSError, and
the errors of bad values (EdgeConfigError, InvalidUIDError ...) ValueErrors.
The layer above the protocol imports DicombusError from here: the protocol core
imports nothing of dicombus, so the root lives at the bottom.
"""

from __future__ import annotations

from enum import IntEnum


class AbortSource(IntEnum):
    """PS3.8 Table 9-26: the Source field of an A-ABORT PDU."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """PS3.8 Table 9-26: the Reason/Diag. field, meaningful when the source is the provider."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class DicombusError(Exception):
    """Root of every error dicombus raises on purpose."""


class ProtocolError(DicombusError):
    """A violation of the DICOM Upper Layer or DIMSE protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or out of place.

    The runtime answers it with an A-ABORT built from ``abort_source`` and
    ``abort_reason`` and closes the connection; it never crashes the server.
    """

    def __init__(
        self,
        message: str,
        *,
        abort_source: AbortSource = AbortSource.SERVICE_PROVIDER,
        abort_reason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE,
    ) -> None:
        super().__init__(message)
        self.abort_source = abort_source
        self.abort_reason = abort_reason


class LocalProtocolError(ProtocolError):
    """Our own code asked the core for something the protocol does not allow."""
