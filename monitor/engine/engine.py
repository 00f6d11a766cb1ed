"""The SLA engine: pure state machines over subject records. No I/O, no clock.

Callers hand in a subject's record, an event or a point in time, and get back the new record
and the SLA facts it produced (:class:`Step`). Who calls what:

* :meth:`SlaEngine.apply` when an input event arrives (replay, the live worker's agent);
* :meth:`SlaEngine.advance` when time passes a subject's :attr:`SubjectState.next_due`
  (replay's clock, the live worker's timeout agent);
* :meth:`SlaEngine.is_expired` when sweeping finished subjects out of the store.

Time rules, shared by every metric (contract 002 2.2, 000 5.1):

* a timer fires when the clock has *passed* its instant (``due < now``): a response exactly at
  the deadline is met, one a microsecond later is a breach;
* a response measures from its own ``occurred_at``, not from when it arrived, so a late event
  that proves an emitted breach wrong produces a ``retraction`` (and then the ``met``) with the
  breach's ``sla_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from monitor.calendar import WorkingTime
from monitor.engine.state import SlaClock, SubjectState, event_digest, state_key
from monitor.errors import Reason, RejectedEvent
from monitor.events import Actor, Event, EventType, SubjectType, TicketStatus
from monitor.policy.model import (
    AppealPolicy,
    ClockKind,
    EscalationTier,
    MetricPolicy,
    Policy,
    PolicySet,
    TargetRule,
)
from monitor.sla_event import (
    AnyMetric,
    EscalationMetric,
    Kind,
    Metric,
    Period,
    SlaEvent,
    make_sla_id,
)
from monitor.timeutil import MICROS_PER_SECOND, format_rfc3339

# Enum members the hot path compares against, bound once: EnumType defines __getattr__, so
# reading a member through its class (``Actor.AGENT``) costs CPython 3.11 70-100 ns, as much
# as the rest of a small handler.
_AGENT, _CUSTOMER = Actor.AGENT, Actor.CUSTOMER
_WARNING, _BREACH, _MET, _RETRACTION = Kind.WARNING, Kind.BREACH, Kind.MET, Kind.RETRACTION
_FIRST_RESPONSE, _NEXT_RESPONSE = Metric.FIRST_RESPONSE, Metric.NEXT_RESPONSE
_PERIODIC_UPDATE, _RESOLUTION = Metric.PERIODIC_UPDATE, Metric.RESOLUTION
_TIER_ESCALATION, _ESCALATION = EscalationMetric.TIER_ESCALATION, Kind.ESCALATION
_WALL = ClockKind.WALL

RESPONSE_METRICS = (Metric.FIRST_RESPONSE, Metric.NEXT_RESPONSE)
FINISHED = frozenset({TicketStatus.SOLVED.value, TicketStatus.CLOSED.value})


@dataclass(slots=True)
class Step:
    """The outcome of one engine call: the record to store (None: delete) and the facts."""

    state: SubjectState | None
    events: list[SlaEvent]
    duplicate: bool = False  # the event's id was seen before: nothing changed


class SlaEngine:
    """The SLA state machines of a set of policies.

    Not thread-safe: each policy's :class:`_Run` context is reused by every call (building
    one per event was 3 % of replay), which is fine because calls are synchronous and never
    nested. The live worker calls it from its event loop only.
    """

    def __init__(self, policies: PolicySet) -> None:
        self._policies = policies
        # Per policy name, the policy's rules precomputed for the hot path (built on first use:
        # policies are immutable once loaded, and `policies` cannot be replaced).
        self._rules: dict[str, _PolicyRules] = {}

    @property
    def policies(self) -> PolicySet:
        return self._policies

    # -- public API -----------------------------------------------------------------------

    @staticmethod
    def state_key(event: Event) -> str:
        return state_key(event.subject_type, event.subject_id)

    def timezone_of(self, policy_name: str) -> ZoneInfo:
        return self.policies.named(policy_name).timezone

    def apply(self, state: SubjectState | None, event: Event, now: int) -> Step:
        """Applies one input event. ``now`` is the caller's clock (never behind the event
        for an in-order stream; ahead of it for a late event).

        Raises RejectedEvent for a valid event that cannot apply (a message for a session
        never started, say): the caller dead-letters it. A repeated ``event_id`` is a no-op.
        """
        digest = event_digest(event.event_id)
        if state is None:
            if event.subject_type is SubjectType.CHANNEL:  # the rare path: no cost per event
                raise RejectedEvent(
                    f"{event.type} has no SLA clock: it feeds the availability KPI "
                    "(monitor.kpi.KpiTracker), not the engine",
                    code=Reason.NOT_FOR_ENGINE,
                )
            if event.type not in _CREATING:
                noun = (
                    "session.started"
                    if event.subject_type is SubjectType.CHAT_SESSION
                    else "ticket.created"
                )
                raise RejectedEvent(
                    f"{event.type} for {event.subject_id!r}, but no {noun} was seen",
                    code=Reason.UNKNOWN_SUBJECT,
                )
        elif digest in state.seen:
            return Step(state, [], duplicate=True)
        if state is None:
            run = _Run(self, now, None)  # a new subject: the handler picks the policy
        else:
            run = (self._rules.get(state.policy) or self._load(state.policy)).run
            run.now, run.out = now, []
        new_state = _HANDLERS[event.type](run, event, state)
        new_state.remember(digest)
        at, last = event.occurred_at, new_state.last_event_at
        new_state.last_event_at = at if at > last else last  # max() without the call
        return Step(new_state, run.out, False)

    def advance(self, state: SubjectState, now: int) -> Step:
        """Fires every warning and breach of ``state`` whose instant ``now`` has passed."""
        run = (self._rules.get(state.policy) or self._load(state.policy)).run
        run.now, run.out = now, []
        for clock in state.clocks:
            run.fire_due(state, clock)
        return Step(state, run.out, False)

    def is_expired(self, state: SubjectState, now: int) -> bool:
        """True when a subject can be forgotten: finished (or idle with no running timer)
        for longer than its policy's retention. Kept until then for late events and
        duplicates."""
        retention = self.policies.named(state.policy).retention
        if state.finished_at is not None:
            return now - state.finished_at > retention
        return state.next_due is None and now - state.last_event_at > retention

    def _load(self, name: str) -> _PolicyRules:
        """Precomputes the rules of policy ``name`` (first use); RejectedEvent if not loaded.

        Callers look in ``_rules`` first themselves: one call less per event."""
        rules = self._rules[name] = _PolicyRules(self._policies.named(name), self)
        return rules


_RULE_MEMO_SIZE = 1024  # (priority, period, channel) choices remembered per metric


class _MetricRules:
    """One metric of one policy, as the hot path needs it: the policy's fields at hand, and
    the target rule chosen for each (priority, period, channel) remembered, since every clock
    start or retarget would otherwise walk the rule list and its selectors again."""

    __slots__ = ("_chosen", "metric_policy", "pause_when", "penalty", "warnings")

    def __init__(self, mp: MetricPolicy) -> None:
        self.metric_policy = mp
        self.warnings = mp.warnings
        self.penalty = mp.penalty
        # TicketStatus members are strs: the record's plain-string status tests against them.
        self.pause_when: frozenset[str] = mp.pause_when
        self._chosen: dict[tuple[str | None, Period, str | None], TargetRule] = {}

    def rule_for(self, priority: str | None, period: Period, channel: str | None) -> TargetRule:
        key = (priority, period, channel)
        rule = self._chosen.get(key)
        if rule is None:
            rule = self.metric_policy.rule_for(priority, period, channel)  # may raise
            if len(self._chosen) >= _RULE_MEMO_SIZE:  # channels are open-ended: stay bounded
                self._chosen.clear()
            self._chosen[key] = rule
        return rule


class _PolicyRules:
    """One policy, precomputed for one engine, with the run context its calls reuse."""

    __slots__ = ("appeal", "metrics", "policy", "run", "tiers", "working_time")

    def __init__(self, policy: Policy, engine: SlaEngine) -> None:
        self.policy = policy
        self.working_time = policy.working_time
        self.tiers = policy.escalation.tiers if policy.escalation is not None else ()
        self.appeal = policy.appeal
        self.metrics = {metric: _MetricRules(mp) for metric, mp in policy.metrics.items()}
        self.run = _Run(engine, 0, self)  # now and out are reset by every call


class _Run:
    """An engine call's context: the policy in force, the clock, and the facts produced so
    far. One per policy, reset by each call on a stored record (see :class:`SlaEngine`); a
    new record's call makes its own, since its handler picks the policy."""

    __slots__ = ("engine", "metrics", "now", "out", "rules", "working_time")

    def __init__(self, engine: SlaEngine, now: int, rules: _PolicyRules | None) -> None:
        self.engine = engine
        self.now = now
        self.out: list[SlaEvent] = []
        self.metrics: dict[AnyMetric, _MetricRules]
        self.working_time: WorkingTime
        self.rules: _PolicyRules
        if rules is not None:  # use(rules), inlined: one call less per event
            self.metrics = rules.metrics
            self.working_time = rules.working_time
            self.rules = rules

    def use(self, rules: _PolicyRules) -> None:
        """Sets the policy in force."""
        self.metrics = rules.metrics
        self.working_time = rules.working_time
        self.rules = rules

    # -- time arithmetic in a clock's own kind -------------------------------------------

    def measure(self, kind: ClockKind, start: int, end: int) -> int:
        if end <= start:
            return 0
        if kind is _WALL:
            return end - start
        return self.working_time.between(start, end)

    def used(self, clock: SlaClock, at: int) -> int:
        """Time the clock has used by ``at``, pauses excluded."""
        used = self.measure(clock.kind, clock.started_at, at)
        for a, b in clock.pauses:
            used -= self.measure(clock.kind, a, min(b, at))
        if clock.paused_since is not None:
            used -= self.measure(clock.kind, clock.paused_since, at)
        return used

    # -- clocks ---------------------------------------------------------------------------

    def start_clock(self, state: SubjectState, metric: AnyMetric, seq: int, at: int) -> None:
        rules = self.metrics.get(metric)
        if rules is None:
            return
        period = self.working_time.period_of(at)
        rule = rules.rule_for(state.priority, period, state.channel)
        clock = SlaClock(metric, seq, at, period, rule.within, rule.clock, rule.clause)
        if state.status in rules.pause_when:
            clock.paused_since = at
        state.clocks += (clock,)
        self.schedule(clock)

    def start_tiers(self, state: SubjectState, at: int) -> None:
        """003 3.4: one clock per escalation tier, each from the ticket's clock start, so
        each tier fires once, at its own ``after`` (seq = the tier's index)."""
        rules = self.metrics.get(_TIER_ESCALATION)
        if rules is None:
            return
        period = self.working_time.period_of(at)
        for seq, tier in enumerate(self.rules.tiers):
            kind, clause = rules.metric_policy.rules[0].clock, rules.metric_policy.rules[0].clause
            clock = SlaClock(_TIER_ESCALATION, seq, at, period, tier.after, kind, clause)
            if state.status in rules.pause_when:
                clock.paused_since = at
            state.clocks += (clock,)
            self.schedule(clock)

    def schedule(self, clock: SlaClock, *, warning_only: bool = False) -> None:
        """Recomputes ``deadline`` and ``warn_at`` of a running clock from its record.

        ``warning_only`` after a warning: the deadline does not depend on how many warnings
        went out, and a working-time deadline is worth not walking the calendar again for.
        """
        if clock.paused_since is not None or clock.breached:
            clock.deadline = clock.warn_at = None
            return
        target = clock.target
        if clock.pauses:
            resumed = clock.pauses[-1][1]
            used = self.used(clock, resumed)
        else:  # nothing used at the start: skip measuring an empty span
            resumed, used = clock.started_at, 0
        shares = self.shares(clock)
        warned = clock.warned
        mark = round(target * shares[warned]) if warned < len(shares) else None
        if clock.kind is _WALL:  # add() inlined for the common kind: plain arithmetic
            if not warning_only:
                clock.deadline = resumed + max(target - used, 0)
            clock.warn_at = None if mark is None else resumed + max(mark - used, 0)
        else:
            add = self.working_time.add
            rest = max(target - used, 0)
            if mark is None:
                clock.warn_at = None
                if not warning_only:
                    clock.deadline = add(resumed, rest)
                return
            early = max(mark - used, 0)
            clock.warn_at = warn_at = add(resumed, early)
            if not warning_only:
                # add(s, a + b) == add(add(s, a), b) for b > 0 (add gives the earliest instant
                # with between(s, x) == duration, and between is additive), so the deadline
                # walks the calendar on from the warning rather than from the start again.
                clock.deadline = add(warn_at, rest - early) if rest > early else add(resumed, rest)

    def shares(self, clock: SlaClock) -> tuple[float, ...]:
        rules = self.metrics.get(clock.metric)
        return rules.warnings if rules is not None else ()

    def retarget(self, state: SubjectState, clock: SlaClock) -> None:
        """Re-selects a clock's target after a priority change, from the original start."""
        rules = self.metrics.get(clock.metric)
        if rules is None or clock.metric is _TIER_ESCALATION:  # 003 3.4 names no priority
            return
        rule = rules.rule_for(state.priority, clock.period, state.channel)
        if (rule.within, rule.clock) == (clock.target, clock.kind):
            return
        clock.target, clock.kind, clock.clause = rule.within, rule.clock, rule.clause
        was_breached = clock.breached
        clock.breached = False
        self.schedule(clock)
        if was_breached:
            if clock.deadline is not None and clock.deadline < self.now:
                clock.breached = True  # still late under the new target: the breach stands
                clock.warn_at = None
            else:
                self.emit(_RETRACTION, state, clock, reason="priority changed")

    def pause(self, state: SubjectState, clock: SlaClock, at: int) -> None:
        if not clock.running:
            return
        if clock.breached:
            if clock.deadline is None or at >= clock.deadline:
                return  # the target was used up before the pause: the breach stands
            clock.breached = False
            self.emit(_RETRACTION, state, clock, reason=f"paused ({state.status}) in time")
        clock.paused_since = at
        clock.deadline = clock.warn_at = None

    def resume(self, clock: SlaClock, at: int) -> None:
        if clock.paused_since is None:
            return
        clock.pauses += ((clock.paused_since, max(at, clock.paused_since)),)
        clock.paused_since = None
        self.schedule(clock)

    def fire_due(self, state: SubjectState, clock: SlaClock) -> None:
        """Emits the warnings and the breach of ``clock`` that ``now`` has passed."""
        if clock.breached or not clock.running:
            return
        shares = self.shares(clock)
        while clock.warn_at is not None and clock.warn_at < self.now:
            self.emit(_WARNING, state, clock, share=shares[clock.warned])
            clock.warned += 1
            self.schedule(clock, warning_only=True)
        if clock.deadline is not None and clock.deadline < self.now:
            self.emit(_BREACH, state, clock)
            clock.breached = True
            clock.warn_at = None

    def stop(self, state: SubjectState, clock: SlaClock, at: int, *, met: bool, why: str) -> None:
        """Ends a clock at ``at``: with the response (``met=True``) or because it no longer
        applies (the session closed, the ticket was solved)."""
        clocks = state.clocks
        i = 0
        while clocks[i] is not clock:  # by identity: == compares every field of a clock
            i += 1
        state.clocks = clocks[:i] + clocks[i + 1 :]
        if clock.breached:
            if clock.deadline is not None and at <= clock.deadline:
                self.emit(_RETRACTION, state, clock, reason=why, responded_at=at if met else None)
                if met:
                    self.emit(_MET, state, clock, responded_at=at)
            return
        if clock.running and clock.deadline is not None and at > clock.deadline:
            self.emit(_BREACH, state, clock, responded_at=at if met else None)
        elif met:
            self.emit(_MET, state, clock, responded_at=at)

    def emit(
        self,
        kind: Kind,
        state: SubjectState,
        clock: SlaClock,
        *,
        share: float | None = None,
        responded_at: int | None = None,
        reason: str | None = None,
    ) -> None:
        rules = self.metrics.get(clock.metric)
        deadline = clock.deadline if clock.deadline is not None else clock.started_at + clock.target
        tier = None
        if clock.metric is _TIER_ESCALATION:  # 003 3.4: its breach is the escalation
            tier = self._tier(clock.seq)
            if kind is _BREACH:
                kind = _ESCALATION
        # Enum members are strs already, but the output carries plain strings: read them from
        # tables rather than through Enum.value, a Python-level property.
        subject_type = _VALUE[state.subject_type]
        # Positional, in SlaEvent's field order: keywords cost a named tuple three times more.
        self.out.append(
            SlaEvent(
                make_sla_id(state.tenant, subject_type, state.subject_id, clock.metric, clock.seq),
                kind,
                clock.metric,
                clock.seq,
                subject_type,
                state.subject_id,
                state.tenant,
                state.channel,
                state.priority,
                state.policy,
                clock.clause,
                clock.target / MICROS_PER_SECOND,  # target_seconds
                _VALUE[clock.kind],  # clock
                clock.period,
                clock.started_at,
                deadline,
                self.now,  # detected_at
                responded_at,
                share,
                rules.penalty if rules is not None and kind in _PENALISED else None,
                reason,
                tier,
            )
        )

    def _tier(self, seq: int) -> str:
        tiers: tuple[EscalationTier, ...] = self.rules.tiers
        return tiers[seq].tier if seq < len(tiers) else f"tier {seq}"  # policy since shortened

    def respond(self, state: SubjectState, at: int, who: str) -> None:
        """A human response at ``at`` answers every response clock started before it."""
        for clock in state.clocks:  # a tuple: stop() replaces it, this loop keeps its own
            if clock.metric in RESPONSE_METRICS and clock.started_at <= at:
                self.stop(state, clock, at, met=True, why=f"{who} responded in time")
        if state.closed:
            self.respond_after_close(state, at, who)
        if state.responded_at is None or at < state.responded_at:
            state.responded_at = at

    def respond_after_close(self, state: SubjectState, at: int, who: str) -> None:
        """A response that happened before the close ended its clock, arriving after the
        close (a retried send): the target was met after all, and a breach the close let
        stand is retracted. A response after the close answers nothing."""
        kept: list[SlaClock] = []
        for clock in state.closed:
            closed_at = clock.paused_since
            if closed_at is None or not clock.started_at <= at <= closed_at:
                kept.append(clock)
                continue
            if clock.breached:
                if clock.deadline is None or at > clock.deadline:
                    continue  # late as well: the breach stands
                self.emit(_RETRACTION, state, clock, reason=f"{who} responded in time",
                          responded_at=at)  # fmt: skip
            self.emit(_MET, state, clock, responded_at=at)
        state.closed = tuple(kept)

    def await_reply(self, state: SubjectState, at: int) -> None:
        """A customer writes again after a human response: the next response is due."""
        if state.responded_at is None or at < state.responded_at or state.finished_at is not None:
            return
        if state.clock(_NEXT_RESPONSE) is None and _NEXT_RESPONSE in self.metrics:
            self.start_clock(state, _NEXT_RESPONSE, state.next_seq, at)
            state.next_seq += 1

    def finish(self, state: SubjectState, at: int, why: str, *, resolved: bool) -> None:
        """The subject is done: a resolution clock is met, every other clock is moot."""
        closed = []
        for clock in state.clocks:  # a tuple: stop() replaces it, this loop keeps its own
            met = resolved and clock.metric is _RESOLUTION
            breach_stands = clock.deadline is not None and at > clock.deadline
            self.stop(state, clock, at, met=met, why=why)
            if clock.metric in RESPONSE_METRICS:  # kept for a response sent before `at`
                clock.breached = breach_stands and (clock.breached or clock.running)
                clock.paused_since = at
                closed.append(clock)
        if closed:
            state.closed += tuple(closed)
        state.finished_at = at


