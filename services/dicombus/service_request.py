"""``event.request``: a received DIMSE request as handlers see it.

Attribute names are those of the command set (``MessageID``,
``AffectedSOPInstanceUID`` ...) as in pynetdicom's primitives, plus the
dataset-like parameter under pynetdicom's name (``DataSet``, ``Identifier``
...) as a BytesIO. The dataset bytes stay in their sink (memory or a spool
file) until someone asks.
"""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path
from typing import Any

from dicombus.protocol.commands import CommandField, CommandSet
from dicombus.protocol.fragments import DimseMessage
from dicombus.runtime.spool import SpoolingDatasetSink

# PS3.7 9.1 / 10.1: the name of each request's dataset-like parameter.
PARAMETER_NAME_BY_REQUEST = {
    CommandField.C_STORE_RQ: "DataSet",
    CommandField.C_FIND_RQ: "Identifier",
    CommandField.C_GET_RQ: "Identifier",
    CommandField.C_MOVE_RQ: "Identifier",
    CommandField.N_ACTION_RQ: "ActionInformation",
    CommandField.N_CREATE_RQ: "AttributeList",
    CommandField.N_EVENT_REPORT_RQ: "EventInformation",
    CommandField.N_SET_RQ: "ModificationList",
}

# The names pynetdicom's primitives also answer to. Its N-SET keeps the one
# dataset under both Modification List and Attribute List, so handlers written
# for it read ``event.attribute_list`` on an N-SET (its MPPS SCP example does).
# An N-GET request carries no dataset, yet its primitive has an Attribute List
# (the response's): ``event.attribute_list`` there is an empty Dataset.
PARAMETER_ALIASES_BY_REQUEST = {
    CommandField.N_SET_RQ: ("AttributeList",),
    CommandField.N_GET_RQ: ("AttributeList",),
}


class ServiceRequest:
    """A received request: its command set, context and (lazily) its dataset bytes."""

    __slots__ = ("_sink", "command", "context_id", "dataset_parameters", "outcome", "received")

    def __init__(self, message: DimseMessage) -> None:
        # When the edge took the request, received whole, to serve it (monotonic):
        # outcomes publish the service's duration from here (docs/analytics.md).
        self.received = time.monotonic()
        self.command: CommandSet = message.command
        self.context_id = message.context_id
        self._sink = message.dataset
        field = message.command.command_field
        name = PARAMETER_NAME_BY_REQUEST.get(field)
        self.dataset_parameters = frozenset(
            ((name,) if name else ()) + PARAMETER_ALIASES_BY_REQUEST.get(field, ())
        )
        # What the handler did, published with the outcome (e.g. the edge's
        # storage handler records stored_path and stored_size here).
        self.outcome: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name in ServiceRequest.__slots__:
            # Not set yet: copy and pickle build the object without __init__.
            raise AttributeError(name)
        if name in self.dataset_parameters:
            return BytesIO(self.parameter_bytes())
        if name in PARAMETER_NAME_BY_REQUEST.values():
            return None
        return getattr(self.command, name)

    @property
    def message_id(self) -> int:
        """check_request() has made sure a request carries one."""
        return self.command.MessageID or 0

    @property
    def has_dataset(self) -> bool:
        return self._sink is not None

    @property
    def dataset_size(self) -> int:
        return self._sink.size if self._sink is not None else 0

    def parameter_bytes(self, prefix: bytes = b"") -> bytes:
        """The dataset-like parameter exactly as received (b"" when absent), after ``prefix``."""
        if self._sink is None:
            return prefix
        prefixed = getattr(self._sink, "prefixed", None)
        if prefixed is not None:
            joined: bytes = prefixed(prefix)
            return joined
        read = getattr(self._sink, "getvalue", None)
        if read is None:
            raise TypeError(f"{type(self._sink).__name__} cannot give back its bytes")
        value = read()
        return b"".join((prefix, value)) if prefix else bytes(value)

    def dataset_file(self) -> Path:
        """A file holding the dataset bytes (see Event.dataset_path)."""
        if not isinstance(self._sink, SpoolingDatasetSink):
            raise AttributeError("the request's dataset is not spooled")
        return self._sink.path()

    def release(self) -> None:
        """Free memory and spool files once the service has answered."""
        if isinstance(self._sink, SpoolingDatasetSink):
            self._sink.close()

    def __repr__(self) -> str:
        return f"<ServiceRequest {self.command.command_field.name} id={self.command.MessageID}>"
