"""Two threads sending on one association, dicombus to dicombus on 127.0.0.1.

PS3.7 6.3.1 / PS3.8 E.2: the P-DATA-TFs of one message are not interleaved
with those of another; the receiving assembler aborts on a command PDV in the
middle of a data set. The case from the field: a Storage Commitment SCP's user
thread sends its N-EVENT-REPORT (a data set of many PDUs) on the association
while that association's reader thread answers the peer's C-STOREs.
"""

from __future__ import annotations

import threading

from dicombus import evt
from helpers import CT_IMAGE_STORAGE, small_dataset
from loopback import WAIT_TIMEOUT, associated, quick_ae, serving, wait_until
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from storage_commitment import (
    COMMITTED,
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    CommitmentResults,
)

VERIFICATION = "1.2.840.10008.1.1"
STORES = 40
REPORTS = 8
# Each report names this many instances (~100 KB): tens of 4 KiB PDUs.
REFERENCES_PER_REPORT = 1000
SCU_MAXIMUM_LENGTH = 4096
SUCCESS = 0x0000


def _report() -> Dataset:
    """PS3.4 J.3.3.1: a commitment result for many instances."""
    info = Dataset()
    info.TransactionUID = generate_uid()
    items = []
    for _ in range(REFERENCES_PER_REPORT):
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        item.ReferencedSOPInstanceUID = generate_uid()
        items.append(item)
    info.ReferencedSOPSequence = items
    return info


def _store_success(_event: evt.Event) -> int:
    return SUCCESS


def test_a_user_thread_report_does_not_interleave_with_the_readers_responses() -> None:
    scp = quick_ae("SCP", supported=[CT_IMAGE_STORAGE, STORAGE_COMMITMENT])
    scu = quick_ae("SCU", requested=[CT_IMAGE_STORAGE, STORAGE_COMMITMENT])
    scu.maximum_pdu_size = SCU_MAXIMUM_LENGTH
    results = CommitmentResults()
    reports = [_report() for _ in range(REPORTS)]
    dataset = small_dataset()
    with (
        serving(scp, [(evt.EVT_C_STORE, _store_success)]) as server,
        associated(scu, server, evt_handlers=[(evt.EVT_N_EVENT_REPORT, results)]) as assoc,
    ):
        assert assoc.is_established
        wait_until(lambda: len(server.active_associations) == 1)
        acceptor = server.active_associations[0]
        report_statuses: list[int | None] = []

        def send_reports() -> None:
            for message_id, info in enumerate(reports, start=1):
                status, _reply = acceptor.send_n_event_report(
                    info, COMMITTED, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE, message_id
                )
                report_statuses.append(status.get("Status"))

        reporter = threading.Thread(target=send_reports, name="commitment-reporter")
        reporter.start()
        store_statuses = [
            assoc.send_c_store(dataset, msg_id=message_id).get("Status")
            for message_id in range(1, STORES + 1)
        ]
        reporter.join(WAIT_TIMEOUT * REPORTS)

        assert not reporter.is_alive()
        assert store_statuses == [SUCCESS] * STORES
        assert report_statuses == [SUCCESS] * REPORTS
        received = [results.next() for _ in range(REPORTS)]
        assert [r.event_information.TransactionUID for r in received] == [
            r.TransactionUID for r in reports
        ]
        assert assoc.is_established and not assoc.is_aborted
