"""AE titles: checking one we are given, comparing two, and which one is ours.

The A-ASSOCIATE PDUs pad a title to 16 bytes and strip it again
(:mod:`dicombus.protocol.pdus`); everything above them handles titles as
stripped ``str`` values, checked here once when configured.
"""

from __future__ import annotations

from typing import Any, Protocol

from dicombus.protocol.limits import AE_TITLE_LENGTH


class _Titled(Protocol):
    @property
    def ae_title(self) -> str: ...


def checked_ae_title(value: Any) -> str:
    """``value`` as an AE title, stripped; ValueError (TypeError for a non-str) naming it.

    PS3.5 6.2 AE: 1-16 characters of the default repertoire (printable ASCII), no
    backslash, not all spaces; the A-ASSOCIATE PDUs accept nothing else.
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise TypeError(f"an AE title is a str, not {type(value).__name__}")
    title = value.strip(" ")  # PS3.5 6.2: only spaces are insignificant, not controls
    if (
        not title
        or len(title) > AE_TITLE_LENGTH
        or "\\" in title
        or any(not " " <= c <= "~" for c in title)
    ):
        raise ValueError(
            f"invalid AE title {value!r}: 1 to {AE_TITLE_LENGTH} printable ASCII characters, "
            "no backslash"
        )
    return title


def same_ae_title(first: str, second: str) -> bool:
    """Whether two titles name the same AE (PS3.5 6.2: leading and trailing spaces
    are not significant)."""
    return first.strip(" ") == second.strip(" ")


def our_ae_title(ae: _Titled, server: _Titled | None) -> str:
    """Our own title on an association: the title its server was started with
    (``start_server(ae_title=...)``), else the AE's."""
    return server.ae_title if server is not None else ae.ae_title
