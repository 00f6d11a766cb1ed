"""The SLA engine: pure state machines over subject records. No I/O, no clock.

Callers hand in a subject's record, an event or a point in time, and get back the new record
and the SLA facts it produced (:class:`Step`). Who calls what:

* :meth:`SlaEngine.apply` when an input event arrives (replay, the live worker's agent);
* :meth:`SlaEngine.advance` when time passes a subject's :attr:`SubjectState.next_due`
  (replay's clock, the live worker's timeout agent);
* :meth:`SlaEngine.is_expired` when sweeping finished subjects out of the store.

Inside, each call runs one handler per input type on a ``_Call`` context (the policy in
force, ``now``, the facts so far): a *creating* handler (``session.started``,
``ticket.created``) builds the record, an *updating* one changes a record that exists. The
``_Call`` methods move each SLA clock between its phases; :mod:`monitor.engine.state` lists
the phases and transitions.

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
from monitor.engine.state import ClockPhase, SlaClock, SubjectState, event_digest
from monitor.errors import Reason, RejectedEvent
from monitor.events import Event
from monitor.policy.model import (
    AppealPolicy,
    ClockKind,
    EscalationTier,
    MetricPolicy,
    Policy,
    PolicySet,
    TargetRule,
)
from monitor.sla_event import Kind, SlaEvent, make_sla_id
from monitor.timeutil import MICROS_PER_SECOND, format_rfc3339
from monitor.vocabulary import (
    Actor,
    AnyMetric,
    EscalationMetric,
    EventType,
    Metric,
    Period,
    SubjectType,
    TicketStatus,
)

# Enum members the hot path compares against, bound once: EnumType defines __getattr__, so
# reading a member through its class (``Actor.AGENT``) costs CPython 3.11 70-100 ns, as much
# as the rest of a small handler.
_AGENT, _CUSTOMER = Actor.AGENT, Actor.CUSTOMER
_WARNING, _BREACH, _MET, _RETRACTION = Kind.WARNING, Kind.BREACH, Kind.MET, Kind.RETRACTION
_FIRST_RESPONSE, _NEXT_RESPONSE = Metric.FIRST_RESPONSE, Metric.NEXT_RESPONSE
_PERIODIC_UPDATE, _RESOLUTION = Metric.PERIODIC_UPDATE, Metric.RESOLUTION
_TIER_ESCALATION, _ESCALATION = EscalationMetric.TIER_ESCALATION, Kind.ESCALATION
_WALL = ClockKind.WALL
_RUNNING, _PAUSED, _BREACHED = ClockPhase.RUNNING, ClockPhase.PAUSED, ClockPhase.BREACHED
_MET_PHASE, _STOPPED = ClockPhase.MET, ClockPhase.STOPPED

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

    Not thread-safe: each policy's :class:`_Call` context is reused by every call (building
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
            create = _CREATING.get(event.type)
            if create is None:
                raise _no_record(event)
            # A new subject: the policy that covers it (RejectedEvent if none does).
            name = self._policies.for_subject(event.tenant, event.subject_type).name
            call = (self._rules.get(name) or self._load(name)).call
            call.now, call.out = now, []
            state = create(call, event)
        else:
            if digest in state.seen:
                return Step(state, [], duplicate=True)
            call = (self._rules.get(state.policy) or self._load(state.policy)).call
            call.now, call.out = now, []
            _UPDATING[event.type](call, event, state)
        state.remember(digest)
        at, last = event.occurred_at, state.last_event_at
        state.last_event_at = at if at > last else last  # max() without the call
        return Step(state, call.out, False)

    def advance(self, state: SubjectState, now: int) -> Step:
        """Fires every warning and breach of ``state`` whose instant ``now`` has passed."""
        call = (self._rules.get(state.policy) or self._load(state.policy)).call
        call.now, call.out = now, []
        for clock in state.clocks:
            call.fire_due(state, clock)
        return Step(state, call.out, False)

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
        rules = self._rules[name] = _PolicyRules(self._policies.named(name))
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
    """One policy, precomputed for one engine, with the call context its calls reuse."""

    __slots__ = ("appeal", "call", "metrics", "policy", "tiers", "working_time")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.working_time = policy.working_time
        self.tiers = policy.escalation.tiers if policy.escalation is not None else ()
        self.appeal = policy.appeal
        self.metrics = {metric: _MetricRules(mp) for metric, mp in policy.metrics.items()}
        self.call = _Call(self)


class _Call:
    """An engine call's context: the policy in force, the clock, and the facts produced so
    far. Built once per policy by its :class:`_PolicyRules`; each call sets ``now`` and
    ``out`` (see :class:`SlaEngine`). Its clock methods are the phase transitions of
    :mod:`monitor.engine.state`; the handlers below call them."""

    __slots__ = ("metrics", "now", "out", "rules", "working_time")

    def __init__(self, rules: _PolicyRules) -> None:
        self.now = 0
        self.out: list[SlaEvent] = []
        self.metrics: dict[AnyMetric, _MetricRules] = rules.metrics
        self.working_time: WorkingTime = rules.working_time
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
        """Starts the ``seq``-th target of ``metric`` at ``at``, if the policy sets one.

        Caller: the handlers (session started, ticket on a designated channel, customer
        message, public agent comment, accepted appeal).
        Affects: ``state.clocks`` gains a RUNNING clock, or a PAUSED one when the ticket's
        status pauses the metric.
        """
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
        each tier fires once, at its own ``after`` (seq = the tier's index).

        Caller: the ticket handlers, when a ticket's clocks start.
        Affects: ``state.clocks``, as :meth:`start_clock`.
        """
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
        """Recomputes ``deadline`` and ``warn_at`` of a RUNNING clock from its record; clears
        them for any other.

        ``warning_only`` after a warning: the deadline does not depend on how many warnings
        went out, and a working-time deadline is worth not walking the calendar again for.
        """
        if clock.phase is not _RUNNING:
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
        """Re-selects a clock's target after a priority change, from the original start.

        Caller: the ``ticket.priority_changed`` handler, for each clock.
        Affects: the clock's target and deadline; BREACHED -> RUNNING [retraction] when the
        new deadline has not passed.
        """
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
        """Stops the clock counting at ``at``.

        Caller: the ``ticket.status_changed`` handler, when the new status pauses the metric.
        Affects: RUNNING -> PAUSED; BREACHED -> PAUSED [retraction] when ``at`` is before the
        deadline, else BREACHED stays.
        """
        phase = clock.phase
        if phase is _PAUSED:
            return
        if phase is _BREACHED:
            if clock.deadline is None or at >= clock.deadline:
                return  # the target was used up before the pause: the breach stands
            clock.breached = False
            self.emit(_RETRACTION, state, clock, reason=f"paused ({state.status}) in time")
        clock.paused_since = at
        clock.deadline = clock.warn_at = None

    def resume(self, clock: SlaClock, at: int) -> None:
        """Counts again from ``at``, the pause kept in the record.

        Caller: the ``ticket.status_changed`` handler, when the new status does not pause the
        metric.
        Affects: PAUSED -> RUNNING, with a new deadline.
        """
        if clock.paused_since is None:  # not PAUSED (phase spelled out: it narrows the type)
            return
        clock.pauses += ((clock.paused_since, max(at, clock.paused_since)),)
        clock.paused_since = None
        self.schedule(clock)

    def fire_due(self, state: SubjectState, clock: SlaClock) -> None:
        """Emits the warnings and the breach of ``clock`` that ``now`` has passed.

        Caller: :meth:`SlaEngine.advance` (a timer), for each clock of the record.
        Affects: RUNNING stays [warning] or -> BREACHED [breach, escalation].
        """
        if clock.phase is not _RUNNING:
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

    def stop(
        self, state: SubjectState, clock: SlaClock, at: int, *, met: bool, why: str
    ) -> ClockPhase:
        """Ends a clock at ``at``: with the response (``met=True``) or because it no longer
        applies (the session closed, the ticket was solved). Returns the phase it ended in.

        Caller: :meth:`respond`, :meth:`finish`, and the ``ticket.comment`` handler (the next
        periodic update).
        Affects: removes the clock from ``state.clocks``; -> MET by the deadline [met, a
        breach retracted first], else -> STOPPED [a breach retracted, or a late one].
        """
        clocks = state.clocks
        i = 0
        while clocks[i] is not clock:  # by identity: == compares every field of a clock
            i += 1
        state.clocks = clocks[:i] + clocks[i + 1 :]
        phase, deadline = clock.phase, clock.deadline
        if phase is _BREACHED:
            if deadline is not None and at <= deadline:
                self.emit(_RETRACTION, state, clock, reason=why, responded_at=at if met else None)
                if met:
                    self.emit(_MET, state, clock, responded_at=at)
                    return _MET_PHASE
            return _STOPPED
        if phase is _RUNNING and deadline is not None and at > deadline:
            self.emit(_BREACH, state, clock, responded_at=at if met else None)
            return _STOPPED
        if met:
            self.emit(_MET, state, clock, responded_at=at)
            return _MET_PHASE
        return _STOPPED

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
                clock.retracted + 1 if kind in _ROUNDED else 1,  # round
            )
        )
        if kind is _RETRACTION:
            clock.retracted += 1

    def _tier(self, seq: int) -> str:
        tiers: tuple[EscalationTier, ...] = self.rules.tiers
        return tiers[seq].tier if seq < len(tiers) else f"tier {seq}"  # policy since shortened

    def respond(self, state: SubjectState, at: int, who: str) -> None:
        """A human response at ``at`` answers every response clock started before it.

        Caller: the ``message.sent`` and ``ticket.comment`` handlers (an agent's reply).
        Affects: :meth:`stop` (met) of those clocks; ``state.responded_at``.
        """
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
        stand is retracted. A response after the close answers nothing.

        Caller: :meth:`respond`, when the close kept clocks. Affects: ``state.closed``.
        """
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
        """A customer writes again after a human response: the next response is due.

        Caller: the ``message.sent`` and ``ticket.comment`` handlers (a customer's message).
        Affects: :meth:`start_clock` of the next ``next_response``; ``state.next_seq``.
        """
        if state.responded_at is None or at < state.responded_at or state.finished_at is not None:
            return
        if state.clock(_NEXT_RESPONSE) is None and _NEXT_RESPONSE in self.metrics:
            self.start_clock(state, _NEXT_RESPONSE, state.next_seq, at)
            state.next_seq += 1

    def finish(self, state: SubjectState, at: int, why: str, *, resolved: bool) -> None:
        """The subject is done: a resolution clock is met, every other clock is moot.

        Caller: the ``session.closed`` and ``ticket.status_changed`` (solved, closed) handlers.
        Affects: :meth:`stop` of every clock; ``state.finished_at``; ``state.closed`` keeps
        the response clocks it ended, for :meth:`respond_after_close`.
        """
        closed = []
        for clock in state.clocks:  # a tuple: stop() replaces it, this loop keeps its own
            met = resolved and clock.metric is _RESOLUTION
            # A breach stands after the close when its deadline passed while counting.
            deadline = clock.deadline
            stands = clock.phase is not _PAUSED and deadline is not None and at > deadline
            self.stop(state, clock, at, met=met, why=why)
            if clock.metric in RESPONSE_METRICS:  # kept for a response sent before `at`
                clock.breached = stands
                clock.paused_since = at
                closed.append(clock)
        if closed:
            state.closed += tuple(closed)
        state.finished_at = at


_PENALISED = frozenset({Kind.BREACH, Kind.RETRACTION})
_ROUNDED = frozenset({Kind.BREACH, Kind.ESCALATION, Kind.RETRACTION})  # SlaEvent.round
_VALUE: dict[str, str] = {m: m.value for e in (SubjectType, ClockKind, TicketStatus) for m in e}
# -- event handlers: one per input type ---------------------------------------------------
# A creating handler builds the record of a new subject; an updating one changes the record
# in place. SlaEngine.apply has chosen the policy and set up the call context for both.


def _no_record(event: Event) -> RejectedEvent:
    """Why an event that cannot create a subject is refused when its subject has no record."""
    if event.subject_type is SubjectType.CHANNEL:
        return _not_for_engine(event)
    noun = "session.started" if event.subject_type is SubjectType.CHAT_SESSION else "ticket.created"
    return RejectedEvent(
        f"{event.type} for {event.subject_id!r}, but no {noun} was seen",
        code=Reason.UNKNOWN_SUBJECT,
    )


def _not_for_engine(event: Event) -> RejectedEvent:
    return RejectedEvent(
        f"{event.type} has no SLA clock: it feeds the availability KPI "
        "(monitor.kpi.KpiTracker), not the engine",
        code=Reason.NOT_FOR_ENGINE,
    )


def _new_state(call: _Call, event: Event, priority: str) -> SubjectState:
    at = event.occurred_at
    # Positional, in field order (subject_type, subject_id, tenant, policy, channel,
    # priority, created_at, last_event_at): keywords cost a dataclass __init__ more.
    return SubjectState(
        event.subject_type,
        event.subject_id,
        event.tenant,
        call.rules.policy.name,
        event.channel,
        priority,
        at,
        at,
    )


def _session_started(call: _Call, event: Event) -> SubjectState:
    state = _new_state(call, event, event.priority or "normal")
    state.clock_start = event.occurred_at  # 002 1.3: from the request, as the system records it
    call.start_clock(state, _FIRST_RESPONSE, 0, event.occurred_at)
    return state


def _ticket_created(call: _Call, event: Event) -> SubjectState:
    state = _new_state(call, event, event.priority or "P4")
    if event.designated is not False:  # 000 5.2: recorded on a designated channel
        _start_ticket_clocks(call, state, event.occurred_at)
    return state


def _created_again(call: _Call, event: Event, state: SubjectState) -> None:
    what = "session" if event.type is EventType.SESSION_STARTED else "ticket"
    done = "started" if event.type is EventType.SESSION_STARTED else "created"
    raise RejectedEvent(
        f"{what} {event.subject_id!r} was already {done}", code=Reason.DUPLICATE_SUBJECT
    )


def _channel_status(call: _Call, event: Event, state: SubjectState) -> None:
    """A channel whose name is also a stored ticket's id: still no SLA clock (004 3.3)."""
    raise _not_for_engine(event)


def _message_sent(call: _Call, event: Event, state: SubjectState) -> None:
    if event.actor is _AGENT:  # 002 2.3: bot replies and system notices never count
        call.respond(state, event.occurred_at, "agent")
    elif event.actor is _CUSTOMER:
        call.await_reply(state, event.occurred_at)


def _session_closed(call: _Call, event: Event, state: SubjectState) -> None:
    if state.finished_at is None:
        state.status = "closed"
        call.finish(state, event.occurred_at, "closed before the deadline", resolved=False)


def _start_ticket_clocks(call: _Call, state: SubjectState, at: int) -> None:
    state.clock_start = at
    call.start_clock(state, _FIRST_RESPONSE, 0, at)
    call.start_clock(state, _RESOLUTION, 0, at)
    if call.rules.tiers:
        call.start_tiers(state, at)


def _ticket_transferred(call: _Call, event: Event, state: SubjectState) -> None:
    state.channel = event.channel
    if event.designated and state.clock_start is None and state.finished_at is None:
        _start_ticket_clocks(call, state, event.occurred_at)  # 000 7.3: from the transfer


def _ticket_comment(call: _Call, event: Event, state: SubjectState) -> None:
    at = event.occurred_at
    if not event.public or state.clock_start is None:
        return  # 000 1.6/5.3: a response is what the customer is told
    if event.actor is _AGENT:
        call.respond(state, at, "agent")
        update = state.clock(_PERIODIC_UPDATE)
        if update is not None and update.started_at <= at:
            call.stop(state, update, at, met=True, why="agent updated in time")
            update = None
        if update is None and state.finished_at is None:  # 000 9.2: the next update is due
            call.start_clock(state, _PERIODIC_UPDATE, state.update_seq, at)
            state.update_seq += 1
    elif event.actor is _CUSTOMER:
        call.await_reply(state, at)


def _ticket_priority_changed(call: _Call, event: Event, state: SubjectState) -> None:
    if event.priority == state.priority:
        return
    state.priority = event.priority
    for clock in state.clocks:
        call.retarget(state, clock)


def _ticket_status_changed(call: _Call, event: Event, state: SubjectState) -> None:
    assert event.status is not None  # the schema requires it of this type
    at, status = event.occurred_at, event.status
    state.status = _VALUE[status]
    if status in FINISHED:
        if state.finished_at is None:
            call.finish(state, at, f"{state.status} in time", resolved=True)
        return
    state.finished_at = None  # reopened; a solved ticket's resolution stays final
    for clock in state.clocks:
        rules = call.metrics.get(clock.metric)
        if rules is not None and status in rules.pause_when:
            call.pause(state, clock, at)
        else:
            call.resume(clock, at)


def _ticket_appealed(call: _Call, event: Event, state: SubjectState) -> None:
    """003 5.1: an appeal within the window after the result reopens the ticket; one
    outside it is rejected (dead-lettered) with the clause in the reason."""
    appeal: AppealPolicy | None = call.rules.appeal
    at, result = event.occurred_at, state.finished_at
    tz = call.working_time.tz
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
    used = call.measure(appeal.clock, result, at)
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
        call.start_clock(state, _RESOLUTION, state.appeals, at)


def _rated(call: _Call, event: Event, state: SubjectState) -> None:
    """004 3.5 / 001 3.3: a rating changes no SLA clock; the engine only checks that the
    subject exists and remembers the event id (duplicates). monitor.kpi measures CSAT."""


_CREATING: dict[EventType, Callable[[_Call, Event], SubjectState]] = {
    EventType.SESSION_STARTED: _session_started,
    EventType.TICKET_CREATED: _ticket_created,
}
_UPDATING: dict[EventType, Callable[[_Call, Event, SubjectState], None]] = {
    EventType.SESSION_STARTED: _created_again,
    EventType.MESSAGE_SENT: _message_sent,
    EventType.SESSION_CLOSED: _session_closed,
    EventType.TICKET_CREATED: _created_again,
    EventType.TICKET_COMMENT: _ticket_comment,
    EventType.TICKET_PRIORITY_CHANGED: _ticket_priority_changed,
    EventType.TICKET_STATUS_CHANGED: _ticket_status_changed,
    EventType.TICKET_TRANSFERRED: _ticket_transferred,
    EventType.TICKET_APPEALED: _ticket_appealed,
    EventType.SESSION_RATED: _rated,
    EventType.TICKET_RATED: _rated,
    EventType.CHANNEL_STATUS: _channel_status,
}
