"""Hypothesis strategies for items that test_items.py and test_pdus.py both generate.

Each file draws UIDs its own way (any printable text for the items' own round
trips, DICOM-shaped UIDs inside PDUs), so the strategies take the UID strategy.
"""

from __future__ import annotations

from typing import Any

from dicombus.protocol.items import PresentationContextACItem, PresentationContextRQItem
from hypothesis import strategies as st

# PS3.8 9.3.2.2: presentation context IDs are odd, 1-255.
context_ids = st.integers(0, 127).map(lambda n: 2 * n + 1)


def rq_context_items(
    uids: st.SearchStrategy[str], *, max_syntaxes: int
) -> st.SearchStrategy[PresentationContextRQItem]:
    """A proposed presentation context with 1 to ``max_syntaxes`` transfer syntaxes."""
    return st.builds(
        PresentationContextRQItem,
        context_id=context_ids,
        abstract_syntax=uids,
        transfer_syntaxes=st.lists(uids, min_size=1, max_size=max_syntaxes).map(tuple),
    )


def ac_context_items(uids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """An answered presentation context: accepted with a syntax, or rejected (1-4)
    with or without one."""
    return st.one_of(
        st.builds(
            PresentationContextACItem,
            context_id=context_ids,
            result=st.just(0),
            transfer_syntax=uids,
        ),
        st.builds(
            PresentationContextACItem,
            context_id=context_ids,
            result=st.integers(1, 4),
            transfer_syntax=st.none() | uids,
        ),
    )
