"""The storage SCP's C-STORE handler, in process: spooled datasets, bad UIDs, full disks,
duplicates, and C-STOREs whose command and data set disagree.

Real associations on 127.0.0.1 with dicombus's SCU. Requests that a well-behaved SCU
never sends (a C-STORE claiming another SOP class than its presentation context, a
command naming another instance than its data set) go out through
``Association.send_request``: a command set and data set bytes built by hand, sent
as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dicombus import AE, config, storage_handler
from dicombus.association import Association
from dicombus.cli import storescp
from dicombus.cli.main import build_parser
from dicombus.dataset_codec import encode_dataset
from dicombus.outcomes import OutcomeReport
from dicombus.protocol import status
from dicombus.protocol.commands import c_store_rq
from dicombus.storage_files import Duplicates, Layout
from helpers import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    VERIFICATION,
    part10_dataset_bytes,
    small_dataset,
    with_sequence_and_private_element,
)
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from raw_peers import wait_until


@dataclass
class Scp:
    """A running storage SCP (as ``dicombus storescp`` builds it) and an association to it."""

    root: Path
    assoc: Association
    outcomes: list[OutcomeReport]

    def send(self, dataset: Dataset) -> int:
        reported = len(self.outcomes)
        code = int(self.assoc.send_c_store(dataset).Status)
        self._wait_for_outcome(reported)
        return code

    def _wait_for_outcome(self, reported: int) -> None:
        # The outcome is reported just after the response is sent.
        assert wait_until(lambda: len(self.outcomes) > reported), "no C-STORE outcome reported"

    def send_raw(self, sop_class: str, sop_instance: str, dataset: Dataset) -> Dataset:
        """A C-STORE-RQ on the CT context naming ``sop_class``/``sop_instance``, whatever
        ``dataset`` says; the response's command set."""
        reported = len(self.outcomes)
        context = self.assoc.accepted_contexts[0]
        command = c_store_rq(7, sop_class, sop_instance)
        payload = encode_dataset(dataset, ExplicitVRLittleEndian)
        for response in self.assoc.send_request(context.context_id or 0, command, payload):
            assert response is not None, "no C-STORE-RSP"
            reply = Dataset()
            reply.Status = response.command.Status
            reply.ErrorComment = response.command.ErrorComment
            self._wait_for_outcome(reported)
            return reply
        raise AssertionError("no C-STORE-RSP")

    def details(self) -> dict[str, Any]:
        """What the handler recorded for the last C-STORE (what its event publishes)."""
        return self.outcomes[-1].details


Start = Callable[..., Scp]


@pytest.fixture
def send_to_scp() -> Iterator[Start]:
    """``send_to_scp(root, layout=..., duplicates=..., transfer_syntax=...)``: an Scp storing
    under ``root``, associated over one CT context in ``transfer_syntax``."""
    servers: list[Any] = []
    associations: list[Association] = []

    def start(
        root: Path,
        layout: Layout = Layout.SOP_CLASS,
        duplicates: Duplicates = Duplicates.KEEP_FIRST,
        transfer_syntax: str = ExplicitVRLittleEndian,
    ) -> Scp:
        args = build_parser().parse_args(["storescp", "0", "--output", str(root)])
        ae = storescp.storage_ae(args)
        handlers = storescp.store_handlers(root, layout, duplicates)
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        servers.append(server)
        outcomes: list[OutcomeReport] = []
        server.outcome_observers.append(outcomes.append)
        scu = AE("SCU")
        scu.add_requested_context(CT_IMAGE_STORAGE, transfer_syntax)
        assoc = scu.associate("127.0.0.1", server.server_address[1])
        assert assoc.is_established
        associations.append(assoc)
        return Scp(root, assoc, outcomes)

    yield start
    for assoc in associations:
        assoc.release()
    for server in servers:
        server.shutdown()


def _stored(root: Path, ds: Dataset) -> Path:
    return root / CT_IMAGE_STORAGE / f"{ds.SOPInstanceUID}.dcm"


