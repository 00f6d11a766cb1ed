"""The stall fence (monitor.live.fence) driven by numbers, as the worker drives it with the
event loop's time: a watchdog turn every BEAT seconds, checks before storing and firing."""

from __future__ import annotations

from monitor.live.fence import BEAT, StallFence


def test_turns_on_time_never_fence() -> None:
    fence = StallFence(limit=3.0)
    assert fence.check(100.0) is None  # not started: nothing proves a stall
    now = 100.0
    for _ in range(100):
        assert fence.beat(now) is None
        assert fence.check(now + BEAT) is None
        now += BEAT
    assert not fence.fenced


def test_a_stall_past_the_limit_is_reported_by_the_first_to_look() -> None:
    fence = StallFence(limit=3.0)
    fence.beat(10.0)
    assert fence.check(12.9) is None  # under the limit: a slow turn, not a stall
    # Thawed at 19.2: the batch step looks before the watchdog turns...
    assert fence.check(19.2) == 9.2
    assert fence.close()
    assert not fence.close()  # one fence per stall
    # ...and the watchdog's own late turn reports the same stall (the worker ignores it: fenced).
    assert fence.beat(19.3) == 9.3
    assert fence.check(19.4) is None  # the count restarted at the turn
    assert fence.fenced  # until a rebalance completes


def test_lift_opens_and_restarts_the_count() -> None:
    fence = StallFence(limit=3.0)
    fence.beat(0.0)
    fence.close()
    fence.lift(50.0)  # after the rebuild: its own long step does not count as a stall
    assert not fence.fenced
    assert fence.check(52.0) is None
    assert fence.check(53.5) == 3.5
