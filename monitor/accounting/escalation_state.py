"""What contract 002 6.2 remembers for one tenant, as many small records instead of one blob.

Who calls what: :class:`monitor.accounting.escalation.Escalator` reads and changes the records
through :class:`TenantState` while it applies one SLA fact. Replay keeps one in-memory
``TenantState`` per tenant for the whole run (:func:`monitor.replay.iter_with_escalations`).
The live stage (:mod:`monitor.live.escalation_agent`) makes a fresh one per fact, loading
records from its Faust table on demand, and stores only what :meth:`TenantState.writes`
returns.

Why records: the first version kept a tenant's whole state (every open day's ``sla_id`` ->
ratio, every breach of the month) in one table value and rewrote it for every fact. That is
O(facts so far) bytes per fact: at 20k sessions a day (tests/accounting/
test_escalation_state.py), 469 KB written per fact on average, 995 KB at the day's end, 35 ms
per fact; live, breach detection p99 went from 0.3 s to 8.6 s with the stage on. Now a fact
changes at most three records of O(1) size (about 700 bytes in all at 20k a day), and a
fact that closes a day or a month also deletes its buckets:

``<policy> h`` (:class:`PolicyHead`)
    the running figures: per-lane watermarks, the open days (with which of their buckets
    hold something), the ``slow_days`` run, trips per window, per ``breach_count`` window
    the pending breaches (fewer than N) and the latest trip's evidence, the last final day
    and month window, and the closed days and windows whose buckets may still be stored
    (``draining``, see "Crashes").
``<policy> b <day> <bucket>``
    the targets of an open day counted by ``slow_days``: ``sla_id`` -> [ratio, met] (a met
    replaces a breach, a retraction removes one, a repeat changes nothing). 4096 buckets by
    a hash of ``sla_id``: at 20k targets a day about five per bucket.
``<policy> w <window> <bucket>``
    the breaches (``b``) and retractions (``x``) seen in a counting window, so a repeated
    breach counts once and a retraction that arrives first still cancels its breach.

A day's mean is computed when it closes, with ``math.fsum`` over its buckets as before (exact,
so the order facts arrived in does not matter); then its buckets are deleted.

Final windows: a month window's buckets are deleted, and its head entry dropped, once the
*following* month is final by the same rule that closes days (``_final_through`` in
:mod:`monitor.accounting.escalation`: every lane past that month's end plus
``day_closes_after``, within ``partition_patience``; the month of grace keeps a lagging
partition's breaches counted); later facts of it are ``late``, as for a closed day. Kept,
they grew by about 53 bytes per breach for good: 307 KB a day at 20k sessions a day with 5.8k
breaches (``busy_day`` in tests/accounting/test_escalation_state.py), some 9 MB a month per
tenant; now at most two months are kept. The whole-contract window never ends, so its buckets stay.

Crashes: the live stage stores a fact's records one by one, so a SIGKILL can keep a prefix
of them; the fact is then read again (its offset was not committed) and applied to that
state. :meth:`TenantState.writes` puts the drained buckets first, then the head, then the
other buckets, then deletions, and every rule reads a head stored without its buckets as
"this fact was applied": a day's entries are set, not added (a repeat changes nothing), a
breach already pending or in the latest trip's evidence is not counted again, a closed day
or window is closed. No running sum is kept anywhere, because a sum stored before its
bucket would count the fact twice.

A closing fact must store its head before deleting the closed day's (or window's) buckets:
deleted first, a crash in between would leave the day open in the old head with its buckets
gone, and the repeated fact would compute the day's mean from what is left. So the head lists
the closed day in ``draining`` (:class:`Drain`: the day and its groups mask), and the next fact
of that tenant and policy deletes those buckets again (:meth:`TenantState.drain`) *before* its
own head, which it stores with the list cleared. That order is safe because nothing reads a
closed day's or window's buckets; and a crash anywhere leaves at most a list entry that the
next fact drains again (a bucket already gone is not read back as a deletion, so this costs
reads, not writes: 3 ms for the 4096 buckets of a 20k-session day, dict store). Before this, a
SIGKILL between the head and the deletions left those buckets stored for good
(tests/accounting/test_escalation_cleanup.py simulates it at every closing fact). A head
stored without ``draining`` or ``windows_closed_through`` (the layout before them) reads as
having neither.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

BUCKETS = 4096  # hash buckets per day and per window (see the module doc)
GROUP = 64  # buckets per bit of a ``groups`` mask: 64 bits cover BUCKETS


class DayFigure(NamedTuple):
    """One day's evidence for ``slow_days``."""

    day: str  # ISO date, policy time zone
    mean_ratio: float  # mean of elapsed / target
    targets: int  # how many targets the mean is over


