"""Orthanc with its DICOMweb plugin (Debian's ``orthanc``, ``orthanc-dicomweb``), as a test peer.

Started as a child process with a generated JSON configuration: HTTP and DICOM ports free
on 127.0.0.1, storage in the test's folder, the DICOMweb plugin loaded, HTTP basic
authentication with one user; stopped by its PID. Missing: ``peer_missing`` (a failure
under CI).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port, peer_missing, require_tool, wait_for_port

# Where Debian's orthanc-dicomweb puts the plugin (Orthanc's own plugin folder).
DICOMWEB_PLUGINS = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)
USER = "router"
STOP_TIMEOUT = 20.0
START_TIMEOUT = 30.0


@dataclass
class Orthanc:
    process: subprocess.Popen[bytes]
    http_port: int
    password: str
    log: Path

    @property
    def stow_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web/studies"

    def get(self, path: str) -> bytes:
        return self._call(urllib.request.Request(self._url(path)))

    def instance_file(self, sop_instance_uid: str) -> bytes | None:
        """The Part 10 file Orthanc stores for the instance (None: it has no such instance)."""
        request = urllib.request.Request(
            self._url("/tools/lookup"), data=sop_instance_uid.encode(), method="POST"
        )
        found = [item for item in json.loads(self._call(request)) if item["Type"] == "Instance"]
        if not found:
            return None
        return self.get(f"/instances/{found[0]['ID']}/file")

    def instance_count(self) -> int:
        return int(json.loads(self.get("/statistics"))["CountInstances"])

    def answers_dicomweb(self) -> bool:
        """Whether the DICOMweb plugin answers a QIDO-RS search yet (its port may open first)."""
        try:
            self.get("/dicom-web/studies?limit=1")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def _call(self, request: urllib.request.Request) -> bytes:
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            body: bytes = response.read()
        return body


def dicomweb_plugin() -> Path:
    for path in DICOMWEB_PLUGINS:
        if path.is_file():
            return path
    peer_missing("Orthanc's DICOMweb plugin (Debian package orthanc-dicomweb) is not installed")


@contextmanager
def orthanc(folder: Path, password: str) -> Iterator[Orthanc]:
    """Orthanc serving STOW-RS on 127.0.0.1, user ``router`` with ``password``."""
    binary = require_tool("Orthanc")
    plugin = dicomweb_plugin()
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "dicombus-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,  # 127.0.0.1 only
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: password},
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    config_path = folder / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = folder / "orthanc.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [binary, str(config_path)], stdout=output, stderr=subprocess.STDOUT
        )
    peer = Orthanc(process, http_port, password, log)
    try:
        wait_for_port(http_port, timeout=START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not peer.answers_dicomweb():
            assert process.poll() is None, f"Orthanc exited: {log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "Orthanc's DICOMweb plugin never answered"
            time.sleep(0.1)
        yield peer
    finally:
        process.terminate()  # by its PID: this Orthanc and nothing else
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
