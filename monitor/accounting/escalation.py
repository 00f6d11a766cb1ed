"""Contract 002 6.2 as a pure state machine: SLA outcomes in, ``escalation`` facts out.

Called by replay (:func:`monitor.replay.iter_replay_escalations`, fed every SLA fact in
detection order) and by the live second stage (:mod:`monitor.live.escalation_agent`, one
:class:`TenantState` per tenant in a Faust table). No I/O, no clock: time comes from the
facts (integer microseconds), so the same facts give the same escalations in both.

Two rules, per tenant and policy (a policy's ``accounting.escalation`` section):

``breach_count`` ("累计 N 次未能达到响应时效标准")
    Breaches of the counted metrics, net of retractions, in a counting window (the calendar
    month in which the breached clock started, or the whole contract). Every N-th one trips
    once: evidence = the N breaches' ``sla_id``\\ s, ``tripped_at`` = the latest of their
    deadlines (when the N-th breach became a fact in event time). A retraction removes a
    breach not yet in a trip (in either arrival order: the two travel on different topics);
    a trip already made stands. A breach counts once however often it is re-delivered.
    A month window is closed once the *following* month's end is final by the rule that
    closes a day (below, :func:`_final_through`): its breaches are then forgotten (the trips
    stand; fewer than N pending can no longer trip) and later facts of it are counted in
    ``late`` and ignored. The month of grace is for backlogs: a partition lagging more than
    ``partition_patience`` (10 days measured on a month-long backlog) must not lose a
    month's breaches, and the penalties they escalate, as a day's stragglers are lost to
    ``slow_days``. The whole-contract window never ends.

``slow_days`` ("连续 D 天平均首次响应时间超出约定标准 20 %")
    Each day (policy time zone, by when the clock started) gets the mean over its counted
    targets of ``elapsed / target``: met targets and breaches found by the late response
    itself have an ``elapsed``; a breach found at its deadline has none (the engine stops
    the clock there and emits nothing for the later reply) and counts as
    ``unanswered_ratio`` (default 2.0). The ratio, not seconds, is averaged because a day
    mixes 180 s and 300 s targets (002 2.2): "exceeds the standard by 20 %" is then
    ``mean > 1 + margin``, each session weighed against its own standard. A day is final
    once a met or breach of a clock started ``day_closes_after`` past its end has arrived on
    every lane (live: every first-stage partition, within ``partition_patience``; replay has
    one lane); facts of a final day that arrive later are counted in ``late`` and ignored.
    D final days in a row
    (calendar days; a day without counted targets breaks the run) above the line trip once;
    the run must break before it can trip again. ``tripped_at`` = the end of the D-th day.

Each trip is one fact with a deterministic id (tenant, policy, rule, window, ordinal) and the
date the written explanation is due: ``explain_within`` calendar days after the trip's date,
or working days from the policy's business calendar. JSON shape: ``schemas/escalation.schema.json``.

Live and replay agree on ``slow_days`` exactly while the partitions stay within
``partition_patience`` of each other; on ``breach_count`` when, in addition, the breaches of
one window reach the stage in the same order up to each N-th one: breaches of different
partitions racing at a trip boundary can move a breach between two consecutive trips'
evidence (the trips' ids and count stay the same). Only a partition that lags the others by
more than a calendar month plus ``partition_patience`` has breaches counted as late.

State: :mod:`monitor.accounting.escalation_state` (small records; what is deleted when, and
what a crash between a fact's writes leaves). :meth:`Escalator.apply` first drains the
buckets an earlier fact's crash may have left (its head's ``draining``), then applies the
rules; closing days and windows adds them to ``draining``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

from monitor.accounting.escalation_state import (
    DAY,
    WINDOW,
    DayFigure,
    Drain,
    PolicyHead,
    TenantState,
    WindowHead,
    bucket_of,
    buckets_in,
    day_bucket_key,
    drain_keys,
    group_bit,
    head_key,
    window_bucket_key,
)
from monitor.accounting.rules import DayKind, EscalationRules, Window
from monitor.calendar import DayCalendar
from monitor.errors import CalendarError
from monitor.policy import Policy, PolicySet
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import format_rfc3339, from_datetime, to_datetime

BREACH_COUNT = "breach_count"
SLOW_DAYS = "slow_days"
CONTRACT = "contract"  # the window that never ends (Window.CONTRACT)


class Escalation(NamedTuple):
    """One 6.2 trip: the client may now demand a written explanation and improvement plan."""

    escalation_id: str
    rule: str  # BREACH_COUNT or SLOW_DAYS
    tenant: str
    policy: str
    clause: str
    window: str  # "2026-10" (month window) or "contract"
    ordinal: int  # 1 for the window's first trip of this rule, 2 for the second...
    tripped_at: int  # instant (µs)
    explanation_due: str  # ISO date; "" when the business calendar cannot tell (due_note)
    due_days: int
    due_kind: str  # "calendar" or "working"
    sla_ids: tuple[str, ...]  # breach_count evidence
    days: tuple[DayFigure, ...]  # slow_days evidence
    threshold: float  # N breaches, or 1 + margin
    due_note: str = ""  # why explanation_due is not known (a year the calendar has no data for)

    def to_dict(self, tz: tzinfo) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "escalation",
            "escalation_id": self.escalation_id,
            "fact_id": f"{self.escalation_id}:escalation",
            "rule": self.rule,
            "tenant": self.tenant,
            "policy": self.policy,
            "clause": self.clause,
            "window": self.window,
            "ordinal": self.ordinal,
            "tripped_at": format_rfc3339(self.tripped_at, tz),
            "explanation_due": self.explanation_due or None,
            "due_days": self.due_days,
            "due_kind": self.due_kind,
            "threshold": self.threshold,
        }
        if self.rule == BREACH_COUNT:
            out["evidence"] = {"sla_ids": list(self.sla_ids)}
        else:
            out["evidence"] = {
                "days": [
                    {"date": d.day, "mean_ratio": d.mean_ratio, "targets": d.targets}
                    for d in self.days
                ]
            }
        if self.due_note:
            out["due_note"] = self.due_note
        return out


def escalation_from_dict(obj: dict[str, Any]) -> Escalation:
    """Reads back :meth:`Escalation.to_dict` (the report's sources). Raises KeyError/ValueError
    on a malformed record; the caller names the line."""
    from monitor.timeutil import parse_rfc3339  # noqa: PLC0415 - edge-only helper

    evidence = obj.get("evidence", {})
    return Escalation(
        obj["escalation_id"],
        obj["rule"],
        obj["tenant"],
        obj["policy"],
        obj.get("clause", ""),
        obj.get("window", ""),
        int(obj.get("ordinal", 0)),
        parse_rfc3339(obj["tripped_at"]),
        obj.get("explanation_due") or "",
        int(obj.get("due_days", 0)),
        obj.get("due_kind", ""),
        tuple(evidence.get("sla_ids", ())),
        tuple(
            DayFigure(d["date"], float(d["mean_ratio"]), int(d["targets"]))
            for d in evidence.get("days", ())
        ),
        float(obj.get("threshold", 0)),
        str(obj.get("due_note", "")),
    )


def make_escalation_id(tenant: str, policy: str, rule: str, window: str, ordinal: int) -> str:
    text = f"{tenant}\x1f{policy}\x1f{rule}\x1f{window}\x1f{ordinal}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


# --- the rules (the state: monitor.accounting.escalation_state) -----------------------------


class Escalator:
    """Applies the 6.2 rules of every policy that has them. Holds the policies only; the
    state is passed in (replay keeps one :class:`TenantState` per tenant, the live stage a
    fresh one per fact over its table)."""

    def __init__(self, policies: PolicySet, lanes: Sequence[str] = ()) -> None:
        """``lanes``: the lanes facts will come from (live: every ``sla.outcomes``
        partition), so a lane that has sent nothing yet holds days open too (from the
        tenant's first fact, within ``partition_patience``). Replay: none, one implicit lane."""
        self.policies = policies
        self.lanes = tuple(lanes)

    def rules_of(self, policy_name: str) -> tuple[Policy, EscalationRules] | None:
        policy = self.policies.policies.get(policy_name)
        if policy is None or policy.accounting is None or policy.accounting.escalation is None:
            return None
        return policy, policy.accounting.escalation

    def apply(self, state: TenantState, fact: SlaEvent, lane: str = "") -> list[Escalation]:
        """Feeds one SLA fact (any kind; warnings and other metrics are ignored). ``lane``:
        the ordered stream the fact came from (live: its ``sla.outcomes`` partition; replay
        has one), for closing ``slow_days`` days (see :func:`_watermark`)."""
        found = self.rules_of(fact.policy)
        if found is None:
            return []
        policy, rules = found
        if fact.metric not in rules.metrics or fact.kind is Kind.WARNING:
            return []
        key = head_key(policy.name)
        head: PolicyHead | None = state.get(key)
        if head is None:
            head = PolicyHead()
        # Buckets an earlier fact's crash may have left: deleted before this head is stored
        # (escalation_state, "Crashes").
        for drain in head.draining:
            for bucket_key in drain_keys(policy.name, drain):
                state.drain(bucket_key)
        head.draining = []
        out: list[Escalation] = []
        late = False  # the fact's day or window is final already: it changes nothing there
        if fact.kind in (Kind.BREACH, Kind.RETRACTION):
            window = _window(fact.started_at, policy, rules)
            if _window_closed(head, window):
                late = True
            else:
                out.extend(self._breach_count(state, head, fact, policy, rules, window=window))
        day = to_datetime(fact.started_at, policy.timezone).date().isoformat()
        if head.closed_through is not None and day <= head.closed_through:
            late = True
        else:
            out.extend(self._slow_days(state, head, fact, policy, rules, day=day, lane=lane))
        if late:
            head.late += 1
        state.put(key, head)
        return out

    def _breach_count(
        self,
        state: TenantState,
        head: PolicyHead,
        fact: SlaEvent,
        policy: Policy,
        rules: EscalationRules,
        *,
        window: str,
    ) -> list[Escalation]:
        wh = head.windows.setdefault(window, WindowHead())
        sid, bucket = fact.sla_id, bucket_of(fact.sla_id)
        key = window_bucket_key(policy.name, window, bucket)
        seen: dict[str, str] = state.get(key) or {}
        if fact.kind is Kind.BREACH:
            if sid in seen:  # counted, pending or retracted already: a repeat
                return []
            seen[sid] = "b"
            state.put(key, seen)
            wh.groups |= group_bit(bucket)
            if sid in wh.pending or sid in wh.last:  # a head stored without this bucket
                return []
            wh.pending[sid] = fact.deadline
            if len(wh.pending) >= rules.breaches:
                return [self._trip_breaches(fact, policy, rules, window, wh)]
        else:  # a retraction, before or after its breach (they travel on different topics)
            if seen.get(sid) != "x":
                seen[sid] = "x"
                state.put(key, seen)
                wh.groups |= group_bit(bucket)
            wh.pending.pop(sid, None)  # a trip already made stands
        return []

    def _trip_breaches(
        self,
        fact: SlaEvent,
        policy: Policy,
        rules: EscalationRules,
        window: str,
        wh: WindowHead,
    ) -> Escalation:
        evidence = sorted(wh.pending.items(), key=lambda item: (item[1], item[0]))
        wh.pending.clear()
        wh.last = [sid for sid, _ in evidence]
        wh.trips += 1
        tripped_at = max(deadline for _, deadline in evidence)
        return self._escalation(
            fact.tenant,
            policy,
            rules,
            rule=BREACH_COUNT,
            window=window,
            ordinal=wh.trips,
            tripped_at=tripped_at,
            sla_ids=tuple(sid for sid, _ in evidence),
            threshold=float(rules.breaches),
        )

    def _slow_days(
        self,
        state: TenantState,
        head: PolicyHead,
        fact: SlaEvent,
        policy: Policy,
        rules: EscalationRules,
        *,
        day: str,
        lane: str,
    ) -> list[Escalation]:
        """``day``: the fact's, not final yet (apply counts facts of final days as late)."""
        # Any fact opens its day, a retraction too (an empty day breaks a run).
        head.open_days.setdefault(day, 0)
        sid, bucket = fact.sla_id, bucket_of(fact.sla_id)
        bkey = day_bucket_key(policy.name, day, bucket)
        targets: dict[str, list[Any]] = state.get(bkey) or {}
        entry = targets.get(sid)  # [ratio, met]
        new = entry
        if fact.kind is Kind.MET:
            new = [_ratio(fact), True]
        elif fact.kind is Kind.BREACH:
            if entry is None or not entry[1]:
                elapsed = fact.elapsed_seconds
                new = [_ratio(fact) if elapsed is not None else rules.unanswered_ratio, False]
        elif fact.kind is Kind.RETRACTION and entry is not None and not entry[1]:
            new = None  # the target no longer applies, or a met follows
        if new != entry:
            if new is not None:
                targets[sid] = new
            else:
                del targets[sid]
            state.put(bkey, targets)
            head.open_days[day] |= group_bit(bucket)
        if fact.kind is not Kind.RETRACTION:
            for expected in self.lanes:
                head.lanes.setdefault(expected, fact.started_at)
            if fact.started_at > head.lanes.get(lane, 0):
                head.lanes[lane] = fact.started_at
        return self._close_days(state, head, fact.tenant, policy, rules)

    def _close_days(
        self,
        state: TenantState,
        head: PolicyHead,
        tenant: str,
        policy: Policy,
        rules: EscalationRules,
    ) -> list[Escalation]:
        """Closes the days, then the month windows, that are final (see :func:`_final_through`),
        oldest first; returns the ``slow_days`` trips."""
        out: list[Escalation] = []
        final = _final_through(head, rules)
        if final is None:
            return out
        tz = policy.timezone
        for day in sorted(head.open_days):
            end = _day_end(day, tz)
            if end > final:
                break
            ratios: list[float] = []
            groups = head.open_days.pop(day)
            for bucket in buckets_in(groups):
                key = day_bucket_key(policy.name, day, bucket)
                ratios.extend(r for r, _ in (state.get(key) or {}).values())
                state.delete(key)  # stored after the head: the next fact deletes them again
            head.draining.append(Drain(DAY, day, groups))
            head.closed_through = day
            figure = (
                # fsum: exact, so the order the facts arrived in (live) cannot change the mean
                DayFigure(day, round(math.fsum(ratios) / len(ratios), 6), len(ratios))
                if ratios
                else None
            )
            if figure is None or figure.mean_ratio <= 1 + rules.margin:
                head.run, head.run_tripped = [], False
                continue
            if head.run and date.fromisoformat(head.run[-1].day) + timedelta(days=1) != (
                date.fromisoformat(day)
            ):
                head.run, head.run_tripped = [], False
            head.run.append(figure)
            if len(head.run) >= rules.consecutive_days and not head.run_tripped:
                head.run_tripped = True
                window = day[:7] if rules.window is Window.MONTH else CONTRACT
                head.slow_trips[window] = ordinal = head.slow_trips.get(window, 0) + 1
                evidence = tuple(head.run[-rules.consecutive_days :])
                out.append(
                    self._escalation(
                        tenant,
                        policy,
                        rules,
                        rule=SLOW_DAYS,
                        window=window,
                        ordinal=ordinal,
                        tripped_at=end,
                        days=evidence,
                        threshold=round(1 + rules.margin, 6),
                    )
                )
            head.run = head.run[-rules.consecutive_days :]
        self._close_windows(state, head, policy, rules, final)
        return out

    def _close_windows(
        self,
        state: TenantState,
        head: PolicyHead,
        policy: Policy,
        rules: EscalationRules,
        final: int,
    ) -> None:
        """Forgets the ``breach_count`` month windows whose following month ended by
        ``final`` (a month of grace, see the module doc): their buckets (every breach and
        retraction of the month, about 53 bytes each) and their head. Their trips are made;
        breaches still pending (fewer than N) can no longer trip, since any later fact of the
        window is late. The whole-contract window never ends."""
        if rules.window is not Window.MONTH:
            return
        tz = policy.timezone
        for window in sorted(head.windows):
            if window == CONTRACT:  # a policy that counted over the contract before
                continue
            if _month_end(_next_month(window), tz) > final:
                break
            groups = head.windows.pop(window).groups
            for key in drain_keys(policy.name, Drain(WINDOW, window, groups)):
                state.delete(key)  # stored after the head: the next fact deletes them again
            head.draining.append(Drain(WINDOW, window, groups))
            head.windows_closed_through = window

    def _escalation(
        self,
        tenant: str,
        policy: Policy,
        rules: EscalationRules,
        *,
        rule: str,
        window: str,
        ordinal: int,
        tripped_at: int,
        sla_ids: tuple[str, ...] = (),
        days: tuple[DayFigure, ...] = (),
        threshold: float,
    ) -> Escalation:
        tripped_on = to_datetime(tripped_at, policy.timezone).date()
        # A working-day deadline can run into a year the business calendar has no data for
        # (a trip in late December, before next year's holidays are published). The trip is
        # a fact all the same: it is emitted with no due date and the calendar's reason
        # (which year, which override file to add), as the monthly report does with its own
        # due date, never dead-lettered (that would lose the trip) nor guessed from weekdays.
        # The same in replay and live; due_days and due_kind let a reader compute it later.
        due, note = "", ""
        try:
            due = explanation_due(
                tripped_on, rules.explain_within, rules.explain_days, policy.working_time.days
            ).isoformat()
        except CalendarError as exc:
            note = f"the explanation due date is not known: {exc}"
        return Escalation(
            make_escalation_id(tenant, policy.name, rule, window, ordinal),
            rule,
            tenant,
            policy.name,
            rules.clause,
            window,
            ordinal,
            tripped_at,
            due,
            rules.explain_within,
            rules.explain_days.value,
            sla_ids,
            days,
            threshold,
            note,
        )


def explanation_due(start: date, days: int, kind: DayKind, calendar: DayCalendar) -> date:
    """``days`` calendar days after ``start``, or the ``days``-th working day after it."""
    if kind is DayKind.CALENDAR:
        return start + timedelta(days=days)
    return add_working_days(start, days, calendar)


def add_working_days(start: date, days: int, calendar: DayCalendar) -> date:
    """The ``days``-th working day after ``start`` (``start`` itself not counted)."""
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if calendar.is_working_day(current):
            left -= 1
    return current


def _final_through(head: PolicyHead, rules: EscalationRules) -> int | None:
    """The instant up to which the tenant's figures are final: a day or a month window that
    ended by then is closed (facts of it arriving later are ``late``). That is once a fact of
    a clock started ``day_closes_after`` past the end has arrived on every lane (within
    ``partition_patience``, see :func:`_watermark`). None before any lane has a fact."""
    horizon = _watermark(head.lanes, rules.partition_patience)
    return None if horizon is None else horizon - rules.day_closes_after


def _watermark(lanes: dict[str, int], patience: int) -> int | None:
    """The instant every lane has passed: the slowest lane's latest ``started_at``, ignoring
    lanes more than ``patience`` (``partition_patience``) behind the fastest. Replay has one
    lane, so this is simply the latest ``started_at`` it has seen.

    Patience: a tenant's sessions hash over every partition, so a small tenant can leave a
    partition without any of its facts for a while. That lane is quiet, not behind: its next
    fact is a new one, so ignoring it loses nothing, while waiting for it holds the tenant's
    escalation back. A lane lagging more than ``patience`` in a backlog is ignored too, and its
    stragglers of a closed day then count as ``late`` (measured: the known month as a backlog
    on 4 partitions, read in 2 s, spread the partitions up to 10 days apart).

    Why lanes: live, one tenant's facts reach the stage from every first-stage partition,
    interleaved as they are read; with a backlog one partition can run days ahead of another.
    Closing a day on the fastest partition would drop the slower ones' facts of that day
    (observed: the known month on 4 partitions lost its ``slow_days`` trip); on the slowest,
    each day closes only after all partitions have moved past it, as in replay."""
    if not lanes:
        return None
    fastest = max(lanes.values())
    return min(h for h in lanes.values() if h >= fastest - patience)


def _ratio(fact: SlaEvent) -> float:
    elapsed = fact.elapsed_seconds
    assert elapsed is not None
    return elapsed / fact.target_seconds if fact.target_seconds > 0 else 0.0


def _window(instant: int, policy: Policy, rules: EscalationRules) -> str:
    """The ``breach_count`` window of a clock started at ``instant``."""
    if rules.window is Window.MONTH:
        return to_datetime(instant, policy.timezone).strftime("%Y-%m")
    return CONTRACT


def _window_closed(head: PolicyHead, window: str) -> bool:
    closed = head.windows_closed_through
    return window != CONTRACT and closed is not None and window <= closed


def _month_end(month: str, tz: tzinfo) -> int:
    """The instant the local month ``month`` ("2026-10") ends (its last day's end)."""
    first = date.fromisoformat(f"{month}-01")
    last = (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    return _day_end(last.isoformat(), tz)


def _next_month(month: str) -> str:
    """The month after ``month`` ("2026-12" -> "2027-01")."""
    year, number = (int(part) for part in month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _day_end(day: str, tz: tzinfo) -> int:
    """The instant the local day ``day`` ends (the next local midnight)."""
    following = date.fromisoformat(day) + timedelta(days=1)
    return from_datetime(datetime.combine(following, time(0), tzinfo=tz))


__all__ = [
    "BREACH_COUNT",
    "SLOW_DAYS",
    "DayFigure",
    "Escalation",
    "Escalator",
    "TenantState",
    "add_working_days",
    "escalation_from_dict",
    "explanation_due",
    "make_escalation_id",
]
