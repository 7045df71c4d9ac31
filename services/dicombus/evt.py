"""Events: what happened on an association, and the handlers users bind to it.

Notification events tell handlers that something happened; any number of
handlers may be bound and their return values are ignored. Intervention events
ask exactly one handler for a decision (a status, a dataset, an acceptance);
when none is bound a default answers. Names, descriptions and ``Event``
attributes match pynetdicom's so existing handlers run unchanged.

Nothing here is built when nothing is bound: :func:`trigger` returns before it
creates an :class:`Event`, and hot paths call :meth:`HandlerRegistry.is_bound`
before they even gather the attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag, Tag

from dicombus.dataset_codec import InstanceMeta, decode_dataset
from dicombus.protocol.errors import DicombusError

LOGGER = logging.getLogger("dicombus.events")


class NotificationEvent(NamedTuple):
    """An event that handlers observe; many handlers may be bound."""

    name: str
    description: str
    is_intervention: bool = False
    is_notification: bool = True

    def __str__(self) -> str:
        return self.name


class InterventionEvent(NamedTuple):
    """An event whose single handler decides the response."""

    name: str
    description: str
    is_intervention: bool = True
    is_notification: bool = False

    def __str__(self) -> str:
        return self.name


EventType = NotificationEvent | InterventionEvent
Handler = Callable[..., Any]
HandlerBinding = tuple[EventType, Handler] | tuple[EventType, Handler, Sequence[Any]]

EVT_ABORTED = NotificationEvent("EVT_ABORTED", "Association aborted")
EVT_ACCEPTED = NotificationEvent("EVT_ACCEPTED", "Association request accepted")
EVT_ACSE_RECV = NotificationEvent("EVT_ACSE_RECV", "ACSE primitive received from DUL")
EVT_ACSE_SENT = NotificationEvent("EVT_ACSE_SENT", "ACSE primitive sent to DUL")
EVT_CONN_CLOSE = NotificationEvent("EVT_CONN_CLOSE", "Connection closed")
EVT_CONN_OPEN = NotificationEvent("EVT_CONN_OPEN", "Connection opened")
EVT_DATA_RECV = NotificationEvent("EVT_DATA_RECV", "PDU data received from remote")
EVT_DATA_SENT = NotificationEvent("EVT_DATA_SENT", "PDU data sent to remote")
EVT_DIMSE_RECV = NotificationEvent("EVT_DIMSE_RECV", "Complete DIMSE message received and decoded")
EVT_DIMSE_SENT = NotificationEvent(
    "EVT_DIMSE_SENT", "DIMSE message encoded and P-DATA primitives sent to DUL"
)
EVT_ESTABLISHED = NotificationEvent("EVT_ESTABLISHED", "Association established")
EVT_FSM_TRANSITION = NotificationEvent("EVT_FSM_TRANSITION", "State machine about to transition")
EVT_PDU_RECV = NotificationEvent("EVT_PDU_RECV", "PDU received and decoded")
EVT_PDU_SENT = NotificationEvent("EVT_PDU_SENT", "PDU encoded and sent")
EVT_REJECTED = NotificationEvent("EVT_REJECTED", "Association request rejected")
EVT_RELEASED = NotificationEvent("EVT_RELEASED", "Association released")
EVT_REQUESTED = NotificationEvent("EVT_REQUESTED", "Association requested")

EVT_ASYNC_OPS = InterventionEvent("EVT_ASYNC_OPS", "Asynchronous operations negotiation requested")
EVT_SOP_COMMON = InterventionEvent(
    "EVT_SOP_COMMON", "SOP class common extended negotiation requested"
)
EVT_SOP_EXTENDED = InterventionEvent("EVT_SOP_EXTENDED", "SOP class extended negotiation requested")
EVT_USER_ID = InterventionEvent("EVT_USER_ID", "User identity negotiation requested")
EVT_C_ECHO = InterventionEvent("EVT_C_ECHO", "C-ECHO request received")
EVT_C_FIND = InterventionEvent("EVT_C_FIND", "C-FIND request received")
EVT_C_GET = InterventionEvent("EVT_C_GET", "C-GET request received")
EVT_C_MOVE = InterventionEvent("EVT_C_MOVE", "C-MOVE request received")
EVT_C_STORE = InterventionEvent("EVT_C_STORE", "C-STORE request received")
EVT_N_ACTION = InterventionEvent("EVT_N_ACTION", "N-ACTION request received")
EVT_N_CREATE = InterventionEvent("EVT_N_CREATE", "N-CREATE request received")
EVT_N_DELETE = InterventionEvent("EVT_N_DELETE", "N-DELETE request received")
EVT_N_EVENT_REPORT = InterventionEvent("EVT_N_EVENT_REPORT", "N-EVENT-REPORT request received")
EVT_N_GET = InterventionEvent("EVT_N_GET", "N-GET request received")
EVT_N_SET = InterventionEvent("EVT_N_SET", "N-SET request received")

NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = tuple(
    value for value in dict(globals()).values() if isinstance(value, NotificationEvent)
)
INTERVENTION_EVENTS: tuple[InterventionEvent, ...] = tuple(
    value for value in dict(globals()).values() if isinstance(value, InterventionEvent)
)


class HandlerRegistry:
    """The handlers bound on one association or one server.

    Notification events keep an ordered list of ``(handler, args)``; binding
    the same pair twice keeps one. An intervention event keeps one pair; a
    new binding replaces the old one, as in pynetdicom.
    """

    __slots__ = ("_intervention", "_notification")

    def __init__(self) -> None:
        self._notification: dict[NotificationEvent, list[tuple[Handler, tuple[Any, ...]]]] = {}
        self._intervention: dict[InterventionEvent, tuple[Handler, tuple[Any, ...]]] = {}

    def bind(self, event: EventType, handler: Handler, args: Sequence[Any] | None = None) -> None:
        pair = (handler, tuple(args or ()))
        if isinstance(event, InterventionEvent):
            self._intervention[event] = pair
        elif isinstance(event, NotificationEvent):
            bound = self._notification.setdefault(event, [])
            if pair not in bound:
                bound.append(pair)
        else:
            raise TypeError(f"{event!r} is not a dicombus event type (evt.EVT_*)")

    def unbind(self, event: EventType, handler: Handler) -> None:
        if isinstance(event, InterventionEvent):
            if event in self._intervention and self._intervention[event][0] == handler:
                del self._intervention[event]
            return
        bound = [pair for pair in self._notification.get(event, []) if pair[0] != handler]
        if bound:
            self._notification[event] = bound
        else:
            self._notification.pop(event, None)

    def bind_all(self, bindings: Sequence[HandlerBinding] | None) -> None:
        """Bind pynetdicom-style ``evt_handlers``: 2-tuples or 3-tuples with extra args."""
        for binding in bindings or ():
            if len(binding) == 2:
                self.bind(binding[0], binding[1])
            elif len(binding) == 3:
                self.bind(binding[0], binding[1], binding[2])
            else:
                raise ValueError(
                    "evt_handlers items are (event, handler) or (event, handler, args), "
                    f"not {binding!r}"
                )

    def is_bound(self, event: EventType) -> bool:
        return event in self._notification or event in self._intervention

    def notification_handlers(
        self, event: NotificationEvent
    ) -> list[tuple[Handler, tuple[Any, ...]]]:
        return list(self._notification.get(event, ()))

    def intervention_handler(
        self, event: InterventionEvent
    ) -> tuple[Handler, tuple[Any, ...]] | None:
        return self._intervention.get(event)

    def get_handlers(self, event: EventType) -> Any:
        """pynetdicom's shape: a list for notifications, a pair or (None, None) otherwise."""
        if isinstance(event, NotificationEvent):
            return [(h, list(a) or None) for h, a in self.notification_handlers(event)]
        pair = self.intervention_handler(event)
        return (pair[0], list(pair[1]) or None) if pair else (None, None)

    def copy(self) -> HandlerRegistry:
        clone = HandlerRegistry()
        clone._notification = {event: list(pairs) for event, pairs in self._notification.items()}
        clone._intervention = dict(self._intervention)
        return clone

    def bindings(self) -> list[tuple[EventType, Handler, tuple[Any, ...]]]:
        flat: list[tuple[EventType, Handler, tuple[Any, ...]]] = [
            (event, handler, args)
            for event, pairs in self._notification.items()
            for handler, args in pairs
        ]
        flat.extend((event, h, a) for event, (h, a) in self._intervention.items())
        return flat


