"""The Application Entity: configuration, association requests and servers (pynetdicom's ``AE``)."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Sequence
from typing import Literal, overload

from pydicom.uid import UID

from dicombus import evt
from dicombus.ae_title import checked_ae_title
from dicombus.association import Association
from dicombus.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicombus.presentation import (
    DEFAULT_TRANSFER_SYNTAXES,
    PresentationContext,
    build_context,
)
from dicombus.protocol.items import UserSubItem
from dicombus.protocol.limits import (
    DEFAULT_MAX_ASSOCIATE_PDU_LENGTH,
    DEFAULT_MAXIMUM_PDU_SIZE,
    MAX_PRESENTATION_CONTEXTS,
    MINIMUM_PDU_LENGTH,
)
from dicombus.runtime.spool import DEFAULT_MAX_DATASET_SIZE
from dicombus.server import AssociationServer
from dicombus.services.interface import AssociationOpener

LOGGER = logging.getLogger("dicombus.ae")

TransferSyntaxes = str | Sequence[str] | None


def _syntaxes(transfer_syntax: TransferSyntaxes) -> list[str]:
    if transfer_syntax is None:
        return list(DEFAULT_TRANSFER_SYNTAXES)
    if isinstance(transfer_syntax, str):
        return [transfer_syntax]
    return list(transfer_syntax)


def _timeout(value: float | None, name: str) -> float | None:
    if value is not None and (not isinstance(value, int | float) or value < 0):
        raise ValueError(f"{name} must be None or a non-negative number of seconds, not {value!r}")
    return None if value is None else float(value)


class AE:
    """A DICOM Application Entity, as requestor (``associate``) and acceptor (``start_server``)."""

    def __init__(self, ae_title: str = "DICOMBUS") -> None:
        self.ae_title = ae_title
        self.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        self.implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME
        self._requested_contexts: list[PresentationContext] = []
        self._supported_contexts: dict[str, PresentationContext] = {}
        self.maximum_associations = 10
        self.maximum_pdu_size = DEFAULT_MAXIMUM_PDU_SIZE
        # DCMTK's cap: an A-ASSOCIATE PDU claiming more is hostile.
        self.maximum_associate_pdu_size = DEFAULT_MAX_ASSOCIATE_PDU_LENGTH
        self.acse_timeout: float | None = 30.0
        self.dimse_timeout: float | None = 30.0
        self.network_timeout: float | None = 60.0
        self.connection_timeout: float | None = None
        self.require_calling_aet: list[str] = []
        self.require_called_aet = False
        # Where received C-STORE datasets are spooled; None: _config.STORE_SPOOL_DIRECTORY.
        self.spool_directory: str | os.PathLike[str] | None = None
        # A C-STORE dataset larger than this aborts the association (A-ABORT).
        self.maximum_dataset_size = DEFAULT_MAX_DATASET_SIZE
        self._servers: list[AssociationServer] = []
        # A server is listed in the same step as it binds, so shutdown() from another
        # thread never misses one that is listening but not listed yet.
        self._servers_lock = threading.Lock()
        self._requestors: list[Association] = []
        self._lock = threading.Lock()
        # How the services of this AE's associations open associations of their own
        # (C-MOVE's to its move destination): this AE, unless the application gives
        # another, say one that records or pools them.
        self.association_opener: AssociationOpener = self

    # -- validated settings ----------------------------------------------------------------

    @property
    def ae_title(self) -> str:
        return self._ae_title

    @ae_title.setter
    def ae_title(self, value: str) -> None:
        self._ae_title = checked_ae_title(value)

    @property
    def maximum_pdu_size(self) -> int:
        return self._maximum_pdu_size

    @maximum_pdu_size.setter
    def maximum_pdu_size(self, value: int) -> None:
        if not isinstance(value, int) or (value != 0 and value < MINIMUM_PDU_LENGTH):
            raise ValueError(f"maximum_pdu_size is 0 (unlimited) or at least {MINIMUM_PDU_LENGTH}")
        self._maximum_pdu_size = value

    @property
    def maximum_dataset_size(self) -> int:
        return self._maximum_dataset_size

    @maximum_dataset_size.setter
    def maximum_dataset_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("maximum_dataset_size must be a positive int (bytes)")
        self._maximum_dataset_size = value

    @property
    def maximum_associations(self) -> int:
        return self._maximum_associations

    @maximum_associations.setter
    def maximum_associations(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise ValueError("maximum_associations must be a positive int")
        self._maximum_associations = value

    @property
    def acse_timeout(self) -> float | None:
        return self._acse_timeout

    @acse_timeout.setter
    def acse_timeout(self, value: float | None) -> None:
        self._acse_timeout = _timeout(value, "acse_timeout")

    @property
    def dimse_timeout(self) -> float | None:
        return self._dimse_timeout

    @dimse_timeout.setter
    def dimse_timeout(self, value: float | None) -> None:
        self._dimse_timeout = _timeout(value, "dimse_timeout")

    @property
    def network_timeout(self) -> float | None:
        return self._network_timeout

    @network_timeout.setter
    def network_timeout(self, value: float | None) -> None:
        self._network_timeout = _timeout(value, "network_timeout")

    @property
    def connection_timeout(self) -> float | None:
        return self._connection_timeout

    @connection_timeout.setter
    def connection_timeout(self, value: float | None) -> None:
        self._connection_timeout = _timeout(value, "connection_timeout")

    @property
    def require_calling_aet(self) -> list[str]:
        return list(self._require_calling_aet)

    @require_calling_aet.setter
    def require_calling_aet(self, titles: Sequence[str]) -> None:
        self._require_calling_aet = [checked_ae_title(title) for title in titles]

    # -- presentation contexts -------------------------------------------------------------

    @property
    def requested_contexts(self) -> list[PresentationContext]:
        return list(self._requested_contexts)

    @requested_contexts.setter
    def requested_contexts(self, contexts: Sequence[PresentationContext]) -> None:
        self._requested_contexts = []
        for context in contexts:
            self.add_requested_context(context.abstract_syntax, context.transfer_syntax)

    def add_requested_context(
        self, abstract_syntax: str, transfer_syntax: TransferSyntaxes = None
    ) -> None:
        if len(self._requested_contexts) >= MAX_PRESENTATION_CONTEXTS:
            raise ValueError(
                f"an association request holds at most {MAX_PRESENTATION_CONTEXTS} presentation "
                "contexts"
            )
        self._requested_contexts.append(build_context(abstract_syntax, _syntaxes(transfer_syntax)))

    def remove_requested_context(
        self, abstract_syntax: str, transfer_syntax: TransferSyntaxes = None
    ) -> None:
        self._requested_contexts = _without(
            self._requested_contexts, abstract_syntax, transfer_syntax
        )

    @property
    def supported_contexts(self) -> list[PresentationContext]:
        return sorted(self._supported_contexts.values(), key=lambda c: str(c.abstract_syntax))

    @supported_contexts.setter
    def supported_contexts(self, contexts: Sequence[PresentationContext]) -> None:
        self._supported_contexts = {}
        for context in contexts:
            self.add_supported_context(
                context.abstract_syntax, context.transfer_syntax, context.scu_role, context.scp_role
            )

    def add_supported_context(
        self,
        abstract_syntax: str,
        transfer_syntax: TransferSyntaxes = None,
        scu_role: bool | None = None,
        scp_role: bool | None = None,
    ) -> None:
        """Support ``abstract_syntax``; adding it again extends its transfer syntaxes."""
        uid = str(UID(abstract_syntax))
        existing = self._supported_contexts.get(uid)
        if existing is None:
            existing = build_context(uid, _syntaxes(transfer_syntax))
            self._supported_contexts[uid] = existing
        else:
            for syntax in _syntaxes(transfer_syntax):
                existing.add_transfer_syntax(syntax)
        existing.scu_role = scu_role
        existing.scp_role = scp_role

    def remove_supported_context(
        self, abstract_syntax: str, transfer_syntax: TransferSyntaxes = None
    ) -> None:
        remaining = _without(
            list(self._supported_contexts.values()), abstract_syntax, transfer_syntax
        )
        self._supported_contexts = {str(c.abstract_syntax): c for c in remaining}

    # -- associations ----------------------------------------------------------------------

    @property
    def active_associations(self) -> list[Association]:
        with self._lock:
            self._requestors = [a for a in self._requestors if a.is_alive()]
            active = list(self._requestors)
        for server in self._servers:
            active.extend(server.active_associations)
        return active

    def associate(
        self,
        addr: str,
        port: int,
        contexts: Sequence[PresentationContext] | None = None,
        ae_title: str = "ANY-SCP",
        max_pdu: int | None = None,
        ext_neg: Sequence[UserSubItem] | None = None,
        bind_address: tuple[str, int] | None = None,
        tls_args: tuple[ssl.SSLContext, str | None] | None = None,
        evt_handlers: Sequence[evt.HandlerBinding] | None = None,
    ) -> Association:
        """Request an association; returns once it is established, rejected or failed."""
        requested = list(contexts) if contexts is not None else self.requested_contexts
        if not requested:
            raise RuntimeError("at least one requested presentation context is required")
        if len(requested) > MAX_PRESENTATION_CONTEXTS:
            raise ValueError(f"at most {MAX_PRESENTATION_CONTEXTS} presentation contexts")
        handlers = evt.HandlerRegistry()
        handlers.bind_all(evt_handlers)
        assoc = Association(self, "requestor", handlers=handlers)
        assoc.requestor.ae_title = self.ae_title
        assoc.acceptor.ae_title = assoc.called_ae_title = checked_ae_title(ae_title)
        assoc.requestor.maximum_length = self.maximum_pdu_size if max_pdu is None else max_pdu
        assoc.requested_contexts = [
            PresentationContext(
                context_id=2 * index + 1,
                abstract_syntax=context.abstract_syntax,
                transfer_syntax=context.transfer_syntax,
                scu_role=context.scu_role,
                scp_role=context.scp_role,
            )
            for index, context in enumerate(requested)
        ]
        assoc.extended_negotiation = list(ext_neg or ())
        with self._lock:
            self._requestors.append(assoc)
        assoc.start_as_requestor(addr, port, bind_address=bind_address, tls=tls_args)
        assoc.wait_for_negotiation()
        return assoc

    @overload
    def start_server(
        self,
        address: tuple[str, int],
        block: Literal[False],
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: Sequence[evt.HandlerBinding] | None = None,
        ae_title: str | None = None,
        contexts: Sequence[PresentationContext] | None = None,
    ) -> AssociationServer: ...

    @overload
    def start_server(
        self,
        address: tuple[str, int],
        block: Literal[True] = True,
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: Sequence[evt.HandlerBinding] | None = None,
        ae_title: str | None = None,
        contexts: Sequence[PresentationContext] | None = None,
    ) -> None: ...

    def start_server(
        self,
        address: tuple[str, int],
        block: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        evt_handlers: Sequence[evt.HandlerBinding] | None = None,
        ae_title: str | None = None,
        contexts: Sequence[PresentationContext] | None = None,
    ) -> AssociationServer | None:
        """Listen for association requests; with ``block=False`` return the running server."""
        supported = list(contexts) if contexts is not None else self.supported_contexts
        if not supported:
            raise ValueError("at least one supported presentation context is required")
        with self._servers_lock:
            server = AssociationServer(
                self,
                address,
                ae_title=ae_title or self.ae_title,
                contexts=supported,
                ssl_context=ssl_context,
                evt_handlers=evt_handlers,
                on_shutdown=self._forget_server,
            )
            self._servers.append(server)
        if block:
            try:
                server.serve_forever()
            finally:
                server.shutdown()
            return None
        server.start()
        return server

    def _forget_server(self, server: AssociationServer) -> None:
        """Called by a server of this AE as it shuts down, however that was asked."""
        with self._servers_lock:
            if server in self._servers:
                self._servers.remove(server)

    def shutdown(self) -> None:
        """Stop every server of this AE and abort the associations it requested."""
        with self._servers_lock:
            servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
        for assoc in self.active_associations:
            assoc.abort()

    def __str__(self) -> str:
        return (
            f"AE {self.ae_title!r}: {len(self._requested_contexts)} requested and "
            f"{len(self._supported_contexts)} supported contexts, "
            f"{len(self.active_associations)} active associations"
        )


def _without(
    contexts: list[PresentationContext], abstract_syntax: str, transfer_syntax: TransferSyntaxes
) -> list[PresentationContext]:
    """Drop whole contexts for ``abstract_syntax``, or only the named transfer syntaxes."""
    kept = []
    dropped = None if transfer_syntax is None else set(_syntaxes(transfer_syntax))
    for context in contexts:
        if context.abstract_syntax != abstract_syntax:
            kept.append(context)
            continue
        if dropped is None:
            continue
        remaining: list[str] = [ts for ts in context.transfer_syntax if ts not in dropped]
        if remaining:
            context.transfer_syntax = remaining
            kept.append(context)
    return kept
