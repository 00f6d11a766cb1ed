"""The monthly compliance report (contract 002 3.3) as data: built from SLA facts, escalations,
agent statuses and (optionally) the input events; rendered by ``render_html``/``render_json``/
``render_csv``/``render_xlsx``. Called by :mod:`monitor.accounting.cli`. Pure.

Definitions (each figure is reproducible from ``sla-monitor replay`` output):

* A target (an ``sla_id``) belongs to the month in which its clock started, in its policy's
  time zone. Its *verdict* is its last fact other than a warning: ``met``, ``breach``, or a
  ``retraction`` standing alone (the target no longer applies: not counted). A target with
  only warnings is still open and not counted.
* requests = met + breached; compliance rate (达标率) = met / requests.
* mean and p90 of the measured response (``elapsed_seconds``: met targets and breaches found
  by the late response itself); p90 is the nearest-rank percentile.
* The report is due ``due_working_days`` (5) working days after the month's last day, from
  the tenant's business calendar (3.3): October 2026 -> 2026-11-06.
* Service-quality KPIs (004 3.3-3.5, 001 3.2-3.3: availability, first-contact resolution,
  CSAT) per channel of the month, from the input events among the sources, computed by
  :mod:`monitor.kpi` exactly as ``sla-monitor replay --kpis`` does (see :func:`_kpis`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitor.accounting.causes import Cause, WaitingIndex, classify
from monitor.accounting.escalation import Escalation, add_working_days
from monitor.accounting.ledger import Ledger, build_ledger
from monitor.accounting.presence import build_presence
from monitor.accounting.rules import AccountingRules
from monitor.engine import SlaEngine
from monitor.errors import CalendarError, SlaMonitorError
from monitor.events import AgentStatus, Event
from monitor.kpi import KpiRow, KpiTracker
from monitor.policy import Policy, PolicySet
from monitor.replay import Replay
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import format_rfc3339, from_datetime, to_datetime
from monitor.vocabulary import SubjectType

ALL = "all"
PERIODS = ("working_hours", "after_hours", "rest_day")
DEFAULT_RULES = AccountingRules("002 3.3", 5, "002 6.1", 3.0, None)


class ReportError(SlaMonitorError):
    """The report cannot be built as asked (a bad month, facts of an unknown policy...)."""


@dataclass(frozen=True, slots=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        try:
            parsed = datetime.strptime(text, "%Y-%m")  # noqa: DTZ007 - a month, no instant
        except ValueError:
            raise ReportError(f"--month {text!r}: expected YYYY-MM, e.g. 2026-10") from None
        return cls(parsed.year, parsed.month)

    def __str__(self) -> str:
        return f"{self.year:04}-{self.month:02}"

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        following = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        return following - timedelta(days=1)

    def bounds(self, tz: ZoneInfo) -> tuple[int, int]:
        start = from_datetime(datetime.combine(self.first, time(0), tzinfo=tz))
        end = from_datetime(datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=tz))
        return start, end


@dataclass(frozen=True, slots=True)
class Figures:
    requests: int
    met: int
    breached: int
    compliance: float | None  # met / requests
    mean_seconds: float | None
    p90_seconds: float | None
    measured: int  # how many responses the mean and p90 are over

    @classmethod
    def of(cls, verdicts: Sequence[SlaEvent]) -> Figures:
        met = sum(1 for f in verdicts if f.kind is Kind.MET)
        breached = sum(1 for f in verdicts if f.kind is Kind.BREACH)
        elapsed = sorted(e for f in verdicts if (e := f.elapsed_seconds) is not None)
        requests = met + breached
        return cls(
            requests,
            met,
            breached,
            round(met / requests, 6) if requests else None,
            round(math.fsum(elapsed) / len(elapsed), 3) if elapsed else None,
            elapsed[max(0, math.ceil(0.9 * len(elapsed)) - 1)] if elapsed else None,
            len(elapsed),
        )


@dataclass(frozen=True, slots=True)
class MetricRow:
    subject_type: str  # chat_session or ticket
    channel: str
    metric: str
    period: str  # ALL or a period
    targets_seconds: tuple[float, ...]
    figures: Figures


@dataclass(frozen=True, slots=True)
class DayRow:
    day: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class BreachRow:
    sla_id: str
    subject_id: str
    channel: str | None
    metric: str
    period: str
    started_at: str
    deadline: str
    target_seconds: float
    cause: str


@dataclass(frozen=True, slots=True)
class PresenceRow:
    channel: str
    agents: int
    online_agent_hours: float
    uncovered_working_hours: float  # working time with nobody online serving the channel


@dataclass
class TenantReport:
    tenant: str
    timezone: str
    rows: list[MetricRow] = field(default_factory=list)
    days: list[DayRow] = field(default_factory=list)
    first_responses: list[tuple[float, float]] = field(default_factory=list)  # elapsed, target
    breaches: list[BreachRow] = field(default_factory=list)
    causes: dict[str, int] = field(default_factory=dict)
    presence: list[PresenceRow] = field(default_factory=list)
    presence_known: bool = False
    ledger: Ledger = field(default_factory=lambda: Ledger((), {}, 0))
    escalations: list[Escalation] = field(default_factory=list)
    open_targets: int = 0  # only warnings so far
    # 004 3.3-3.5 / 001 3.2-3.3, one row per channel of the month; kpis_known: input events
    # were among the sources (else nothing could be measured)
    kpis: list[KpiRow] = field(default_factory=list)
    kpis_known: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows and not self.escalations and not self.presence and not self.kpis


@dataclass
class Report:
    month: str
    due_date: str | None  # None: the calendar does not know the days after the month yet
    due_clause: str
    due_working_days: int
    compliance_target: float
    tenants: list[TenantReport]
    sources: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The machine form (``schemas/report.schema.json``)."""
        out: dict[str, Any] = {
            "month": self.month,
            "due_date": self.due_date,
            "due_clause": self.due_clause,
            "due_working_days": self.due_working_days,
            "compliance_target": self.compliance_target,
            "sources": self.sources,
            "notes": self.notes,
            "tenants": [],
        }
        for t in self.tenants:
            tz = ZoneInfo(t.timezone)
            out["tenants"].append(
                {
                    "tenant": t.tenant,
                    "timezone": t.timezone,
                    "empty": t.empty,
                    "notes": t.notes,
                    "metrics": [
                        {
                            "subject_type": r.subject_type,
                            "channel": r.channel,
                            "metric": r.metric,
                            "period": r.period,
                            "targets_seconds": list(r.targets_seconds),
                            **asdict(r.figures),
                        }
                        for r in t.rows
                    ],
                    "days": [{"date": d.day, **asdict(d.figures)} for d in t.days],
                    "breaches": [asdict(b) for b in t.breaches],
                    "causes": t.causes,
                    "presence_known": t.presence_known,
                    "presence": [asdict(p) for p in t.presence],
                    "ledger": {
                        "rows": [
                            {
                                **asdict(r),
                                "started_at": format_rfc3339(r.started_at, tz),
                                "deadline": format_rfc3339(r.deadline, tz),
                            }
                            for r in t.ledger.rows
                        ],
                        "totals": t.ledger.totals,
                        "retracted": t.ledger.retracted,
                    },
                    "escalations": [e.to_dict(tz) for e in t.escalations],
                    "open_targets": t.open_targets,
                    "kpis_known": t.kpis_known,
                    "kpis": [_kpi_dict(k) for k in t.kpis],
                }
            )
        return out