_PENALISED = frozenset({Kind.BREACH, Kind.RETRACTION})
_VALUE: dict[str, str] = {m: m.value for e in (SubjectType, ClockKind, TicketStatus) for m in e}
_CREATING = frozenset({EventType.SESSION_STARTED, EventType.TICKET_CREATED})


# -- event handlers: one per input type ---------------------------------------------------


def _new_state(run: _Run, event: Event, priority: str) -> SubjectState:
    engine = run.engine
    name = engine._policies.for_subject(event.tenant, event.subject_type).name
    run.use(engine._rules.get(name) or engine._load(name))
    at = event.occurred_at
    # Positional, in field order (subject_type, subject_id, tenant, policy, channel,
    # priority, created_at, last_event_at): keywords cost a dataclass __init__ more.
    return SubjectState(
        event.subject_type, event.subject_id, event.tenant, name, event.channel, priority, at, at
    )


def _session_started(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    if state is not None:
        raise RejectedEvent(
            f"session {event.subject_id!r} was already started", code=Reason.DUPLICATE_SUBJECT
        )
    state = _new_state(run, event, event.priority or "normal")
    state.clock_start = event.occurred_at  # 002 1.3: from the request, as the system records it
    run.start_clock(state, _FIRST_RESPONSE, 0, event.occurred_at)
    return state


def _message_sent(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    assert state is not None  # SlaEngine.apply checked it, and set run's policy from it
    if event.actor is _AGENT:  # 002 2.3: bot replies and system notices never count
        run.respond(state, event.occurred_at, "agent")
    elif event.actor is _CUSTOMER:
        run.await_reply(state, event.occurred_at)
    return state


def _session_closed(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    assert state is not None  # SlaEngine.apply checked it, and set run's policy from it
    if state.finished_at is None:
        state.status = "closed"
        run.finish(state, event.occurred_at, "closed before the deadline", resolved=False)
    return state


def _ticket_created(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    if state is not None:
        raise RejectedEvent(
            f"ticket {event.subject_id!r} was already created", code=Reason.DUPLICATE_SUBJECT
        )
    state = _new_state(run, event, event.priority or "P4")
    if event.designated is not False:  # 000 5.2: recorded on a designated channel
        _start_ticket_clocks(run, state, event.occurred_at)
    return state


def _start_ticket_clocks(run: _Run, state: SubjectState, at: int) -> None:
    state.clock_start = at
    run.start_clock(state, _FIRST_RESPONSE, 0, at)
    run.start_clock(state, _RESOLUTION, 0, at)
    if run.rules.tiers:
        run.start_tiers(state, at)


def _ticket_transferred(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    assert state is not None  # SlaEngine.apply checked it, and set run's policy from it
    state.channel = event.channel
    if event.designated and state.clock_start is None and state.finished_at is None:
        _start_ticket_clocks(run, state, event.occurred_at)  # 000 7.3: from the transfer
    return state


def _ticket_comment(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    assert state is not None  # SlaEngine.apply checked it, and set run's policy from it
    at = event.occurred_at
    if not event.public or state.clock_start is None:
        return state  # 000 1.6/5.3: a response is what the customer is told
    if event.actor is _AGENT:
        run.respond(state, at, "agent")
        update = state.clock(_PERIODIC_UPDATE)
        if update is not None and update.started_at <= at:
            run.stop(state, update, at, met=True, why="agent updated in time")
            update = None
        if update is None and state.finished_at is None:  # 000 9.2: the next update is due
            run.start_clock(state, _PERIODIC_UPDATE, state.update_seq, at)
            state.update_seq += 1
    elif event.actor is _CUSTOMER:
        run.await_reply(state, at)
    return state


def _ticket_priority_changed(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    assert state is not None  # SlaEngine.apply checked it, and set run's policy from it
    if event.priority == state.priority:
        return state
    state.priority = event.priority
    for clock in state.clocks:
        run.retarget(state, clock)
    return state


def _ticket_status_changed(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    assert event.status is not None
    assert state is not None  # SlaEngine.apply checked it, and set run's policy from it
    at, status = event.occurred_at, event.status
    state.status = _VALUE[status]
    if status in FINISHED:
        if state.finished_at is None:
            run.finish(state, at, f"{state.status} in time", resolved=True)
        return state
    state.finished_at = None  # reopened; a solved ticket's resolution stays final
    for clock in state.clocks:
        rules = run.metrics.get(clock.metric)
        if rules is not None and status in rules.pause_when:
            run.pause(state, clock, at)
        else:
            run.resume(clock, at)
    return state


def _ticket_appealed(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    """003 5.1: an appeal within the window after the result reopens the ticket; one
    outside it is rejected (dead-lettered) with the clause in the reason."""
    assert state is not None  # SlaEngine.apply checked it, and set run's policy from it
    appeal: AppealPolicy | None = run.rules.appeal
    at, result = event.occurred_at, state.finished_at
    tz = run.working_time.tz
    if appeal is None:
        raise RejectedEvent(
            f"appeal rejected: policy {state.policy!r} has no appeal window (003 5.1); add "
            "`appeal: {within: ...}` to it or do not send ticket.appealed for its tenants",
            code=Reason.APPEAL_REJECTED,
        )
    if result is None or at < result:
        raise RejectedEvent(
            f"appeal rejected: ticket {state.subject_id!r} has no result to appeal at "
            f"{format_rfc3339(at, tz)} ({appeal.clause}: an appeal follows the result)",
            code=Reason.APPEAL_REJECTED,
        )
    used = run.measure(appeal.clock, result, at)
    if used > appeal.within:
        raise RejectedEvent(
            f"appeal rejected: {format_rfc3339(at, tz)} is "
            f"{used / MICROS_PER_SECOND:.0f} s after the result at {format_rfc3339(result, tz)}, "
            f"outside the {appeal.within / MICROS_PER_SECOND:.0f} s {appeal.clock} window of "
            f"{appeal.clause}",
            code=Reason.APPEAL_REJECTED,
        )
    state.appeals += 1
    if appeal.reopens:  # the review: a new resolution target from the appeal
        state.finished_at = None
        state.status = "open"
        run.start_clock(state, _RESOLUTION, state.appeals, at)
    return state


def _rated(run: _Run, event: Event, state: SubjectState | None) -> SubjectState:
    """004 3.5 / 001 3.3: a rating changes no SLA clock; the engine only checks that the
    subject exists and remembers the event id (duplicates). monitor.kpi measures CSAT."""
    assert state is not None  # SlaEngine.apply checked it
    return state


_Handler = Callable[[_Run, Event, SubjectState | None], SubjectState]
_HANDLERS: dict[EventType, _Handler] = {
    EventType.SESSION_STARTED: _session_started,
    EventType.MESSAGE_SENT: _message_sent,
    EventType.SESSION_CLOSED: _session_closed,
    EventType.TICKET_CREATED: _ticket_created,
    EventType.TICKET_COMMENT: _ticket_comment,
    EventType.TICKET_PRIORITY_CHANGED: _ticket_priority_changed,
    EventType.TICKET_STATUS_CHANGED: _ticket_status_changed,
    EventType.TICKET_TRANSFERRED: _ticket_transferred,
    EventType.TICKET_APPEALED: _ticket_appealed,
    EventType.SESSION_RATED: _rated,
    EventType.TICKET_RATED: _rated,
}
