"""The adaptive linger (dicombus.bus.linger) of the publisher thread and the workers' fetch:
no wait after a quiet spell, a wait sized by the stream's rate in a stream, never more than
its bound. The clock is a counter the test advances: the policy is arithmetic on the times
it is given, and a real clock would make the figures depend on the machine's load."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicombus.bus.linger import AdaptiveLinger
from dicombus.bus.redis_server import EmbeddedRedis
from publisher_support import STORE, pending, running_publisher, subscription, wait_published


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_wait_for_the_first_batch_nor_after_a_quiet_spell() -> None:
    clock = Clock()
    linger = AdaptiveLinger(0.025, 64, clock)
    assert linger.wait(idle=0.0) == 0.0
    linger.taken(1)
    clock.now += 0.010
    linger.taken(2)
    assert linger.wait(idle=0.001) == 0.025
    # Nothing for as long as it would wait: events come slower than it could gather them.
    assert linger.wait(idle=0.025) == 0.0
    assert linger.wait(idle=5.0) == 0.0


def test_in_a_stream_the_wait_follows_the_rate_within_its_bound() -> None:
    clock = Clock()
    linger = AdaptiveLinger(0.025, 64, clock)
    linger.taken(1)
    # A slow stream (4 events in 20 ms: 200 events/s) waits the bound.
    clock.now += 0.020
    linger.taken(4)
    assert linger.wait(idle=0.0) == 0.025
    # A fast one (64 events in 8 ms) waits as long as 64 events take: 8 ms.
    clock.now += 0.008
    linger.taken(64)
    assert linger.wait(idle=0.001) == pytest.approx(0.008)


def test_a_linger_of_zero_never_waits() -> None:
    linger = AdaptiveLinger(0.0, 64, Clock())
    assert linger.wait(idle=0.0) == 0.0


@pytest.mark.parametrize(("most", "target"), [(-0.1, 64), (0.01, 0)])
def test_a_linger_names_what_is_wrong(most: float, target: int) -> None:
    with pytest.raises(ValueError, match="most >= 0 and target >= 1"):
        AdaptiveLinger(most, target)


def test_a_lone_event_on_an_idle_publisher_is_not_held_for_the_linger(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """With a linger far longer than the wait below, an event submitted to an idle
    publisher reaches Redis without it (a fixed linger held every batch's first event)."""
    linger = 60.0
    with running_publisher(
        redis_server.url,
        tmp_path,
        [subscription("tests.audit", "audit", STORE)],
        batch_linger=linger,
    ) as publisher:
        publisher.submit(pending(STORE))
        wait_published(publisher, 1, timeout=linger / 4)