class EventSource(Protocol):
    """What :func:`trigger` needs of the association an event happened on."""

    @property
    def handlers(self) -> HandlerRegistry:
        """The handlers bound to it."""


class NoHandlerBound(DicombusError, LookupError):
    """An intervention event fired with no handler bound; the caller applies its default."""


def trigger(assoc: EventSource, event: EventType, attrs: dict[str, Any] | None = None) -> Any:
    """Call the handlers bound to ``event`` on ``assoc``.

    Notification handlers that raise are logged and never break the
    association. An intervention handler's exception propagates: the service
    turns it into the standard's failure status. With no intervention handler
    bound, raises :class:`NoHandlerBound`.
    """
    registry = assoc.handlers
    if isinstance(event, InterventionEvent):
        pair = registry.intervention_handler(event)
        if pair is None:
            raise NoHandlerBound(event.name)
        handler, args = pair
        return handler(Event(assoc, event, attrs), *args)
    handlers = registry.notification_handlers(event)
    if not handlers:
        return None
    built = Event(assoc, event, attrs)
    for handler, args in handlers:
        try:
            handler(built, *args)
        except Exception:
            LOGGER.exception(
                "exception in the handler %s bound to evt.%s; the association goes on",
                getattr(handler, "__qualname__", repr(handler)),
                event.name,
            )
    return None


