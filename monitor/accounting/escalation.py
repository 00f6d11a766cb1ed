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
``partition_patience`` of each other; on ``breach_count`` when the breaches of one window
reach the stage in the same order up to each N-th one: breaches of different partitions
racing at a trip boundary can move a breach between two consecutive trips' evidence (the
trips' ids and count stay the same).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple

import orjson

from monitor.accounting.rules import DayKind, EscalationRules, Window
from monitor.calendar import DayCalendar
from monitor.policy import Policy, PolicySet
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import format_rfc3339, from_datetime, to_datetime

BREACH_COUNT = "breach_count"
SLOW_DAYS = "slow_days"


class DayFigure(NamedTuple):
    """One day's evidence for ``slow_days``."""

    day: str  # ISO date, policy time zone
    mean_ratio: float  # mean of elapsed / target
    targets: int  # how many targets the mean is over


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
    explanation_due: str  # ISO date
    due_days: int
    due_kind: str  # "calendar" or "working"
    sla_ids: tuple[str, ...]  # breach_count evidence
    days: tuple[DayFigure, ...]  # slow_days evidence
    threshold: float  # N breaches, or 1 + margin

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
            "explanation_due": self.explanation_due,
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
        obj.get("explanation_due", ""),
        int(obj.get("due_days", 0)),
        obj.get("due_kind", ""),
        tuple(evidence.get("sla_ids", ())),
        tuple(
            DayFigure(d["date"], float(d["mean_ratio"]), int(d["targets"]))
            for d in evidence.get("days", ())
        ),
        float(obj.get("threshold", 0)),
    )


def make_escalation_id(tenant: str, policy: str, rule: str, window: str, ordinal: int) -> str:
    text = f"{tenant}\x1f{policy}\x1f{rule}\x1f{window}\x1f{ordinal}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


# --- state ----------------------------------------------------------------------------------


@dataclass
class _WindowState:
    """breach_count in one counting window."""

    pending: dict[str, int] = field(default_factory=dict)  # sla_id -> deadline, not yet tripped
    counted: list[str] = field(default_factory=list)  # in a trip already
    retracted: list[str] = field(default_factory=list)
    trips: int = 0


@dataclass
class _PolicyState:
    windows: dict[str, _WindowState] = field(default_factory=dict)
    # slow_days: open days -> sla_id -> (ratio, met)
    days: dict[str, dict[str, tuple[float, bool]]] = field(default_factory=dict)
    closed_through: str | None = None  # last final day (ISO)
    run: list[DayFigure] = field(default_factory=list)  # final days above the line, in a row
    run_tripped: bool = False
    slow_trips: dict[str, int] = field(default_factory=dict)  # window -> trips
    # Latest started_at of a met or breach per lane (replay: one lane ""; live: the
    # sla.outcomes partition the fact came from). Days close on the slowest lane.
    lanes: dict[str, int] = field(default_factory=dict)
    late: int = 0


@dataclass
class TenantState:
    """Everything 6.2 remembers for one tenant (a value of the live stage's table)."""

    policies: dict[str, _PolicyState] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                name: {
                    "windows": {
                        w: [s.pending, s.counted, s.retracted, s.trips]
                        for w, s in p.windows.items()
                    },
                    "days": {d: {k: list(v) for k, v in ids.items()} for d, ids in p.days.items()},
                    "closed_through": p.closed_through,
                    "run": [list(d) for d in p.run],
                    "run_tripped": p.run_tripped,
                    "slow_trips": p.slow_trips,
                    "lanes": p.lanes,
                    "late": p.late,
                }
                for name, p in self.policies.items()
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | None) -> TenantState:
        if not raw:
            return cls()
        out = cls()
        for name, p in orjson.loads(raw).items():
            out.policies[name] = _PolicyState(
                windows={
                    w: _WindowState(dict(s[0]), list(s[1]), list(s[2]), int(s[3]))
                    for w, s in p["windows"].items()
                },
                days={
                    d: {k: (float(v[0]), bool(v[1])) for k, v in ids.items()}
                    for d, ids in p["days"].items()
                },
                closed_through=p["closed_through"],
                run=[DayFigure(str(d[0]), float(d[1]), int(d[2])) for d in p["run"]],
                run_tripped=bool(p["run_tripped"]),
                slow_trips={k: int(v) for k, v in p["slow_trips"].items()},
                lanes={str(k): int(v) for k, v in p.get("lanes", {}).items()},
                late=int(p["late"]),
            )
        return out


# --- the rules ------------------------------------------------------------------------------


