"""Sending a batch to a STOW-RS destination: one HTTP POST, each instance's status from the answer.

PS3.18 10.5: the batch's Part 10 files go as one ``multipart/related;
type="application/dicom"`` request to the destination's URL (its ``/studies``), with the
configured authorization (RFC 7617 basic, RFC 6750 bearer) and TLS; the response's
ReferencedSOPSequence / FailedSOPSequence give each instance's status
(:mod:`dicombus.routing.stow`). Only the standard library's ``http.client``: one request at
a time per sender, nothing a client library would add.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dicombus.routing import stow
from dicombus.routing.delivery_store import Delivery
from dicombus.routing.destinations import StowAuth, StowDestination
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from dicombus_workers.routing.fetch import InstanceFiles
from dicombus_workers.routing.transport import (
    ConnectionFailed,
    OnResponse,
    Response,
    stored_instance,
)

TIMEOUT = 30.0
# One request carries at most this many bytes of instances (the stored files' sizes): the
# body is built in memory, and many servers cap a request's size (a batch above it is cut;
# an instance larger than it goes alone).
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# Enough of a refusal's body to say why in a dead letter's reason.
REASON_BODY = 200


class StowTransport:
    """A STOW-RS destination as its senders use it (:class:`.transport.Transport`)."""

    def __init__(self, destination: StowDestination, files: InstanceFiles) -> None:
        self.destination = destination
        self.files = files
        url = urlsplit(destination.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")

    def batch(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        taken: list[Delivery] = []
        size = 0
        for delivery in deliveries:
            # An unreadable file is reported when the batch is read.
            with contextlib.suppress(OSError):
                size += self.files.size(delivery)
            if taken and size > MAX_REQUEST_BYTES:
                break
            taken.append(delivery)
        return taken

    def send_batch(self, deliveries: Sequence[Delivery], on_response: OnResponse) -> None:
        parts: list[bytes] = []
        sent: list[Delivery] = []
        for delivery in deliveries:
            try:
                parts.append(
                    _part10(stored_instance(self.destination.transform, delivery, self.files))
                )
            except (OSError, ValueError) as exc:  # pydicom's InvalidDicomError is an OSError
                on_response(delivery, Response(None, f"cannot read the instance: {exc}", True))
                continue
            sent.append(delivery)
        if not sent:
            return
        boundary = stow.multipart_boundary()
        body = b"".join(stow.multipart_body(parts, boundary))
        http_status, reason, answer = self._request(
            "POST",
            body,
            {"Content-Type": stow.content_type(boundary), "Accept": stow.RESPONSE_TYPE},
        )
        self._settle(sent, http_status, reason, answer, on_response)

    def _settle(
        self,
        sent: Sequence[Delivery],
        http_status: int,
        reason: str,
        answer: bytes,
        on_response: OnResponse,
    ) -> None:
        said = f"{self.destination.url} answered HTTP {http_status} {reason}"
        outcome = stow.request_outcome(http_status)
        if outcome is stow.RequestOutcome.PER_INSTANCE:
            try:
                statuses = stow.instance_statuses(
                    http_status, answer, [d.sop_instance_uid for d in sent]
                )
            except stow.StowResponseError as exc:
                for delivery in sent:
                    on_response(delivery, Response(None, f"{said}: {exc}"))
                return
            for delivery in sent:
                status = statuses[delivery.sop_instance_uid].status
                error = None if status is not None else f"{said} without this instance"
                on_response(delivery, Response(status, error))
            return
        text = answer[:REASON_BODY].decode("utf-8", "replace").strip()
        error = f"{said}: {text}" if text else said
        for delivery in sent:
            on_response(delivery, Response(None, error, outcome is stow.RequestOutcome.PERMANENT))

    def probe(self) -> str | None:
        """A QIDO-RS search on the URL (PS3.18 10.6): any answer but 5xx means it is up."""
        try:
            http_status, reason, _ = self._request(
                "GET", None, {"Accept": stow.RESPONSE_TYPE}, query="limit=1"
            )
        except ConnectionFailed as exc:
            return str(exc)
        return None if http_status < 500 else f"HTTP {http_status} {reason}"

    def describe(self) -> dict[str, Any]:
        d = self.destination
        return {
            "association": {
                "role": "requestor",
                "calling_ae_title": None,
                "called_ae_title": None,
                "peer_address": self._host,
                "peer_port": self._port,
            },
            "destination": {"name": d.name, "url": d.url, "host": self._host, "port": self._port},
            "calling_ae_title": None,
        }

    def _request(
        self, method: str, body: bytes | None, headers: dict[str, str], *, query: str = ""
    ) -> tuple[int, str, bytes]:
        path = self._path
        if query:
            path += ("&" if "?" in path else "?") + query
        connection = self._connection()
        try:
            connection.request(method, path, body, {**headers, **self._authorization()})
            response = connection.getresponse()
            return response.status, response.reason, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailed(f"{method} {self.destination.url}: {exc}") from exc
        finally:
            connection.close()

    def _connection(self) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT)
        d = self.destination
        context = ssl.create_default_context(cafile=str(d.tls_ca) if d.tls_ca else None)
        if not d.tls_verify:
            # tls_verify = false: the operator's explicit choice (a test server).
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(self._host, self._port, timeout=TIMEOUT, context=context)

    def _authorization(self) -> dict[str, str]:
        d = self.destination
        # Read at each request: the loader checked the variable is set; a rotated secret
        # is picked up without a restart.
        if d.auth is StowAuth.BASIC:
            password = os.environ.get(d.password_env or "", "")
            token = base64.b64encode(f"{d.username}:{password}".encode()).decode("ascii")
            return {"Authorization": f"Basic {token}"}
        if d.auth is StowAuth.BEARER:
            return {"Authorization": f"Bearer {os.environ.get(d.token_env or '', '')}"}
        return {}


def _part10(instance: Dataset | Path) -> bytes:
    """A Part 10 file's bytes: the stored file as it is, or a transformed data set written."""
    if isinstance(instance, Path):
        return instance.read_bytes()
    out = io.BytesIO()
    dcmwrite(out, instance, enforce_file_format=True)
    return out.getvalue()
