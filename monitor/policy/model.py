"""Policies as data: the contract rules the engine enforces, validated once at start-up.

A :class:`Policy` covers one kind of subject (chat sessions or tickets) for some tenants. For
each metric it holds an ordered list of :class:`TargetRule`; the first rule whose selector
matches a subject (priority, channel, and the period in which its clock started) sets the
target. Every rule carries the contract clause it encodes, and every SLA event carries that
clause on to its consumers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from monitor.accounting.rules import AccountingRules
from monitor.calendar import WorkingTime
from monitor.errors import Reason, RejectedEvent
from monitor.timeutil import Micros
from monitor.vocabulary import AnyMetric, Penalty, Period, SubjectType, TicketStatus


class ClockKind(StrEnum):
    WALL = "wall"  # calendar time, round the clock
    WORKING = "working"  # only working time counts


@dataclass(frozen=True, slots=True)
class Selector:
    """Which subjects a rule applies to; ``None`` means "any"."""

    priorities: frozenset[str] | None = None
    periods: frozenset[Period] | None = None
    channels: frozenset[str] | None = None

    def matches(self, priority: str | None, period: Period, channel: str | None) -> bool:
        return (
            (self.priorities is None or priority in self.priorities)
            and (self.periods is None or period in self.periods)
            and (self.channels is None or channel in self.channels)
        )


@dataclass(frozen=True, slots=True)
class TargetRule:
    when: Selector
    within: Micros
    clock: ClockKind
    clause: str


@dataclass(frozen=True, slots=True)
class MetricPolicy:
    metric: AnyMetric
    rules: tuple[TargetRule, ...]
    warnings: tuple[float, ...]  # ascending shares of the target
    penalty: Penalty | None = None
    pause_when: frozenset[TicketStatus] = frozenset()

    def rule_for(self, priority: str | None, period: Period, channel: str | None) -> TargetRule:
        for rule in self.rules:
            if rule.when.matches(priority, period, channel):
                return rule
        raise RejectedEvent(
            f"no {self.metric} target matches priority={priority} period={period} "
            f"channel={channel}; add a catch-all rule (one without `when`) to the policy",
            code=Reason.NO_TARGET,
        )


@dataclass(frozen=True, slots=True)
class EscalationTier:
    """One step of 003 3.4's escalation path: unsolved after ``after``, go to ``tier``."""

    tier: str  # e.g. technical_support, customer_care_manager, management
    after: Micros  # of the escalation clock's kind, from the ticket's clock start


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """003 3.4: a ticket not solved within N working days escalates, tier by tier."""

    tiers: tuple[EscalationTier, ...]  # ascending ``after``
    clock: ClockKind
    clause: str


@dataclass(frozen=True, slots=True)
class AppealPolicy:
    """003 5.1: a customer may appeal a result within ``within`` of receiving it."""

    within: Micros
    clock: ClockKind
    clause: str
    reopens: bool  # an appeal in time starts a new resolution target (the review)


@dataclass(frozen=True, slots=True)
class KpiPolicy:
    """Monthly service-quality objectives (004 3.3-3.5, 001 3.2-3.3); None: not contracted.

    The monitor measures these whatever the policy says (:mod:`monitor.kpi`); the targets
    here are what a report and the alert rules compare the measurements against.
    """

    availability: float | None = None  # 004 3.3: share of service time each channel is up
    availability_channels: frozenset[str] | None = None  # None: every channel
    availability_clause: str = ""
    service_time: str = "working"  # "working": the policy's working time; "always": 7x24
    first_contact_resolution: float | None = None  # 004 3.4: share of solved tickets
    fcr_clause: str = ""
    csat_mean: float | None = None  # 004 3.5: mean score on the 1-5 scale
    csat_good_share: float | None = None  # 004 3.5: share of 4 and 5 ratings
    csat_period: str = "month"  # or "quarter"
    csat_clause: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    source: str  # the file it was loaded from, for messages
    applies_to: SubjectType
    tenants: frozenset[str]
    timezone: ZoneInfo
    working_time: WorkingTime
    metrics: dict[AnyMetric, MetricPolicy]
    retention: Micros
    accounting: AccountingRules | None = None  # 002 3.3 / 6.2 (monitor.accounting.rules)
    escalation: EscalationPolicy | None = None  # 003 3.4 (also in metrics, see the loader)
    appeal: AppealPolicy | None = None  # 003 5.1
    kpis: KpiPolicy = field(default_factory=KpiPolicy)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """All loaded policies and who they apply to. Built by :func:`load_policy_set`."""

    policies: dict[str, Policy]
    _by_tenant: dict[tuple[str, SubjectType], Policy] = field(repr=False)

    def for_subject(self, tenant: str, subject_type: SubjectType) -> Policy:
        """The tenant's own policy for this kind of subject, else the default ("*") one."""
        policy = self._by_tenant.get((tenant, subject_type)) or self._by_tenant.get(
            ("*", subject_type)
        )
        if policy is None:
            raise RejectedEvent(
                f"no policy covers {subject_type} of tenant {tenant!r} and none is the default",
                code=Reason.NO_POLICY,
            )
        return policy

    def named(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            raise RejectedEvent(
                f"policy {name!r} of a stored subject is no longer loaded",
                code=Reason.POLICY_UNLOADED,
            ) from None
