"""dicombus.presentation: presentation contexts and their negotiation.

Peer: pynetdicom (test-only). Its negotiate_as_acceptor / negotiate_as_requestor
run on the same inputs as ours and must reach the same results, roles and, for
accepted contexts, transfer syntax. One deliberate difference: when several
transfer syntaxes are common to both sides we take the first in the
REQUESTOR's order and pynetdicom the first in the acceptor's, so the
cross-checks hand pynetdicom our supported lists reordered to match.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pynetdicom._globals as pynetdicom_globals
import pynetdicom.presentation as pynetdicom_presentation
import pynetdicom.sop_class as pynetdicom_sop_class
import pytest
from dicombus import presentation, sop_class
from dicombus.presentation import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    PresentationContext,
    PresentationContextError,
    PresentationContextTuple,
    build_context,
    build_role,
    negotiate_as_acceptor,
    negotiate_as_requestor,
)
from dicombus.protocol.errors import AbortReason, LocalProtocolError, RemoteProtocolError
from dicombus.protocol.items import (
    PresentationContextACItem,
    PresentationContextRQItem,
    ScpScuRoleSelectionSubItem,
)
from dicombus.sop_class import CTImageStorage, MRImageStorage, Verification
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom._uid_dict import UID_dictionary
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

Roles = dict[str, tuple[bool, bool]]
IMPLICIT, EXPLICIT = ImplicitVRLittleEndian, ExplicitVRLittleEndian


def context(
    context_id: int | None,
    abstract_syntax: str,
    transfer_syntax: Sequence[str],
    scu_role: bool | None = None,
    scp_role: bool | None = None,
) -> PresentationContext:
    return PresentationContext(
        context_id=context_id,
        abstract_syntax=abstract_syntax,
        transfer_syntax=transfer_syntax,
        scu_role=scu_role,
        scp_role=scp_role,
    )


def to_pynetdicom(ours: PresentationContext) -> pynetdicom_presentation.PresentationContext:
    theirs = pynetdicom_presentation.PresentationContext()
    theirs.context_id = ours.context_id
    theirs.abstract_syntax = ours.abstract_syntax
    syntaxes: list[str | bytes | UID] = [*ours.transfer_syntax]
    theirs.transfer_syntax = syntaxes
    theirs.scu_role = ours.scu_role
    theirs.scp_role = ours.scp_role
    theirs.result = ours.result
    return theirs


def outcome(negotiated: Sequence[Any]) -> list[tuple[object, ...]]:
    """What both implementations must agree on, for ours and pynetdicom's contexts.

    A rejected context's transfer syntax is not significant (PS3.8 9.3.3.2),
    nor are its roles (pynetdicom leaves requestor-side ones at SCU). Sorted by
    ID, as pynetdicom does not sort when it supports nothing.
    """
    rows: list[tuple[object, ...]] = []
    for cx in negotiated:
        accepted = cx.result == 0
        rows.append(
            (
                cx.context_id,
                str(cx.abstract_syntax),
                cx.result,
                str(cx.transfer_syntax[0]) if accepted else None,
                bool(cx.as_scu) if accepted else None,
                bool(cx.as_scp) if accepted else None,
            )
        )
    return sorted(rows, key=lambda row: int(row[0]))  # type: ignore[call-overload]


def role_rows(items: Sequence[Any]) -> list[tuple[str, bool, bool]]:
    return [(str(item.sop_class_uid), item.scu_role, item.scp_role) for item in items]


def pynetdicom_acceptor(
    requested: Sequence[PresentationContext],
    supported: Sequence[PresentationContext],
    roles: presentation.Roles,
) -> tuple[list[Any], list[Any]]:
    theirs = [to_pynetdicom(cx) for cx in supported]
    # Make pynetdicom's acceptor-order choice equal our requestor-order one.
    for ours_cx, their_cx in zip(supported, theirs, strict=True):
        offered = [
            ts
            for rq in requested
            if rq.abstract_syntax == ours_cx.abstract_syntax
            for ts in rq.transfer_syntax
        ]
        preferred = [ts for ts in offered if ts in ours_cx.transfer_syntax]
        reordered: list[str | bytes | UID] = [
            *preferred,
            *(ts for ts in ours_cx.transfer_syntax if ts not in preferred),
        ]
        their_cx.transfer_syntax = reordered
    results, replies = pynetdicom_presentation.negotiate_as_acceptor(
        [to_pynetdicom(cx) for cx in requested], theirs, {UID(k): v for k, v in roles.items()}
    )
    return results, replies


# --- transfer syntaxes -------------------------------------------------------


def test_default_transfer_syntaxes_match_pynetdicom() -> None:
    expected = [
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    ]
    assert expected == DEFAULT_TRANSFER_SYNTAXES
    assert DEFAULT_TRANSFER_SYNTAXES == pynetdicom_globals.DEFAULT_TRANSFER_SYNTAXES
    assert all(isinstance(ts, UID) for ts in DEFAULT_TRANSFER_SYNTAXES)


NEWER_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
}


def test_all_transfer_syntaxes() -> None:
    # pydicom's registry, as pynetdicom (imported above) has extended it.
    registry = {uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax"}
    assert ALL_TRANSFER_SYNTAXES[:4] == DEFAULT_TRANSFER_SYNTAXES
    assert len(ALL_TRANSFER_SYNTAXES) == len(set(ALL_TRANSFER_SYNTAXES))
    assert set(ALL_TRANSFER_SYNTAXES) == registry | NEWER_TRANSFER_SYNTAXES
    assert set(pynetdicom_globals.ALL_TRANSFER_SYNTAXES) <= set(ALL_TRANSFER_SYNTAXES)
    assert all(isinstance(ts, UID) for ts in ALL_TRANSFER_SYNTAXES)


def test_all_transfer_syntaxes_do_not_depend_on_import_order() -> None:
    # Importing pynetdicom adds transfer syntaxes to pydicom's registry.
    script = (
        "import sys; {first}; import dicombus.presentation as p;"
        "sys.stdout.write(' '.join(p.ALL_TRANSFER_SYNTAXES))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script.format(first=first)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for first in ("pass", "import pynetdicom")
    ]
    assert runs[0] == runs[1] == " ".join(ALL_TRANSFER_SYNTAXES)


# --- PresentationContext and build_context ----------------------------------


def test_build_context_defaults() -> None:
    cx = build_context(Verification)
    assert cx.abstract_syntax == "1.2.840.10008.1.1"
    assert isinstance(cx.abstract_syntax, UID)
    assert cx.transfer_syntax == DEFAULT_TRANSFER_SYNTAXES
    assert cx.transfer_syntax is not DEFAULT_TRANSFER_SYNTAXES
    assert (cx.context_id, cx.result, cx.scu_role, cx.scp_role) == (None, None, None, None)
    assert (cx.as_scu, cx.as_scp) == (None, None)
    assert cx.status == "Pending"


def test_build_context_single_and_list() -> None:
    assert build_context(CTImageStorage, "1.2.840.10008.1.2.1").transfer_syntax == [EXPLICIT]
    cx = build_context("1.2.840.10008.1.1", [JPEGBaseline8Bit, IMPLICIT, JPEGBaseline8Bit])
    assert cx.transfer_syntax == [JPEGBaseline8Bit, IMPLICIT]  # duplicates dropped, order kept
    cx.add_transfer_syntax(IMPLICIT)
    cx.add_transfer_syntax(RLELossless)
    assert cx.transfer_syntax == [JPEGBaseline8Bit, IMPLICIT, RLELossless]
    assert build_context(Verification, []).transfer_syntax == []


@pytest.mark.parametrize(
    "bad",
    ["", "1.2.a", "1..2", ".1.2", "1.2.", "1.2 ", "1.2\x00", "1." + "2" * 63],
)
def test_build_context_rejects_bad_uids(bad: str) -> None:
    with pytest.raises(PresentationContextError):
        build_context(bad)
    with pytest.raises(ValueError):  # what pynetdicom users catch
        build_context(Verification, bad)
    with pytest.raises(LocalProtocolError):
        build_context(Verification, [IMPLICIT, bad])


def test_uid_length_limit_is_64() -> None:
    longest = "1." + "2" * 62
    assert len(longest) == 64
    assert build_context(longest).abstract_syntax == longest
    with pytest.raises(PresentationContextError, match="64"):
        build_context(longest + "3")


def test_uid_with_leading_zero_is_accepted() -> None:
    # Non-conformant (PS3.5 9.1) but sent by real peers; pydicom flags it only.
    assert build_context("1.2.03").abstract_syntax == "1.2.03"


def test_non_str_values_are_type_errors() -> None:
    with pytest.raises(TypeError):
        build_context(Verification, [b"1.2.840.10008.1.2"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        build_context(Verification).transfer_syntax = (IMPLICIT,)  # type: ignore[assignment]
    with pytest.raises(TypeError):
        build_context(Verification).scu_role = 1  # type: ignore[assignment]
    with pytest.raises(TypeError):
        build_context(Verification).scp_role = "yes"  # type: ignore[assignment]


@pytest.mark.parametrize("good", [1, 3, 127, 255, None])
def test_context_id_accepts_odd_1_to_255(good: int | None) -> None:
    cx = build_context(Verification)
    cx.context_id = good
    assert cx.context_id == good


@pytest.mark.parametrize("bad", [0, 2, 254, 256, -1, 257, True])
def test_context_id_rejects_others(bad: int) -> None:
    cx = build_context(Verification)
    with pytest.raises(PresentationContextError, match="odd"):
        cx.context_id = bad
    with pytest.raises(ValueError):
        PresentationContext(context_id=bad, abstract_syntax=Verification)


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (None, "Pending"),
        (0, "Accepted"),
        (1, "User Rejected"),
        (2, "Provider Rejected"),
        (3, "Abstract Syntax Not Supported"),
        (4, "Transfer Syntax(es) Not Supported"),
        (5, "Unknown"),
    ],
)
def test_status(result: int | None, status: str) -> None:
    cx = build_context(Verification)
    cx.result = result
    assert cx.status == status
    theirs = pynetdicom_presentation.PresentationContext()
    theirs.result = result
    assert theirs.status == status


def test_equality() -> None:
    assert build_context(Verification) == build_context(Verification)
    assert build_context(Verification) != build_context(Verification, IMPLICIT)
    assert build_context(Verification) != build_context(CTImageStorage)
    a, b = build_context(Verification), build_context(Verification)
    b.scu_role = True
    assert a != b
    b.scu_role = None
    b.result = 0
    assert a != b
    assert a != "1.2.840.10008.1.1"
    with pytest.raises(TypeError):
        hash(a)


def test_str_matches_pynetdicom() -> None:
    cx = build_context(Verification)
    assert str(cx) == str(to_pynetdicom(cx))
    assert str(cx) == (
        "Abstract Syntax: Verification SOP Class\n"
        "Transfer Syntax(es):\n"
        "    =Implicit VR Little Endian\n"
        "    =Explicit VR Little Endian\n"
        "    =Deflated Explicit VR Little Endian\n"
        "    =Explicit VR Big Endian"
    )
    empty = PresentationContext(context_id=7, abstract_syntax=CTImageStorage)
    assert str(empty) == str(to_pynetdicom(empty))
    assert "(none)" in str(empty)


def test_str_of_negotiated_context_matches_pynetdicom() -> None:
    requested = [context(1, CTImageStorage, [IMPLICIT])]
    supported = [context(None, CTImageStorage, [IMPLICIT], scu_role=True, scp_role=True)]
    roles = {CTImageStorage: (True, True)}
    ours, _ = negotiate_as_acceptor(requested, supported, roles)
    theirs, _ = pynetdicom_acceptor(requested, supported, roles)
    assert str(ours[0]) == str(theirs[0])
    assert str(ours[0]).endswith("Result: Accepted\nRole: SCU and SCP")


def test_repr_names_the_fields() -> None:
    text = repr(context(3, Verification, [IMPLICIT]))
    assert "context_id=3" in text
    assert "'1.2.840.10008.1.1'" in text
    assert "'1.2.840.10008.1.2'" in text


def test_as_tuple() -> None:
    results, _ = negotiate_as_acceptor(
        [context(5, Verification, [EXPLICIT])], [build_context(Verification)]
    )
    assert results[0].as_tuple == PresentationContextTuple(5, Verification, EXPLICIT)
    assert results[0].as_tuple.transfer_syntax == EXPLICIT
    with pytest.raises(LocalProtocolError):
        _ = build_context(Verification).as_tuple


def test_build_role() -> None:
    role = build_role(CTImageStorage, scp_role=True)
    assert role == ScpScuRoleSelectionSubItem(
        sop_class_uid=CTImageStorage, scu_role=False, scp_role=True
    )
    assert build_role(Verification) == ScpScuRoleSelectionSubItem(
        sop_class_uid=Verification, scu_role=False, scp_role=False
    )
    with pytest.raises(ValueError):
        build_role("not a uid", scu_role=True)


# --- ready-made context lists -------------------------------------------------


GROUPS = sorted(name for name in dir(pynetdicom_presentation) if name.endswith("Contexts"))


def test_we_export_every_pynetdicom_group() -> None:
    assert len(GROUPS) == 24
    for name in GROUPS:
        assert isinstance(getattr(presentation, name), list), name


@pytest.mark.parametrize("name", GROUPS)
def test_group_matches_pynetdicom(name: str) -> None:
    ours = getattr(presentation, name)
    uids = [cx.abstract_syntax for cx in ours]
    assert uids == sorted(uids)  # pynetdicom's order: by UID as text
    assert len(uids) == len(set(uids))
    assert all(cx.transfer_syntax == DEFAULT_TRANSFER_SYNTAXES for cx in ours)
    assert all(cx.context_id is None for cx in ours)
    theirs = {cx.abstract_syntax for cx in getattr(pynetdicom_presentation, name)}
    assert theirs <= set(uids)
    known_to_pynetdicom = {
        getattr(pynetdicom_sop_class, n)
        for n in dir(pynetdicom_sop_class)
        if isinstance(getattr(pynetdicom_sop_class, n), UID)
    }
    for uid in set(uids) - theirs:
        # We add only what pynetdicom leaves out: retired classes, or ones it does not know.
        assert UID(uid).is_retired or uid not in known_to_pynetdicom or name.startswith("All"), uid


def test_storage_presentation_contexts() -> None:
    common = presentation.StoragePresentationContexts
    assert len(common) == 120  # room for 8 more within PS3.8's 128 contexts
    uids = {cx.abstract_syntax for cx in common}
    assert uids == {
        cx.abstract_syntax for cx in pynetdicom_presentation.StoragePresentationContexts
    }
    assert uids <= set(sop_class.STORAGE_SOP_CLASSES)
    assert CTImageStorage in uids
    every = {cx.abstract_syntax for cx in presentation.AllStoragePresentationContexts}
    assert every == set(sop_class.STORAGE_SOP_CLASSES)


def test_verification_and_query_retrieve_groups() -> None:
    assert presentation.VerificationPresentationContexts == [build_context(Verification)]
    qr = {cx.abstract_syntax for cx in presentation.QueryRetrievePresentationContexts}
    assert qr == {
        *sop_class.QR_FIND_SOP_CLASSES,
        *sop_class.QR_GET_SOP_CLASSES,
        *sop_class.QR_MOVE_SOP_CLASSES,
    }
    worklist = presentation.BasicWorklistManagementPresentationContexts
    assert [cx.abstract_syntax for cx in worklist] == [
        sop_class.ModalityWorklistInformationModelFind
    ]


# --- negotiation as acceptor: syntaxes ---------------------------------------


def test_abstract_syntax_not_supported() -> None:
    results, roles = negotiate_as_acceptor(
        [context(1, CTImageStorage, [EXPLICIT, IMPLICIT])], [build_context(Verification)]
    )
    assert [(cx.context_id, cx.result, cx.status) for cx in results] == [
        (1, 3, "Abstract Syntax Not Supported")
    ]
    assert results[0].abstract_syntax == CTImageStorage
    assert results[0].transfer_syntax == [EXPLICIT]  # the AC item still needs one (not tested)
    assert (results[0].as_scu, results[0].as_scp) == (False, False)
    assert roles == []


def test_nothing_supported_rejects_everything() -> None:
    requested = [context(1, Verification, [IMPLICIT]), context(3, CTImageStorage, [IMPLICIT])]
    results, roles = negotiate_as_acceptor(requested, [])
    assert [cx.result for cx in results] == [3, 3]
    assert roles == []
    theirs, _ = pynetdicom_acceptor(requested, [], {})
    assert [cx.result for cx in theirs] == [3, 3]


def test_nothing_requested() -> None:
    assert negotiate_as_acceptor([], [build_context(Verification)]) == ([], [])


def test_transfer_syntaxes_not_supported() -> None:
    results, _ = negotiate_as_acceptor(
        [context(1, CTImageStorage, [JPEGBaseline8Bit, RLELossless])],
        [build_context(CTImageStorage)],
    )
    assert (results[0].result, results[0].status) == (4, "Transfer Syntax(es) Not Supported")
    assert results[0].transfer_syntax == [JPEGBaseline8Bit]


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        ([EXPLICIT, IMPLICIT], [IMPLICIT, EXPLICIT], EXPLICIT),
        ([IMPLICIT, EXPLICIT], [EXPLICIT, IMPLICIT], IMPLICIT),
        ([JPEGBaseline8Bit, RLELossless, EXPLICIT], [IMPLICIT, EXPLICIT, RLELossless], RLELossless),
        ([JPEGBaseline8Bit, EXPLICIT], [EXPLICIT], EXPLICIT),
    ],
)
def test_first_of_the_requestors_transfer_syntaxes_we_support(
    offered: list[str], supported: list[str], chosen: str
) -> None:
    results, _ = negotiate_as_acceptor(
        [context(9, CTImageStorage, offered)], [build_context(CTImageStorage, supported)]
    )
    assert results[0].result == 0
    assert results[0].transfer_syntax == [chosen]
    assert (results[0].as_scu, results[0].as_scp) == (False, True)  # default roles
    assert results[0].as_tuple == (9, CTImageStorage, chosen)


def test_same_abstract_syntax_in_several_contexts() -> None:
    requested = [
        context(1, CTImageStorage, [JPEGBaseline8Bit]),
        context(3, CTImageStorage, [EXPLICIT]),
        context(5, CTImageStorage, [IMPLICIT]),
    ]
    results, _ = negotiate_as_acceptor(requested, [build_context(CTImageStorage)])
    assert [(cx.result, cx.transfer_syntax) for cx in results] == [
        (4, [JPEGBaseline8Bit]),
        (0, [EXPLICIT]),
        (0, [IMPLICIT]),
    ]


def test_results_are_sorted_by_context_id() -> None:
    requested = [context(cid, Verification, [IMPLICIT]) for cid in (7, 1, 255, 3)]
    results, _ = negotiate_as_acceptor(requested, [build_context(Verification)])
    assert [cx.context_id for cx in results] == [1, 3, 7, 255]


def test_decoded_rq_items_are_accepted_directly() -> None:
    requested = [
        PresentationContextRQItem(
            context_id=1, abstract_syntax=Verification, transfer_syntaxes=(EXPLICIT, IMPLICIT)
        ),
        # A name the decoder lets through but we would never build: answered, not crashed.
        PresentationContextRQItem(
            context_id=3, abstract_syntax="1.2.x-not-a-uid", transfer_syntaxes=(IMPLICIT,)
        ),
    ]
    results, _ = negotiate_as_acceptor(requested, [build_context(Verification)])
    assert [(cx.context_id, cx.result) for cx in results] == [(1, 0), (3, 3)]
    assert results[0].transfer_syntax == [EXPLICIT]
    assert results[1].abstract_syntax == "1.2.x-not-a-uid"


# --- negotiation as acceptor: malformed requests ----------------------------


def test_repeated_context_id_is_a_remote_protocol_error() -> None:
    requested = [context(1, Verification, [IMPLICIT]), context(1, CTImageStorage, [IMPLICIT])]
    with pytest.raises(RemoteProtocolError, match="proposed twice") as caught:
        negotiate_as_acceptor(requested, [build_context(Verification)])
    assert caught.value.abort_reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_even_context_id_never_reaches_negotiation() -> None:
    # A-ASSOCIATE-RQ Presentation Context item with an even ID:
    #   20 00 002e                      item type 0x20, reserved, length 46
    #   02 00 00 00                     context ID 2 (even: PS3.8 9.3.2.2), 3 reserved
    #   30 00 0011 "1.2.840.10008.1.1"  Abstract Syntax sub-item, Verification
    #   40 00 0011 "1.2.840.10008.1.2"  Transfer Syntax sub-item, Implicit VR LE
    item = (
        bytes.fromhex("2000002e 02000000 30000011")
        + b"1.2.840.10008.1.1"
        + bytes.fromhex("40000011")
        + b"1.2.840.10008.1.2"
    )
    with pytest.raises(RemoteProtocolError, match="odd"):
        PresentationContextRQItem.decode(item)
    odd = item[:4] + b"\x01" + item[5:]  # the same item with context ID 1
    results, _ = negotiate_as_acceptor(
        [PresentationContextRQItem.decode(odd)], [build_context(Verification)]
    )
    assert [(cx.context_id, cx.result) for cx in results] == [(1, 0)]


def test_context_without_transfer_syntax_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="no transfer syntax"):
        negotiate_as_acceptor([context(1, Verification, [])], [build_context(Verification)])


def test_requested_context_without_id_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        negotiate_as_acceptor([build_context(Verification)], [build_context(Verification)])


def test_supported_twice_or_without_abstract_syntax_is_our_bug() -> None:
    requested = [context(1, Verification, [IMPLICIT])]
    with pytest.raises(LocalProtocolError, match="more than once"):
        negotiate_as_acceptor(requested, [build_context(Verification), build_context(Verification)])
    with pytest.raises(LocalProtocolError, match="no abstract syntax"):
        negotiate_as_acceptor(requested, [PresentationContext(transfer_syntax=[IMPLICIT])])


# --- SCP/SCU role selection, acceptor side (PS3.7 Table D.3.3.4-1) ----------

T, F = True, False
DEFAULT = (0, F, T)  # result, our as_scu, our as_scp: requestor SCU, we SCP
REVERSED = (0, T, F)  # requestor SCP, we SCU
BOTH = (0, T, T)
REJECTED = (1, F, F)

# (requestor proposes, we are configured to accept) -> (outcome, role reply).
# A reply never grants a role that was not proposed (PS3.7 D.3.3.4).
Pair = tuple[bool, bool]
ACCEPTOR_ROLE_TABLE: dict[tuple[Pair, Pair], tuple[tuple[int, bool, bool], Pair | None]] = {
    ((T, T), (T, T)): (BOTH, (T, T)),
    ((T, T), (T, F)): (DEFAULT, (T, F)),
    ((T, T), (F, T)): (REVERSED, (F, T)),
    ((T, T), (F, F)): (REJECTED, None),
    ((T, F), (T, T)): (DEFAULT, (T, F)),
    ((T, F), (T, F)): (DEFAULT, (T, F)),
    ((T, F), (F, T)): (REJECTED, None),
    ((T, F), (F, F)): (REJECTED, None),
    ((F, T), (T, T)): (REVERSED, (F, T)),
    ((F, T), (T, F)): (REJECTED, None),
    ((F, T), (F, T)): (REVERSED, (F, T)),
    ((F, T), (F, F)): (REJECTED, None),
    ((F, F), (T, T)): (REJECTED, None),
    ((F, F), (T, F)): (REJECTED, None),
    ((F, F), (F, T)): (REJECTED, None),
    ((F, F), (F, F)): (REJECTED, None),
}
BOOL_PAIRS = [(T, T), (T, F), (F, T), (F, F)]
UNCONFIGURED = [(None, None), (None, T), (None, F), (T, None), (F, None)]


def negotiate_roles_both_ways(
    proposed: tuple[bool, bool] | None, configured: tuple[bool | None, bool | None]
) -> tuple[tuple[object, ...], list[ScpScuRoleSelectionSubItem]]:
    """Negotiate one CT context with ours and pynetdicom's acceptor; they must agree."""
    requested = [context(1, CTImageStorage, [IMPLICIT])]
    supported = [context(None, CTImageStorage, [IMPLICIT], *configured)]
    roles = {} if proposed is None else {CTImageStorage: proposed}
    results, replies = negotiate_as_acceptor(requested, supported, roles)
    their_results, their_replies = pynetdicom_acceptor(requested, supported, roles)
    assert outcome(results) == outcome(their_results)
    assert results[0].result == their_results[0].result
    assert role_rows(replies) == role_rows(their_replies)
    cx = results[0]
    return (cx.result, cx.as_scu, cx.as_scp), replies


