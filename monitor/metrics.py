"""Prometheus metrics of the monitor: what it decided (SLA facts) and how well it is running.

Callers: the live worker (:mod:`monitor.live`) builds one :class:`SlaMetrics` at start-up and
calls its methods as it consumes input, emits SLA facts and advances its timers; it serves
``prometheus_client``'s default registry on ``SLA_METRICS_PORT``. Tests build it against a
fresh ``CollectorRegistry()`` and read values with ``registry.get_sample_value``.
``deploy/prometheus/rules.yml`` (recording rules, alerts) and ``deploy/grafana/sla-monitor.json``
query the names below; ``tests/test_metrics.py`` checks that they only use names this module
registers, so renaming a metric here breaks those tests on purpose.

Metric names (Prometheus conventions: base units, ``_total`` for counters)::

    sla_events_total{kind,metric,tenant,channel,priority,policy}   SLA facts emitted
    sla_outcomes_total{metric,tenant,policy,outcome}               decided targets:
                                                                   met, breach, escalation
    sla_retractions_total{metric,tenant,policy}                    breaches proved wrong
    sla_response_seconds{metric,tenant,channel,period}             histogram, wall-clock elapsed
    sla_penalty_total{tenant,currency}                             breach penalties charged
    sla_penalty_retracted_total{tenant,currency}                   ... and taken back
    sla_input_messages_total                                       every input message read
    sla_input_events_total{topic,type}                             valid input events
    sla_input_invalid_total{topic,reason}                          dead-lettered input, by code
    sla_input_skipped_offsets_total{topic}                         offsets the worker never saw
    sla_open_timers                                                gauge
    sla_detection_delay_seconds                                    histogram, deadline→detection
    sla_batch_records                                              histogram, records per batch
    sla_partition_lag_messages{topic,partition}                    gauge
    sla_clock_mode{topic,partition,mode}                           gauge, 1 for the active mode:
                                                                   wall or event
    sla_escalations_total{tenant,rule}                             002 6.2 escalations published
    sla_worker_stall_fences_total                                  stalls that fenced the worker

``tests/test_metrics.py`` checks this list against what :class:`SlaMetrics` registers.

Counters never go down, so a retraction does not decrement anything: it increments
``sla_retractions_total`` (and ``sla_penalty_retracted_total``), and whoever wants the net
value subtracts. The burn-rate rules do: bad = breach − retractions, total = met + breach −
retractions, i.e. a retracted breach counts as neither good nor bad (if the engine follows it
with a ``met``, that ``met`` counts as usual). These counters are per process and restart at
zero, so they serve alerting and dashboards; the authoritative ledger of breaches and
penalties is the ``sla_id``-keyed output topic, not Prometheus.

Label cardinality stays bounded: no subject ids or sla ids; ``tenant``, ``channel``,
``priority`` and ``policy`` come from configuration or a producer's small vocabularies, and a
per-label cap (``max_label_values``) folds any value beyond the first N into ``"other"``, so a
producer that puts free text into ``channel`` cannot blow up the time-series database.
Missing values (a ticket without a channel, a chat without a priority) read ``"none"``.
Dead-letter reasons are counted by code (:class:`monitor.errors.Reason`, set where the error is
raised), never by their text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from monitor.errors import Reason
from monitor.events import AGENT_STATUS
from monitor.sla_event import Kind, SlaEvent
from monitor.vocabulary import EventType

NONE = "none"  # label value for a field the fact does not carry
OTHER = "other"  # label value for anything past the per-label cap, and unknown input types

# Response-time buckets, in seconds. 180 and 300 are the chat contract's targets (002 §2.2)
# and must be exact bounds so "share answered within target" is read off a bucket, not
# interpolated. 1800/7200/14400/28800 are the ticket contract's priority targets (000 §5.1:
# 30 min, 2 h, 4 h, 8 h); they are working-time targets while this histogram is wall clock,
# so for tickets the bounds orient the eye and the outcome counter decides compliance. The
# tail (1 d … 7 d) covers requests made before a weekend or a holiday week (000 §6.1).
RESPONSE_BUCKETS: tuple[float, ...] = (
    15,
    30,
    60,
    120,
    180,
    240,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
    259200,
    604800,
    float("inf"),
)

# Batch sizes of the worker: one record when idle, up to the batch_max setting (1000) on a backlog.
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

# Detection delay (deadline → breach emitted). The target is p99 ≤ 1 s, so the buckets are
# fine under 1 s for histogram_quantile to resolve it and coarse above, where only "how bad"
# matters.
DETECTION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    float("inf"),
)

# Codes for ``sla_input_invalid_total{reason}``: monitor.errors.Reason, set where each error is
# raised. About twenty codes × the input topics: bounded whatever producers send.
REASON_CODES: tuple[str, ...] = tuple(code.value for code in Reason)

CLOCK_MODES = ("wall", "event")
_KNOWN_TYPES = frozenset(t.value for t in EventType) | {AGENT_STATUS}  # + issue 8 presence


class _Capped:
    """The values one label has taken, capped: the first ``limit`` pass, later ones fold."""

    __slots__ = ("_limit", "_lock", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if value is None or value == "":
            return NONE
        if value in self._seen:  # the hot path: no lock for a value already admitted
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


class SlaMetrics:
    """Every metric of the monitor, registered on one registry.

    ``registry`` defaults to ``prometheus_client.REGISTRY`` (what the worker's HTTP server
    exposes); tests pass a fresh ``CollectorRegistry()`` so instances do not collide.
    ``topics`` (optional) are the input topics, whose ``sla_input_invalid_total`` series are
    created at zero up front: Prometheus cannot see the first increment of a series that
    appears already at 1, and the dead-letter alert must fire on the first dead letter.
    ``max_label_values`` caps the distinct values of each free-form label (see module doc).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        topics: Iterable[str] = (),
        max_label_values: int = 64,
    ) -> None:
        reg = REGISTRY if registry is None else registry
        self._tenant = _Capped(max_label_values)
        self._channel = _Capped(max_label_values)
        self._priority = _Capped(max_label_values)
        self._policy = _Capped(max_label_values)

        self.events = Counter(
            "sla_events_total",
            "SLA facts emitted (warning, breach, met, retraction).",
            ["kind", "metric", "tenant", "channel", "priority", "policy"],
            registry=reg,
        )
        self.outcomes = Counter(
            "sla_outcomes_total",
            "Decided SLA targets by outcome; subtract sla_retractions_total from breach.",
            # policy: a tenant's chats and tickets both have a first_response target, under
            # different policies; alerts route on (tenant, policy, metric).
            ["metric", "tenant", "policy", "outcome"],
            registry=reg,
        )
        self.retractions = Counter(
            "sla_retractions_total",
            "Breaches retracted because a late event proved them wrong.",
            ["metric", "tenant", "policy"],
            registry=reg,
        )
        self.response = Histogram(
            "sla_response_seconds",
            "Wall-clock time from clock start to the response, for met and late-answered targets.",
            ["metric", "tenant", "channel", "period"],
            buckets=RESPONSE_BUCKETS,
            registry=reg,
        )
        self.penalty = Counter(
            "sla_penalty_total",
            "Contract penalties of breaches, in currency units; net of retractions: subtract "
            "sla_penalty_retracted_total.",
            ["tenant", "currency"],
            registry=reg,
        )
        self.penalty_retracted = Counter(
            "sla_penalty_retracted_total",
            "Contract penalties taken back by retractions, in currency units.",
            ["tenant", "currency"],
            registry=reg,
        )
        self.input_messages = Counter(
            "sla_input_messages_total",
            "Input messages read, valid or not (the worker's progress).",
            registry=reg,
        )
        self.input_events = Counter(
            "sla_input_events_total",
            "Valid input events consumed, by topic and event type.",
            ["topic", "type"],
            registry=reg,
        )
        self.input_invalid = Counter(
            "sla_input_invalid_total",
            "Invalid or rejected input events sent to the dead-letter topic, by reason code.",
            ["topic", "reason"],
            registry=reg,
        )
        self.stall_fences = Counter(
            "sla_worker_stall_fences",
            "Times the worker's event loop stalled past half the consumer-group session timeout "
            "while it owned partitions (a frozen process, a VM pause): it dropped its batches in "
            "flight, unstored, and asked the group to rebalance (monitor.live.fence).",
            registry=reg,
        )
        self.input_skipped = Counter(
            "sla_input_skipped_offsets_total",
            "Offsets between two consecutive input records of a partition that the worker never "
            "saw. Transaction markers of transactional producers count here; anything else "
            "is input lost before processing (alert on it when producers are not transactional).",
            ["topic"],
            registry=reg,
        )
        self.open_timers = Gauge(
            "sla_open_timers",
            "SLA targets with a pending deadline in this worker.",
            registry=reg,
        )
        self.detection_delay = Histogram(
            "sla_detection_delay_seconds",
            "Time from a deadline to its detection (breach or warning emitted).",
            buckets=DETECTION_BUCKETS,
            registry=reg,
        )
        self.batch_records = Histogram(
            "sla_batch_records",
            "Input records and timer firings the worker handled together in one batch.",
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.partition_lag = Gauge(
            "sla_partition_lag_messages",
            "Consumer lag of an assigned input partition, in messages.",
            ["topic", "partition"],
            registry=reg,
        )
        self.clock_mode = Gauge(
            "sla_clock_mode",
            "The clock an input partition's timers follow: 1 for the active mode, 0 for the other.",
            ["topic", "partition", "mode"],
            registry=reg,
        )

        # Issue 8: the escalation stage (monitor.live.escalation_agent).
        self.escalations = Counter(
            "sla_escalations_total",
            "Contract 002 6.2 escalations published to sla.escalations (the client may now "
            "demand a written explanation), by rule: breach_count or slow_days.",
            ["tenant", "rule"],
            registry=reg,
        )

        # Children cached for the per-message path (labels() takes a lock and builds a key).
        self._consumed: dict[tuple[str, str], Counter] = {}
        self._known_topics: set[str] = set()
        self._known_outcomes: set[tuple[str, str, str]] = set()
        self._lag_topics: set[str] = set()
        for topic in topics:
            self._init_topic(topic)

    # -- SLA facts (the worker calls this once per fact it publishes) ------------------------

    def observe_sla_event(self, ev: SlaEvent) -> None:
        """Counts one emitted SLA fact; called by the worker after publishing ``ev``."""
        metric = ev.metric.value
        tenant = self._tenant(ev.tenant)
        channel = self._channel(ev.channel)
        policy = self._policy(ev.policy)
        self.events.labels(
            kind=ev.kind.value,
            metric=metric,
            tenant=tenant,
            channel=channel,
            priority=self._priority(ev.priority),
            policy=policy,
        ).inc()
        if ev.kind is Kind.WARNING:
            return
        self._init_outcomes(metric, tenant, policy)
        if ev.kind is Kind.RETRACTION:
            self.retractions.labels(metric=metric, tenant=tenant, policy=policy).inc()
            if ev.penalty is not None and ev.penalty.amount > 0:
                self.penalty_retracted.labels(tenant=tenant, currency=ev.penalty.currency).inc(
                    ev.penalty.amount
                )
            return
        # 003 3.4: a tier escalation is the tier_escalation target's miss, named as such.
        outcome = "met" if ev.kind is Kind.MET else ev.kind.value
        self.outcomes.labels(metric=metric, tenant=tenant, policy=policy, outcome=outcome).inc()
        elapsed = ev.elapsed_seconds
        if elapsed is not None:  # a breach detected at the deadline has no response yet
            self.response.labels(
                metric=metric, tenant=tenant, channel=channel, period=ev.period.value
            ).observe(max(elapsed, 0.0))
        if ev.kind is Kind.BREACH and ev.penalty is not None and ev.penalty.amount > 0:
            currency = ev.penalty.currency
            # Created together so the net (charged − retracted) exists from the first breach.
            self.penalty_retracted.labels(tenant=tenant, currency=currency)
            self.penalty.labels(tenant=tenant, currency=currency).inc(ev.penalty.amount)

    def observe_escalation(self, tenant: str, rule: str) -> None:
        """Counts one 6.2 escalation the worker published (after the broker acknowledged it)."""
        self.escalations.labels(tenant=tenant, rule=rule).inc()

    # -- input (the worker calls these once per message it reads) ----------------------------

    def event_consumed(self, topic: str, type: str) -> None:
        """Counts one valid input event of ``type`` (an :class:`EventType` value) on ``topic``."""
        child = self._consumed.get((topic, type))
        if child is None:
            if topic not in self._known_topics:
                self._init_topic(topic)
            label = type if type in _KNOWN_TYPES else OTHER
            child = self.input_events.labels(topic=topic, type=label)
            if label != OTHER:  # cache only bounded keys: unknown types could be anything
                self._consumed[(topic, type)] = child
        child.inc()
        self.input_messages.inc()

    def event_invalid(self, topic: str, reason: str, code: Reason) -> None:
        """Counts one input message sent to the dead-letter topic under ``code``, the ``code``
        of the :class:`~monitor.errors.InvalidEvent`, ``RejectedEvent`` or ``CalendarError``
        that refused it (or the worker's own, for a tombstone or a misrouted message).
        ``reason``, the text, goes to the dead-letter header and the log, not to a label."""
        if topic not in self._known_topics:
            self._init_topic(topic)
        self.input_invalid.labels(topic=topic, reason=code.value).inc()
        self.input_messages.inc()

    def offsets_skipped(self, topic: str, count: int) -> None:
        """Counts ``count`` offsets of ``topic`` that arrived at the worker as a hole between two
        consecutive records of a partition (see ``sla_input_skipped_offsets_total``)."""
        self.input_skipped.labels(topic=topic).inc(count)

    def stall_fenced(self) -> None:
        """Counts one stall fence (see ``sla_worker_stall_fences_total``)."""
        self.stall_fences.inc()

    # -- worker state (the worker's timer loop and consumer call these) ----------------------

    def observe_batch(self, records: int) -> None:
        """Records the size of one batch of the worker (see monitor.live.batch)."""
        self.batch_records.observe(records)

    def set_open_timers(self, n: int) -> None:
        """Sets the number of pending deadlines (the worker's deadline index length)."""
        self.open_timers.set(n)

    def observe_detection_delay(self, seconds: float) -> None:
        """Records how long after a deadline the timer loop detected it. A negative value
        (the event clock ahead of the wall clock) counts as 0."""
        self.detection_delay.observe(max(seconds, 0.0))

    def set_partition_lag(self, topic: str, partition: int, lag: int) -> None:
        """Sets the consumer lag (high watermark − committed offset) of one partition."""
        self._lag_topics.add(topic)
        self.partition_lag.labels(topic=topic, partition=str(partition)).set(max(lag, 0))

    def set_clock_mode(self, topic: str, partition: int, mode: str) -> None:
        """Records which clock drives the timers of an input partition: ``"wall"`` when caught
        up, ``"event"`` while catching up on a backlog. Any other mode is a bug: ValueError."""
        if mode not in CLOCK_MODES:
            raise ValueError(f"clock mode must be one of {CLOCK_MODES}, not {mode!r}")
        self._lag_topics.add(topic)
        for each in CLOCK_MODES:
            self.clock_mode.labels(topic=topic, partition=str(partition), mode=each).set(
                1 if each == mode else 0
            )

    def forget_partition(self, partition: int) -> None:
        """Drops a revoked partition's lag and clock-mode series, so that two workers do not
        both report it after a rebalance. Called by the worker on partition revocation."""
        label = str(partition)
        # remove() of a label set that was never created is a no-op.
        for topic in list(self._lag_topics):
            self.partition_lag.remove(topic, label)
            for mode in CLOCK_MODES:
                self.clock_mode.remove(topic, label, mode)

    # -- helpers ----------------------------------------------------------------------------

    def _init_topic(self, topic: str) -> None:
        # Zero-valued series for every reason, so the first dead letter is a visible increase.
        for code in REASON_CODES:
            self.input_invalid.labels(topic=topic, reason=code)
        self.input_skipped.labels(topic=topic)
        self._known_topics.add(topic)

    def _init_outcomes(self, metric: str, tenant: str, policy: str) -> None:
        # Both outcomes and the retraction series start at zero together: the burn-rate rules
        # subtract and divide these, and an absent operand would drop the tenant's ratio.
        key = (metric, tenant, policy)
        if key in self._known_outcomes:
            return
        for outcome in ("met", "breach"):
            self.outcomes.labels(metric=metric, tenant=tenant, policy=policy, outcome=outcome)
        self.retractions.labels(metric=metric, tenant=tenant, policy=policy)
        self._known_outcomes.add(key)
