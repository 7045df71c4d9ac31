"""PduFramer: a byte stream in, whole PDUs out (PS3.8 9.3.1).

Every vector goes in whole, one byte at a time and at random split points,
each chunk copied into ``receive_buffer()`` as ``recv_into`` would write it;
headers are judged as soon as their 6 bytes are in. The framer only frames:
the bodies it returns are decoded here by ``decode_pdu``.
"""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from dicombus.protocol.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from dicombus.protocol.framing import PduFramer
from dicombus.protocol.items import (
    ImplementationClassUIDSubItem,
    MaximumLengthSubItem,
    PresentationContextRQItem,
    UnknownSubItem,
    UserInformationItem,
)
from dicombus.protocol.limits import DEFAULT_MAX_ASSOCIATE_PDU_LENGTH, UNLIMITED_PDATA_CAP
from dicombus.protocol.pdus import (
    PDU,
    AAbort,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationDataValue,
    decode_pdu,
)
from helpers import unhex
from hypothesis import given
from hypothesis import strategies as st

ASSOCIATE_RQ = AAssociateRQ(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(
        PresentationContextRQItem(
            context_id=1,
            abstract_syntax="1.2.840.10008.1.1",
            transfer_syntaxes=("1.2.840.10008.1.2",),
        ),
    ),
    user_information=UserInformationItem(
        sub_items=(
            MaximumLengthSubItem(maximum_length=16384),
            ImplementationClassUIDSubItem(uid="1.2.3.4"),
            UnknownSubItem(item_type=0x7F, data=b"ignored"),
        )
    ),
)
P_DATA_TF = unhex(
    """
    04 00 00 00 00 0c                                # P-DATA-TF, PDU length 12
    00 00 00 08                                      # PDV item length 8
    01                                               #   presentation context ID 1
    02                                               #   message control: data set, last
    de ad be ef ca fe                                #   data
    """
)
A_RELEASE_RQ = unhex("05 00 00 00 00 04  00 00 00 00   # A-RELEASE-RQ")
A_ABORT = unhex("07 00 00 00 00 04  00 00 02 01   # A-ABORT, provider, unrecognized PDU")
STREAM: list[tuple[bytes, PDU]] = [
    (ASSOCIATE_RQ.encode(), ASSOCIATE_RQ),
    (
        P_DATA_TF,
        PDataTF(
            pdvs=(
                PresentationDataValue(
                    context_id=1, is_command=False, is_last=True, data=b"\xde\xad\xbe\xef\xca\xfe"
                ),
            )
        ),
    ),
    (A_RELEASE_RQ, AReleaseRQ()),
    (AReleaseRP().encode(), AReleaseRP()),
    (
        AAssociateRJ(result=2, source=3, reason=1).encode(),
        AAssociateRJ(result=2, source=3, reason=1),
    ),
    (A_ABORT, AAbort(source=2, reason=1)),
]
WIRE = b"".join(encoded for encoded, _ in STREAM)
EXPECTED = [pdu for _, pdu in STREAM]


def receive(framer: PduFramer, chunk: bytes | bytearray | memoryview) -> list[PDU]:
    """Write ``chunk`` into the framer as a socket's recv_into would: never past the
    buffer it offers (the rest of the header or body), so a read never takes bytes
    of the next PDU. Each body is decoded before the next PDU reuses its buffer."""
    received: list[PDU] = []
    view = memoryview(chunk).cast("B")
    while view:
        target = framer.receive_buffer()
        count = min(len(target), len(view))
        target[:count] = view[:count]
        view = view[count:]
        if (pdu := framer.received(count)) is not None:
            received.append(decode_pdu(*pdu))
    return received


def feed(chunks: list[bytes], max_pdata_length: int = 16384) -> list[PDU]:
    framer = PduFramer(max_pdata_length=max_pdata_length)
    received: list[PDU] = []
    for chunk in chunks:
        received += receive(framer, chunk)
    assert not framer.mid_pdu
    return received


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


@pytest.mark.parametrize(("encoded", "pdu"), STREAM, ids=[type(p).__name__ for _, p in STREAM])
def test_each_pdu_whole(encoded: bytes, pdu: PDU) -> None:
    assert feed([encoded]) == [pdu]


@pytest.mark.parametrize(("encoded", "pdu"), STREAM, ids=[type(p).__name__ for _, p in STREAM])
def test_each_pdu_one_byte_at_a_time(encoded: bytes, pdu: PDU) -> None:
    assert feed([encoded[i : i + 1] for i in range(len(encoded))]) == [pdu]


def test_stream_whole_and_byte_by_byte() -> None:
    assert feed([WIRE]) == EXPECTED
    assert feed([WIRE[i : i + 1] for i in range(len(WIRE))]) == EXPECTED


def test_stream_at_seeded_random_splits() -> None:
    rng = random.Random(20240611)
    for _ in range(200):
        cuts = rng.sample(range(1, len(WIRE)), rng.randint(1, 20))
        assert feed(split_at(WIRE, cuts)) == EXPECTED


@given(st.lists(st.integers(1, len(WIRE) - 1), max_size=30))
def test_stream_at_hypothesis_splits(cuts: list[int]) -> None:
    assert feed(split_at(WIRE, cuts)) == EXPECTED


def test_accepts_bytearray_and_memoryview() -> None:
    assert feed([bytearray(WIRE[:100]), memoryview(WIRE)[100:]]) == EXPECTED  # type: ignore[list-item]