@dataclass
class Inputs:
    """What the sources held (monitor.accounting.source)."""

    facts: list[SlaEvent] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    statuses: list[AgentStatus] = field(default_factory=list)
    # subject id -> sorted instants of bot/system messages; None when no input events were read
    bot_messages: dict[str, list[int]] | None = None
    # the valid input events (the KPIs' inputs), in source order; None when none were read
    events: list[Event] | None = None
    sources: list[str] = field(default_factory=list)


def build_report(
    inputs: Inputs, policies: PolicySet, month: Month, tenant: str | None = None
) -> Report:
    # The latest instant the sources know of: a month still in progress (a report read from a
    # running demo's topics) counts presence up to there, not to the month's end.
    horizon = max(
        [f.detected_at for f in inputs.facts]
        + [s.occurred_at for s in inputs.statuses]
        + [e.occurred_at for e in inputs.events or ()],
        default=None,
    )
    kpis = _kpis(inputs.events, policies, month, horizon)
    verdicts, retracted, open_ids = _verdicts(inputs.facts)
    by_tenant: dict[str, list[SlaEvent]] = defaultdict(list)
    retracted_by_tenant: Counter[str] = Counter()
    open_by_tenant: Counter[str] = Counter()
    for fact in verdicts:
        if _in_month(fact, policies, month):
            by_tenant[fact.tenant].append(fact)
    for fact in retracted:
        if _in_month(fact, policies, month):
            retracted_by_tenant[fact.tenant] += 1
    for fact in open_ids:
        if _in_month(fact, policies, month):
            open_by_tenant[fact.tenant] += 1
    statuses: dict[str, list[AgentStatus]] = defaultdict(list)
    for status in inputs.statuses:
        statuses[status.tenant].append(status)
    tenants = sorted(
        set(by_tenant)
        | set(statuses)
        | {e.tenant for e in inputs.escalations}
        | {k.tenant for k in kpis}
    )
    if tenant is not None:
        tenants = [tenant]
    reports: list[TenantReport] = []
    due: date | str | None = None  # str: why the calendar cannot date it
    rules = DEFAULT_RULES
    for name in tenants:
        policy = _tenant_policy(policies, name)
        rules = policy.accounting or DEFAULT_RULES
        if due is None:
            due = _due_date(month, rules, policy)
        t = _tenant_report(
            name,
            policy,
            rules,
            month,
            verdicts=by_tenant.get(name, []),
            statuses=statuses.get(name, []),
            escalations=[e for e in inputs.escalations if e.tenant == name],
            bot_messages=inputs.bot_messages,
            retracted=retracted_by_tenant[name],
            horizon=horizon,
        )
        t.open_targets = open_by_tenant[name]
        t.kpis_known = inputs.events is not None
        t.kpis = [k for k in kpis if k.tenant == name]
        if not t.kpis_known:
            t.notes.append(
                "service-quality KPIs (004 3.3-3.5, 001 3.2-3.3) are not measured: the input "
                "events (channel.status, tickets, ratings) were not among the sources"
            )
        elif not t.kpis:
            t.notes.append(
                f"no KPI inputs (channel statuses, solved tickets, ratings) for {name} in {month}"
            )
        elif horizon is not None and horizon < month.bounds(policy.timezone)[1]:
            t.notes.append(
                f"the sources end at {format_rfc3339(horizon, policy.timezone)}: channel "
                "availability is counted up to then"
            )
        if t.empty:
            t.notes.append(f"no SLA facts, agent statuses or escalations for {name} in {month}")
        reports.append(t)
    if due is None:  # no tenant at all: the default policy's calendar still dates the report
        due = _due_date(month, rules, _tenant_policy(policies, "*"))
    notes = [] if reports else [f"the sources hold no SLA facts for {month}"]
    if isinstance(due, str):
        notes.append(due)
    return Report(
        str(month),
        due.isoformat() if isinstance(due, date) else None,
        rules.report_clause,
        rules.report_due_working_days,
        0.95,
        reports,
        inputs.sources,
        notes,
    )


