"""The Association API (pynetdicom's): state flags, negotiated contexts, who is at
each end, ending an association, and what the SCU calls refuse or convert."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicombus import build_context, evt
from dicombus.association import Association
from dicombus.dataset_codec import decode_dataset
from dicombus.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicombus.sop_class import (
    CTImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    Verification,
)
from helpers import StoreRecorder, part10_dataset_bytes, small_dataset
from loopback import associate, associated, quick_ae, serving, wait_until
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

# Both ship inside pydicom's wheel.
CT_SMALL = Path(str(get_testdata_file("CT_small.dcm")))  # CT, Explicit VR Little Endian
JPEG_SC = Path(str(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")))  # Secondary Capture, JPEG


def flags(assoc: Association) -> dict[str, bool]:
    return {
        "established": assoc.is_established,
        "rejected": assoc.is_rejected,
        "aborted": assoc.is_aborted,
        "released": assoc.is_released,
    }


def only(flag: str) -> dict[str, bool]:
    return {name: name == flag for name in ("established", "rejected", "aborted", "released")}


# -- state flags -------------------------------------------------------------------------------


def test_established_then_released_and_ending_again_is_harmless() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    with serving(scp) as server:
        assoc = associate(scu, server)
        assert flags(assoc) == only("established")
        assoc.release()
        assert flags(assoc) == only("released")
        assert not assoc.is_alive()
        assoc.release()
        assoc.abort()
        assert flags(assoc) == only("released")
        wait_until(lambda: not server.active_associations)


def test_rejected() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scp.require_called_aet = True
    scu = quick_ae("SCU", requested=[Verification])
    with serving(scp) as server:
        assoc = associate(scu, server, ae_title="NOT-SCP")
        assert flags(assoc) == only("rejected")
        assoc.release()  # nothing to release: harmless
        assoc.abort()
        assert flags(assoc) == only("rejected")


def test_aborted_locally_and_the_peer_hears_it() -> None:
    peer_aborted: list[Association] = []
    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    handlers = [(evt.EVT_ABORTED, lambda event: peer_aborted.append(event.assoc))]
    with serving(scp, handlers) as server:
        assoc = associate(scu, server)
        assoc.abort()
        assert flags(assoc) == only("aborted")
        wait_until(lambda: len(peer_aborted) == 1)
        assert peer_aborted[0].is_aborted
        assoc.release()
        assert flags(assoc) == only("aborted")


def test_aborted_by_the_peer_during_a_request() -> None:
    def abort_instead_of_answering(event: evt.Event) -> int:
        event.assoc.abort()
        return 0x0000

    scp = quick_ae("SCP", supported=[Verification])
    scu = quick_ae("SCU", requested=[Verification])
    with serving(scp, [(evt.EVT_C_ECHO, abort_instead_of_answering)]) as server:
        assoc = associate(scu, server)
        assert assoc.send_c_echo() == Dataset()  # no response: an empty status Dataset
        wait_until(lambda: assoc.is_aborted)
        assert flags(assoc) == only("aborted")


# -- negotiated contexts and the two ends --------------------------------------------------


def test_accepted_and_rejected_contexts_on_both_sides() -> None:
    scp = quick_ae("SCP", supported=[Verification])
    scp.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    scu = quick_ae("SCU")
    contexts = [
        build_context(Verification),
        build_context(CTImageStorage, ImplicitVRLittleEndian),
        build_context(MRImageStorage),
    ]
    with serving(scp) as server, associated(scu, server, contexts=contexts) as assoc:
        (served,) = server.active_associations
        for side in (assoc, served):
            assert [(c.context_id, c.abstract_syntax) for c in side.accepted_contexts] == [
                (1, Verification)
            ]
            assert side.accepted_contexts[0].transfer_syntax == [ImplicitVRLittleEndian]
            assert [(c.context_id, c.result) for c in side.rejected_contexts] == [(3, 4), (5, 3)]
        assert [c.status for c in assoc.rejected_contexts] == [
            "Transfer Syntax(es) Not Supported",
            "Abstract Syntax Not Supported",
        ]


def test_requestor_and_acceptor_attributes_on_both_sides() -> None:
    scp = quick_ae("STORE-SCP", supported=[Verification])
    scp.maximum_pdu_size = 65536
    scu = quick_ae("MODALITY", requested=[Verification])
    scu.maximum_pdu_size = 32768
    with serving(scp) as server, associated(scu, server) as assoc:
        (served,) = server.active_associations
        for side in (assoc, served):
            assert side.requestor.ae_title == "MODALITY"
            assert side.acceptor.ae_title == "STORE-SCP"
            assert side.requestor.maximum_length == 32768
            assert side.acceptor.maximum_length == 65536
            for user in (side.requestor, side.acceptor):
                assert user.address == "127.0.0.1"
                assert user.implementation_class_uid == IMPLEMENTATION_CLASS_UID
                assert user.implementation_version_name == IMPLEMENTATION_VERSION_NAME
        assert assoc.acceptor.port == served.acceptor.port == server.server_address[1]
        assert assoc.requestor.port == served.requestor.port != 0
        assert (assoc.is_requestor, served.is_acceptor) == (True, True)
        assert (assoc.local, assoc.remote) == (assoc.requestor, assoc.acceptor)
        assert (served.local, served.remote) == (served.acceptor, served.requestor)


# -- what the SCU calls refuse -----------------------------------------------------------------


def test_c_echo_without_a_verification_context_is_a_value_error() -> None:
    scp = quick_ae("SCP", supported=[CTImageStorage])
    scu = quick_ae("SCU", requested=[CTImageStorage])
    with serving(scp) as server, associated(scu, server) as assoc:
        with pytest.raises(ValueError, match="Verification SOP Class"):
            assoc.send_c_echo()
        assert assoc.is_established  # refusing locally does not hurt the association


def test_scu_calls_on_an_association_that_is_not_established_are_runtime_errors() -> None:
    scp = quick_ae("SCP", supported=[Verification, CTImageStorage])
    scp.require_called_aet = True
    scu = quick_ae("SCU", requested=[Verification, CTImageStorage])
    with serving(scp) as server:
        assoc = associate(scu, server)
        assoc.release()
        with pytest.raises(RuntimeError, match="must be established"):
            assoc.send_c_store(small_dataset())
        with pytest.raises(RuntimeError, match="must be established"):
            assoc.send_c_echo()
        rejected = associate(scu, server, ae_title="ELSEWHERE")
        assert rejected.is_rejected
        with pytest.raises(RuntimeError, match="must be established"):
            rejected.send_c_store(str(CT_SMALL))


# -- C-STORE of files: sent as on disk, converted, or refused ---------------------------------


def store_one(source: object, scu_syntax: str) -> tuple[Dataset, StoreRecorder]:
    """Send ``source`` to an SCP that accepts CT and Secondary Capture in every
    uncompressed syntax, over contexts that offer only ``scu_syntax``."""
    recorder = StoreRecorder()
    scp = quick_ae("SCP", supported=[CTImageStorage, SecondaryCaptureImageStorage])
    scu = quick_ae("SCU")
    contexts = [
        build_context(CTImageStorage, scu_syntax),
        build_context(SecondaryCaptureImageStorage, scu_syntax),
    ]
    with (
        serving(scp, [(evt.EVT_C_STORE, recorder)]) as server,
        associated(scu, server, contexts=contexts) as assoc,
    ):
        status = assoc.send_c_store(source)
    return status, recorder


def test_a_file_in_an_accepted_syntax_is_sent_as_it_is_on_disk() -> None:
    status, recorder = store_one(CT_SMALL, ExplicitVRLittleEndian)
    assert status.Status == 0x0000
    (received,) = recorder.received
    assert received.transfer_syntax == ExplicitVRLittleEndian
    assert received.dataset_bytes == part10_dataset_bytes(CT_SMALL)


def test_an_uncompressed_file_in_another_syntax_is_converted() -> None:
    status, recorder = store_one(str(CT_SMALL), ImplicitVRLittleEndian)
    assert status.Status == 0x0000
    (received,) = recorder.received
    assert received.transfer_syntax == ImplicitVRLittleEndian
    original = dcmread(CT_SMALL)
    assert received.sop_instance_uid == original.SOPInstanceUID
    decoded = decode_dataset(received.dataset_bytes, ImplicitVRLittleEndian)
    assert [(e.tag, e.value) for e in decoded] == [(e.tag, e.value) for e in original]


def test_an_uncompressed_dataset_in_another_syntax_is_converted() -> None:
    instance = small_dataset()
    assert instance.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    status, recorder = store_one(instance, ImplicitVRLittleEndian)
    assert status.Status == 0x0000
    assert recorder.received[0].transfer_syntax == ImplicitVRLittleEndian


def test_a_compressed_file_without_its_syntax_is_refused_clearly() -> None:
    assert dcmread(JPEG_SC).file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    with pytest.raises(ValueError) as raised:
        store_one(JPEG_SC, ImplicitVRLittleEndian)
    message = str(raised.value)
    assert "Secondary Capture Image Storage" in message
    assert "JPEG Baseline (Process 1)" in message
    assert "accepted" in message