def test_need_data_until_complete() -> None:
    framer = PduFramer(max_pdata_length=0)
    assert not framer.mid_pdu
    assert len(framer.receive_buffer()) == 6  # a header first, however long the PDU
    assert receive(framer, A_RELEASE_RQ[:6]) == []
    assert framer.mid_pdu
    assert len(framer.receive_buffer()) == 4  # then exactly its body
    assert receive(framer, A_RELEASE_RQ[6:]) == [AReleaseRQ()]
    assert not framer.mid_pdu
    assert bytes(framer.header) == A_RELEASE_RQ[:6]


def test_a_body_stays_valid_when_a_larger_pdu_follows() -> None:
    """A caller may still view the last body: a larger PDU gets a new buffer, not a
    resized one (resizing a bytearray with a view exported would raise)."""
    framer = PduFramer(max_pdata_length=0)
    target = framer.receive_buffer()
    target[:6] = P_DATA_TF[:6]
    framer.received(6)
    framer.receive_buffer()[:12] = P_DATA_TF[6:]
    received = framer.received(12)
    assert received is not None
    pdu_type, body = received
    large = PDataTF(
        pdvs=(
            PresentationDataValue(
                context_id=1, is_command=False, is_last=True, data=bytes(1 << 21)
            ),
        )
    )
    assert receive(framer, large.encode()) == [large]
    assert (pdu_type, bytes(body)) == (PDataTF.pdu_type, P_DATA_TF[6:])


# ---------------------------------------------------------------------------
# The header is judged before the body arrives

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNRECOGNIZED = AbortReason.UNRECOGNIZED_PDU


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (unhex("04 00 ff ff ff ff   # P-DATA-TF claiming 4 GiB"), INVALID),
        (unhex("01 00 ff ff ff ff   # A-ASSOCIATE-RQ claiming 4 GiB"), INVALID),
        (unhex("04 00 00 00 40 01   # P-DATA-TF over our 16384"), INVALID),
        (b"GET / HTTP/1.1\r\n", UNRECOGNIZED),
        (unhex("16 03 01 00 f4 01   # TLS ClientHello on a plain port"), UNRECOGNIZED),
        (unhex("05 00 00 00 00 05   # A-RELEASE-RQ of 5 bytes"), INVALID),
    ],
)  # fmt: skip
def test_bad_header_raises_at_once(header: bytes, reason: AbortReason) -> None:
    framer = PduFramer(max_pdata_length=16384)
    assert receive(framer, header[:5]) == []
    with pytest.raises(RemoteProtocolError) as info:
        receive(framer, header[5:])
    assert info.value.abort_reason == reason


def test_after_an_error_the_stream_is_dead() -> None:
    framer = PduFramer(max_pdata_length=16384)
    with pytest.raises(RemoteProtocolError):
        receive(framer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        framer.receive_buffer()


def test_max_pdata_length_applies_to_the_next_header() -> None:
    """The cap changes once the association is negotiated (PS3.8 D.1)."""
    framer = PduFramer(max_pdata_length=0)
    (pdu,) = receive(framer, P_DATA_TF)
    assert isinstance(pdu, PDataTF)
    framer.max_pdata_length = 11  # one byte under this PDU's length
    assert framer.max_pdata_length == 11
    with pytest.raises(RemoteProtocolError):
        receive(framer, P_DATA_TF)


def test_unlimited_pdata_is_still_capped() -> None:
    """Advertising no limit (0, PS3.8 D.1) still refuses a header past UNLIMITED_PDATA_CAP."""
    with pytest.raises(RemoteProtocolError) as info:
        receive(PduFramer(max_pdata_length=0), struct.pack(">BBI", 4, 0, UNLIMITED_PDATA_CAP + 1))
    assert info.value.abort_reason == INVALID


def test_max_associate_length() -> None:
    encoded = ASSOCIATE_RQ.encode()
    framer = PduFramer(max_pdata_length=0, max_associate_length=len(encoded) - 7)
    with pytest.raises(RemoteProtocolError):
        receive(framer, encoded[:6])
    assert PduFramer(max_pdata_length=0).max_associate_length == DEFAULT_MAX_ASSOCIATE_PDU_LENGTH


@pytest.mark.parametrize("value", [-1, 1 << 32, True, 1.5])
def test_bad_max_pdata_length_is_our_bug(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        PduFramer(max_pdata_length=value)  # type: ignore[arg-type]
    framer = PduFramer(max_pdata_length=0)
    with pytest.raises(LocalProtocolError):
        framer.max_pdata_length = value  # type: ignore[assignment]


def test_malformed_body_is_a_remote_error() -> None:
    """The framer frames it (its header is fine); decoding its body refuses it."""
    bad_pdv = unhex("04 00 00 00 00 06  00 00 00 01 01 00   # PDV item length 1")
    framer = PduFramer(max_pdata_length=0)
    with pytest.raises(RemoteProtocolError):
        receive(framer, bad_pdv)
    assert not framer.mid_pdu


def test_large_pdata_in_socket_sized_chunks() -> None:
    data = bytes(range(256)) * 1024  # 256 KiB
    pdu = PDataTF(
        pdvs=(PresentationDataValue(context_id=7, is_command=False, is_last=True, data=data),)
    )
    encoded = pdu.encode()
    framer = PduFramer(max_pdata_length=len(encoded) - 6)
    received: list[PDU] = []
    for start in range(0, len(encoded), 65536):
        assert received == []
        received += receive(framer, encoded[start : start + 65536])
    assert received == [pdu]
