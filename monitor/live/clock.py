"""The per-partition hybrid clock: the ``now`` the live worker hands to the engine.

Who calls what: the worker's agent calls :meth:`PartitionClocks.observe` with every valid
event's ``occurred_at`` and :meth:`PartitionClocks.now` before applying it; the worker's timer
calls :meth:`PartitionClocks.now` for each assigned partition with whether that partition is
caught up (its consumer lag is zero), and :meth:`forget` when partitions are revoked.

"Partition" means one partition of one input topic (the worker keys clocks by topic and
partition). Chat and ticket events of the same partition number arrive in fetch batches, not
in time order between the two topics: a ticket batch can run hours ahead of the chat batch
beside it. One clock for both would let the tickets' event time fire chat timers early (a
false breach, retracted later, and a warning that never is). Every subject lives in exactly
one topic, so each topic's partition is judged by its own progress only.

The rule, per partition:

* **caught up** (nothing left to read, or only records of the last ``grace`` seconds: the
  newest ``occurred_at`` read is within ``grace`` of the wall clock): wall-clock time. With no
  traffic at all the clock still moves, so a customer left without an answer is a breach on
  time. A busy partition always has a few records in flight; counting those as lag stalled
  its timers (breaches detected a second or more late under steady traffic), while the time
  of what was just read tells a live stream from a backlog;
* **behind** (a backlog after an outage, or lag of older records): event time, the newest
  ``occurred_at`` seen minus ``grace``. Timers then fire only as far as the events read so far
  prove time has passed, so a response still waiting in the backlog is never reported as
  missing (no false breach), and every deadline the backlog passes does fire (no missed
  breach);
* caught up means caught up **as of the last fetch response** (``heard``): the broker's high
  watermark was read then, so that instant is all the wall clock can vouch for. A partition
  whose broker has gone silent (a network cut) keeps the time of its last response, whatever
  the lag looks like: the stale high watermark says "nothing left" while answers wait on the
  far side of the cut. Seen once in four CI runs before this rule
  (``test_cut_longer_than_session_timeout[kafka-drop]``): the wall clock fired a deadline 1.7 s
  into a cut and the answer, sent before that deadline, came out after the breach, as a
  retraction. A quiet partition hears from its broker every ``fetch_max_wait`` (an empty
  long-poll response), which bounds the delay this adds to detection;
* the clock **never moves backwards**: a partition that falls behind keeps its last wall value
  until event time overtakes it, so a deadline that fired stays fired.

Event time also counts when caught up (the clock is the larger of the two): an upstream whose
timestamps run slightly ahead of this host, or the demo's fast-forwarded time, then still
drives the timers, and the grace keeps slightly out-of-order events from tripping them.
The engine itself never reads a clock; only this module (through ``wall``) does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from monitor.timeutil import Micros

K = TypeVar("K", bound=Hashable)


def wall_clock() -> Micros:
    """The host's wall clock in microseconds since the epoch (the production ``wall``)."""
    return Micros(time.time_ns() // 1000)


class ClockMode(StrEnum):
    """Which rule a partition's last :meth:`PartitionClocks.now` followed (the ``mode`` label
    of ``sla_clock_mode``: a str, as :meth:`monitor.metrics.SlaMetrics.set_clock_mode` takes)."""

    WALL = "wall"  # caught up: the wall clock (or event time, when ahead of it)
    EVENT = "event"  # behind: event time, the newest occurred_at less the grace


@dataclass(slots=True)
class LaneClock:
    """One partition's clock. ``None`` is "nothing proven yet": no event read
    (``event_time``), or no instant handed out (``now``)."""

    event_time: int | None = None  # the newest occurred_at seen
    now: int | None = None  # the last value handed out; never moves backwards
    mode: ClockMode = ClockMode.EVENT


class PartitionClocks(Generic[K]):
    """One monotonic hybrid clock per partition (any hashable key: the worker uses TPs)."""

    def __init__(self, grace: Micros, wall: Callable[[], Micros] = wall_clock) -> None:
        self.grace = grace
        self.wall = wall
        self._lanes: dict[K, LaneClock] = {}

    def _lane(self, partition: K) -> LaneClock:
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = LaneClock()
        return lane

    def observe(self, partition: K, occurred_at: int) -> None:
        """Records an event's time (called for every valid event, in stream order)."""
        lane = self._lane(partition)
        if lane.event_time is None or occurred_at > lane.event_time:
            lane.event_time = occurred_at

    def now(self, partition: K, *, caught_up: bool, heard: int | None = None) -> Micros | None:
        """The partition's current instant (never less than the last one returned).
        ``caught_up``: its consumer lag is zero (see the module doc for lag of live records).
        ``heard``: when its broker last answered a fetch for it; caught-up time runs no further
        (None: no such record, as on the in-memory transport; the wall clock then).

        None while nothing proves time has moved (behind, and no event read yet: a fresh
        restart); the caller skips its timers then."""
        lane = self._lane(partition)
        event_time, value = lane.event_time, lane.now
        wall = self.wall()
        if event_time is not None:
            if not caught_up and event_time >= wall - self.grace:
                caught_up = True  # only live records in flight: not a backlog
            proved = event_time - self.grace
            if value is None or proved > value:
                value = proved
        if caught_up:
            vouched = wall if heard is None else min(wall, heard)
            if value is None or vouched > value:
                value = vouched
        lane.mode = ClockMode.WALL if caught_up else ClockMode.EVENT
        if value is None:
            return None
        lane.now = value
        return Micros(value)

    def peek(self, partition: K) -> Micros | None:
        """The last value :meth:`now` returned for ``partition`` (None: nothing yet)."""
        lane = self._lanes.get(partition)
        return None if lane is None or lane.now is None else Micros(lane.now)

    def mode(self, partition: K) -> ClockMode:
        """Which rule the last :meth:`now` followed (EVENT before any)."""
        lane = self._lanes.get(partition)
        return ClockMode.EVENT if lane is None else lane.mode

    def forget(self, partitions: Iterable[K]) -> None:
        """Drops revoked partitions: a new owner starts from its own reading of them."""
        for p in partitions:
            self._lanes.pop(p, None)

    def partitions(self) -> set[K]:
        return set(self._lanes)
