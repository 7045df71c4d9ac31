"""The routing issue's end-to-end scenario, from ``dicombus up --config`` with real peers.

DCMTK's ``storescu`` and pynetdicom send three studies to the node's edge (a CT study, an MR
study, and a CT study whose second series comes after the study was complete). The rules
send CT (per study) to DCMTK's ``storescp``; MR to a pynetdicom SCP that is down until the
first attempts have failed, and to a pynetdicom SCP answering 0xA900; everything to Orthanc
over STOW-RS; and everything, de-identified, to a dicombus SCP. Then every destination's
content is compared with what the edge stored: byte for byte, or attribute by attribute for
the de-identified copies (PS3.15 Table E.1-1, transcribed here for the attributes the test
instances carry, independently of ``dicombus.routing.basic_profile``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from delivery_support import counting_scp, data_set_bytes, states, storescp
from dicombus import evt
from dicombus.routing.delivery_store import DeliveryStore, State
from helpers import (
    StoreRecorder,
    dicombus_storage_scp,
    free_port,
    import_peer,
    require_tool,
    small_dataset,
    write_part10,
)
from orthanc_support import orthanc
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid
from study_tasks import STUDIES
from up_support import UpProcess, run_dicombus
from worker_support import wait_for

pytestmark = pytest.mark.interop

QUIET = 2
SECRET = "scenario-secret"
ROUTING_TIMEOUT = 90.0
TASKS = Path(__file__).parent
SLICE_LOCATIONS = itertools.count(1)

# PS3.15 Table E.1-1 for the identifying attributes the test instances carry.
EMPTIED = (  # Z
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
)
DUMMIED = ("PatientID", "InstitutionName", "StationName", "OperatorsName")  # Z/D, X/Z/D
REPLACED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")  # U
ADDED = (
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
)


def series(study: str, sop_class: str, count: int, patient: str) -> list[Dataset]:
    uid = generate_uid()
    found = []
    for number in range(1, count + 1):
        ds = small_dataset(sop_class)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, uid, number
        ds.PatientID, ds.PatientName = patient, f"{patient}^Patient"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyTime = "19700101", "F", "101010"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "ACC1", "S1", "Ref^Doc"
        ds.InstitutionName, ds.StationName, ds.OperatorsName = "General", "CT01", "Op^One"
        ds.SliceLocation = next(SLICE_LOCATIONS)  # kept by the profile: pairs the copies
        ds.private_block(0x0009, "DICOMBUS TEST", create=True).add_new(0x01, "LO", "secret")
        found.append(ds)
    return found


def config_text(ports: dict[str, int], stow_url: str) -> str:
    def dimse(name: str, ae_title: str, port: int) -> str:
        return (
            f'[[routing.destinations]]\nname = "{name}"\ntype = "dimse"\n'
            f'ae_title = "{ae_title}"\nhost = "127.0.0.1"\nport = {port}\n'
        )

    return (
        f"[routing]\nstudy_quiet_seconds = {QUIET}\n\n"
        + dimse("ct", "STORESCP", ports["ct"])
        + dimse("mr", "MRSCP", ports["mr"])
        # Retries soon, and the breaker probes often: the test waits for the MR SCP.
        + "[routing.destinations.delivery]\nretry_first = 1\nretry_max = 2\nbreaker_probe = 1\n"
        + dimse("rejecting", "PYSCP", ports["rejecting"])
        + dimse("research", "RESEARCH", ports["research"])
        + f'[routing.destinations.transform]\ndeidentify = true\nuid_secret = "{SECRET}"\n'
        + '[[routing.destinations]]\nname = "archive"\ntype = "stow-rs"\n'
        f'url = "{stow_url}"\nauth = "basic"\nusername = "router"\n'
        'password_env = "SCENARIO_ORTHANC_PASSWORD"\n\n'
        '[[routing.rules]]\nname = "ct"\nper = "study"\ndestinations = ["ct"]\n'
        '[routing.rules.match]\nModality = "CT"\n\n'
        '[[routing.rules]]\nname = "mr"\ndestinations = ["mr", "rejecting"]\n'
        '[routing.rules.match]\nModality = "MR"\n\n'
        '[[routing.rules]]\nname = "everything"\ndestinations = ["archive", "research"]\n'
    )


@contextmanager
def pynetdicom_scp(port: int, ae_title: str) -> Iterator[StoreRecorder]:
    pynetdicom = import_peer("pynetdicom")
    ae = pynetdicom.AE(ae_title)
    ae.supported_contexts = pynetdicom.AllStoragePresentationContexts
    ae.add_supported_context("1.2.840.10008.1.1")
    recorder = StoreRecorder()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(pynetdicom.evt.EVT_C_STORE, recorder)]
    )
    try:
        yield recorder
    finally:
        server.shutdown()


class CopyRecorder:
    """A dicombus EVT_C_STORE handler keeping each data set it receives, decoded."""

    def __init__(self) -> None:
        self.copies: list[Dataset] = []

    def __call__(self, event: Any) -> int:
        self.copies.append(event.dataset)
        return 0x0000


@contextmanager
def dicombus_scp(port: int) -> Iterator[CopyRecorder]:
    recorder = CopyRecorder()
    server = dicombus_storage_scp().start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, recorder)]
    )
    try:
        yield recorder
    finally:
        server.shutdown()


def storescu(port: int, files: list[Path]) -> None:
    subprocess.run(
        [require_tool("storescu"), "-aet", "MODALITY", "-aec", "EDGE", "127.0.0.1", str(port)]
        + [str(path) for path in files],
        check=True,
        capture_output=True,
        timeout=60,
    )


def pynetdicom_store(port: int, datasets: list[Dataset]) -> None:
    pynetdicom = import_peer("pynetdicom")
    ae = pynetdicom.AE("MODALITY")
    for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(sop_class)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGE")
    assert assoc.is_established
    try:
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == 0
    finally:
        assoc.release()


def study_events(url: str) -> list[dict[str, Any]]:
    """The STUDY_STABLE events the subscriber got, one per id: two routers watching one store
    may both publish a firing, with the same id (docs/routing.md, "Who watches")."""
    client = redis.Redis.from_url(url)
    try:
        events = [json.loads(line) for line in client.lrange(STUDIES, 0, -1)]
    finally:
        client.close()
    return list({event["id"]: event for event in events}.values())


def check_deidentified(original: Dataset, copy: Dataset) -> None:
    """The copy is ``original`` with the Basic Profile applied, attribute by attribute."""
    for keyword in EMPTIED:
        assert keyword in copy and copy[keyword].is_empty, keyword
    for keyword in DUMMIED:
        assert copy.get(keyword) not in (None, "", original.get(keyword)), keyword
    for keyword in REPLACED_UIDS:
        assert str(copy[keyword].value).startswith("2.25."), keyword
        assert copy[keyword].value != original[keyword].value, keyword
    assert copy.PatientIdentityRemoved == "YES"
    assert all(keyword in copy for keyword in ADDED)
    assert not any(element.tag.is_private for element in copy)  # X: private attributes
    changed = {*EMPTIED, *DUMMIED, *REPLACED_UIDS}
    for element in original:
        if element.tag.is_private or element.keyword in changed:
            continue
        # Kept as it was (the value: an instance the edge stored in Implicit VR has no VR
        # of its own to keep).
        assert copy[element.tag].value == element.value, element.keyword
    assert {e.keyword for e in copy} - {e.keyword for e in original} == set(ADDED)


def test_three_studies_routed_by_rules_to_five_real_destinations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ct_study, mr_study, late_study = generate_uid(), generate_uid(), generate_uid()
    ct = series(ct_study, "1.2.840.10008.5.1.4.1.1.2", 3, "PAT-CT")
    mr = series(mr_study, MRImageStorage, 3, "PAT-MR")
    early = series(late_study, "1.2.840.10008.5.1.4.1.1.2", 2, "PAT-LATE")
    late = series(late_study, "1.2.840.10008.5.1.4.1.1.2", 2, "PAT-LATE")
    everything = ct + mr + early + late
    files = tmp_path / "sent"
    files.mkdir()
    for ds in everything:
        write_part10(ds, files / f"{ds.SOPInstanceUID}.dcm")

    def paths(datasets: list[Dataset]) -> list[Path]:
        return [files / f"{ds.SOPInstanceUID}.dcm" for ds in datasets]

    password = generate_uid()[-12:]
    monkeypatch.setenv("SCENARIO_ORTHANC_PASSWORD", password)
    # The node's workers import the STUDY_STABLE subscriber from this folder.
    monkeypatch.setenv("PYTHONPATH", f"{TASKS}:{os.environ.get('PYTHONPATH', '')}")
    mr_port, research_port = free_port(), free_port()
    data = tmp_path / "data"
    with (
        storescp(tmp_path / "storescp") as ct_scp,
        counting_scp(status=0xA900) as rejecting,
        orthanc(tmp_path / "orthanc", password) as archive,
        dicombus_scp(research_port) as research,
    ):
        ports = {"ct": ct_scp.port, "mr": mr_port, "rejecting": rejecting.port}
        config = tmp_path / "node.toml"
        config.write_text(config_text({**ports, "research": research_port}, archive.stow_url))
        node = UpProcess(data, "--config", str(config), "-I", "study_tasks")
        try:
            record = node.wait_ready()
            store = DeliveryStore(data / "routing.sqlite3")
            storescu(node.port, paths(ct + early))
            pynetdicom_store(node.port, mr)

            # The MR SCP is down: its deliveries fail and wait for a retry in the store.
            wait_for(
                lambda: (
                    any(d.attempts >= 1 for d in store.deliveries(destination="mr"))
                    and states(store, "mr")[State.WAITING] == len(mr)
                ),
                "failed MR attempts waiting in the delivery store",
                ROUTING_TIMEOUT,
            )
            # 0xA900 is permanent: dead letters after one attempt, not retried.
            wait_for(
                lambda: states(store, "rejecting")[State.DEAD] == len(mr),
                "dead letters of the rejecting destination",
                ROUTING_TIMEOUT,
            )
            failed = run_dicombus(
                "routes", "failed", "--config", str(config), "--store", str(store.path), "--json"
            )
            assert failed.returncode == 0, failed.stderr
            dead = [json.loads(line) for line in failed.stdout.splitlines()]
            assert {row["sop_instance_uid"] for row in dead} == {
                str(ds.SOPInstanceUID) for ds in mr
            }
            assert {row["destination"] for row in dead} == {"rejecting"}
            assert all(row["attempts"] == 1 and "0xA900" in row["reason"] for row in dead)

            url = record["broker_url"]
            wait_for(
                lambda: (
                    {e["study_instance_uid"] for e in study_events(url)}
                    == {ct_study, mr_study, late_study}
                ),
                "STUDY_STABLE for the three studies",
                ROUTING_TIMEOUT,
            )
            pynetdicom_store(node.port, late)  # the late series, after its study was stable
            with pynetdicom_scp(mr_port, "MRSCP") as mr_scp:
                wait_for(
                    lambda: states(store, "mr")[State.ACKNOWLEDGED] == len(mr),
                    "MR acknowledged after the SCP came up",
                    ROUTING_TIMEOUT,
                )
                wait_for(lambda: len(study_events(url)) == 4, "the late series' update")
                for name, count in (("ct", 7), ("archive", 10), ("research", 10)):
                    wait_for(
                        lambda name=name, count=count: (
                            states(store, name)[State.ACKNOWLEDGED] == count
                        ),
                        f"{count} acknowledged by {name}",
                        ROUTING_TIMEOUT,
                    )
            dry_run = run_dicombus(
                "routes", "dry-run", "--config", str(config), "--since", "1h", "--json",
                "--audit-db", str(data / "audit.sqlite3"),
            )  # fmt: skip
            assert dry_run.returncode == 0, dry_run.stderr
            deliveries = store.deliveries()
            stable_events = study_events(url)
        finally:
            assert node.stop() == 0, node.text

        edge_files = {d.sop_instance_uid: Path(d.request.stored_path) for d in deliveries}
        # storescu's files reached the edge byte for byte.
        for ds in ct + early:
            source = data_set_bytes(files / f"{ds.SOPInstanceUID}.dcm")
            assert data_set_bytes(edge_files[str(ds.SOPInstanceUID)]) == source

        # Each instance once at each destination, byte for byte as the edge stored it.
        uids = {str(ds.SOPInstanceUID) for ds in everything}
        mr_uids = {str(ds.SOPInstanceUID) for ds in mr}
        assert Counter(i.sop_instance_uid for i in mr_scp.received) == dict.fromkeys(mr_uids, 1)
        for uid, instance in mr_scp.by_uid().items():
            assert instance.dataset_bytes == data_set_bytes(edge_files[uid])
        ct_received = {dcmread(p).SOPInstanceUID: p for p in (tmp_path / "storescp").iterdir()}
        assert set(ct_received) == uids - mr_uids
        for uid, path in ct_received.items():
            assert data_set_bytes(path) == data_set_bytes(edge_files[uid])
        assert archive.instance_count() == len(uids)
        for uid in uids:
            stowed = archive.instance_file(uid)
            assert stowed is not None
            stowed_path = tmp_path / "stowed.dcm"
            stowed_path.write_bytes(stowed)
            assert data_set_bytes(stowed_path) == data_set_bytes(edge_files[uid])
        assert rejecting.received == dict.fromkeys(mr_uids, 1)

        # De-identified copies: once each, the profile applied, UIDs consistent.
        copies = {float(c.SliceLocation): c for c in research.copies}
        assert len(research.copies) == len(copies) == len(uids)
        study_map: dict[str, set[str]] = {}
        series_map: dict[str, set[str]] = {}
        for original in everything:
            copy = copies[float(original.SliceLocation)]
            check_deidentified(original, copy)
            study_map.setdefault(original.StudyInstanceUID, set()).add(copy.StudyInstanceUID)
            series_map.setdefault(original.SeriesInstanceUID, set()).add(copy.SeriesInstanceUID)
        # One pseudonymous study per study (the late series joins its study), one series
        # per series, and no two the same.
        assert all(len(found) == 1 for found in [*study_map.values(), *series_map.values()])
        assert len(set.union(*study_map.values())) == 3
        assert len(set.union(*series_map.values())) == 4

        # Completeness: once per study, and one update for the late series.
        fired = Counter((e["study_instance_uid"], e["update"]) for e in stable_events)
        assert fired == {
            (ct_study, False): 1,
            (mr_study, False): 1,
            (late_study, False): 1,
            (late_study, True): 1,
        }
        update = next(e for e in stable_events if e["update"])
        assert (update["instances"], update["series"]) == (4, 2)

        # The dry run names exactly the (instance, destination, rule) the live run delivered.
        planned = {
            (row["sop_instance_uid"], row["destination"], row["rule"])
            for row in map(json.loads, dry_run.stdout.splitlines())
        }
        assert len(dry_run.stdout.splitlines()) == len(planned)
        live = {(d.sop_instance_uid, d.destination, d.request.context["rule"]) for d in deliveries}
        assert planned == live