@pytest.mark.parametrize(("proposed", "configured"), list(ACCEPTOR_ROLE_TABLE))
def test_acceptor_role_table(proposed: tuple[bool, bool], configured: tuple[bool, bool]) -> None:
    expected, reply = ACCEPTOR_ROLE_TABLE[proposed, configured]
    got, replies = negotiate_roles_both_ways(proposed, configured)
    assert got == expected
    if reply is None:
        assert replies == []
    else:
        assert replies == [
            ScpScuRoleSelectionSubItem(
                sop_class_uid=CTImageStorage, scu_role=reply[0], scp_role=reply[1]
            )
        ]


@pytest.mark.parametrize("configured", UNCONFIGURED)
@pytest.mark.parametrize("proposed", [None, *BOOL_PAIRS])
def test_acceptor_without_role_configuration_keeps_default_roles(
    proposed: tuple[bool, bool] | None, configured: tuple[bool | None, bool | None]
) -> None:
    # PS3.7 D.3.3.4: no role item returned means requestor SCU, acceptor SCP.
    got, replies = negotiate_roles_both_ways(proposed, configured)
    assert got == DEFAULT
    assert replies == []


@pytest.mark.parametrize("configured", BOOL_PAIRS)
def test_acceptor_without_role_proposal_keeps_default_roles(
    configured: tuple[bool, bool],
) -> None:
    # PS3.7 D.3.3.4: role items absent from the request are absent from the answer.
    got, replies = negotiate_roles_both_ways(None, configured)
    assert got == DEFAULT
    assert replies == []


