"""How long a batch waits for more events: long enough while they stream in, not at all
after a quiet spell.

Every batch on the bus pays a fixed cost whatever it holds: the edge and its
publisher child exchange it, a Redis round trip, Redis's fsync of its append-only
file (``appendfsync always``), the wake-ups of the processes involved; a worker's
fetch pays a ``BRPOP`` and a script call. In a steady stream of a few hundred
events a second, a fixed wait of a few milliseconds leaves batches of two to four
events, and those fixed costs dominate (docs/performance.md). A longer fixed wait
would delay a lone event as much.

:class:`AdaptiveLinger` sizes the wait from what it sees:

- after a quiet spell (the first event came after at least as long with nothing
  to do as it would wait: events come slower than one per wait, so waiting would
  gather none) it does not wait: a lone event goes at once, the first ever too;
- in a stream it waits as long as ``target`` events take to arrive at the rate
  measured over the last cycle (events taken / time between two takes), at most
  ``most`` seconds: a fast stream fills its batches without waiting long, a slow
  one waits the bound, and no event waits longer than ``most`` for its batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AdaptiveLinger:
    """The wait for more events after a batch's first (see the module docstring)."""

    def __init__(
        self, most: float, target: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if most < 0 or target < 1:
            raise ValueError(
                f"a linger needs most >= 0 and target >= 1 (got most={most}, target={target})"
            )
        self.most = most
        self.target = target
        self._clock = clock
        self._wait = 0.0  # nothing seen yet: the first batch goes at once
        self._last_take: float | None = None  # clock() of the last batch taken

    def wait(self, idle: float) -> float:
        """Seconds to wait for more once a batch's first event is in hand; ``idle``: how long
        nothing was there before it (0 when it was already waiting)."""
        return 0.0 if idle >= self._wait else self._wait

    def taken(self, events: int) -> None:
        """A batch of ``events`` was taken now: the rate since the last take sizes the
        next wait."""
        now = self._clock()
        last, self._last_take = self._last_take, now
        if last is None or events < 1:
            return
        cycle = max(now - last, 1e-6)
        self._wait = min(self.most, self.target * cycle / events)
