"""Two DimseConnections wired back to back by their bytes: a requestor and an acceptor.

No sockets: what one side's ``data_to_send()`` returns is handed to the other's
``receive_data()``, whole or cut at chosen points, exactly as a TCP stream may
deliver it. The A-ASSOCIATE-RQ and -AC are real PDUs (PS3.8 9.3.2, 9.3.3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dicombus.protocol.commands import CommandSet
from dicombus.protocol.connection import (
    AssociateAccepted,
    AssociateRequested,
    ConnectionEvent,
    DimseConnection,
)
from dicombus.protocol.fragments import DatasetSink, MemoryDatasetSink
from dicombus.protocol.framing import PduFramer
from dicombus.protocol.fsm import State
from dicombus.protocol.items import (
    ImplementationClassUIDSubItem,
    MaximumLengthSubItem,
    PresentationContextACItem,
    PresentationContextRQItem,
    UserInformationItem,
)
from dicombus.protocol.pdus import PDU, AAssociateAC, AAssociateRJ, AAssociateRQ, decode_pdu

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.9.7433.1"
# Small PDUs, so one message spans several P-DATA-TFs.
MAX_PDU = 256
# PS3.8 9.3.2.2: presentation context IDs are odd.
CONTEXTS = {1: VERIFICATION, 3: CT_IMAGE_STORAGE, 5: PATIENT_ROOT_FIND}

SinkFactory = Callable[[CommandSet], DatasetSink]


def memory_sink(_command: CommandSet) -> DatasetSink:
    return MemoryDatasetSink()


def _user_information(max_pdu: int) -> UserInformationItem:
    return UserInformationItem(
        sub_items=(
            MaximumLengthSubItem(maximum_length=max_pdu),
            ImplementationClassUIDSubItem(uid=IMPLEMENTATION_CLASS_UID),
        )
    )


def associate_rq(max_pdu: int = MAX_PDU) -> AAssociateRQ:
    """STORESCU asks ANY-SCP for Verification, CT Image Storage and Patient Root C-FIND."""
    return AAssociateRQ(
        called_ae_title="ANY-SCP",
        calling_ae_title="STORESCU",
        presentation_contexts=tuple(
            PresentationContextRQItem(
                context_id=context_id,
                abstract_syntax=abstract_syntax,
                transfer_syntaxes=(IMPLICIT_VR_LE,),
            )
            for context_id, abstract_syntax in CONTEXTS.items()
        ),
        user_information=_user_information(max_pdu),
    )


def associate_ac(rq: AAssociateRQ, max_pdu: int = MAX_PDU) -> AAssociateAC:
    """Every proposed context accepted with its first transfer syntax."""
    return AAssociateAC(
        called_ae_title=rq.called_ae_title,
        calling_ae_title=rq.calling_ae_title,
        presentation_contexts=tuple(
            PresentationContextACItem(
                context_id=context.context_id,
                result=0,
                transfer_syntax=context.transfer_syntaxes[0],
            )
            for context in rq.presentation_contexts
        ),
        user_information=_user_information(max_pdu),
    )


# PS3.8 Table 9-21: rejected permanently by the service user, no reason given.
REJECTION = AAssociateRJ(result=1, source=1, reason=1)


def new_pair(
    sink_factory: SinkFactory = memory_sink, *, max_pdu: int = MAX_PDU
) -> tuple[DimseConnection, DimseConnection]:
    """A requestor and an acceptor, both in Sta1, advertising ``max_pdu``."""
    requestor = DimseConnection(
        is_requestor=True, dataset_sink_factory=sink_factory, max_pdata_length=max_pdu
    )
    acceptor = DimseConnection(
        is_requestor=False, dataset_sink_factory=sink_factory, max_pdata_length=max_pdu
    )
    return requestor, acceptor


def outgoing(connection: DimseConnection) -> bytes:
    """Everything ``connection`` has to send, joined into one byte string."""
    return b"".join(bytes(buffer) for buffer in connection.data_to_send())


def feed(connection: DimseConnection, data: bytes, cuts: Iterable[int] = ()) -> None:
    """Hand ``data`` over as a peer's socket would deliver it, cut at ``cuts``."""
    start = 0
    for end in [*sorted(cuts), len(data)]:
        if end > start:
            connection.receive_data(data[start:end])
            start = end


def deliver(sender: DimseConnection, receiver: DimseConnection, cuts: Iterable[int] = ()) -> bytes:
    """Move what ``sender`` has to send into ``receiver``; returns the bytes moved."""
    data = outgoing(sender)
    feed(receiver, data, cuts)
    return data


def split_pdus(data: bytes) -> list[PDU]:
    """``data`` cut into PDUs and decoded; asserts it holds whole PDUs only."""
    framer = PduFramer(max_pdata_length=0)
    pdus: list[PDU] = []
    view = memoryview(data)
    while view:
        target = framer.receive_buffer()
        count = min(len(target), len(view))
        target[:count] = view[:count]
        view = view[count:]
        if (pdu := framer.received(count)) is not None:
            pdus.append(decode_pdu(*pdu))
    assert not framer.mid_pdu, "data_to_send() ended in the middle of a PDU"
    return pdus


def associate(
    requestor: DimseConnection, acceptor: DimseConnection, *, max_pdu: int = MAX_PDU
) -> None:
    """Negotiate an association over bytes: both sides end in Sta6 (PS3.8 9.2)."""
    acceptor.start()
    rq = associate_rq(max_pdu)
    requestor.request_association(rq)
    deliver(requestor, acceptor)
    assert acceptor.events() == [AssociateRequested(rq=rq)]
    acceptor.accept(associate_ac(rq, max_pdu))
    deliver(acceptor, requestor)
    (accepted,) = requestor.events()
    assert isinstance(accepted, AssociateAccepted)
    assert requestor.state is State.STA6 and acceptor.state is State.STA6


def associated_pair(
    sink_factory: SinkFactory = memory_sink, *, max_pdu: int = MAX_PDU
) -> tuple[DimseConnection, DimseConnection]:
    """A requestor and an acceptor in Sta6, no events or bytes pending."""
    requestor, acceptor = new_pair(sink_factory, max_pdu=max_pdu)
    associate(requestor, acceptor, max_pdu=max_pdu)
    return requestor, acceptor


def message_pdus(
    command: CommandSet, dataset: bytes | None, *, context_id: int = 1, max_pdu: int = MAX_PDU
) -> list[bytes]:
    """The P-DATA-TFs of one message, each as bytes (as a peer would send them)."""
    return [
        b"".join(bytes(segment) for segment in pdu)
        for pdu in DimseConnection.fragment(context_id, command, dataset, max_pdu_length=max_pdu)
    ]


def send_message(
    connection: DimseConnection,
    command: CommandSet,
    dataset: bytes | None,
    *,
    context_id: int = 1,
    max_pdu: int = MAX_PDU,
) -> None:
    """Send one DIMSE message through ``connection``, P-DATA-TF by P-DATA-TF."""
    for pdu in DimseConnection.fragment(context_id, command, dataset, max_pdu_length=max_pdu):
        connection.send_pdata(pdu)


def kinds(events: Iterable[ConnectionEvent]) -> list[type]:
    return [type(event) for event in events]
