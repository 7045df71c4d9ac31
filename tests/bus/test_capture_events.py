"""EventCapture on a real dicombus SCP, with a dicombus SCU, on 127.0.0.1.

What is captured and how it looks: every notification type validates
against the shipped schema, C-ECHO and C-STORE outcomes carry what the
handler did, bulk data never travels inline, user identity never carries a
secret, and sequence numbers run 1..N on each association.
"""

from __future__ import annotations

import base64
import gc
import json
import threading
from pathlib import Path
from typing import Any

from capture_support import (
    captured_edge,
    requestor,
    schema_errors,
    store_handler,
    wait_idle,
)
from dicombus import evt
from dicombus.bus.dicom_json import read_file_bulk_data
from dicombus.bus.event_data import NOTIFICATION_TYPES, UNSTORED_DATASET_LIMIT
from dicombus.protocol.items import UserIdentityRQSubItem
from dicombus.sop_class import CTImageStorage, Verification
from helpers import ct_dataset, small_dataset
from loopback import WAIT_TIMEOUT, associate, associated, wait_until

PIXEL_DATA = "7FE00010"
CONTEXTS = (Verification, CTImageStorage)
PASSCODE = b"s3cret-passcode"


def everything(event_type: str) -> bool:
    return True


def test_every_notification_type_from_a_real_association_validates(tmp_path: Path) -> None:
    """Raw bytes asked for on every type, so the PDU and data events carry them too."""
    with captured_edge(
        tmp_path,
        wants=lambda event_type: event_type in NOTIFICATION_TYPES,
        raw_wanted=everything,
        supported=CONTEXTS,
        handlers=[(evt.EVT_C_STORE, store_handler(tmp_path))],
        require_called_aet=True,
    ) as (server, capture, collected):
        with associated(requestor(CONTEXTS), server) as assoc:
            assoc.send_c_echo()
            assoc.send_c_store(small_dataset())
        assert not associate(requestor(CONTEXTS), server, ae_title="ELSEWHERE").is_established
        associate(requestor(CONTEXTS), server).abort()
        wait_idle(server)
    envelopes = collected.envelopes()
    assert {envelope["type"] for envelope in envelopes} == set(NOTIFICATION_TYPES)
    assert [error for envelope in envelopes for error in schema_errors(envelope)] == []
    assert capture.events_built == len(envelopes)
    pdata = [e["data"] for e in envelopes if e["type"] == "EVT_PDU_RECV" and e["data"]["pdvs"]]
    assert all(base64.b64decode(data["raw"])[0] == 0x04 for data in pdata)
    assert all(len(base64.b64decode(data["raw"])) == data["length"] for data in pdata)


def test_c_echo_and_c_store_outcomes_say_what_the_handler_did(tmp_path: Path) -> None:
    instance = small_dataset()
    with captured_edge(
        tmp_path,
        wants=lambda event_type: event_type in ("EVT_C_ECHO", "EVT_C_STORE"),
        supported=CONTEXTS,
        handlers=[(evt.EVT_C_STORE, store_handler(tmp_path))],
    ) as (server, capture, collected):
        with associated(requestor(CONTEXTS), server) as assoc:
            assoc.send_c_echo(msg_id=7)
            assoc.send_c_store(instance, msg_id=8, priority=1)
        wait_idle(server)
    (echo,) = collected.envelopes("EVT_C_ECHO")
    assert echo["data"]["message_id"] == 7
    assert echo["data"]["sop_class_uid"] == Verification
    assert (echo["data"]["status"], echo["data"]["status_category"]) == (0, "Success")
    (store,) = collected.envelopes("EVT_C_STORE")
    data = store["data"]
    stored = Path(data["stored_path"])
    assert stored.is_file() and stored.is_relative_to(tmp_path)
    assert data["stored_size"] == stored.stat().st_size
    assert data["details"] == {"stored_path": str(stored), "stored_size": data["stored_size"]}
    assert (data["message_id"], data["priority"], data["status"]) == (8, 1, 0)
    assert data["sop_class_uid"] == CTImageStorage
    assert data["sop_instance_uid"] == instance.SOPInstanceUID
    assert data["transfer_syntax"] == "1.2.840.10008.1.2"  # quick_ae's first proposal
    assert data["move_originator"] is None
    assert data["bulk_data_uri_base"] == tmp_path.resolve().as_uri()
    assert data["dataset_source"] == "stored_file"
    assert data["dataset"]["00100020"] == {"vr": "LO", "Value": [instance.PatientID]}
    assert data["association"]["calling_ae_title"] == "MODALITY"
    assert data["association"]["called_ae_title"] == "EDGE"
    assert schema_errors(store) == [] and schema_errors(echo) == []
    assert capture.built("EVT_C_STORE") == capture.built("EVT_C_ECHO") == 1