def test_role_replies_one_per_sop_class_sorted() -> None:
    requested = [
        context(1, MRImageStorage, [IMPLICIT]),
        context(3, CTImageStorage, [IMPLICIT]),
        context(5, CTImageStorage, [EXPLICIT]),
        context(7, Verification, [IMPLICIT]),
    ]
    supported = [
        context(None, CTImageStorage, [IMPLICIT, EXPLICIT], T, T),
        context(None, MRImageStorage, [IMPLICIT], T, F),
        context(None, Verification, [IMPLICIT]),
    ]
    roles = {CTImageStorage: (F, T), MRImageStorage: (T, T), Verification: (T, F)}
    results, replies = negotiate_as_acceptor(requested, supported, roles)
    assert [(cx.result, cx.as_scu, cx.as_scp) for cx in results] == [
        DEFAULT,
        REVERSED,
        REVERSED,
        DEFAULT,
    ]
    assert replies == [  # sorted by UID: CT is ...1.1.2, MR ...1.1.4
        ScpScuRoleSelectionSubItem(sop_class_uid=CTImageStorage, scu_role=F, scp_role=T),
        ScpScuRoleSelectionSubItem(sop_class_uid=MRImageStorage, scu_role=T, scp_role=F),
    ]
    assert [r.sop_class_uid for r in replies] == sorted(r.sop_class_uid for r in replies)


