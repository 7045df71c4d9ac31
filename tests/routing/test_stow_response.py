"""The STOW-RS response, read per instance (PS3.18 10.5.3), and the request's body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dicombus.routing import stow
from dicombus.routing.delivery_policy import DeliveryPolicy, Outcome
from dicombus.routing.stow import InstanceStatus, RequestOutcome


def item(uid: str, **codes: int) -> dict[str, Any]:
    found: dict[str, Any] = {"00081155": {"vr": "UI", "Value": [uid]}}
    for tag, code in codes.items():
        found[tag] = {"vr": "US", "Value": [code]}
    return found


def response(referenced: list[dict[str, Any]], failed: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "00081199": {"vr": "SQ", "Value": referenced},
            "00081198": {"vr": "SQ", "Value": failed} if failed else {"vr": "SQ"},
        }
    ).encode()


def test_409_reports_each_instance_with_its_reason_and_the_policy_classes_them() -> None:
    body = response(
        [item("1.1"), item("1.2", **{stow.WARNING_REASON: 0xB000})],
        [
            item("1.3", **{stow.FAILURE_REASON: 0xA900}),
            item("1.4", **{stow.FAILURE_REASON: 0xC000}),
            item("1.5", **{stow.FAILURE_REASON: 0xA700}),
            item("1.6"),  # no FailureReason (Type 1): a processing failure
        ],
    )
    uids = ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"]
    statuses = stow.instance_statuses(409, body, uids)
    assert statuses == {
        "1.1": InstanceStatus(0x0000),
        "1.2": InstanceStatus(0xB000),
        "1.3": InstanceStatus(0xA900),
        "1.4": InstanceStatus(0xC000),
        "1.5": InstanceStatus(0xA700),
        "1.6": InstanceStatus(0x0110),
        "1.7": InstanceStatus(None),  # left out of a 409: not known to be stored
    }
    policy = DeliveryPolicy()
    classes = {
        uid: policy.classify(s.status) for uid, s in statuses.items() if s.status is not None
    }
    assert classes == {
        "1.1": Outcome.ACKNOWLEDGED,
        "1.2": Outcome.ACKNOWLEDGED,
        "1.3": Outcome.DEAD,
        "1.4": Outcome.DEAD,
        "1.5": Outcome.RETRY,
        "1.6": Outcome.DEAD,
    }


def test_200_stores_everything_even_unlisted() -> None:
    assert stow.instance_statuses(200, b"", ["1.1"]) == {"1.1": InstanceStatus(0)}
    body = response([item("1.1")], [])
    assert stow.instance_statuses(200, body, ["1.1", "1.2"])["1.2"] == InstanceStatus(0)


@pytest.mark.parametrize(
    ("http_status", "outcome"),
    [
        (200, RequestOutcome.PER_INSTANCE),
        (202, RequestOutcome.PER_INSTANCE),
        (409, RequestOutcome.PER_INSTANCE),
        (400, RequestOutcome.PERMANENT),
        (401, RequestOutcome.PERMANENT),
        (413, RequestOutcome.PERMANENT),
        (415, RequestOutcome.PERMANENT),
        (408, RequestOutcome.TRANSIENT),
        (429, RequestOutcome.TRANSIENT),
        (500, RequestOutcome.TRANSIENT),
        (503, RequestOutcome.TRANSIENT),
    ],
)
def test_request_outcome_by_http_status(http_status: int, outcome: RequestOutcome) -> None:
    assert stow.request_outcome(http_status) is outcome


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[1, 2]", "not a DICOM JSON data set"),
        (b'{"00081199": {"vr": "SQ", "Value": 3}}', "(0008,1199) is not a sequence"),
        (b'{"00081198": {"vr": "SQ", "Value": [{}]}}', "without a Referenced SOP Instance UID"),
    ],
)
def test_a_malformed_response_is_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(
        stow.StowResponseError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        stow.instance_statuses(202, body, ["1.1"])


def test_multipart_body_frames_each_part_and_refuses_a_boundary_inside_one() -> None:
    body = b"".join(stow.multipart_body([b"DICM-1", b"DICM-2"], "b0"))
    assert body == (
        b"--b0\r\nContent-Type: application/dicom\r\n\r\nDICM-1\r\n"
        b"--b0\r\nContent-Type: application/dicom\r\n\r\nDICM-2\r\n"
        b"--b0--\r\n"
    )
    assert stow.content_type("b0") == 'multipart/related; type="application/dicom"; boundary=b0'
    with pytest.raises(ValueError, match="occurs in a part"):
        b"".join(stow.multipart_body([b"x--b0y"], "b0"))
