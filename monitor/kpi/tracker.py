"""The KPIs of every tenant and channel, fed one event at a time; and the monthly table.

:class:`KpiTracker` keeps the availability and quality ledgers and, if given, updates the
Prometheus metrics as it goes. :func:`monthly_kpis` is the same computation over a list of
events, for the monthly report: one :class:`KpiRow` per tenant, channel and month, with the
targets of the tenant's policy beside each figure.

Callers: replay (``Replay(kpis=...)``), the live worker (see README), the report, the tests.
``observe`` takes events the engine accepted (and every ``channel.status``, which the engine
does not take): a duplicate or a rejected event must not count twice or at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from monitor.errors import RejectedEvent
from monitor.events import Event
from monitor.kpi.availability import AvailabilityLedger, ServiceTime, wall_time
from monitor.kpi.months import month_of, quarter_of
from monitor.kpi.quality import Counts, QualityLedger
from monitor.policy.model import KpiPolicy, Policy, PolicySet
from monitor.timeutil import MICROS_PER_SECOND
from monitor.vocabulary import Actor, EventType, SubjectType, TicketStatus

if TYPE_CHECKING:  # prometheus_client only when the caller builds metrics
    from monitor.kpi.metrics import KpiMetrics

_FINISHED = frozenset({TicketStatus.SOLVED, TicketStatus.CLOSED})


@dataclass(frozen=True)
class KpiRow:
    """One tenant's channel in one month: the measurements and the contract's targets."""

    tenant: str
    channel: str | None
    month: str  # YYYY-MM in the policy's time zone
    service_seconds: float  # contracted service time measured (004 3.3)
    unavailable_seconds: float
    solved: int  # tickets first solved this month (004 3.4)
    first_contact: int
    ratings: int  # (004 3.5)
    points: int
    good: int
    targets: KpiPolicy

    @property
    def availability(self) -> float | None:
        if self.service_seconds <= 0:
            return None
        return 1 - self.unavailable_seconds / self.service_seconds

    @property
    def fcr(self) -> float | None:
        return self.first_contact / self.solved if self.solved else None

    @property
    def csat_mean(self) -> float | None:
        return self.points / self.ratings if self.ratings else None

    @property
    def csat_good_share(self) -> float | None:
        return self.good / self.ratings if self.ratings else None

    def verdicts(self) -> dict[str, bool | None]:
        """Each contracted KPI: met (True), missed (False), or nothing to judge (None)."""
        t = self.targets
        covered = t.availability_channels is None or self.channel in t.availability_channels
        return {
            "availability": _at_least(self.availability, t.availability if covered else None),
            "first_contact_resolution": _at_least(self.fcr, t.first_contact_resolution),
            "csat_mean": _at_least(self.csat_mean, t.csat_mean),
            "csat_good_share": _at_least(self.csat_good_share, t.csat_good_share),
        }

    def to_dict(self) -> dict[str, Any]:
        t = self.targets
        return {
            "tenant": self.tenant,
            "channel": self.channel,
            "month": self.month,
            "availability": {
                "value": self.availability,
                "service_seconds": self.service_seconds,
                "unavailable_seconds": self.unavailable_seconds,
                "objective": t.availability,
                "clause": t.availability_clause or "004 3.3",
            },
            "first_contact_resolution": {
                "value": self.fcr,
                "solved": self.solved,
                "first_contact": self.first_contact,
                "target": t.first_contact_resolution,
                "clause": t.fcr_clause or "004 3.4",
            },
            "csat": {
                "mean": self.csat_mean,
                "good_share": self.csat_good_share,
                "ratings": self.ratings,
                "target_mean": t.csat_mean,
                "target_good_share": t.csat_good_share,
                "period": t.csat_period,
                "clause": t.csat_clause or "004 3.5",
            },
            "verdicts": self.verdicts(),
        }


def _at_least(value: float | None, target: float | None) -> bool | None:
    if value is None or target is None:
        return None
    return value >= target


class KpiTracker:
    def __init__(self, policies: PolicySet, metrics: KpiMetrics | None = None) -> None:
        self.policies = policies
        self.metrics = metrics
        self.availability = AvailabilityLedger()
        self.quality = QualityLedger()

    # -- which policy speaks for a tenant ----------------------------------------------------

    def _policy(self, tenant: str) -> Policy:
        """The tenant's ticket policy, else its chat policy (the contracted service time and
        KPI targets); RejectedEvent if neither exists."""
        try:
            ticket = self.policies.for_subject(tenant, SubjectType.TICKET)
        except RejectedEvent:
            return self.policies.for_subject(tenant, SubjectType.CHAT_SESSION)
        if _has_targets(ticket.kpis):
            return ticket
        try:
            chat = self.policies.for_subject(tenant, SubjectType.CHAT_SESSION)
        except RejectedEvent:
            return ticket
        return chat if _has_targets(chat.kpis) else ticket

    def _tz(self, tenant: str) -> tzinfo:
        return self._policy(tenant).timezone

    # -- input -------------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Takes one accepted event. Raises RejectedEvent for a channel status it cannot
        place (no policy for the tenant, or out of time order)."""
        kind = event.type
        if kind is EventType.CHANNEL_STATUS:
            self._channel_status(event)
            return
        q = self.quality
        sid = event.subject_id
        if kind is EventType.TICKET_CREATED:
            q.ticket_created(sid, event.tenant, event.channel)
        elif kind is EventType.TICKET_TRANSFERRED:
            q.ticket_channel(sid, event.channel)
        elif kind is EventType.TICKET_COMMENT:
            if event.public and event.actor is Actor.AGENT:
                q.agent_replied(sid)
        elif kind is EventType.TICKET_STATUS_CHANGED:
            if event.status in _FINISHED:
                record = q.solved(sid, month_of(event.occurred_at, self._tz(event.tenant)))
                if record is not None and self.metrics is not None:
                    self.metrics.ticket_solved(record.tenant, record.channel, record.first_contact)
            else:
                self._reopened(sid)
        elif kind is EventType.TICKET_APPEALED:
            self._reopened(sid)
        elif kind is EventType.SESSION_STARTED:
            q.session_started(sid, event.tenant, event.channel)
        elif kind in (EventType.TICKET_RATED, EventType.SESSION_RATED):
            self._rated(event)

    def forget(self, subject_type: SubjectType, subject_id: str) -> None:
        """Drops what the tracker keeps about one session or ticket (its channel; a ticket's
        replies and first-solve record); the monthly counts it fed stay.

        The live worker calls it when retention deletes the subject's record: the engine then
        refuses the subject's later events (no session.started / ticket.created was seen), so
        the tracker never sees it again. Without it a long-running worker keeps every subject
        it ever saw: tests/live/test_soak.py measured +0.36 MiB/min at 10 sessions/s, ~600
        bytes a session, without end.
        """
        self.quality.forget(subject_id, ticket=subject_type is SubjectType.TICKET)

    def _reopened(self, ticket: str) -> None:
        record = self.quality.reopened(ticket)
        if record is not None and self.metrics is not None:
            self.metrics.first_contact_undone(record.tenant, record.channel)

    def _rated(self, event: Event) -> None:
        assert event.score is not None  # the schema requires it
        if event.type is EventType.TICKET_RATED:
            record = self.quality.tickets.get(event.subject_id)
            channel = record.channel if record is not None else None
        else:
            channel = self.quality.sessions.get(event.subject_id, (event.tenant, None))[1]
        month = month_of(event.occurred_at, self._tz(event.tenant))
        self.quality.rated(event.tenant, channel, month, event.score)
        if self.metrics is not None:
            self.metrics.rated(event.tenant, channel, event.score)

    def _channel_status(self, event: Event) -> None:
        assert event.channel_status is not None
        assert event.channel is not None
        policy = self._policy(event.tenant)
        service: ServiceTime = (
            wall_time if policy.kpis.service_time == "always" else policy.working_time.between
        )
        service_added, down_added = self.availability.status(
            event.tenant, event.channel, event.channel_status, event.occurred_at, service,
            policy.timezone,
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.channel_time(event.tenant, event.channel, service_added, down_added)
            self.metrics.channel_status(
                event.tenant,
                event.channel,
                self.availability.channels[(event.tenant, event.channel)].up,
                policy.kpis.availability,
            )

    def advance(self, now: int) -> None:
        """Accounts channel time up to ``now`` (replay's clock, the worker's tick)."""
        added = self.availability.advance(now)
        if self.metrics is not None:
            for (tenant, channel), (service, down) in added.items():
                self.metrics.channel_time(tenant, channel, service, down)

    # -- output ------------------------------------------------------------------------------

    def rows(self) -> list[KpiRow]:
        """Every (tenant, channel, month) measured so far, sorted."""
        keys: dict[tuple[str, str | None, str], None] = dict.fromkeys(self.quality.counts)
        channels = self.availability.channels
        for (tenant, name), known in channels.items():
            for month in known.service_time:
                keys[(tenant, name, month)] = None
        out = []
        for tenant, channel, month in sorted(keys, key=lambda k: (k[0], k[1] or "", k[2])):
            counts = self.quality.counts.get((tenant, channel, month), Counts())
            ch = channels.get((tenant, channel)) if channel is not None else None
            service = ch.service_time.get(month, 0) if ch is not None else 0
            down = ch.down_time.get(month, 0) if ch is not None else 0
            out.append(
                KpiRow(
                    tenant=tenant,
                    channel=channel,
                    month=month,
                    service_seconds=service / MICROS_PER_SECOND,
                    unavailable_seconds=down / MICROS_PER_SECOND,
                    solved=counts.solved,
                    first_contact=counts.first_contact,
                    ratings=counts.ratings,
                    points=counts.points,
                    good=counts.good,
                    targets=self._policy(tenant).kpis,
                )
            )
        return out


def by_quarter(rows: Iterable[KpiRow]) -> list[KpiRow]:
    """Monthly rows summed per quarter (004 3.5 评估周期 "每季度"); ``month`` reads YYYY-Qn.

    Every figure is a sum of counts or seconds, so the quarter's ratios are exact, not means
    of monthly ratios."""
    out: dict[tuple[str, str | None, str], KpiRow] = {}
    for row in rows:
        key = (row.tenant, row.channel, quarter_of(row.month))
        seen = out.get(key)
        if seen is None:
            out[key] = KpiRow(**{**row.__dict__, "month": key[2]})
            continue
        out[key] = KpiRow(
            tenant=row.tenant,
            channel=row.channel,
            month=key[2],
            service_seconds=seen.service_seconds + row.service_seconds,
            unavailable_seconds=seen.unavailable_seconds + row.unavailable_seconds,
            solved=seen.solved + row.solved,
            first_contact=seen.first_contact + row.first_contact,
            ratings=seen.ratings + row.ratings,
            points=seen.points + row.points,
            good=seen.good + row.good,
            targets=row.targets,
        )
    return list(out.values())


def _has_targets(k: KpiPolicy) -> bool:
    return any(
        v is not None
        for v in (k.availability, k.first_contact_resolution, k.csat_mean, k.csat_good_share)
    )


def monthly_kpis(policies: PolicySet, events: Iterable[Event], until: int) -> list[KpiRow]:
    """The KPIs per tenant, channel and month of ``events`` (accepted ones, in time order),
    with channel time accounted up to ``until`` (say, the end of the month reported on).

    Pure: no I/O, no clock. Events the engine would reject should be left out by the caller
    (replay with ``kpis`` does that itself); a channel status out of order raises.
    """
    tracker = KpiTracker(policies)
    for event in events:
        tracker.observe(event)
    tracker.advance(until)
    return tracker.rows()
