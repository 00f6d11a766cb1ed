"""Per-subject SLA state: a small record that serialises to compact bytes.

One :class:`SubjectState` per chat session or ticket. In the live worker it is the value of a
Faust table keyed by subject, so a restarted or rebalanced worker resumes every open timer from
the changelog; in replay it sits in a dict. The record is self-contained: :attr:`next_due` is
derived from it alone, which is what lets the deadline index be rebuilt from the table.

Only :class:`monitor.engine.engine.SlaEngine` mutates these records.

The phases of an SLA clock (:attr:`SlaClock.phase`), and the engine's transitions between
them (methods of ``_Call`` in :mod:`monitor.engine.engine`, facts emitted in brackets):

    * a target starts (RUNNING), or PAUSED when the ticket's status pauses it
      (``start_clock``, ``start_tiers``);
    * a warning share passes: RUNNING stays RUNNING [warning] (``fire_due``);
    * the deadline passes: RUNNING -> BREACHED [breach; escalation for a tier]
      (``fire_due``);
    * the status pauses it: RUNNING -> PAUSED; BREACHED -> PAUSED when the pause came
      before the deadline that fired [retraction], else it stays BREACHED (``pause``);
    * the status no longer pauses it: PAUSED -> RUNNING (``resume``);
    * the priority changes the target: RUNNING stays, with a new deadline; PAUSED stays
      (the new target counts on from the resume); BREACHED -> RUNNING when the new deadline
      has not passed [retraction], else it stays BREACHED (``retarget``);
    * the response, or the subject's end (``stop``, the clock leaves the record):
      -> MET by the deadline [met; a breach retracted first], or -> STOPPED otherwise:
      finished in time [nothing; a breach retracted] or answered late [breach, unless one
      was emitted already]. A response clock the subject's end stopped stays in
      ``state.closed`` until a response sent before the end arrives after it
      (``respond_after_close``): -> MET [met; a breach that stood retracted first].

A clock in a stored record is RUNNING, PAUSED or BREACHED; ``stop`` returns MET or STOPPED.
The phase is derived from the stored fields (``paused_since``, ``breached``), so the byte
layout carries no phase of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from monitor.errors import StateError
from monitor.policy.model import ClockKind
from monitor.vocabulary import AnyMetric, EscalationMetric, Metric, Period, SubjectType

_FORMAT = 1  # bump on an incompatible change of the byte layout
_METRICS: tuple[AnyMetric, ...] = (*Metric, *EscalationMetric)  # stored by index: append only
_PERIODS = tuple(Period)
_CLOCKS = tuple(ClockKind)
MAX_SEEN = 512  # event-id digests remembered per subject for de-duplication


def event_digest(event_id: str) -> int:
    """A stable 63-bit digest of an event id (Python's hash() changes between processes)."""
    hasher = _BLAKE2B_8.copy()
    hasher.update(event_id.encode())
    return _from_bytes(hasher.digest()) >> 1


# Runs for every event: copying a prepared hasher skips blake2b's keyword parsing and set-up
# (a fifth of the call). Never updated itself, only copied.
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
_from_bytes = int.from_bytes


class ClockPhase(Enum):
    """Where an SLA clock is in its life; the module docstring lists the transitions."""

    RUNNING = "running"  # counting towards its next warning or its deadline
    PAUSED = "paused"  # stopped counting while the ticket waits (pause_when)
    BREACHED = "breached"  # its deadline passed and the breach stands (not retracted)
    MET = "met"  # ended by a response in time (no longer in the record)
    STOPPED = "stopped"  # ended otherwise: the subject finished, or a late response


_RUNNING, _PAUSED, _BREACHED = ClockPhase.RUNNING, ClockPhase.PAUSED, ClockPhase.BREACHED


@dataclass(slots=True)
class SlaClock:
    """One SLA target instance: say, the first response of a ticket, or its 3rd next response.

    Time used is measured from ``started_at`` in the clock's own kind (wall or working time),
    less the ``pauses`` (closed intervals) and the open pause from ``paused_since``. Keeping
    the pauses, rather than a running total, is what lets a priority change recompute the
    target from the original start even when the new target counts a different kind of time.
    """

    metric: AnyMetric
    seq: int
    started_at: int
    period: Period  # when it started, as the contract classifies time
    target: int  # microseconds of `kind` time
    kind: ClockKind
    clause: str
    # A tuple, replaced on the rare resume: most clocks never pause, and the shared empty
    # tuple spares each of them a list (an allocation, and an object for the collector).
    pauses: tuple[tuple[int, int], ...] = ()
    paused_since: int | None = None
    deadline: int | None = None  # while running: when the target is used up
    warn_at: int | None = None  # while running: when the next warning share is reached
    warned: int = 0  # how many warning shares have been emitted
    breached: bool = False  # a breach was emitted and not (yet) retracted
    retracted: int = 0  # breaches emitted and retracted: the next breach is round retracted + 1

    @property
    def phase(self) -> ClockPhase:
        """RUNNING, PAUSED or BREACHED (a paused clock is never breached: ``pause``
        retracts a breach or does not pause)."""
        if self.paused_since is not None:
            return _PAUSED
        return _BREACHED if self.breached else _RUNNING

    def to_list(self) -> list[object]:
        return [
            _METRICS.index(self.metric),
            self.seq,
            self.started_at,
            _PERIODS.index(self.period),
            self.target,
            _CLOCKS.index(self.kind),
            self.clause,
            self.pauses,
            self.paused_since,
            self.deadline,
            self.warn_at,
            self.warned,
            self.breached,
            self.retracted,
        ]

    @classmethod
    def from_list(cls, raw: list[Any]) -> SlaClock:
        (m, seq, started, period, target, kind, clause, pauses, paused, deadline, warn, warned,
         breached, *rest) = raw  # fmt: skip
        return cls(
            metric=_METRICS[m],
            seq=seq,
            started_at=started,
            period=_PERIODS[period],
            target=target,
            kind=_CLOCKS[kind],
            clause=clause,
            pauses=tuple((a, b) for a, b in pauses),
            paused_since=paused,
            deadline=deadline,
            warn_at=warn,
            warned=warned,
            breached=breached,
            retracted=rest[0] if rest else 0,  # a record stored before rounds had none
        )


@dataclass(slots=True)
class SubjectState:
    """Everything the engine knows about one chat session or ticket."""

    subject_type: SubjectType
    subject_id: str
    tenant: str
    policy: str
    channel: str | None
    priority: str | None
    created_at: int
    last_event_at: int
    clock_start: int | None = None  # when SLA clocks started (tickets: on a designated channel)
    status: str = "open"
    finished_at: int | None = None  # session closed / ticket solved or closed
    responded_at: int | None = None  # the first human response
    next_seq: int = 1  # seq of the next next_response clock
    update_seq: int = 1  # seq of the next periodic_update clock
    appeals: int = 0  # 003 5.1: appeals accepted; the n-th review is resolution target seq n
    seen: list[int] = field(default_factory=list)
    # A tuple, replaced when a clock starts or stops: replay holds every subject's record and
    # most are finished, with no clock. They all share the empty tuple, where an empty list
    # each was one more object per subject for the cyclic garbage collector to walk.
    clocks: tuple[SlaClock, ...] = ()
    # Response clocks the close (or solve) ended with no response seen, kept so that a
    # response that happened before the close but arrives after it (a producer retry) is
    # still judged: met, or a standing breach retracted. In here, `paused_since` holds the
    # instant the close ended the clock and `breached` whether a breach stands. Only
    # SlaEngine.respond reads them; nothing fires from them.
    closed: tuple[SlaClock, ...] = ()

    @property
    def key(self) -> str:
        return state_key(self.subject_type, self.subject_id)

    @property
    def next_due(self) -> int | None:
        """The earliest instant at which a timer of this subject fires, if any: the earlier of
        the next warning and the deadline of each RUNNING clock."""
        best = None
        for c in self.clocks:
            # c.phase is not RUNNING, spelled out: replay asks this after every event, and the
            # property call made it half as slow again (timeit, a new ticket's two clocks:
            # 270 ns -> 410 ns, about 1 % of an event's time in replay).
            if c.paused_since is not None or c.breached:
                continue
            due, deadline = c.warn_at, c.deadline
            if due is None or (deadline is not None and deadline <= due):
                due = deadline
            if due is not None and (best is None or due < best):
                best = due
        return best

    def clock(self, metric: AnyMetric) -> SlaClock | None:
        for c in self.clocks:
            if c.metric is metric:
                return c
        return None

    def remember(self, digest: int) -> None:
        seen = self.seen
        seen.append(digest)
        if len(seen) > MAX_SEEN:
            del seen[: len(seen) - MAX_SEEN]

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            [
                _FORMAT,
                self.subject_type.value,
                self.subject_id,
                self.tenant,
                self.policy,
                self.channel,
                self.priority,
                self.created_at,
                self.last_event_at,
                self.clock_start,
                self.status,
                self.finished_at,
                self.responded_at,
                self.next_seq,
                self.update_seq,
                self.seen,
                [c.to_list() for c in self.clocks],
                # Optional trailing items, written only when needed: other records keep
                # their layout, and older records read as no appeals and no closed clocks.
                *((self.appeals,) if self.appeals or self.closed else ()),
                *(([c.to_list() for c in self.closed],) if self.closed else ()),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes, key: str | bytes | None = None) -> SubjectState:
        """The record :meth:`to_bytes` wrote. Raises :class:`StateError` (naming ``key``, the
        store key, when given) for a record of another format or no record at all."""
        try:
            raw = orjson.loads(data)
            found = raw[0]
        except (orjson.JSONDecodeError, TypeError, KeyError, IndexError):
            raise StateError(_key_text(key), None, _FORMAT) from None
        if found != _FORMAT:
            raise StateError(_key_text(key), found, _FORMAT)
        # An 18th item, the appeal count (003 5.1), is written only when non-zero or a 19th
        # follows: the closed response clocks, written only when there are some.
        (_, st, sid, tenant, policy, channel, priority, created, last, start, status, finished,
         responded, next_seq, update_seq, seen, clocks, *rest) = raw  # fmt: skip
        return cls(
            subject_type=SubjectType(st),
            subject_id=sid,
            tenant=tenant,
            policy=policy,
            channel=channel,
            priority=priority,
            created_at=created,
            last_event_at=last,
            clock_start=start,
            status=status,
            finished_at=finished,
            responded_at=responded,
            next_seq=next_seq,
            update_seq=update_seq,
            seen=seen,
            clocks=tuple(SlaClock.from_list(c) for c in clocks),
            appeals=rest[0] if rest else 0,
            closed=tuple(SlaClock.from_list(c) for c in rest[1]) if len(rest) > 1 else (),
        )


def _key_text(key: str | bytes | None) -> str | None:
    return key.decode(errors="replace") if isinstance(key, bytes) else key


def state_key(subject_type: SubjectType | str, subject_id: str) -> str:
    """The store key of a subject: chat session and ticket ids may collide, so prefix them."""
    return ("c:" if subject_type == _CHAT else "t:") + subject_id


_CHAT = SubjectType.CHAT_SESSION
