"""Prometheus metrics of the KPIs (004 3.3-3.5, 001 3.2-3.3), on an injected registry.

Counters, so that Prometheus computes any window's ratio (and the burn-rate alert in
``deploy/prometheus/rules.yml`` its error ratio)::

    sla_channel_service_seconds_total{tenant,channel}       contracted service time elapsed
    sla_channel_unavailable_seconds_total{tenant,channel}   ... of it with the channel down
    sla_channel_up{tenant,channel}                          gauge, 1 up / 0 down
    sla_availability_objective{tenant}                      gauge, the policy's 004 3.3 objective
    sla_tickets_solved_total{tenant,channel}                first solves
    sla_first_contact_resolved_total{tenant,channel}        ... with a single public agent reply
    sla_first_contact_reopened_total{tenant,channel}        ... of those, reopened later
    sla_ratings_total{tenant,channel,score}                 ratings, score 1-5
    sla_rating_points_total{tenant,channel}                 sum of scores (mean = points / ratings)

Availability = 1 - unavailable / service; FCR = (resolved - reopened) / solved; CSAT mean =
points / ratings, good share = ratings{score=~"4|5"} / ratings. Counters restart at zero with
the process; the monthly figures of record come from :func:`monitor.kpi.monthly_kpis`.
Label values are capped like :class:`monitor.metrics.SlaMetrics`'s.

Callers: :class:`monitor.kpi.tracker.KpiTracker`. Tests read it with ``get_sample_value``.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from monitor.metrics import _Capped
from monitor.timeutil import MICROS_PER_SECOND


class KpiMetrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_label_values: int = 64
    ) -> None:
        reg = REGISTRY if registry is None else registry
        self._tenant = _Capped(max_label_values)
        self._channel = _Capped(max_label_values)
        labels = ("tenant", "channel")
        self.service = Counter(
            "sla_channel_service_seconds",
            "Contracted service time elapsed per channel (004 3.3), seconds.",
            labels,
            registry=reg,
        )
        self.unavailable = Counter(
            "sla_channel_unavailable_seconds",
            "Contracted service time with the channel down (004 3.3), seconds.",
            labels,
            registry=reg,
        )
        self.up = Gauge(
            "sla_channel_up", "1 if the channel is up, 0 if down.", labels, registry=reg
        )
        self.objective = Gauge(
            "sla_availability_objective",
            "The tenant's channel availability objective (004 3.3), a share.",
            ("tenant",),
            registry=reg,
        )
        self.solved = Counter(
            "sla_tickets_solved",
            "Tickets solved for the first time (the FCR denominator, 004 3.4).",
            labels,
            registry=reg,
        )
        self.first_contact = Counter(
            "sla_first_contact_resolved",
            "Tickets solved with a single public agent reply (004 3.4, 001 3.2).",
            labels,
            registry=reg,
        )
        self.first_contact_reopened = Counter(
            "sla_first_contact_reopened",
            "First-contact resolutions reopened later: subtract from the resolved count.",
            labels,
            registry=reg,
        )
        self.ratings = Counter(
            "sla_ratings",
            "Satisfaction ratings by score 1-5 (004 3.5, 001 3.3).",
            (*labels, "score"),
            registry=reg,
        )
        self.points = Counter(
            "sla_rating_points",
            "Sum of rating scores (CSAT mean = points / ratings).",
            labels,
            registry=reg,
        )

    def _labels(self, tenant: str, channel: str | None) -> tuple[str, str]:
        return self._tenant(tenant), self._channel(channel)

    def channel_time(self, tenant: str, channel: str, service: int, down: int) -> None:
        labels = self._labels(tenant, channel)
        self.service.labels(*labels).inc(service / MICROS_PER_SECOND)
        self.unavailable.labels(*labels).inc(down / MICROS_PER_SECOND)

    def channel_status(self, tenant: str, channel: str, up: bool, objective: float | None) -> None:
        labels = self._labels(tenant, channel)
        self.up.labels(*labels).set(1 if up else 0)
        # Created at zero on the first status: Prometheus misses the first increment of a
        # series that appears already above zero, and the alert divides these two.
        self.service.labels(*labels).inc(0)
        self.unavailable.labels(*labels).inc(0)
        if objective is not None:
            self.objective.labels(self._tenant(tenant)).set(objective)

    def ticket_solved(self, tenant: str, channel: str | None, first_contact: bool) -> None:
        labels = self._labels(tenant, channel)
        self.solved.labels(*labels).inc()
        self.first_contact.labels(*labels).inc(1 if first_contact else 0)
        self.first_contact_reopened.labels(*labels).inc(0)

    def first_contact_undone(self, tenant: str, channel: str | None) -> None:
        self.first_contact_reopened.labels(*self._labels(tenant, channel)).inc()

    def rated(self, tenant: str, channel: str | None, score: int) -> None:
        labels = self._labels(tenant, channel)
        self.ratings.labels(*labels, str(score)).inc()
        self.points.labels(*labels).inc(score)
