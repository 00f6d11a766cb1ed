"""Replay: the engine driven by event time alone. The oracle the live worker is tested against.

Events are applied in input order. The clock is the largest ``occurred_at`` seen so far: before
each event, every deadline the clock has passed fires; a late event (behind the clock) is still
applied with its own time, and may retract a breach. At the end the clock can be advanced to an
``until`` instant. Everything is deterministic: same input, same output, same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitor.accounting.escalation import Escalation, Escalator, TenantState
from monitor.engine import DeadlineIndex, SlaEngine, SubjectState, state_key
from monitor.errors import CalendarError, RejectedEvent
from monitor.events import Event
from monitor.sla_event import Kind, SlaEvent
from monitor.vocabulary import SubjectType

if TYPE_CHECKING:
    from monitor.kpi import KpiTracker


@dataclass
class ReplayStats:
    events: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0
    rejected: int = 0
    facts: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in Kind})

    def summary(self) -> str:
        # Escalations (003 3.4) only appear under policies that set tiers: leave them out of
        # the summary when there are none, so other policies' summaries read as before.
        facts = ", ".join(
            f"{n} {k}" for k, n in self.facts.items() if n or k != Kind.ESCALATION.value
        )
        return (
            f"{self.events} events ({self.duplicates} duplicates, {self.late} late, "
            f"{self.invalid} invalid, {self.rejected} rejected) -> {facts}"
        )


class Replay:
    """Holds the subject records and the deadline index of one replay."""

    def __init__(self, engine: SlaEngine, kpis: KpiTracker | None = None) -> None:
        self.engine = engine
        # 004 3.3-3.5: fed every accepted event (and every channel.status) when given.
        self.kpis = kpis
        self.states: dict[str, SubjectState] = {}
        self.index = DeadlineIndex()
        self.clock: int | None = None
        self.stats = ReplayStats()
        self.rejections: list[tuple[Event, str]] = []

    def feed(self, event: Event) -> list[SlaEvent]:
        """Applies one event after firing every deadline its time has passed."""
        stats = self.stats
        stats.events += 1
        at = event.occurred_at
        clock = self.clock
        if clock is None or at > clock:
            # The clock moves as in advance_to(at), written out: this runs for most events and
            # usually fires nothing. Channel time needs no advance here: a channel.status
            # accounts it as it is observed, and advance_to does at the end.
            self.clock = clock = at
            index = self.index
            due = index.pop_due(at) if at > index.due_bound else None
            out = self._fire(due, at) if due else []
        else:
            if at < clock:
                stats.late += 1
            out = []
        kpis = self.kpis
        if kpis is not None and event.subject_type is _CHANNEL:
            return out + self._channel(kpis, event)
        key = state_key(event.subject_type, event.subject_id)
        states = self.states
        previous = states.get(key)
        try:
            step = self.engine.apply(previous, event, clock)
        except (RejectedEvent, CalendarError) as exc:
            stats.rejected += 1
            self.rejections.append((event, str(exc)))
            return out
        if step.duplicate:
            stats.duplicates += 1
        elif kpis is not None:
            kpis.observe(event)
        state = step.state
        if state is None:
            states.pop(key, None)
            self.index.schedule(key, None)
        else:
            if state is not previous:  # usually the same record, updated in place
                states[key] = state
            self.index.schedule(key, state.next_due)
        facts = step.events
        if facts:
            counts = stats.facts
            for fact in facts:  # as in _fire
                counts[fact.kind] += 1
            if out:
                return out + facts
            return facts
        return out

    def advance_to(self, now: int) -> list[SlaEvent]:
        """Moves the clock forward to ``now`` (never back) and fires what it passes."""
        if self.clock is not None and now <= self.clock:
            return []
        self.clock = now
        if self.kpis is not None:
            self.kpis.advance(now)
        return self._fire(self.index.pop_due(now), now)

    def _channel(self, kpis: KpiTracker, event: Event) -> list[SlaEvent]:
        """A channel.status goes to the KPIs only: it has no SLA clock (004 3.3)."""
        try:
            kpis.observe(event)
        except RejectedEvent as exc:
            self.stats.rejected += 1
            self.rejections.append((event, str(exc)))
        return []

    def _fire(self, due: list[str], now: int) -> list[SlaEvent]:
        """Advances the records of the ``due`` keys to ``now``."""
        out: list[SlaEvent] = []
        for key in due:
            state = self.states[key]
            step = self.engine.advance(state, now)
            self.index.schedule(key, state.next_due)
            out.extend(step.events)
        counts = self.stats.facts
        for fact in out:
            # A Kind is the str of its value, so it finds the value's key (Enum.value is a
            # Python-level property, slow in this loop).
            counts[fact.kind] += 1
        return out


_CHANNEL = SubjectType.CHANNEL


def replay_events(
    engine: SlaEngine, events: Iterable[Event], until: int | None = None
) -> list[SlaEvent]:
    """Replays ``events`` and returns every SLA fact in detection order."""
    return list(iter_replay(Replay(engine), events, until))


def iter_replay(replay: Replay, events: Iterable[Event], until: int | None) -> Iterator[SlaEvent]:
    for event in events:
        yield from replay.feed(event)
    if until is not None:
        yield from replay.advance_to(until)


def final_kinds(facts: Iterable[SlaEvent]) -> dict[str, Kind]:
    """The last kind each ``sla_id`` reached, ignoring warnings once a verdict exists.

    This is what live and replay must agree on: for every SLA target, was it met, breached,
    or only warned about so far. A retraction is always followed by the verdict that replaced
    it (a ``met``, or a later ``breach``), or stands alone when the target no longer applies.
    """
    out: dict[str, Kind] = {}
    for fact in facts:
        if fact.kind is Kind.WARNING and out.get(fact.sla_id, Kind.WARNING) is not Kind.WARNING:
            continue
        out[fact.sla_id] = fact.kind
    return out


# --- contract accounting (issue 8): 002 6.2 escalations from the facts above -------------------


def iter_with_escalations(
    facts: Iterable[SlaEvent], escalator: Escalator, states: dict[str, TenantState] | None = None
) -> Iterator[SlaEvent | Escalation]:
    """Each SLA fact, then the escalations it trips (monitor.accounting.escalation), in
    detection order: the oracle for the live escalation stage."""
    tenants: dict[str, TenantState] = {} if states is None else states
    for fact in facts:
        yield fact
        state = tenants.get(fact.tenant)
        if state is None:
            state = tenants[fact.tenant] = TenantState()
        yield from escalator.apply(state, fact)