def test_no_role_reply_for_a_rejected_context() -> None:
    requested = [context(1, CTImageStorage, [JPEGBaseline8Bit])]
    supported = [context(None, CTImageStorage, [IMPLICIT], T, T)]
    results, replies = negotiate_as_acceptor(requested, supported, {CTImageStorage: (T, T)})
    assert results[0].result == 4
    assert replies == []


# --- negotiation as requestor -------------------------------------------------


def answer(context_id: int, result: int, transfer_syntax: str | None) -> PresentationContextACItem:
    return PresentationContextACItem(
        context_id=context_id, result=result, transfer_syntax=transfer_syntax
    )


def test_requestor_matches_answers_by_id() -> None:
    requested = [
        context(1, Verification, [IMPLICIT, EXPLICIT]),
        context(3, CTImageStorage, [IMPLICIT]),
        context(5, MRImageStorage, [EXPLICIT]),
    ]
    accepted = [answer(5, 3, None), answer(1, 0, EXPLICIT), answer(3, 4, IMPLICIT)]
    results = negotiate_as_requestor(requested, accepted)
    assert [(cx.context_id, cx.abstract_syntax, cx.result) for cx in results] == [
        (1, Verification, 0),
        (3, CTImageStorage, 4),
        (5, MRImageStorage, 3),
    ]
    assert results[0].transfer_syntax == [EXPLICIT]
    assert (results[0].as_scu, results[0].as_scp) == (T, F)  # default: we are SCU
    assert all((cx.as_scu, cx.as_scp) == (F, F) for cx in results[1:])
    assert results[0].as_tuple == (1, Verification, EXPLICIT)