def _kpis(
    events: list[Event] | None, policies: PolicySet, month: Month, horizon: int | None
) -> list[KpiRow]:
    """The month's KPI rows of every tenant (and channel).

    The events go through a replay with a KPI tracker, as ``sla-monitor replay --kpis`` and the
    worker do: the tracker must see only the events the engine accepts (a duplicate rating or
    a rating of an unknown ticket must not count, monitor.kpi.tracker), and only the engine
    knows which those are. Sorted by event time first (stable): Kafka partitions interleave,
    and channel statuses must come in time order. Channel time is counted up to the month's
    end, or up to the last instant the sources know of if that is earlier (a month still in
    progress), as agent presence is."""
    if not events:
        return []
    start, end = month.bounds(_zone(policies))
    tracker = KpiTracker(policies)
    replay = Replay(SlaEngine(policies), tracker)
    for event in sorted(events, key=lambda e: e.occurred_at):
        replay.feed(event)
    # The tracker itself, not replay.advance_to: that is a no-op at the clock, and the last
    # channel's time since its last status would go uncounted (web's whole month, in the test).
    tracker.advance(end if horizon is None else max(start, min(end, horizon)))
    return [r for r in tracker.rows() if r.month == str(month)]


def _zone(policies: PolicySet) -> ZoneInfo:
    """The default policy's zone bounds the month for the cap above (every tenant's rows are
    still cut into months in its own policy's zone by the tracker)."""
    return _tenant_policy(policies, "*").timezone