# The request attribute that holds each DIMSE service's dataset-like parameter.
_DATASET_PARAMETERS = {
    "dataset": ("DataSet", "a C-STORE request"),
    "identifier": ("Identifier", "a C-FIND, C-GET or C-MOVE request"),
    "action_information": ("ActionInformation", "an N-ACTION request"),
    "attribute_list": ("AttributeList", "an N-CREATE, N-SET or N-GET request"),
    "event_information": ("EventInformation", "an N-EVENT-REPORT request"),
    "modification_list": ("ModificationList", "an N-SET request"),
}


class Event:
    """What a handler receives: the association, the event type, and per-event attributes.

    Datasets are decoded on first access and kept, so a handler that only
    writes ``encoded_dataset()`` to disk never pays for a decode.
    """

    def __init__(
        self, assoc: EventSource, event: EventType, attrs: dict[str, Any] | None = None
    ) -> None:
        # The Association, with all of pynetdicom's API for the handler to use;
        # typed Any because the services trigger events through a narrower view
        # of it (dicombus.services.interface), which hands it on unchanged.
        self.assoc: Any = assoc
        self._event = event
        self.timestamp = datetime.now()
        self._decoded: dict[str, Dataset] = {}
        for name, value in (attrs or {}).items():
            if name in type(self).__dict__ or name in self.__dict__:
                raise AttributeError(f"'Event' object already has an attribute '{name}'")
            setattr(self, name, value)

    @property
    def event(self) -> EventType:
        return self._event

    @property
    def name(self) -> str:
        return self._event.name

    @property
    def description(self) -> str:
        return self._event.description

    def _dataset_parameter(self, prop: str) -> Dataset:
        attribute, what = _DATASET_PARAMETERS[prop]
        if prop in self._decoded:
            return self._decoded[prop]
        request = self.__dict__.get("request")
        source = getattr(request, "parameter_bytes", None)
        if source is None or attribute not in getattr(request, "dataset_parameters", ()):
            raise AttributeError(f"the event is not {what} and has no '{attribute}' parameter")
        encoded = source()
        syntax = self._context().transfer_syntax
        decoded = decode_dataset(encoded, syntax) if encoded else Dataset()
        if prop == "dataset":
            decoded.file_meta = self.file_meta
        self._decoded[prop] = decoded
        return decoded

    @property
    def dataset(self) -> Dataset:
        return self._dataset_parameter("dataset")

    @property
    def identifier(self) -> Dataset:
        return self._dataset_parameter("identifier")

    @property
    def action_information(self) -> Dataset:
        return self._dataset_parameter("action_information")

    @property
    def attribute_list(self) -> Dataset:
        return self._dataset_parameter("attribute_list")

    @property
    def event_information(self) -> Dataset:
        return self._dataset_parameter("event_information")

    @property
    def modification_list(self) -> Dataset:
        return self._dataset_parameter("modification_list")

    @property
    def file_meta(self) -> FileMetaDataset:
        """PS3.10 7.1: the File Meta Information of the received instance, built on
        first access and kept."""
        cached = self.__dict__.get("_file_meta")
        if cached is None:
            cached = self.instance_meta.file_meta()
            self.__dict__["_file_meta"] = cached
        return cached

    @property
    def instance_meta(self) -> InstanceMeta:
        """What :attr:`file_meta` holds, as the three UIDs of the C-STORE request and its
        presentation context, without building a pydicom FileMetaDataset: the storage
        handler's view (not in pynetdicom)."""
        request = self.__dict__.get("request")
        if request is None or "DataSet" not in getattr(request, "dataset_parameters", ()):
            raise AttributeError("the event is not a C-STORE request")
        return InstanceMeta(
            sop_class_uid=request.AffectedSOPClassUID,
            sop_instance_uid=request.AffectedSOPInstanceUID,
            transfer_syntax=self._context().transfer_syntax,
        )

    def encoded_dataset(self, include_meta: bool = True) -> bytes:
        """The C-STORE dataset exactly as the peer sent it, optionally as a Part 10 file."""
        request = self.__dict__.get("request")
        if request is None or "DataSet" not in getattr(request, "dataset_parameters", ()):
            raise AttributeError("the event is not a C-STORE request and has no 'Data Set'")
        if not include_meta:
            encoded: bytes = request.parameter_bytes()
            return encoded
        header = self.instance_meta.part10_header()
        # One copy of the dataset, however large (see SpoolingDatasetSink.prefixed).
        joined: bytes = request.parameter_bytes(prefix=header)
        return joined

    @property
    def dataset_path(self) -> Path:
        """A file holding the received C-STORE dataset bytes (no file meta).

        Large datasets are spooled to disk as their fragments arrive, and this
        is that file; small ones are written out on first access. The file is
        removed after the handler returns unless the handler moved it away.
        """
        request = self.__dict__.get("request")
        spool = getattr(request, "dataset_file", None)
        if spool is None:
            raise AttributeError("the event is not a C-STORE request")
        path: Path = spool()
        return path

    @property
    def message_id(self) -> int:
        request = self.__dict__.get("request")
        if request is None:
            raise AttributeError("the event is not a DIMSE service request")
        message_id: int = request.MessageID
        return message_id

    @property
    def is_cancelled(self) -> bool:
        check = self.__dict__.get("_is_cancelled")
        request = self.__dict__.get("request")
        if check is None or request is None:
            return False
        return bool(check(request.MessageID))

    @property
    def action_type(self) -> int | None:
        value: int | None = self._request_value("ActionTypeID")
        return value

    @property
    def event_type(self) -> int | None:
        value: int | None = self._request_value("EventTypeID")
        return value

    @property
    def move_destination(self) -> str | None:
        value: str | None = self._request_value("MoveDestination")
        return value

    @property
    def attribute_identifiers(self) -> list[BaseTag]:
        tags = self._request_value("AttributeIdentifierList") or []
        return [Tag(tag) for tag in tags]

    def _context(self) -> Any:
        """The PresentationContextTuple the request arrived on."""
        context = self.__dict__.get("context")
        if context is None:
            raise AttributeError("the event has no presentation context")
        return context

    def _request_value(self, keyword: str) -> Any:
        request = self.__dict__.get("request")
        if request is None:
            raise AttributeError("the event is not a DIMSE service request")
        return getattr(request, keyword, None)
