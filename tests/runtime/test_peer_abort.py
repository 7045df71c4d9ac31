"""A peer that aborts while our C-STORE is still being sent (a real socket on 127.0.0.1).

pynetdicom's ``send_c_store`` returns an empty Dataset when the association
ends before a response came, and the association then reports aborted; ours
must do the same whether the A-ABORT arrives before, during or after the
request's last P-DATA-TF.
"""

from __future__ import annotations

from collections.abc import Callable

from dicombus import AE
from helpers import CT_IMAGE_STORAGE, ct_dataset
from pydicom.dataset import Dataset
from raw_peers import WAIT, RawConnection, RawScript, accept_association, wait_until

# PS3.8 9.3.8: 07 00 00000004 | 00 00 | 00 service-user | 00 reason not specified
USER_ABORT = bytes.fromhex("0700 00000004 0000 0000")
# A data set far larger than the socket buffers on both sides: the A-ABORT
# lands while most of it is still to be sent, in 4 KiB P-DATA-TFs.
PIXEL_BYTES = 32 * 1024 * 1024
PEER_MAXIMUM_LENGTH = 4096


def test_peer_abort_in_the_middle_of_send_c_store_returns_an_empty_dataset(
    raw_peer: Callable[[RawScript], int],
) -> None:
    first_pdu: list[bytes] = []

    def aborts_mid_transfer(conn: RawConnection) -> None:
        accept_association(
            conn, abstract_syntax=CT_IMAGE_STORAGE, maximum_length=PEER_MAXIMUM_LENGTH
        )
        first_pdu.append(conn.read_pdu())
        conn.send(USER_ABORT)
        conn.read_until_closed(limit=2 * PIXEL_BYTES)

    port = raw_peer(aborts_mid_transfer)
    ae = AE("SCU")
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    dataset = ct_dataset()
    dataset.PixelData = bytes(PIXEL_BYTES)
    assoc = ae.associate("127.0.0.1", port)
    assert assoc.is_established

    response = assoc.send_c_store(dataset)

    assert first_pdu and first_pdu[0][0] == 0x04  # the request had begun: a P-DATA-TF
    assert response == Dataset()
    assert wait_until(lambda: not assoc.is_alive())
    assert assoc.is_aborted
    assert not assoc.is_established