def test_requestor_accepts_contexts_as_answers() -> None:
    requested = [context(1, Verification, [IMPLICIT, EXPLICIT])]
    answers, _ = negotiate_as_acceptor(requested, [build_context(Verification)])
    results = negotiate_as_requestor(requested, answers)
    assert [(cx.result, cx.transfer_syntax, cx.as_scu, cx.as_scp) for cx in results] == [
        (0, [IMPLICIT], T, F)
    ]


def test_requestor_unanswered_context_is_rejected() -> None:
    requested = [context(1, Verification, [IMPLICIT]), context(3, CTImageStorage, [IMPLICIT])]
    results = negotiate_as_requestor(requested, [answer(1, 0, IMPLICIT)])
    assert [(cx.context_id, cx.result) for cx in results] == [(1, 0), (3, 2)]
    theirs = pynetdicom_presentation.negotiate_as_requestor(
        [to_pynetdicom(cx) for cx in requested],
        [to_pynetdicom(accepted_context(1, Verification, IMPLICIT))],
    )
    assert [(cx.context_id, cx.result) for cx in theirs] == [(1, 0), (3, 2)]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ([answer(3, 0, IMPLICIT)], "not proposed"),
        ([answer(1, 0, IMPLICIT), answer(1, 0, IMPLICIT)], "answered twice"),
        ([answer(1, 0, EXPLICIT)], "did not propose"),
        ([answer(1, 0, JPEGBaseline8Bit)], "did not propose"),
    ],
)
def test_requestor_rejects_bad_answers(
    answers: list[PresentationContextACItem], message: str
) -> None:
    requested = [context(1, Verification, [IMPLICIT])]
    with pytest.raises(RemoteProtocolError, match=message):
        negotiate_as_requestor(requested, answers)