def test_a_512_kb_ct_travels_as_a_bulk_data_uri_never_inline(tmp_path: Path) -> None:
    ct = ct_dataset()
    with captured_edge(
        tmp_path,
        wants=lambda event_type: event_type == "EVT_C_STORE",
        supported=CONTEXTS,
        handlers=[(evt.EVT_C_STORE, store_handler(tmp_path))],
    ) as (server, _, collected):
        with associated(requestor(CONTEXTS), server) as assoc:
            assoc.send_c_store(ct)
        wait_idle(server)
    (store,) = collected.envelopes("EVT_C_STORE")
    text = json.dumps(store)
    assert len(text) < 4096, len(text)
    assert "InlineBinary" not in text
    uri = store["data"]["dataset"][PIXEL_DATA]["BulkDataURI"]
    assert uri.startswith(store["data"]["bulk_data_uri_base"] + "/")
    assert uri.endswith(f"?tag={PIXEL_DATA}")
    assert read_file_bulk_data(uri) == ct.PixelData


def test_an_instance_nobody_stored_publishes_its_header_from_the_request(
    tmp_path: Path,
) -> None:
    """Without a stored file there is nothing for a BulkDataURI to point at: bulk data is
    left out (and listed); past UNSTORED_DATASET_LIMIT the dataset is not kept at all."""
    small, large = small_dataset(), ct_dataset()
    with captured_edge(
        tmp_path,
        wants=lambda event_type: event_type == "EVT_C_STORE",
        supported=CONTEXTS,
        handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],
    ) as (server, _, collected):
        with associated(requestor(CONTEXTS), server) as assoc:
            assoc.send_c_store(small)
            assoc.send_c_store(large)
        wait_idle(server)
    first, second = (envelope["data"] for envelope in collected.envelopes("EVT_C_STORE"))
    assert (first["stored_path"], first["dataset_source"]) == (None, "request")
    assert first["bulk_data_omitted"] == [PIXEL_DATA]
    assert PIXEL_DATA not in first["dataset"]
    assert first["dataset"]["00080018"]["Value"] == [small.SOPInstanceUID]
    assert second["dataset_size"] > UNSTORED_DATASET_LIMIT
    assert (second["dataset"], second["dataset_source"]) == (None, None)
    assert second["sop_instance_uid"] == large.SOPInstanceUID


def identity(kind: int, primary: bytes, secondary: bytes = b"") -> UserIdentityRQSubItem:
    return UserIdentityRQSubItem(
        user_identity_type=kind,
        positive_response_requested=True,
        primary_field=primary,
        secondary_field=secondary,
    )


def test_user_identity_is_published_without_its_passcode(tmp_path: Path) -> None:
    """Every event type and raw bytes wanted: the passcode and the JWT appear nowhere."""
    token = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0ZWNoMSJ9."
    with captured_edge(
        tmp_path,
        wants=everything,
        raw_wanted=everything,
        supported=CONTEXTS,
        handlers=[(evt.EVT_USER_ID, lambda event: (True, None))],
    ) as (server, _, collected):
        for item in (identity(2, b"tech1", PASSCODE), identity(5, token)):
            with associated(requestor(CONTEXTS), server, ext_neg=[item]) as assoc:
                assoc.send_c_echo()
        wait_idle(server)
    envelopes = collected.envelopes()
    published = json.dumps(envelopes).encode()
    raw = b"".join(
        base64.b64decode(envelope["data"]["raw"])
        for envelope in envelopes
        if envelope["data"].get("raw")
    )
    for secret in (PASSCODE, token, base64.b64encode(PASSCODE), base64.b64encode(token)):
        assert secret not in published and secret not in raw
    assert b"tech1" in raw  # the A-ASSOCIATE-RQ is there, user name and all
    password, jwt = (envelope["data"] for envelope in collected.envelopes("EVT_USER_ID"))
    assert password["user_identity_type"] == 2 and password["username"] == "tech1"
    assert (password["verified"], password["positive_response_requested"]) == (True, True)
    assert jwt["user_identity_type"] == 5 and jwt["username"] is None
    assert [error for envelope in envelopes for error in schema_errors(envelope)] == []