def _kpi_dict(row: KpiRow) -> dict[str, Any]:
    out = row.to_dict()
    del out["tenant"], out["month"]  # the tenant's and the report's
    return out


def _due_date(month: Month, rules: AccountingRules, policy: Policy) -> date | str:
    """The 3.3 due date, or why the business calendar cannot tell it yet: December's report
    falls due in January, before the library knows next year's holidays. The figures of the
    month itself do not depend on it, so the report is still made (with the reason)."""
    try:
        return add_working_days(month.last, rules.report_due_working_days, policy.working_time.days)
    except CalendarError as exc:
        return f"the due date is not known: {exc}"


def _verdicts(
    facts: Iterable[SlaEvent],
) -> tuple[list[SlaEvent], list[SlaEvent], list[SlaEvent]]:
    """(met/breach verdicts, breaches proven wrong, targets with only warnings)."""
    last: dict[str, SlaEvent] = {}
    breached: set[str] = set()
    for fact in facts:
        if fact.kind is Kind.WARNING:
            if fact.sla_id not in last:
                last[fact.sla_id] = fact
            continue
        if fact.kind is Kind.BREACH:
            breached.add(fact.sla_id)
        last[fact.sla_id] = fact
    verdicts = [f for f in last.values() if f.kind in (Kind.MET, Kind.BREACH)]
    retracted = [f for f in last.values() if f.kind is not Kind.BREACH and f.sla_id in breached]
    open_ = [f for f in last.values() if f.kind is Kind.WARNING]
    return verdicts, retracted, open_


def _in_month(fact: SlaEvent, policies: PolicySet, month: Month) -> bool:
    policy = policies.policies.get(fact.policy)
    if policy is None:
        raise ReportError(
            f"SLA fact {fact.sla_id} names policy {fact.policy!r}, which the loaded policies "
            f"do not define: pass the policies that produced the facts with --policies"
        )
    local = to_datetime(fact.started_at, policy.timezone)
    return (local.year, local.month) == (month.year, month.month)


def _tenant_policy(policies: PolicySet, tenant: str) -> Policy:
    """The policy whose calendar and accounting rules the tenant's report follows: its chat
    policy (contract 002), else its ticket policy."""
    try:
        return policies.for_subject(tenant, SubjectType.CHAT_SESSION)
    except SlaMonitorError:
        try:
            return policies.for_subject(tenant, SubjectType.TICKET)
        except SlaMonitorError:
            raise ReportError(f"no policy covers tenant {tenant!r}") from None