def test_requestor_rejects_bad_context_answers() -> None:
    requested = [context(1, Verification, [IMPLICIT])]
    unknown = context(1, Verification, [IMPLICIT])
    unknown.result = 5
    with pytest.raises(RemoteProtocolError, match="unknown result"):
        negotiate_as_requestor(requested, [unknown])
    pending = context(1, Verification, [IMPLICIT])
    with pytest.raises(RemoteProtocolError, match="unknown result"):
        negotiate_as_requestor(requested, [pending])
    no_syntax = context(1, Verification, [])
    no_syntax.result = 0
    with pytest.raises(RemoteProtocolError, match="did not propose"):
        negotiate_as_requestor(requested, [no_syntax])


def test_requestor_ignores_rejected_contexts_transfer_syntax() -> None:
    # PS3.8 9.3.3.2: not significant, not tested; DCMTK sends it empty.
    requested = [context(1, Verification, [IMPLICIT])]
    results = negotiate_as_requestor(requested, [answer(1, 1, JPEGBaseline8Bit)])
    assert results[0].result == 1
    assert results[0].transfer_syntax == [IMPLICIT]


def test_requestor_own_mistakes_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        negotiate_as_requestor([build_context(Verification)], [])
    twice = [context(1, Verification, [IMPLICIT]), context(1, CTImageStorage, [IMPLICIT])]
    with pytest.raises(LocalProtocolError):
        negotiate_as_requestor(twice, [])
    with pytest.raises(LocalProtocolError):
        negotiate_as_requestor([context(1, Verification, [])], [])