def test_user_identity_with_no_handler_is_published_as_not_checked(tmp_path: Path) -> None:
    with captured_edge(
        tmp_path, wants=lambda event_type: event_type == "EVT_USER_ID", supported=CONTEXTS
    ) as (server, _, collected):
        with associated(requestor(CONTEXTS), server, ext_neg=[identity(1, b"tech2")]) as assoc:
            assert assoc.is_established
        wait_idle(server)
    (event,) = collected.envelopes("EVT_USER_ID")
    assert (event["data"]["username"], event["data"]["verified"]) == ("tech2", None)


def test_sequence_numbers_run_from_1_in_order_on_each_association(tmp_path: Path) -> None:
    """Three associations at once: each subject's events reach the sink numbered 1..N."""
    wanted = {
        "EVT_CONN_OPEN",
        "EVT_ACCEPTED",
        "EVT_DIMSE_RECV",
        "EVT_C_ECHO",
        "EVT_C_STORE",
        "EVT_RELEASED",
        "EVT_CONN_CLOSE",
    }
    with captured_edge(
        tmp_path,
        wants=wanted.__contains__,
        supported=CONTEXTS,
        handlers=[(evt.EVT_C_STORE, store_handler(tmp_path))],
    ) as (server, _, collected):

        def session() -> None:
            with associated(requestor(CONTEXTS), server) as assoc:
                assoc.send_c_echo()
                for number in range(3):
                    assoc.send_c_store(small_dataset(), msg_id=number + 2)

        threads = [threading.Thread(target=session) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_TIMEOUT)
        wait_idle(server)
    by_subject: dict[str, list[int]] = {}
    for pending in collected.pending:
        by_subject.setdefault(pending.subject, []).append(pending.sequence)
    assert len(by_subject) == 3
    # open, accepted, echo: recv + outcome, 3 stores: recv + outcome, released, close
    assert all(numbers == list(range(1, 13)) for numbers in by_subject.values()), by_subject
    assert len({pending.id for pending in collected.pending}) == len(collected.pending)


def test_the_capture_forgets_an_association_once_it_has_ended(tmp_path: Path) -> None:
    """The id and sequence the capture keeps per association go with the association:
    an edge serving for months does not collect them, and a new association starts at 1."""
    wanted = {"EVT_ACCEPTED", "EVT_C_ECHO", "EVT_RELEASED"}
    with captured_edge(tmp_path, wants=wanted.__contains__, supported=CONTEXTS) as (
        server,
        capture,
        collected,
    ):
        for _ in range(2):
            with associated(requestor(CONTEXTS), server) as assoc:
                assoc.send_c_echo()
            wait_idle(server)
            del assoc

        def forgotten() -> bool:
            gc.collect()
            return len(capture.association_ids) == 0

        wait_until(forgotten)
    first, second = ([p for p in collected.pending if p.subject == s] for s in _subjects(collected))
    assert [p.sequence for p in first] == [p.sequence for p in second] == [1, 2, 3]


def _subjects(collected: Any) -> list[str]:
    """The subjects in the order their first event came."""
    return list(dict.fromkeys(pending.subject for pending in collected.pending))


def _first(envelopes: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    return next(envelope for envelope in envelopes if envelope["type"] == event_type)


def test_accepted_lists_the_negotiated_contexts(tmp_path: Path) -> None:
    with captured_edge(
        tmp_path, wants={"EVT_ACCEPTED", "EVT_REQUESTED"}.__contains__, supported=CONTEXTS
    ) as (server, _, collected):
        scu = requestor(CONTEXTS)
        scu.add_requested_context("1.2.840.10008.5.1.4.1.1.4")  # MR: not supported
        with associated(scu, server):
            pass
        wait_idle(server)
    envelopes = collected.envelopes()
    contexts = _first(envelopes, "EVT_ACCEPTED")["data"]["association"]["contexts"]
    assert [(c["abstract_syntax"], c["result"]) for c in contexts] == [
        (Verification, 0),
        (CTImageStorage, 0),
        ("1.2.840.10008.5.1.4.1.1.4", 3),
    ]
    assert contexts[2]["transfer_syntax"] is None
    assert "contexts" not in _first(envelopes, "EVT_REQUESTED")["data"]["association"]
