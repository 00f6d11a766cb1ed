"""Per input partition ("lane") state of the live worker.

Who calls what: :class:`monitor.live.app.SlaWorker` keeps one :class:`Lane` per input
topic-partition it owns (``chat.sessions`` and ``tickets`` partitions are separate lanes: each
has its own clock, see :mod:`monitor.live.clock`). It creates them when a rebalance completes
(``_on_rebalance_complete``), drops them when their partition is revoked, and updates them as
records are handled (``processed``), on every tick (``caught_up``, ``heard``) and on every
retention sweep (``expired``, ``swept_to``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.engine import DeadlineIndex


@dataclass
class Lane:
    """What the worker knows about one input partition it owns."""

    #: Keys of this lane's subjects by their next deadline; rebuilt from the table after
    #: every rebalance (the table is the truth), updated as records are stored.
    index: DeadlineIndex = field(default_factory=DeadlineIndex)
    #: Lag 0 at the last tick: the lane's clock is the wall clock (else event time).
    caught_up: bool = False
    #: When the broker last answered a fetch for this partition at the last tick (µs since
    #: the epoch; None: not known): caught-up time runs no further (monitor.live.clock).
    heard: int | None = None
    #: Offset of the last input record handled, for the hole detector; None before the first.
    processed: int | None = None
    #: Keys the last retention sweep found expired, to be deleted once the input up to
    #: ``swept_to`` (the partition's end at that sweep) is committed (``SlaWorker._sweep``).
    expired: set[bytes] = field(default_factory=set)
    swept_to: int | None = None