# PS3.7 Table D.3.3.4-1 from our side as requestor: (we proposed, they
# returned) -> our (as_scu, as_scp). A returned 1 for a role we did not
# propose is ignored ("The Association-requestor shall ignore the response").
REQUESTOR_ROLE_TABLE = {
    ((T, T), (T, T)): (T, T),
    ((T, T), (T, F)): (T, F),
    ((T, T), (F, T)): (F, T),
    ((T, T), (F, F)): (F, F),
    ((T, F), (T, T)): (T, F),
    ((T, F), (T, F)): (T, F),
    ((T, F), (F, T)): (F, F),
    ((T, F), (F, F)): (F, F),
    ((F, T), (T, T)): (F, T),
    ((F, T), (T, F)): (F, F),
    ((F, T), (F, T)): (F, T),
    ((F, T), (F, F)): (F, F),
    ((F, F), (T, T)): (F, F),
    ((F, F), (T, F)): (F, F),
    ((F, F), (F, T)): (F, F),
    ((F, F), (F, F)): (F, F),
}


def accepted_context(context_id: int, abstract_syntax: str, syntax: str) -> PresentationContext:
    cx = context(context_id, abstract_syntax, [syntax])
    cx.result = 0
    return cx


def settle_roles_both_ways(
    proposed: tuple[bool, bool] | None, returned: tuple[bool, bool] | None
) -> tuple[bool | None, bool | None]:
    """Settle one accepted CT context with ours (both ways of proposing) and pynetdicom's."""
    proposals = {} if proposed is None else {CTImageStorage: proposed}
    replies = {} if returned is None else {CTImageStorage: returned}
    scu, scp = proposed or (None, None)
    plain = [context(1, CTImageStorage, [IMPLICIT, EXPLICIT])]
    with_fields = [context(1, CTImageStorage, [IMPLICIT, EXPLICIT], scu, scp)]
    accepted = [answer(1, 0, EXPLICIT)]
    via_mapping = negotiate_as_requestor(plain, accepted, proposals, replies)
    via_fields = negotiate_as_requestor(with_fields, accepted, roles_returned=replies)
    # pynetdicom reads our proposal from the requested context's fields.
    theirs = pynetdicom_presentation.negotiate_as_requestor(
        [to_pynetdicom(with_fields[0])],
        [to_pynetdicom(accepted_context(1, CTImageStorage, EXPLICIT))],
        {UID(k): v for k, v in replies.items()},
    )
    assert outcome(via_mapping) == outcome(via_fields) == outcome(theirs)
    return via_mapping[0].as_scu, via_mapping[0].as_scp


@pytest.mark.parametrize(("proposed", "returned"), list(REQUESTOR_ROLE_TABLE))
def test_requestor_role_table(proposed: tuple[bool, bool], returned: tuple[bool, bool]) -> None:
    assert settle_roles_both_ways(proposed, returned) == REQUESTOR_ROLE_TABLE[proposed, returned]


@pytest.mark.parametrize("proposed", [None, *BOOL_PAIRS])
def test_requestor_without_reply_is_scu(proposed: tuple[bool, bool] | None) -> None:
    # PS3.7 D.3.3.4: no role item returned: the requestor is SCU, the acceptor SCP.
    assert settle_roles_both_ways(proposed, None) == (T, F)


@pytest.mark.parametrize("returned", BOOL_PAIRS)
def test_requestor_ignores_a_reply_it_did_not_ask_for(returned: tuple[bool, bool]) -> None:
    assert settle_roles_both_ways(None, returned) == (T, F)


