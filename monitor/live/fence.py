"""The stall fence: a worker whose event loop stood still long enough to have lost its place in
the consumer group stops writing until the group has rebalanced.

Who calls what: :class:`monitor.live.app.SlaWorker` owns one :class:`StallFence`. A watchdog
task of its agent calls :meth:`StallFence.beat` every :data:`BEAT` seconds; the batch pipeline
(before it stores a batch's records) and the tick (before it fires timers) call
:meth:`StallFence.check` with the loop's time, and the worker fences itself when it returns a
stall; :meth:`StallFence.lift` is called when a rebalance of the current generation completes,
after the worker's deadline-index rebuild (a long synchronous step that must not count as a
stall: the consumer's thread heartbeats meanwhile). Times are the event loop's monotonic
seconds, passed in: tests drive it with numbers.

Why (issue 10, ``tests/live/test_faults_rebalance.py``, the zombie): a worker frozen past the
session timeout (SIGSTOP here; a VM pause or a stop-the-world stall in production) is evicted,
and another worker takes its partitions over and goes on from the committed offsets. Thawed,
the zombie runs what was due in its loop before it hears that it was evicted: its tick fired
timers from its stale deadline index and its agent handled them with its stale records. Seen
on Kafka 4.1.1: a session the new owner had seen answered got a ``warning`` and a ``breach``
replay never emits. Its batches in flight would likewise store old records over the new
owner's in the changelog. Faust learns of the eviction only from a heartbeat or commit reply,
a round trip after the thaw, and its revocation waits for those batches to finish first.

A loop that did not turn for half the session timeout (heartbeats go every third of it, from
the consumer's own thread, which a process freeze stops too) may have been evicted; the
worker cannot tell yet, so it acts as if it had been: it drops its batches in flight (no
record stored, no input acknowledged), handles nothing and fires nothing, and asks the group
to rebalance. After any rebalance Faust seeks to the committed offsets, so the dropped input is
read again, by this worker or by the new owner (at-least-once, as after a revocation). A false
alarm costs one rebalance. Records it had already handed to its producer before the freeze
are withdrawn before the producer's sender can send them (:mod:`monitor.live.send_gate`: the
sender checks for a stall before each drain); only a request already on the wire at the freeze
still reaches the broker, and it arrives before the session timeout ends, so before the new
owner writes.

Transitions::

    open --check(): stalled past the limit while owning partitions--> fenced
    fenced --lift(): a rebalance of the current generation completed--> open
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds between two watchdog turns: small against any session timeout (6 s in the tests).
BEAT = 0.25


@dataclass
class StallFence:
    """Whether the worker may write, by how long its event loop last stood still.

    ``limit``: seconds of stall that fence (half the consumer-group session timeout)."""

    limit: float
    last_beat: float | None = None  # loop time of the watchdog's last turn (None: not started)
    fenced: bool = False

    def beat(self, now: float) -> float | None:
        """Records a watchdog turn at ``now``; returns the seconds since the previous turn when
        that stall was longer than the limit, else None.

        Caller: the worker's watchdog task. Affects: ``last_beat``."""
        stalled = self._stalled(now)
        self.last_beat = now
        return stalled

    def check(self, now: float) -> float | None:
        """The seconds the loop stood still up to ``now`` when that is past the limit (the
        watchdog has not turned since), else None. Does not fence by itself.

        Caller: the worker, before storing a batch and before firing timers."""
        return self._stalled(now)

    def close(self) -> bool:
        """Fences; returns False when it already was (one fence per stall).

        Caller: the worker, on a stall :meth:`check` or :meth:`beat` reported while it owned
        partitions. Affects: ``fenced``."""
        if self.fenced:
            return False
        self.fenced = True
        return True

    def lift(self, now: float) -> None:
        """Opens again and restarts the count at ``now``: a rebalance of the current generation
        has completed, so the worker's partitions and records are the group's and the
        changelog's again.

        Caller: the worker's rebalance-complete handler. Affects: ``fenced``, ``last_beat``."""
        self.fenced = False
        self.last_beat = now

    def _stalled(self, now: float) -> float | None:
        if self.last_beat is None:
            return None
        gap = now - self.last_beat
        return gap if gap > self.limit else None