def _dcm_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


def test_in_memory_dataset_is_stored_byte_for_byte(send_to_scp: Start, tmp_path: Path) -> None:
    ds = small_dataset()
    assert send_to_scp(tmp_path).send(ds) == status.SUCCESS
    assert part10_dataset_bytes(_stored(tmp_path, ds)) == encode_dataset(ds, ExplicitVRLittleEndian)


def test_the_study_layout_files_by_the_data_sets_study_and_series(
    send_to_scp: Start, tmp_path: Path
) -> None:
    ds = small_dataset()
    scp = send_to_scp(tmp_path, Layout.STUDY)
    assert scp.send(ds) == status.SUCCESS
    path = tmp_path / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert _dcm_files(tmp_path) == [path]
    assert scp.details()["stored_path"] == str(path)


@pytest.mark.parametrize("element", ["StudyInstanceUID", "SeriesInstanceUID"])
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_the_study_layout_refuses_a_missing_or_invalid_study_or_series_uid(
    send_to_scp: Start, tmp_path: Path, element: str
) -> None:
    scp = send_to_scp(tmp_path, Layout.STUDY)
    missing = small_dataset()
    delattr(missing, element)
    invalid = small_dataset()
    setattr(invalid, element, "1.2.03")
    for ds in (missing, invalid):
        reply = scp.send_raw(CT_IMAGE_STORAGE, ds.SOPInstanceUID, ds)
        # PS3.4 B.2.3: the data set does not conform (a Type 1 UID is missing or invalid).
        assert reply.Status == status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
        assert "Instance UID" in reply.ErrorComment
    assert _dcm_files(tmp_path) == []


def test_spooled_dataset_is_copied_from_its_spool_file(
    send_to_scp: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "STORE_RECV_CHUNKED_DATASET", True)
    sources: list[type] = []
    real_store = storage_handler.store_instance

    def spy(root: Path, **kwargs: Any) -> Any:
        sources.append(type(kwargs["dataset_bytes"]))
        return real_store(root, **kwargs)

    monkeypatch.setattr(storage_handler, "store_instance", spy)
    ds = small_dataset()
    assert send_to_scp(tmp_path).send(ds) == status.SUCCESS
    assert sources and all(issubclass(source, Path) for source in sources)
    assert part10_dataset_bytes(_stored(tmp_path, ds)) == encode_dataset(ds, ExplicitVRLittleEndian)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_invalid_instance_uid_is_refused_with_0117(send_to_scp: Start, tmp_path: Path) -> None:
    ds = small_dataset()
    ds.SOPInstanceUID = "1.02.3"
    assert send_to_scp(tmp_path).send(ds) == status.INVALID_OBJECT_INSTANCE
    assert _dcm_files(tmp_path) == []


def test_unwritable_storage_answers_out_of_resources(send_to_scp: Start, tmp_path: Path) -> None:
    root = tmp_path / "file-not-folder"
    root.write_text("in the way")
    assert send_to_scp(root).send(small_dataset()) == status.OUT_OF_RESOURCES


# -- duplicates ----------------------------------------------------------------------------


def _other_content(ds: Dataset) -> Dataset:
    """The same SOP Instance UID with other pixel values: another instance in fact."""
    other = small_dataset()
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(other, keyword, getattr(ds, keyword))
    other.PixelData = bytes(255 - value for value in ds.PixelData)
    return other


def test_a_retry_with_the_same_bytes_is_a_success_that_rewrites_nothing(
    send_to_scp: Start, tmp_path: Path
) -> None:
    ds = small_dataset()
    scp = send_to_scp(tmp_path)
    assert scp.send(ds) == status.SUCCESS
    assert "duplicate" not in scp.details()
    inode = _stored(tmp_path, ds).stat().st_ino
    assert scp.send(ds) == status.SUCCESS
    assert scp.details()["duplicate"] == "identical"
    assert scp.details()["stored_path"] == str(_stored(tmp_path, ds))
    assert _stored(tmp_path, ds).stat().st_ino == inode