def _tenant_report(
    tenant: str,
    policy: Policy,
    rules: AccountingRules,
    month: Month,
    *,
    verdicts: list[SlaEvent],
    statuses: list[AgentStatus],
    escalations: list[Escalation],
    bot_messages: dict[str, list[int]] | None,
    retracted: int,
    horizon: int | None = None,
) -> TenantReport:
    tz = policy.timezone
    start, end = month.bounds(tz)
    # Presence (agent-hours, uncovered working time) only as far as the sources reach.
    seen_end = end if horizon is None else max(start, min(end, horizon))
    out = TenantReport(tenant, str(tz))
    verdicts.sort(key=lambda f: (f.started_at, f.sla_id))
    groups: dict[tuple[str, str, str, str], list[SlaEvent]] = defaultdict(list)
    for fact in verdicts:
        key = (fact.subject_type, fact.channel or "", fact.metric.value)
        groups[(*key, ALL)].append(fact)
        groups[(*key, fact.period.value)].append(fact)
    order = {p: i for i, p in enumerate((ALL, *PERIODS))}
    metric_order = {"first_response": 0, "next_response": 1, "periodic_update": 2}
    for (subject, channel, metric, period), facts in sorted(
        groups.items(),
        key=lambda kv: (kv[0][0], metric_order.get(kv[0][2], 3), kv[0][1], order[kv[0][3]]),
    ):
        targets = tuple(sorted({f.target_seconds for f in facts}))
        out.rows.append(MetricRow(subject, channel, metric, period, targets, Figures.of(facts)))
    # The daily chart and the distribution are contract 002's: chat first responses.
    first = [
        f
        for f in verdicts
        if f.metric.value == "first_response" and f.subject_type == SubjectType.CHAT_SESSION
    ]
    by_day: dict[str, list[SlaEvent]] = defaultdict(list)
    for fact in first:
        by_day[to_datetime(fact.started_at, tz).date().isoformat()].append(fact)
        if (e := fact.elapsed_seconds) is not None:
            out.first_responses.append((e, fact.target_seconds))
    out.days = [DayRow(d, Figures.of(fs)) for d, fs in sorted(by_day.items())]
    presence = build_presence(statuses, seen_end)
    out.presence_known = presence.known
    waiting = WaitingIndex(verdicts)
    causes: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for fact in verdicts:
        if fact.kind is not Kind.BREACH:
            continue
        cause = classify(fact, presence, waiting, rules.overloaded_above, bot_messages)
        causes[fact.sla_id] = cause.value
        counts[cause.value] += 1
        out.breaches.append(
            BreachRow(
                fact.sla_id,
                fact.subject_id,
                fact.channel,
                fact.metric.value,
                fact.period.value,
                format_rfc3339(fact.started_at, tz),
                format_rfc3339(fact.deadline, tz),
                fact.target_seconds,
                cause.value,
            )
        )
    out.causes = {c.value: counts[c.value] for c in Cause}
    if bot_messages is None:
        out.notes.append("bot_only is not decided: the input events were not among the sources")
    if not presence.known:
        out.notes.append("no agent statuses: no_agent_online and overloaded are not decided")
    elif seen_end < end:
        out.notes.append(
            f"the sources end at {format_rfc3339(seen_end, tz)}: agent presence is counted "
            "up to then (the month is not complete in the data)"
        )
    channels = sorted({f.channel for f in verdicts if f.channel} | set(presence.channels))
    for channel in channels:
        cp = presence.of(channel)
        out.presence.append(
            PresenceRow(
                channel,
                len({agent for a, b, agent in cp.intervals if a < end and b > start}),
                round(cp.agent_seconds(start, seen_end) / 3600, 3),
                round(
                    presence.uncovered_working_seconds(
                        channel, policy.working_time, start, seen_end
                    )
                    / 3600,
                    3,
                ),
            )
        )
    out.ledger = build_ledger(verdicts, retracted, causes, {policy.name: rules.penalty_clause})
    out.escalations = sorted(
        (e for e in escalations if start <= e.tripped_at < end),
        key=lambda e: (e.tripped_at, e.escalation_id),
    )
    return out
