"""What the ATNA tests share: event envelopes, the audit schema, a real rsyslog.

:class:`Rsyslog` runs Debian's ``rsyslogd`` in the foreground from a generated
configuration (imtcp with TLS through the gtls stream driver, or imudp), as
``nobody`` when the tests run as root, on loopback, writing each received
message's raw text (header and XML) as one JSON string a line.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from dicombus.bus.dicom_json import to_dicom_json
from dicombus_workers.records import EventRecord
from helpers import free_port, import_peer, require_tool, small_dataset, wait_for_port
from lxml import etree
from pydicom.dataset import Dataset
from up_support import UpProcess

SCHEMA = Path(__file__).resolve().parent / "schema" / "audit-message.rng"
STOP_TIMEOUT = 10.0
_sequence = iter(range(1, 1_000_000))


def validate(xml: bytes) -> etree._Element:
    """Parse ``xml`` and validate it against the PS3.15 A.5.1.1 schema; fail naming why."""
    document = etree.fromstring(xml)
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    if not schema.validate(document):
        raise AssertionError(f"not a valid DICOM audit message: {schema.error_log}\n{xml!r}")
    return document


def envelope(
    event_type: str, data: dict[str, Any], *, association: str = "01ASSOCIATION0000000000001"
) -> EventRecord:
    """An event as the edge publishes it: an association from MODALITY at 127.0.0.1."""
    number = next(_sequence)
    return EventRecord(
        {
            "specversion": "1.0",
            "id": f"01EVENT{number:019d}",
            "source": "dicombus://edge-1/EDGE",
            "type": event_type,
            "time": "2026-01-02T03:04:05.123456Z",
            "subject": association,
            "sequence": number,
            "schemaversion": "1",
            "data": {
                "association": {
                    "role": "acceptor",
                    "calling_ae_title": "MODALITY",
                    "called_ae_title": "EDGE",
                    "peer_address": "127.0.0.1",
                    "peer_port": 50000,
                    "local_port": 11112,
                    "tls_peer_subject": None,
                },
                **data,
            },
        }
    )


def study(patient_id: str = "P-0001") -> Dataset:
    ds = small_dataset()
    ds.PatientID = patient_id
    ds.PatientName = "Doe^Jane"
    ds.AccessionNumber = "ACC-1"
    return ds


def c_store(ds: Dataset, *, association: str, status: str = "Success") -> EventRecord:
    return envelope(
        "EVT_C_STORE",
        {
            "sop_class_uid": str(ds.SOPClassUID),
            "sop_instance_uid": str(ds.SOPInstanceUID),
            "status": 0 if status == "Success" else 0xA700,
            "status_category": status,
            "dataset": to_dicom_json(ds, bulk_data_uri="file:///storage/instance.dcm"),
        },
        association=association,
    )


def conn_close(association: str) -> EventRecord:
    return envelope(
        "EVT_CONN_CLOSE", {"address": "127.0.0.1", "port": 50000}, association=association
    )


class Rsyslog:
    """A real rsyslogd on 127.0.0.1: ``tls`` (CA, cert, key paths) or UDP when None."""

    def __init__(
        self,
        folder: Path,
        port: int,
        tls: tuple[Path, Path, Path] | None,
        *,
        verify_clients: bool = False,
    ) -> None:
        self.binary = require_tool("rsyslogd")
        self.folder, self.port = folder, port
        # x509/certvalid: a client must show a certificate signed by the CA (mutual TLS).
        self.auth_mode = "x509/certvalid" if verify_clients else "anon"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "work").mkdir(exist_ok=True)
        # Its own copies of the certificates, inside the folder it may read.
        self.tls = None if tls is None else tuple(_copy(path, folder) for path in tls)
        self.received = folder / "received.jsonl"
        self.process: subprocess.Popen[bytes] | None = None
        self.config = folder / "rsyslog.conf"
        self.config.write_text(self._config())
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            # Not as root: rsyslog is the test's peer, with no more rights than it needs.
            nobody = pwd.getpwnam("nobody")
            self.user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, nobody.pw_uid, nobody.pw_gid)

    def _config(self) -> str:
        drivers = ""
        if self.tls is not None:
            ca, cert, key = self.tls
            drivers = (
                f'defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{ca}" '
                f'defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}"'
            )
        if self.tls is not None:
            listener = (
                'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" '
                f'StreamDriver.AuthMode="{self.auth_mode}")\n'
                f'input(type="imtcp" address="127.0.0.1" port="{self.port}")\n'
            )
        else:
            listener = (
                'module(load="imudp")\n'
                f'input(type="imudp" address="127.0.0.1" port="{self.port}")\n'
            )
        return (
            f'global(workDirectory="{self.folder / "work"}" {drivers}\n'
            # Keep the XML's line breaks as they came (the default escapes them as #012).
            '       parser.escapeControlCharactersOnReceive="off")\n'
            f"{listener}"
            'template(name="raw" type="string" string="%rawmsg:::json%\\n")\n'
            f'action(type="omfile" file="{self.received}" template="raw")\n'
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.config), "-i", str(self.folder / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "rsyslogd.err").open("ab"),
            **self.user,
        )
        if self.tls is not None:
            wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)  # only the rsyslogd this object started
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self.process = None

    def messages(self) -> list[str]:
        if not self.received.exists():
            return []
        lines = self.received.read_text(encoding="utf-8").splitlines()
        return [json.loads(f'"{line}"') for line in lines if line]


def issue_certificates(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A test CA (trustme) and, in ``folder``: ``ca.pem``, the server's ``server.pem`` /
    ``server.key`` for 127.0.0.1, and a client's ``client.pem`` / ``client.key`` for
    ``audit-host`` (mutual TLS). Returns (folder, CA, server certificate, server key)."""
    trustme = import_peer("trustme")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("audit-host")
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    client.cert_chain_pems[0].write_to_path(str(folder / "client.pem"))
    client.private_key_pem.write_to_path(str(folder / "client.key"))
    ca.cert_pem.write_to_path(str(ca_file))
    server.cert_chain_pems[0].write_to_path(str(cert_file))
    server.private_key_pem.write_to_path(str(key_file))
    return folder, ca_file, cert_file, key_file


