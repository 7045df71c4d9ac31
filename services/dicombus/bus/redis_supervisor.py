"""RedisSupervisor: start the embedded Redis again when it dies, without a restart loop.

``dicombus up`` and ``dicombus edge`` call :meth:`RedisSupervisor.check` from
their main loop (the main thread: the server's parent-death signal is tied to
the thread that started it, see :mod:`dicombus.lifeline`). While Redis is
away the edge keeps answering and its publisher keeps events in the outbox;
once Redis is back the publisher replays them by itself.

The first death is answered at once, on the same port with the same data
(the append-only file). A server that dies again within
:data:`QUICK_DEATH` seconds of its start -- its disk is full, its AOF damaged
-- or that cannot start at all -- its port taken, no memory to fork -- is
tried again after a delay that doubles from :data:`RETRY_FIRST` up to
:data:`RETRY_CAP`: no tight loop, and no log line every second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dicombus.bus.redis_server import EmbeddedRedis, EmbeddedRedisError

QUICK_DEATH = 5.0
RETRY_FIRST = 1.0
RETRY_CAP = 30.0


class RedisSupervisor:
    """Watches one :class:`EmbeddedRedis`; ``report`` receives a line per event."""

    def __init__(
        self,
        server: EmbeddedRedis,
        report: Callable[[str], None],
        *,
        retry_cap: float = RETRY_CAP,
    ) -> None:
        self.server = server
        self.report = report
        self.retry_cap = retry_cap
        self.down_since: float | None = None
        self.started = time.monotonic()
        self.delay = 0.0
        self.retry_at = 0.0

    def check(self) -> bool:
        """Notice a death, restart when due; True if the server was started again now."""
        now = time.monotonic()
        if self.down_since is None:
            old = self.server.pid
            code = self.server.exited()
            if code is None:
                return False
            self.down_since = now
            self.delay = self._longer_delay() if now - self.started < QUICK_DEATH else 0.0
            self.retry_at = now + self.delay
            when = f"in {self.delay:.0f} s" if self.delay else "now"
            self.report(
                f"embedded Redis (pid {old}) exited with status {code}; starting it again "
                f"{when} on port {self.server.port} with its data in "
                f"{self.server.data_dir.resolve()} (the edge keeps events in its outbox "
                "meanwhile)"
            )
        if now < self.retry_at:
            return False
        try:
            self.server.start()
        except (EmbeddedRedisError, OSError) as exc:
            self.delay = self._longer_delay()
            self.retry_at = time.monotonic() + self.delay
            self.report(
                f"embedded Redis could not start again ({exc}); trying again in {self.delay:.0f} s"
            )
            return False
        self.started = time.monotonic()
        down = self.started - self.down_since
        self.down_since = None
        self.report(
            f"embedded Redis restarted as pid {self.server.pid} on port {self.server.port} "
            f"after {down:.1f} s; the edge replays its outbox"
        )
        return True

    def _longer_delay(self) -> float:
        return min(max(self.delay * 2, RETRY_FIRST), self.retry_cap)