def bucket_of(sla_id: str) -> int:
    return zlib.crc32(sla_id.encode()) % BUCKETS


def group_bit(bucket: int) -> int:
    return 1 << (bucket // GROUP)


def buckets_in(groups: int) -> Iterator[int]:
    """Every bucket of the groups set in ``groups``."""
    for g in range(BUCKETS // GROUP):
        if groups >> g & 1:
            yield from range(g * GROUP, (g + 1) * GROUP)


HEAD = "\x1fh"
DAY, WINDOW = "b", "w"  # the record kinds after the policy: a day's or a window's bucket


def head_key(policy: str) -> str:
    return policy + HEAD


def day_bucket_key(policy: str, day: str, bucket: int) -> str:
    return f"{policy}\x1f{DAY}\x1f{day}\x1f{bucket}"


def window_bucket_key(policy: str, window: str, bucket: int) -> str:
    return f"{policy}\x1f{WINDOW}\x1f{window}\x1f{bucket}"


class Drain(NamedTuple):
    """A closed day's or window's buckets that may still be stored (``PolicyHead.draining``)."""

    kind: str  # DAY or WINDOW
    name: str  # the day (ISO date) or the window ("2026-10")
    groups: int  # which of its buckets held something (see buckets_in)


def drain_keys(policy: str, drain: Drain) -> Iterator[str]:
    """The keys of every bucket ``drain`` may have left."""
    key = day_bucket_key if drain.kind == DAY else window_bucket_key
    for bucket in buckets_in(drain.groups):
        yield key(policy, drain.name, bucket)


@dataclass
class WindowHead:
    """``breach_count`` in one counting window: the breaches not yet in a trip, the trips."""

    pending: dict[str, int] = field(default_factory=dict)  # sla_id -> deadline; fewer than N
    trips: int = 0
    groups: int = 0  # which window buckets hold something
    # The latest trip's evidence: after a crash that stored this head but not the breach's
    # bucket, the repeated breach is found here and not counted again (see TenantState).
    last: list[str] = field(default_factory=list)

    def to_obj(self) -> list[Any]:
        return [self.pending, self.trips, format(self.groups, "x"), self.last]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> WindowHead:
        pending = {str(k): int(v) for k, v in obj[0].items()}
        return cls(pending, int(obj[1]), int(obj[2], 16), [str(x) for x in obj[3]])


@dataclass
class PolicyHead:
    """One tenant's running 6.2 figures under one policy (small: no per-target data)."""

    # Latest started_at of a met or breach per lane (replay: one lane ""; live: the
    # sla.outcomes partition the fact came from). Days close on the slowest lane.
    lanes: dict[str, int] = field(default_factory=dict)
    closed_through: str | None = None  # last final day (ISO)
    # Each open day and which of its buckets hold something (the groups mask, see buckets_in).
    open_days: dict[str, int] = field(default_factory=dict)
    run: list[DayFigure] = field(default_factory=list)  # final days above the line, in a row
    run_tripped: bool = False
    slow_trips: dict[str, int] = field(default_factory=dict)  # window -> trips
    late: int = 0  # facts of a day or window already final
    windows: dict[str, WindowHead] = field(default_factory=dict)  # breach_count
    windows_closed_through: str | None = None  # last closed month window ("2026-10")
    # Closed days and windows whose buckets may still be stored: (kind, name, groups), kind
    # "b" (a day) or "w" (a window). The next fact deletes them first (see "Crashes").
    draining: list[Drain] = field(default_factory=list)

    def to_obj(self) -> dict[str, Any]:
        return {
            "lanes": self.lanes,
            "closed_through": self.closed_through,
            "open_days": {d: format(g, "x") for d, g in self.open_days.items()},
            "run": [list(d) for d in self.run],
            "run_tripped": self.run_tripped,
            "slow_trips": self.slow_trips,
            "late": self.late,
            "windows": {w: s.to_obj() for w, s in self.windows.items()},
            "windows_closed_through": self.windows_closed_through,
            "draining": [[k, n, format(g, "x")] for k, n, g in self.draining],
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> PolicyHead:
        return cls(
            lanes={str(k): int(v) for k, v in obj["lanes"].items()},
            closed_through=obj["closed_through"],
            open_days={str(d): int(g, 16) for d, g in obj["open_days"].items()},
            run=[DayFigure(str(d[0]), float(d[1]), int(d[2])) for d in obj["run"]],
            run_tripped=bool(obj["run_tripped"]),
            slow_trips={str(k): int(v) for k, v in obj["slow_trips"].items()},
            late=int(obj["late"]),
            windows={str(w): WindowHead.from_obj(s) for w, s in obj["windows"].items()},
            # Absent from heads stored before windows closed and buckets drained: none yet.
            windows_closed_through=obj.get("windows_closed_through"),
            draining=[Drain(str(k), str(n), int(g, 16)) for k, n, g in obj.get("draining", ())],
        )


Loader = Callable[[str], bytes | None]


def _parse(key: str, raw: bytes) -> Any:
    obj = orjson.loads(raw)
    kind = key.split("\x1f", 2)[1]
    if kind == "h":
        return PolicyHead.from_obj(obj)
    return obj  # a bucket: a plain dict


def _encode(value: Any) -> bytes:
    return orjson.dumps(value.to_obj() if hasattr(value, "to_obj") else value)


class TenantState:
    """The 6.2 records of one tenant, by key (see the module doc).

    Without ``load`` (replay, tests) the records live here. With it (the live stage) a record
    is read on first use, and :meth:`writes` lists what changed: the records to store and the
    keys to delete, serialised."""

    def __init__(self, load: Loader | None = None) -> None:
        self._load = load
        self._records: dict[str, Any] = {}
        self._stored: dict[str, bytes | None] = {}  # as loaded (live): skip unchanged writes
        self._changed: dict[str, None] = {}  # insertion-ordered set
        self._drained: set[str] = set()  # deletions stored before the heads (see drain)

    def get(self, key: str) -> Any:
        """The record of ``key``, None if there is none. Change it in place, then :meth:`put`."""
        if key in self._records or self._load is None:
            return self._records.get(key)
        raw = self._load(key)
        self._stored[key] = raw
        value = self._records[key] = _parse(key, raw) if raw else None
        return value

    def put(self, key: str, value: Any) -> None:
        self._records[key] = value
        self._drained.discard(key)
        if self._load is not None:
            self._changed[key] = None

    def delete(self, key: str) -> None:
        if self._load is None:
            self._records.pop(key, None)
        elif self.get(key) is not None:
            self._records[key] = None
            self._changed[key] = None

    def drain(self, key: str) -> None:
        """Deletes ``key``, a bucket of a day or window an earlier fact closed (nothing reads
        it any more), and stores that deletion before the heads (see "Crashes")."""
        self.delete(key)
        if self._load is not None:
            self._drained.add(key)

    def writes(self) -> list[tuple[str, bytes | None]]:
        """What changed since the last call: ``(key, bytes)`` to store, ``(key, None)`` to
        delete; a record put back unchanged is left out. In the order that survives a crash
        between two of them (see the module doc, "Crashes"): the drained buckets, the heads,
        the other records, then the other deletions."""
        out: list[tuple[str, bytes | None]] = []
        for key in self._changed:
            value = self._records.get(key)
            raw = None if value is None else _encode(value)
            if raw != self._stored.get(key):
                out.append((key, raw))
                self._stored[key] = raw
        self._changed.clear()

        def rank(write: tuple[str, bytes | None]) -> int:
            key, raw = write
            if raw is None:
                return 0 if key in self._drained else 3
            return 1 if key.endswith(HEAD) else 2

        out.sort(key=rank)
        self._drained.clear()
        return out

    def keys(self) -> list[str]:
        """The keys held in memory (replay) or loaded so far (live)."""
        return [k for k, v in self._records.items() if v is not None]


__all__ = [
    "BUCKETS",
    "DAY",
    "WINDOW",
    "DayFigure",
    "Drain",
    "PolicyHead",
    "TenantState",
    "WindowHead",
    "bucket_of",
]