class Escalator:
    """Applies the 6.2 rules of every policy that has them. Holds the policies only; the
    state is passed in (replay keeps a dict of them, the live stage a table)."""

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
        ps = state.policies.setdefault(policy.name, _PolicyState())
        tz = policy.timezone
        out: list[Escalation] = []
        window = _month(fact.started_at, tz) if rules.window is Window.MONTH else "contract"
        ws = ps.windows.setdefault(window, _WindowState())
        if fact.kind is Kind.BREACH:
            sid = fact.sla_id
            if sid not in ws.pending and sid not in ws.counted and sid not in ws.retracted:
                ws.pending[sid] = fact.deadline
                if len(ws.pending) >= rules.breaches:
                    out.append(self._trip_breaches(fact, policy, rules, window, ws))
        elif fact.kind is Kind.RETRACTION:
            if fact.sla_id not in ws.retracted:
                ws.retracted.append(fact.sla_id)
            ws.pending.pop(fact.sla_id, None)
        out.extend(self._slow_days(ps, fact, policy, rules, lane))
        return out

    def _trip_breaches(
        self,
        fact: SlaEvent,
        policy: Policy,
        rules: EscalationRules,
        window: str,
        ws: _WindowState,
    ) -> Escalation:
        evidence = sorted(ws.pending.items(), key=lambda item: (item[1], item[0]))
        ws.pending.clear()
        ws.counted.extend(sid for sid, _ in evidence)
        ws.trips += 1
        tripped_at = max(deadline for _, deadline in evidence)
        return self._escalation(
            fact.tenant,
            policy,
            rules,
            rule=BREACH_COUNT,
            window=window,
            ordinal=ws.trips,
            tripped_at=tripped_at,
            sla_ids=tuple(sid for sid, _ in evidence),
            threshold=float(rules.breaches),
        )

    def _slow_days(
        self, ps: _PolicyState, fact: SlaEvent, policy: Policy, rules: EscalationRules, lane: str
    ) -> list[Escalation]:
        tz = policy.timezone
        day = to_datetime(fact.started_at, tz).date().isoformat()
        if ps.closed_through is not None and day <= ps.closed_through:
            ps.late += 1
            return []
        ids = ps.days.setdefault(day, {})
        sid = fact.sla_id
        if fact.kind is Kind.MET:
            ids[sid] = (_ratio(fact), True)
        elif fact.kind is Kind.BREACH:
            if sid not in ids or not ids[sid][1]:
                elapsed = fact.elapsed_seconds
                ratio = _ratio(fact) if elapsed is not None else rules.unanswered_ratio
                ids[sid] = (ratio, False)
        elif fact.kind is Kind.RETRACTION and sid in ids and not ids[sid][1]:
            del ids[sid]  # the target no longer applies, or a met follows
        if fact.kind is not Kind.RETRACTION:
            for expected in self.lanes:
                ps.lanes.setdefault(expected, fact.started_at)
            if fact.started_at > ps.lanes.get(lane, 0):
                ps.lanes[lane] = fact.started_at
        return self._close_days(ps, fact.tenant, policy, rules)

    def _close_days(
        self, ps: _PolicyState, tenant: str, policy: Policy, rules: EscalationRules
    ) -> list[Escalation]:
        out: list[Escalation] = []
        horizon = _watermark(ps.lanes, rules.partition_patience)
        if horizon is None:
            return out
        tz = policy.timezone
        for day in sorted(ps.days):
            end = _day_end(day, tz)
            if end + rules.day_closes_after > horizon:
                break
            ids = ps.days.pop(day)
            ps.closed_through = day
            figure = (
                # fsum: exact, so the order the facts arrived in (live) cannot change the mean
                DayFigure(day, round(math.fsum(r for r, _ in ids.values()) / len(ids), 6), len(ids))
                if ids
                else None
            )
            if figure is None or figure.mean_ratio <= 1 + rules.margin:
                ps.run, ps.run_tripped = [], False
                continue
            if ps.run and date.fromisoformat(ps.run[-1].day) + timedelta(days=1) != (
                date.fromisoformat(day)
            ):
                ps.run, ps.run_tripped = [], False
            ps.run.append(figure)
            if len(ps.run) >= rules.consecutive_days and not ps.run_tripped:
                ps.run_tripped = True
                window = day[:7] if rules.window is Window.MONTH else "contract"
                ps.slow_trips[window] = ordinal = ps.slow_trips.get(window, 0) + 1
                evidence = tuple(ps.run[-rules.consecutive_days :])
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
            ps.run = ps.run[-rules.consecutive_days :]
        return out

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
        due = explanation_due(
            tripped_on,
            rules.explain_within,
            rules.explain_days,
            policy.working_time.days,
        )
        return Escalation(
            make_escalation_id(tenant, policy.name, rule, window, ordinal),
            rule,
            tenant,
            policy.name,
            rules.clause,
            window,
            ordinal,
            tripped_at,
            due.isoformat(),
            rules.explain_within,
            rules.explain_days.value,
            sla_ids,
            days,
            threshold,
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


def _month(instant: int, tz: tzinfo) -> str:
    return to_datetime(instant, tz).strftime("%Y-%m")


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