def started_tls_rsyslog(folder: Path, rsyslog_dir: Path) -> tuple[Rsyslog, Path, Path, Path]:
    """A real rsyslog receiving over TLS on a free port, started; with the CA, certificate
    and key issued for it under ``folder`` (an edge's own TLS may use them too)."""
    _folder, ca, cert, key = issue_certificates(folder / "certs")
    rsyslog = Rsyslog(rsyslog_dir, free_port(), (ca, cert, key))
    rsyslog.start()
    return rsyslog, ca, cert, key


def _copy(path: Path, folder: Path) -> Path:
    target = folder / path.name
    shutil.copyfile(path, target)
    return target


@contextmanager
def rsyslog_folder() -> Iterator[Path]:
    """A folder ``nobody`` can reach (pytest's tmp_path is root's, mode 0700, when root)."""
    folder = Path(tempfile.mkdtemp(prefix="dicombus-rsyslog-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- `dicombus up` auditing to a real rsyslog ---------------------------------------------------


def syslog_node_toml(
    folder: Path, syslog_port: int, ca: Path, *, edge_id: str, ae_title: str, more: str = ""
) -> Path:
    """The node's TOML file: ``[edge]``, then ``more`` (e.g. a ``[tls]`` table), then
    ``[audit.syslog]`` to rsyslog over TLS on ``syslog_port``, trusting ``ca``."""
    path = folder / "node.toml"
    path.write_text(
        f'[edge]\nid = "{edge_id}"\nae_title = "{ae_title}"\n\n{more}'
        "[audit.syslog]\n"
        f'host = "127.0.0.1"\nport = {syslog_port}\nca = "{ca}"\n'
        'hostname = "audit-host"\nmax_backoff = 1\n'
    )
    return path


def atna_registered(node: UpProcess) -> bool:
    """The worker has registered the ATNA task: the edge now publishes for it."""
    client = redis.Redis.from_url(node.record["broker_url"])
    try:
        return bool(client.hexists("dicombus:subscriptions", "dicombus.atna"))
    finally:
        client.close()


def received_messages(rsyslog: Rsyslog, event_id: str) -> list[etree._Element]:
    """The schema-valid audit messages of ``event_id`` (the EventID code) rsyslog received,
    in order (the XML after each message's RFC 5424 header)."""
    found = []
    for raw in rsyslog.messages():
        xml = raw.encode("utf-8")
        document = validate(xml[xml.index(b"<?xml") :])
        if document.find("EventIdentification/EventID").get("csd-code") == event_id:
            found.append(document)
    return found