def test_requestor_roles_proposed_override_context_fields() -> None:
    requested = [context(1, CTImageStorage, [IMPLICIT], scu_role=T, scp_role=F)]
    results = negotiate_as_requestor(
        requested, [answer(1, 0, IMPLICIT)], {CTImageStorage: (F, T)}, {CTImageStorage: (F, T)}
    )
    assert (results[0].as_scu, results[0].as_scp) == (F, T)


# --- properties ----------------------------------------------------------------

ABSTRACT_POOL = [
    Verification,
    CTImageStorage,
    MRImageStorage,
    sop_class.PatientRootQueryRetrieveInformationModelFind,
    sop_class.StudyRootQueryRetrieveInformationModelGet,
    sop_class.StorageCommitmentPushModel,
]
TS_POOL = [*DEFAULT_TRANSFER_SYNTAXES, JPEGBaseline8Bit, RLELossless]
role_pairs = st.tuples(st.booleans(), st.booleans())
optional_roles = st.one_of(st.none(), st.booleans())


@st.composite
def requested_contexts(draw: st.DrawFn, unique_abstract: bool = False) -> list[PresentationContext]:
    count = draw(st.integers(0, len(ABSTRACT_POOL) if unique_abstract else 10))
    abstracts = draw(
        st.lists(
            st.sampled_from(ABSTRACT_POOL), min_size=count, max_size=count, unique=unique_abstract
        )
    )
    ids = draw(st.lists(st.integers(0, 127), min_size=count, max_size=count, unique=True))
    return [
        context(
            2 * n + 1,
            abstract,
            draw(st.lists(st.sampled_from(TS_POOL), min_size=1, max_size=4, unique=True)),
        )
        for n, abstract in zip(ids, abstracts, strict=True)
    ]


@st.composite
def supported_contexts(draw: st.DrawFn) -> list[PresentationContext]:
    abstracts = draw(st.lists(st.sampled_from(ABSTRACT_POOL), unique=True))
    return [
        context(
            None,
            abstract,
            draw(st.lists(st.sampled_from(TS_POOL), max_size=4, unique=True)),
            draw(optional_roles),
            draw(optional_roles),
        )
        for abstract in abstracts
    ]


proposed_roles = st.dictionaries(st.sampled_from(ABSTRACT_POOL), role_pairs)


@settings(max_examples=300, deadline=None)
@given(requested_contexts(), supported_contexts(), proposed_roles)
def test_every_proposal_gets_exactly_one_answer(
    requested: list[PresentationContext], supported: list[PresentationContext], roles: Roles
) -> None:
    results, replies = negotiate_as_acceptor(requested, supported, roles)
    assert [cx.context_id for cx in results] == sorted(cx.context_id for cx in requested)  # type: ignore[type-var]
    ours = {cx.abstract_syntax: cx for cx in supported}
    by_id = {cx.context_id: cx for cx in requested}
    for result in results:
        rq = by_id[result.context_id]
        assert result.abstract_syntax == rq.abstract_syntax
        assert len(result.transfer_syntax) == 1
        if rq.abstract_syntax not in ours:
            assert result.result == 3
            continue
        common = [ts for ts in rq.transfer_syntax if ts in ours[rq.abstract_syntax].transfer_syntax]
        if not common:
            assert result.result == 4
            continue
        assert result.result in (0, 1)
        if result.result == 0:
            assert result.transfer_syntax == [common[0]]  # both listed it; requestor's first
            assert result.as_scu or result.as_scp
    for reply in replies:
        asked = roles[reply.sop_class_uid]
        assert (reply.scu_role <= asked[0]) and (reply.scp_role <= asked[1])  # never unasked
        assert any(r.result == 0 and r.abstract_syntax == reply.sop_class_uid for r in results)


@settings(max_examples=300, deadline=None)
@given(requested_contexts(unique_abstract=True), supported_contexts(), proposed_roles)
def test_acceptor_agrees_with_pynetdicom(
    requested: list[PresentationContext], supported: list[PresentationContext], roles: Roles
) -> None:
    results, replies = negotiate_as_acceptor(requested, supported, roles)
    their_results, their_replies = pynetdicom_acceptor(requested, supported, roles)
    assert outcome(results) == outcome(their_results)
    assert role_rows(replies) == role_rows(their_replies)


@settings(max_examples=300, deadline=None)
@given(requested_contexts(), supported_contexts(), proposed_roles)
def test_requestor_and_acceptor_agree_on_roles(
    requested: list[PresentationContext], supported: list[PresentationContext], roles: Roles
) -> None:
    answers, replies = negotiate_as_acceptor(requested, supported, roles)
    returned = {r.sop_class_uid: (r.scu_role, r.scp_role) for r in replies}
    items = [answer(cx.context_id or 0, cx.result or 0, cx.transfer_syntax[0]) for cx in answers]
    settled = negotiate_as_requestor(requested, items, roles, returned)
    assert outcome(settled) == outcome(negotiate_as_requestor(requested, answers, roles, returned))
    for ours, theirs in zip(settled, answers, strict=True):
        assert (ours.context_id, ours.result) == (theirs.context_id, theirs.result)
        if ours.result == 0:
            assert ours.transfer_syntax == theirs.transfer_syntax
            # Each side's SCU role is the other's SCP role.
            assert (ours.as_scu, ours.as_scp) == (theirs.as_scp, theirs.as_scu)