def test_different_bytes_under_a_stored_uid_are_refused_and_the_first_kept(
    send_to_scp: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = small_dataset()
    scp = send_to_scp(tmp_path)
    assert scp.send(ds) == status.SUCCESS
    first = _stored(tmp_path, ds).read_bytes()
    # PS3.7 C.5: 0x0111 Duplicate SOP Instance, a failure: the sender keeps its copy.
    assert scp.send(_other_content(ds)) == status.DUPLICATE_SOP_INSTANCE
    assert _stored(tmp_path, ds).read_bytes() == first
    assert _dcm_files(tmp_path) == [_stored(tmp_path, ds)]
    assert scp.details() == {"duplicate": "different"}
    assert "kept the stored one" in caplog.text


def test_replace_and_keep_both_store_the_different_instance(
    send_to_scp: Start, tmp_path: Path
) -> None:
    ds = small_dataset()
    other = _other_content(ds)
    encoded_other = encode_dataset(other, ExplicitVRLittleEndian)
    replacing = send_to_scp(tmp_path / "replace", duplicates=Duplicates.REPLACE)
    assert replacing.send(ds) == replacing.send(other) == status.SUCCESS
    assert replacing.details()["duplicate"] == "different"
    assert part10_dataset_bytes(_stored(tmp_path / "replace", ds)) == encoded_other
    keeping = send_to_scp(tmp_path / "both", duplicates=Duplicates.KEEP_BOTH)
    assert keeping.send(ds) == keeping.send(other) == status.SUCCESS
    first = _stored(tmp_path / "both", ds)
    (second,) = set(_dcm_files(tmp_path / "both")) - {first}
    assert second.name.startswith(f"{ds.SOPInstanceUID}-")
    assert part10_dataset_bytes(first) == encode_dataset(ds, ExplicitVRLittleEndian)
    assert keeping.details() == {
        "duplicate": "different",
        "stored_path": str(second),
        "stored_size": second.stat().st_size,
    }
    assert part10_dataset_bytes(second) == encoded_other


RETRY_SYNTAXES = [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]


@pytest.mark.parametrize("syntax", RETRY_SYNTAXES, ids=lambda syntax: syntax.name)
def test_a_retry_in_another_transfer_syntax_is_the_same_instance(
    send_to_scp: Start, tmp_path: Path, syntax: UID
) -> None:
    """The edge was killed after storing and before answering; the modality associates
    again, negotiates another syntax and sends the same instance. It got 0x0111 forever,
    the bytes differing; it is the instance we hold, so: Success, nothing rewritten."""
    ds = with_sequence_and_private_element(small_dataset())
    assert send_to_scp(tmp_path).send(ds) == status.SUCCESS
    stored = _stored(tmp_path, ds)
    first, inode = stored.read_bytes(), stored.stat().st_ino
    retry = send_to_scp(tmp_path, transfer_syntax=syntax)
    assert retry.assoc.accepted_contexts[0].transfer_syntax == [syntax]
    assert retry.send(ds) == status.SUCCESS
    assert retry.details()["duplicate"] == "identical"
    assert retry.details()["stored_path"] == str(stored)
    assert stored.read_bytes() == first and stored.stat().st_ino == inode
    assert _dcm_files(tmp_path) == [stored]


def _changed_in_a_sequence_item(ds: Dataset) -> Dataset:
    changed = with_sequence_and_private_element(small_dataset())
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(changed, keyword, getattr(ds, keyword))
    changed.ProcedureCodeSequence[0].CodeValue = "CT.HEAD"
    return changed


@pytest.mark.parametrize(
    "other", [_other_content, _changed_in_a_sequence_item], ids=["pixels", "sequence-item"]
)
def test_a_different_instance_in_another_transfer_syntax_is_still_refused(
    send_to_scp: Start, tmp_path: Path, other: Callable[[Dataset], Dataset]
) -> None:
    ds = with_sequence_and_private_element(small_dataset())
    assert send_to_scp(tmp_path).send(ds) == status.SUCCESS
    first = _stored(tmp_path, ds).read_bytes()
    retry = send_to_scp(tmp_path, transfer_syntax=ImplicitVRLittleEndian)
    assert retry.send(other(ds)) == status.DUPLICATE_SOP_INSTANCE
    assert retry.details() == {"duplicate": "different"}
    assert _stored(tmp_path, ds).read_bytes() == first


def test_keep_both_finds_the_second_instance_again_in_another_transfer_syntax(
    send_to_scp: Start, tmp_path: Path
) -> None:
    ds = small_dataset()
    other = _other_content(ds)
    keeping = send_to_scp(tmp_path, duplicates=Duplicates.KEEP_BOTH)
    assert keeping.send(ds) == keeping.send(other) == status.SUCCESS
    kept = keeping.details()["stored_path"]
    retry = send_to_scp(
        tmp_path, duplicates=Duplicates.KEEP_BOTH, transfer_syntax=ImplicitVRLittleEndian
    )
    assert retry.send(other) == status.SUCCESS
    assert retry.details()["duplicate"] == "identical"
    assert retry.details()["stored_path"] == kept
    assert len(_dcm_files(tmp_path)) == 2


# -- command versus presentation context and data set ----------------------------------------


@pytest.mark.parametrize(
    "claimed",
    [MR_IMAGE_STORAGE, VERIFICATION, "1.2.826.0.1.3680043.8.498.777"],
    ids=["mr", "verification", "made-up"],
)
def test_a_c_store_claiming_another_sop_class_than_its_context_is_refused(
    send_to_scp: Start, tmp_path: Path, claimed: str
) -> None:
    """Over a CT context, a C-STORE naming another class was stored with Success: the
    configured SOP class list was bypassed. PS3.7 C.5: 0x0122 SOP Class not supported."""
    ds = small_dataset()
    ds.SOPClassUID = claimed
    reply = send_to_scp(tmp_path).send_raw(claimed, ds.SOPInstanceUID, ds)
    assert reply.Status == status.SOP_CLASS_NOT_SUPPORTED
    assert reply.ErrorComment == "SOP class differs from the presentation context"
    assert _dcm_files(tmp_path) == []


def test_a_command_naming_another_instance_than_its_data_set_is_refused(
    send_to_scp: Start, tmp_path: Path
) -> None:
    """PS3.4 B.2.3 0xA900 (Data Set does not match SOP Class), as DCMTK's storescp."""
    ds = small_dataset()
    reply = send_to_scp(tmp_path).send_raw(CT_IMAGE_STORAGE, generate_uid(), ds)
    assert reply.Status == status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert reply.ErrorComment == "data set SOP Instance UID differs from command"
    assert _dcm_files(tmp_path) == []


def test_a_data_set_of_another_class_than_the_command_is_refused(
    send_to_scp: Start, tmp_path: Path
) -> None:
    ds = small_dataset(MR_IMAGE_STORAGE)
    reply = send_to_scp(tmp_path).send_raw(CT_IMAGE_STORAGE, ds.SOPInstanceUID, ds)
    assert reply.Status == status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    assert reply.ErrorComment == "data set SOP Class UID differs from command"
    assert _dcm_files(tmp_path) == []


def test_a_data_set_without_sop_uids_cannot_be_understood(
    send_to_scp: Start, tmp_path: Path
) -> None:
    ds = small_dataset()
    instance = ds.SOPInstanceUID
    del ds.SOPInstanceUID
    reply = send_to_scp(tmp_path).send_raw(CT_IMAGE_STORAGE, instance, ds)
    assert reply.Status == status.CANNOT_UNDERSTAND
    assert _dcm_files(tmp_path) == []
