"""A one-line progress bar for terminals: files done, megabytes, rate."""

from __future__ import annotations

import time
from typing import TextIO

# Redrawing more often than this costs more than it tells a person.
_REDRAW_INTERVAL = 0.1
_BAR_WIDTH = 24
_CLEAR_LINE = "\r\x1b[K"


def megabytes(size: int) -> float:
    return size / 1_000_000


def rate(size: int, seconds: float) -> float:
    """Megabytes per second; 0 before any time has passed."""
    return megabytes(size) / seconds if seconds > 0 else 0.0


class Progress:
    """Draws ``[#####.....] 12/40 files  3.2 MB  1.5 MB/s`` on ``stream`` when enabled.

    Disabled (stream not a terminal), it draws nothing; :meth:`note` still
    prints, so messages look the same either way.
    """

    def __init__(self, total: int, stream: TextIO, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.size = 0
        self._stream = stream
        self._enabled = enabled
        self._started = time.monotonic()
        self._drawn_at: float | None = None

    def advance(self, size: int) -> None:
        """One more file is done; ``size`` bytes of it reached the peer."""
        self.done += 1
        self.size += size
        now = time.monotonic()
        last = self._drawn_at
        if last is None or now - last >= _REDRAW_INTERVAL or self.done == self.total:
            self._draw(now)

    def note(self, message: str) -> None:
        """Print ``message`` on a line of its own, above the bar."""
        if self._drawn_at is not None:
            self._stream.write(_CLEAR_LINE)
        self._stream.write(message + "\n")
        if self._drawn_at is not None:
            self._draw(time.monotonic())
        self._stream.flush()

    def close(self) -> None:
        """Leave the last state of the bar on its own line."""
        if self._drawn_at is not None:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn_at = None

    def render(self, now: float) -> str:
        filled = _BAR_WIDTH * self.done // self.total if self.total else _BAR_WIDTH
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        return (
            f"[{bar}] {self.done}/{self.total} files  {megabytes(self.size):.1f} MB  "
            f"{rate(self.size, now - self._started):.1f} MB/s"
        )

    def _draw(self, now: float) -> None:
        if not self._enabled:
            return
        self._stream.write(_CLEAR_LINE + self.render(now))
        self._stream.flush()
        self._drawn_at = now
