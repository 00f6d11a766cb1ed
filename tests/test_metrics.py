"""SlaMetrics against a fresh registry (client_python style: ``registry.get_sample_value``),
and the names the dashboard and the Prometheus rules query, checked against what it registers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import monitor.metrics as metrics_module
from monitor.calendar import ChinaCalendar
from monitor.engine import SlaEngine
from monitor.errors import CalendarError, InvalidEvent, Reason, RejectedEvent
from monitor.events import Event
from monitor.metrics import (
    DETECTION_BUCKETS,
    REASON_CODES,
    RESPONSE_BUCKETS,
    SlaMetrics,
)
from monitor.policy import load_policy_set
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import Micros, seconds
from monitor.validation import MAX_EVENT_BYTES, parse_agent_status, parse_event
from monitor.vocabulary import Metric, Penalty, Period, SubjectType
from tests.factories import default_policies, ev

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "sla-monitor.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
POLICIES = ROOT / "deploy" / "policies"
T0 = Micros(1_780_000_000_000_000)


def fact(
    kind: Kind,
    *,
    elapsed: float | None = None,
    tenant: str = "acme",
    channel: str | None = "web",
    priority: str | None = "normal",
    metric: Metric = Metric.FIRST_RESPONSE,
    period: Period = Period.WORKING_HOURS,
    penalty: Penalty | None = None,
) -> SlaEvent:
    return SlaEvent(
        sla_id="0" * 32,
        kind=kind,
        metric=metric,
        seq=0,
        subject_type="chat_session",
        subject_id="s-1",
        tenant=tenant,
        channel=channel,
        priority=priority,
        policy="online-chat",
        clause="002 2.2(1)",
        target_seconds=180.0,
        clock="wall",
        period=period,
        started_at=T0,
        deadline=Micros(T0 + seconds(180)),
        detected_at=Micros(T0 + seconds(181)),
        responded_at=None if elapsed is None else Micros(T0 + seconds(elapsed)),
        share=0.8 if kind is Kind.WARNING else None,
        penalty=penalty,
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def m(registry: CollectorRegistry) -> SlaMetrics:
    return SlaMetrics(registry)


def events(reg: CollectorRegistry, kind: str, **labels: str) -> float | None:
    base = {
        "kind": kind,
        "metric": "first_response",
        "tenant": "acme",
        "channel": "web",
        "priority": "normal",
        "policy": "online-chat",
    }
    return reg.get_sample_value("sla_events_total", {**base, **labels})


def outcome(reg: CollectorRegistry, outcome: str, tenant: str = "acme") -> float | None:
    return reg.get_sample_value(
        "sla_outcomes_total",
        {"metric": "first_response", "tenant": tenant, "policy": "online-chat", "outcome": outcome},
    )


def bucket(reg: CollectorRegistry, le: str, channel: str = "web") -> float | None:
    labels = {
        "metric": "first_response",
        "tenant": "acme",
        "channel": channel,
        "period": "working_hours",
        "le": le,
    }
    return reg.get_sample_value("sla_response_seconds_bucket", labels)


# --- SLA facts ----------------------------------------------------------------------------------


def test_met_counts_the_fact_the_outcome_and_the_response_time(
    m: SlaMetrics, registry: CollectorRegistry
) -> None:
    m.observe_sla_event(fact(Kind.MET, elapsed=180.0))  # exactly at the target: within it
    m.observe_sla_event(fact(Kind.MET, elapsed=200.5))

    assert events(registry, "met") == 2
    assert outcome(registry, "met") == 2
    assert outcome(registry, "breach") == 0  # created with its sibling, for the ratio rules
    assert bucket(registry, "120.0") == 0
    assert bucket(registry, "180.0") == 1
    assert bucket(registry, "240.0") == 2
    assert bucket(registry, "+Inf") == 2
    labels = {"metric": "first_response", "tenant": "acme", "channel": "web"}
    assert registry.get_sample_value(
        "sla_response_seconds_sum", {**labels, "period": "working_hours"}
    ) == pytest.approx(380.5)


def test_breach_counts_without_a_response_time_until_the_response_is_known(
    m: SlaMetrics, registry: CollectorRegistry
) -> None:
    m.observe_sla_event(fact(Kind.BREACH))  # detected at the deadline: nobody answered yet
    assert outcome(registry, "breach") == 1
    assert bucket(registry, "+Inf") is None

    m.observe_sla_event(fact(Kind.BREACH, elapsed=400.0))  # a late answer, known at detection
    assert outcome(registry, "breach") == 2
    assert bucket(registry, "300.0") == 0
    assert bucket(registry, "600.0") == 1


def test_warning_counts_only_as_a_fact(m: SlaMetrics, registry: CollectorRegistry) -> None:
    m.observe_sla_event(fact(Kind.WARNING))
    assert events(registry, "warning") == 1
    assert outcome(registry, "met") is None
    assert outcome(registry, "breach") is None


def test_retraction_decrements_nothing_and_is_counted_for_the_rules_to_subtract(
    m: SlaMetrics, registry: CollectorRegistry
) -> None:
    cny = Penalty(100.0, "CNY")
    m.observe_sla_event(fact(Kind.BREACH, penalty=cny))
    m.observe_sla_event(fact(Kind.BREACH, penalty=cny))
    m.observe_sla_event(fact(Kind.RETRACTION, penalty=cny))
    m.observe_sla_event(fact(Kind.MET, elapsed=170.0))  # the engine follows with the met

    assert outcome(registry, "breach") == 2
    assert outcome(registry, "met") == 1
    assert events(registry, "retraction") == 1
    assert (
        registry.get_sample_value(
            "sla_retractions_total",
            {"metric": "first_response", "tenant": "acme", "policy": "online-chat"},
        )
        == 1
    )
    penalty = {"tenant": "acme", "currency": "CNY"}
    assert registry.get_sample_value("sla_penalty_total", penalty) == 200.0
    assert registry.get_sample_value("sla_penalty_retracted_total", penalty) == 100.0


def test_penalty_series_exist_at_zero_from_the_first_breach(
    m: SlaMetrics, registry: CollectorRegistry
) -> None:
    m.observe_sla_event(fact(Kind.BREACH, penalty=Penalty(50.0, "CNY")))
    m.observe_sla_event(fact(Kind.BREACH, tenant="beta"))  # no penalty configured

    penalty = {"tenant": "acme", "currency": "CNY"}
    assert registry.get_sample_value("sla_penalty_retracted_total", penalty) == 0
    assert registry.get_sample_value("sla_penalty_total", {**penalty, "tenant": "beta"}) is None
    retracted = {"metric": "first_response", "tenant": "beta", "policy": "online-chat"}
    assert registry.get_sample_value("sla_retractions_total", retracted) == 0


def test_missing_channel_and_priority_read_none(m: SlaMetrics, registry: CollectorRegistry) -> None:
    m.observe_sla_event(fact(Kind.MET, elapsed=10.0, channel=None, priority=None))
    assert events(registry, "met", channel="none", priority="none") == 1
    assert bucket(registry, "15.0", channel="none") == 1


def test_free_form_labels_are_capped(registry: CollectorRegistry) -> None:
    m = SlaMetrics(registry, max_label_values=2)
    for channel in ("web", "app", "wechat", "a-typo"):
        m.observe_sla_event(fact(Kind.MET, elapsed=10.0, channel=channel))

    assert events(registry, "met", channel="web") == 1
    assert events(registry, "met", channel="app") == 1
    assert events(registry, "met", channel="other") == 2
    assert events(registry, "met", channel="wechat") is None


def test_response_buckets_hold_the_contract_targets_exactly() -> None:
    # 002 2.2: 180 s and 300 s; 000 5.1: 30 min, 2 h, 4 h, 8 h
    for bound in (180, 300, 1800, 7200, 14400, 28800):
        assert bound in RESPONSE_BUCKETS
    assert list(RESPONSE_BUCKETS) == sorted(RESPONSE_BUCKETS)


def test_detection_buckets_are_fine_below_one_second() -> None:
    assert 1.0 in DETECTION_BUCKETS
    assert sum(1 for b in DETECTION_BUCKETS if b <= 1.0) >= 10
    # 0.1 s steps up to the 1 s target, so p99 ≤ 1 s is resolved to within 100 ms
    assert {0.5, 0.6, 0.7, 0.8, 0.9} <= set(DETECTION_BUCKETS)


# --- input ------------------------------------------------------------------------------------


def test_consumed_events_count_by_topic_and_type(
    m: SlaMetrics, registry: CollectorRegistry
) -> None:
    m.event_consumed("cs.events", "session.started")
    m.event_consumed("cs.events", "session.started")
    m.event_consumed("cs.events", "made.up")  # not an EventType: folded, not a new series

    labels = {"topic": "cs.events", "type": "session.started"}
    assert registry.get_sample_value("sla_input_events_total", labels) == 2
    other = {"topic": "cs.events", "type": "other"}
    assert registry.get_sample_value("sla_input_events_total", other) == 1
    assert registry.get_sample_value("sla_input_messages_total") == 3


def test_progress_counter_exists_before_any_input(
    m: SlaMetrics, registry: CollectorRegistry
) -> None:
    assert registry.get_sample_value("sla_input_messages_total") == 0


def test_invalid_events_count_by_reason_code(m: SlaMetrics, registry: CollectorRegistry) -> None:
    m.event_invalid("cs.events", "not JSON: unexpected character at line 1 column 1", Reason.JSON)
    m.event_invalid(
        "cs.events", "occurred_at: '2026-05-11T09:00:00' has no UTC offset", Reason.TIMESTAMP
    )

    def invalid(reason: str) -> float | None:
        labels = {"topic": "cs.events", "reason": reason}
        return registry.get_sample_value("sla_input_invalid_total", labels)

    assert invalid("json") == 1
    assert invalid("timestamp") == 1
    assert invalid("schema") == 0  # every code of a seen topic exists, so alerts see the first
    assert registry.get_sample_value("sla_input_messages_total") == 2


def test_topics_given_up_front_have_zero_dead_letter_series(registry: CollectorRegistry) -> None:
    SlaMetrics(registry, topics=["cs.events"])
    for code in REASON_CODES:
        labels = {"topic": "cs.events", "reason": code}
        assert registry.get_sample_value("sla_input_invalid_total", labels) == 0


def _raised(action: Callable[[], object]) -> InvalidEvent | RejectedEvent | CalendarError:
    try:
        action()
    except (InvalidEvent, RejectedEvent, CalendarError) as exc:
        return exc
    raise AssertionError("expected an InvalidEvent, RejectedEvent or CalendarError")


_BASE = {
    "event_id": "e1",
    "type": "session.started",
    "occurred_at": "2026-10-09T10:00:00+08:00",
    "tenant": "acme",
    "session_id": "S-1",
    "channel": "web",
}


def _event(**changes: object) -> bytes:
    obj = {**_BASE, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()


def _engine_rejects(*events: Event) -> None:
    engine = SlaEngine(default_policies())
    state = None
    for event in events:
        state = engine.apply(state, event, event.occurred_at).state


# Each case makes the code under test raise for real, so the table holds the codes the monitor
# really raises.
_RAISED: list[tuple[str, Callable[[], object], Reason]] = [
    ("too large", lambda: parse_event(b" " * (MAX_EVENT_BYTES + 1)), Reason.TOO_LARGE),
    ("not utf-8", lambda: parse_event(b'{"a": "\xff"}'), Reason.JSON),
    ("not json", lambda: parse_event(b"{"), Reason.JSON),
    ("not an object", lambda: parse_event(b"[1]"), Reason.JSON),
    ("unknown type", lambda: parse_event(_event(type="chat.started")), Reason.UNKNOWN_TYPE),
    ("missing id", lambda: parse_event(_event(session_id=None)), Reason.MISSING_FIELD),
    ("missing time", lambda: parse_event(_event(occurred_at=None)), Reason.MISSING_FIELD),
    (
        "naive time",
        lambda: parse_event(_event(occurred_at="2026-10-09T10:00:00")),
        Reason.TIMESTAMP,
    ),
    ("no time", lambda: parse_event(_event(occurred_at="yesterday")), Reason.TIMESTAMP),
    ("time not a string", lambda: parse_event(_event(occurred_at=5)), Reason.SCHEMA),
    ("wrong json type", lambda: parse_event(_event(channel=5)), Reason.SCHEMA),
    ("empty", lambda: parse_event(_event(tenant="")), Reason.SCHEMA),
    ("too long", lambda: parse_event(_event(tenant="x" * 300)), Reason.SCHEMA),
    (
        "not one of",
        lambda: parse_event(_event(type="message.sent", channel=None, sender="robot")),
        Reason.SCHEMA,
    ),
    ("agent topic", lambda: parse_agent_status(_event()), Reason.MISROUTED),
    (
        "unknown subject",
        lambda: _engine_rejects(ev("message.sent", "no policy covers", "2026-10-09 10:00")),
        Reason.UNKNOWN_SUBJECT,
    ),
    (
        "started twice",
        lambda: _engine_rejects(
            ev("session.started", "S-2", "2026-10-09 10:00"),
            ev("session.started", "S-2", "2026-10-09 10:01"),
        ),
        Reason.DUPLICATE_SUBJECT,
    ),
    (
        "appeal without a window",
        lambda: _engine_rejects(
            ev("ticket.created", "T-1", "2026-10-09 10:00"),
            ev("ticket.appealed", "T-1", "2026-10-09 10:01"),
        ),
        Reason.APPEAL_REJECTED,
    ),
    (
        "channel status",
        lambda: _engine_rejects(
            parse_event(
                b'{"event_id": "c1", "type": "channel.status", "tenant": "acme", '
                b'"occurred_at": "2026-10-09T10:00:00+08:00", "channel": "web", "status": "up"}'
            )
        ),
        Reason.NOT_FOR_ENGINE,
    ),
    (
        "no policy",
        lambda: load_policy_set(POLICIES / "service-sla.yaml").for_subject(
            "acme", SubjectType.CHAT_SESSION
        ),
        Reason.NO_POLICY,
    ),
    ("policy gone", lambda: default_policies().named("retired"), Reason.POLICY_UNLOADED),
    ("calendar", lambda: ChinaCalendar().is_working_day(date(2027, 1, 4)), Reason.CALENDAR),
]


@pytest.mark.parametrize(("action", "code"), [c[1:] for c in _RAISED], ids=[c[0] for c in _RAISED])
def test_errors_carry_their_code(action: Callable[[], object], code: Reason) -> None:
    exc = _raised(action)
    assert exc.code is code
    assert code.value in REASON_CODES


# --- worker state -----------------------------------------------------------------------------


def test_worker_gauges(m: SlaMetrics, registry: CollectorRegistry) -> None:
    m.set_open_timers(42)
    m.set_partition_lag("cs.events", 3, 1200)
    m.set_partition_lag("cs.events", 4, -1)  # a watermark read racing a commit

    assert registry.get_sample_value("sla_open_timers") == 42
    lag = {"topic": "cs.events", "partition": "3"}
    assert registry.get_sample_value("sla_partition_lag_messages", lag) == 1200
    lag4 = {"topic": "cs.events", "partition": "4"}
    assert registry.get_sample_value("sla_partition_lag_messages", lag4) == 0


def test_detection_delay(m: SlaMetrics, registry: CollectorRegistry) -> None:
    m.observe_detection_delay(0.03)
    m.observe_detection_delay(1.2)
    m.observe_detection_delay(-0.5)  # event clock ahead of the wall clock: counts as on time

    def le(bound: str) -> float | None:
        return registry.get_sample_value("sla_detection_delay_seconds_bucket", {"le": bound})

    assert le("0.005") == 1
    assert le("0.05") == 2
    assert le("1.0") == 2
    assert le("1.5") == 3
    assert registry.get_sample_value("sla_detection_delay_seconds_count") == 3


def test_clock_mode_marks_the_active_mode(m: SlaMetrics, registry: CollectorRegistry) -> None:
    m.set_clock_mode("cs.events", 0, "event")
    m.set_clock_mode("cs.events", 0, "wall")
    m.set_clock_mode("cs.tickets", 0, "event")

    def mode(topic: str, name: str) -> float | None:
        labels = {"topic": topic, "partition": "0", "mode": name}
        return registry.get_sample_value("sla_clock_mode", labels)

    assert mode("cs.events", "wall") == 1
    assert mode("cs.events", "event") == 0
    assert mode("cs.tickets", "event") == 1  # each input topic's partition has its own clock
    with pytest.raises(ValueError, match="clock mode"):
        m.set_clock_mode("cs.events", 0, "working")


def test_forget_partition_drops_its_series(m: SlaMetrics, registry: CollectorRegistry) -> None:
    m.set_partition_lag("cs.events", 1, 5)
    m.set_partition_lag("cs.events", 2, 7)
    m.set_clock_mode("cs.events", 1, "wall")
    m.forget_partition(1)
    m.forget_partition(9)  # never assigned: nothing to do

    gone = {"topic": "cs.events", "partition": "1"}
    assert registry.get_sample_value("sla_partition_lag_messages", gone) is None
    assert registry.get_sample_value("sla_clock_mode", {**gone, "mode": "wall"}) is None
    kept = {"topic": "cs.events", "partition": "2"}
    assert registry.get_sample_value("sla_partition_lag_messages", kept) == 7


def test_default_registry_is_prometheus_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = CollectorRegistry()
    monkeypatch.setattr(metrics_module, "REGISTRY", fresh)
    SlaMetrics().set_open_timers(1)
    assert fresh.get_sample_value("sla_open_timers") == 1


def test_two_instances_on_one_registry_collide(registry: CollectorRegistry) -> None:
    # One SlaMetrics per process: a second one on the same registry is a wiring bug.
    SlaMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        SlaMetrics(registry)


def test_exposition_follows_the_naming_conventions(registry: CollectorRegistry) -> None:
    exercised(registry)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert families
    for family in families:
        assert family.name.startswith("sla_"), family.name
        if family.type == "counter":
            assert any(s.name == f"{family.name}_total" for s in family.samples), family.name
        for sample in family.samples:
            # bounded labels only: nothing per subject or per SLA instance
            assert not {"subject_id", "sla_id", "fact_id"} & set(sample.labels)


# --- the names deploy/ queries --------------------------------------------------------------


def exercised(registry: CollectorRegistry) -> SlaMetrics:
    """An SlaMetrics with every method called once, so every sample name exists."""
    m = SlaMetrics(registry, topics=["cs.events"])
    m.observe_sla_event(fact(Kind.WARNING))
    m.observe_sla_event(fact(Kind.BREACH, elapsed=400.0, penalty=Penalty(100.0, "CNY")))
    m.observe_sla_event(fact(Kind.RETRACTION, penalty=Penalty(100.0, "CNY")))
    m.observe_sla_event(fact(Kind.MET, elapsed=100.0))
    m.event_consumed("cs.events", "message.sent")
    m.event_invalid("cs.events", "not JSON", Reason.JSON)
    m.set_open_timers(1)
    m.observe_detection_delay(0.1)
    m.set_partition_lag("cs.events", 0, 1)
    m.set_clock_mode("cs.events", 0, "wall")
    m.observe_escalation("acme", "breach_count")
    return m


def test_escalations_are_counted_by_tenant_and_rule(
    m: SlaMetrics, registry: CollectorRegistry
) -> None:
    m.observe_escalation("acme", "breach_count")
    m.observe_escalation("acme", "breach_count")
    m.observe_escalation("acme", "slow_days")
    value = registry.get_sample_value
    assert value("sla_escalations_total", {"tenant": "acme", "rule": "breach_count"}) == 2
    assert value("sla_escalations_total", {"tenant": "acme", "rule": "slow_days"}) == 1
    assert value("sla_escalations_total", {"tenant": "globex", "rule": "slow_days"}) is None


_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"offset", "bool", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric (and recording-rule) names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, template text
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    names = set()
    for found in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", expr):
        name, call = found.group(1), found.group(2)
        if call is None and name not in _PROMQL_WORDS:
            names.add(name)
    return names


def bucket_bounds(expr: str) -> set[tuple[str, str]]:
    """(histogram, le) pairs an expression selects by an exact ``le`` matcher."""
    return {
        (h.group(1), le)
        for h in re.finditer(r"(\w+_bucket)\{([^}]*)\}", expr)
        for le in re.findall(r'\ble="([^"]*)"', h.group(2))
    }


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in board["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query))
    return exprs


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (tenant, le) (rate(sla_response_seconds_bucket{le="180.0",tenant=~"$t"}'
        "[$__rate_interval])) / on (tenant) group_left() tenant:x:rate5m > bool 0.5"
        " and absent(up) or vector(1e3)"
    )
    assert metric_names(expr) == {"sla_response_seconds_bucket", "tenant:x:rate5m", "up"}
    assert bucket_bounds(expr) == {("sla_response_seconds_bucket", "180.0")}


def test_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # Named as Grafana's dashboard-linter requires (tests/test_deploy_lint.py runs it).
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("compliance", "breaches", "latency", "warnings", "dead letters", "detection"):
        assert topic in titles
    for topic in ("open timers", "partition lag"):
        assert topic in titles


def test_the_module_docstring_lists_every_metric_with_its_labels(
    registry: CollectorRegistry,
) -> None:
    m = SlaMetrics(registry)
    # Label names are not public in prometheus_client once no child exists: read them off the
    # wrappers (a Counter's name lacks the _total its samples carry).
    registered = {
        w._name + ("_total" if w._type == "counter" else ""): set(w._labelnames)
        for w in vars(m).values()
        if isinstance(w, Counter | Gauge | Histogram)
    }
    assert len(registered) == len(list(registry.collect()))
    listed = {
        m[1]: set(filter(None, (m[2] or "").split(",")))
        for m in re.finditer(r"^    (sla_\w+)(?:\{([\w,]*)\})?", metrics_module.__doc__ or "", re.M)
    }
    assert listed == registered


def test_dashboard_queries_only_names_that_exist(registry: CollectorRegistry) -> None:
    exercised(registry)
    registered = {s.name for family in registry.collect() for s in family.samples}
    recorded = recorded_names()
    samples = {
        (s.name, s.labels["le"])
        for family in registry.collect()
        for s in family.samples
        if "le" in s.labels
    }
    for expr in dashboard_exprs():
        for name in metric_names(expr):
            known = recorded if ":" in name else registered
            assert name in known, f"dashboard queries {name!r}, which nothing produces: {expr}"
        for pair in bucket_bounds(expr):
            assert pair in samples, f"dashboard selects bucket {pair}, which does not exist"


def test_rules_query_only_names_that_exist(registry: CollectorRegistry) -> None:
    exercised(registry)
    registered = {s.name for family in registry.collect() for s in family.samples}
    recorded = recorded_names()
    for expr in rule_exprs():
        for name in metric_names(expr):
            known = recorded if ":" in name else registered | {"up"}  # up: Prometheus's own
            assert name in known, f"rules.yml queries {name!r}, which nothing produces: {expr}"
