"""Contracts 001, 003 and 004 as the bundled policies encode them, at their boundaries; and the
two readings of "working day" (002 1.4) on a make-up Saturday.

Dates: 2026-10-01..07 is the National Day holiday, 2026-10-10 (a Saturday) a make-up working
day (调休上班), 2026-10-08 a Thursday.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor import schemas
from monitor.engine import SubjectState
from monitor.errors import PolicyError
from monitor.events import Event
from monitor.metrics import SlaMetrics
from monitor.policy import load_policy_set
from monitor.policy.loader import BUNDLED_POLICIES
from monitor.sla_event import Kind
from monitor.timeutil import format_rfc3339
from monitor.vocabulary import EscalationMetric, EventType, Metric, Period, SubjectType
from tests.factories import Run, ev, t

END = "2026-12-30 00:00"
TIER = EscalationMetric.TIER_ESCALATION


def local(at: int) -> str:
    return format_rfc3339(at, Run().policies.named("online-chat").timezone)


def ticket(tenant: str, at: str, priority: str = "P3", tid: str = "T1") -> Event:
    return ev("ticket.created", tid, at, priority=priority, tenant=tenant)


def first_response_breach(tenant: str, at: str, priority: str = "P3") -> tuple[str, Period, str]:
    run = Run().feed(ticket(tenant, at, priority)).until(END)
    breach = run.only(Kind.BREACH)
    return local(breach.deadline), breach.period, breach.clause


# --- tenants pick their contract ------------------------------------------------------------


def test_each_contract_is_a_bundled_policy_selected_by_tenant() -> None:
    policies = load_policy_set()
    chosen = {
        tenant: policies.for_subject(tenant, SubjectType.TICKET).name
        for tenant in ("contract-001", "contract-003", "contract-004", "anyone")
    }
    assert chosen == {
        "contract-001": "support-standard",
        "contract-003": "service-desk",
        "contract-004": "service-sla",
        "anyone": "customer-requests",
    }


# --- 001: Monday to Friday 09:00-18:00, none on holidays, emergencies at once ---------------


@pytest.mark.parametrize(
    ("at", "deadline", "period"),
    [
        # 1.2.1.2: service starts at 09:00:00; a second earlier is outside it.
        ("2026-10-08 08:59:59", "2026-10-08T13:00:00+08:00", Period.AFTER_HOURS),
        ("2026-10-08 09:00:00", "2026-10-08T13:00:00+08:00", Period.WORKING_HOURS),
        # ... and ends at 18:00:00: 4 service hours from 17:59:59 end the next morning.
        ("2026-10-08 17:59:59", "2026-10-09T12:59:59+08:00", Period.WORKING_HOURS),
        ("2026-10-08 18:00:00", "2026-10-09T13:00:00+08:00", Period.AFTER_HOURS),
        # 1.2.2.1: no service on a statutory holiday (National Day) ...
        ("2026-10-05 10:00", "2026-10-08T13:00:00+08:00", Period.REST_DAY),
        # ... nor, read literally (1.2.1.1 Mon-Fri), on the make-up Saturday 2026-10-10.
        ("2026-10-10 10:00", "2026-10-12T13:00:00+08:00", Period.REST_DAY),
        ("2026-10-09 17:00", "2026-10-12T12:00:00+08:00", Period.WORKING_HOURS),
    ],
)
def test_001_service_hours(at: str, deadline: str, period: Period) -> None:
    got = first_response_breach("contract-001", at)
    assert got == (deadline, period, "001 1.1.1.2, 1.1.2.2, 3.1.1")


def test_001_emergencies_are_answered_at_once_even_on_a_holiday() -> None:
    got = first_response_breach("contract-001", "2026-10-03 22:00", "P1")
    assert got == ("2026-10-03T22:15:00+08:00", Period.REST_DAY, "001 1.2.3.1")


# --- 003 3.2 / 004 3.1: working time, make-up Saturday under the statutory reading -----------


@pytest.mark.parametrize(
    "case",
    [
        ("contract-003", "2026-10-08 09:00", "P3", "2026-10-08T09:30:00+08:00", "working", "3.2"),
        ("contract-003", "2026-10-08 17:45", "P3", "2026-10-09T09:15:00+08:00", "working", "3.2"),
        ("contract-003", "2026-10-08 18:00", "P3", "2026-10-09T09:30:00+08:00", "after", "3.2"),
        ("contract-003", "2026-10-05 10:00", "P3", "2026-10-08T09:30:00+08:00", "rest", "3.2"),
        # the make-up Saturday is a working day under the statutory reading (003 and 004).
        ("contract-003", "2026-10-10 10:00", "P3", "2026-10-10T10:30:00+08:00", "working", "3.2"),
        ("contract-004", "2026-10-10 10:00", "P2", "2026-10-10T12:00:00+08:00", "working", "P2"),
        ("contract-004", "2026-10-05 10:00", "P1", "2026-10-05T10:15:00+08:00", "rest", "P1"),
        ("contract-004", "2026-10-08 17:00", "P3", "2026-10-09T17:00:00+08:00", "working", "P3"),
    ],
)
def test_003_and_004_first_response(case: tuple[str, str, str, str, str, str]) -> None:
    tenant, at, priority, deadline, period, clause = case
    got_deadline, got_period, got_clause = first_response_breach(tenant, at, priority)
    assert (got_deadline, got_period.value.split("_")[0], got_clause.split()[-1]) == (
        deadline,
        period,
        clause,
    )


# --- 002 1.4: the two readings of "working day" on a make-up Saturday ------------------------


def chat_policies(tmp_path: Path, working_days: str) -> Run:
    doc = yaml.safe_load((BUNDLED_POLICIES / "online-chat.yaml").read_text(encoding="utf-8"))
    doc["calendar"]["working_days"] = working_days
    (tmp_path / "chat.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return Run(policies=load_policy_set(tmp_path))


@pytest.mark.parametrize(
    ("reading", "day", "target", "period"),
    [
        # 2026-10-10 is a make-up working Saturday: statutory says working day, weekdays not.
        ("statutory", "2026-10-10", 180, Period.WORKING_HOURS),
        ("weekdays", "2026-10-10", 300, Period.REST_DAY),
        # An ordinary Thursday and a weekday holiday read the same either way.
        ("statutory", "2026-10-08", 180, Period.WORKING_HOURS),
        ("weekdays", "2026-10-08", 180, Period.WORKING_HOURS),
        ("statutory", "2026-10-02", 300, Period.REST_DAY),
        ("weekdays", "2026-10-02", 300, Period.REST_DAY),
    ],
)
def test_002_1_4_reading_of_working_day(
    tmp_path: Path, reading: str, day: str, target: int, period: Period
) -> None:
    run = chat_policies(tmp_path, reading)
    run.feed(ev("session.started", "S1", f"{day} 10:00")).until(END)
    breach = run.only(Kind.BREACH)
    assert (breach.target_seconds, breach.period) == (target, period)


def test_the_default_reading_is_statutory(tmp_path: Path) -> None:
    doc = yaml.safe_load((BUNDLED_POLICIES / "online-chat.yaml").read_text(encoding="utf-8"))
    assert "working_days" not in doc["calendar"]  # the bundled 002 policy keeps today's reading
    run = Run(policies=load_policy_set(BUNDLED_POLICIES / "online-chat.yaml"))
    run.feed(ev("session.started", "S1", "2026-10-10 10:00")).until(END)
    assert run.only(Kind.BREACH).target_seconds == 180


def test_a_reading_the_schema_does_not_know_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"calendar\.working_days.*is not one of"):
        chat_policies(tmp_path, "mondays")


# --- 003 3.4: tier escalation after N working days -------------------------------------------

# Created Wed 2026-09-30 10:00 (09:00-18:00, 9 h a working day). 3 working days = 27 h:
# 8 h on 09-30, none on the National Day holiday 10-01..07, 9 h on Thu 10-08, 9 h on Fri
# 10-09, and the last hour on the make-up Saturday 10-10: due 2026-10-10 10:00:00.
CREATED = "2026-09-30 10:00"
TIER1_DUE = "2026-10-10 10:00:00"


def desk() -> Run:
    return Run().feed(ticket("contract-003", CREATED))


def escalations(run: Run) -> list[tuple[str, str | None, str]]:
    return [(f.kind.value, f.tier, local(f.deadline)) for f in run.facts if f.metric is TIER]


def test_003_escalates_after_n_working_days_across_a_holiday() -> None:
    run = desk().until("2026-10-10 10:00:00")
    assert escalations(run) == []  # at the instant itself: not yet
    run.until("2026-10-10 10:00:01")
    assert escalations(run) == [("escalation", "technical_support", "2026-10-10T10:00:00+08:00")]
    fact = next(f for f in run.facts if f.kind is Kind.ESCALATION)
    assert fact.clause == "003 3.4"
    out = fact.to_dict(Run().policies.named("service-desk").timezone)
    assert (out["kind"], out["rule"], out["tier"], out["metric"]) == (
        "escalation",
        "tier_escalation",
        "technical_support",
        "tier_escalation",
    )
    assert "penalty" not in out
    # Once per tier: later tiers follow (5 and 10 working days), each once.
    run.until(END)
    assert [tier for kind, tier, _ in escalations(run)] == [
        "technical_support",
        "customer_care_manager",
        "management",
    ]


def test_003_solved_at_the_deadline_does_not_escalate() -> None:
    run = desk().feed(ev("ticket.status_changed", "T1", TIER1_DUE, status="solved")).until(END)
    assert escalations(run) == []


def test_003_escalation_is_retracted_by_a_late_event_proving_it_solved_in_time() -> None:
    run = desk().until("2026-10-10 11:00")
    assert [k for k, _, _ in escalations(run)] == ["escalation"]
    solved = ev("ticket.status_changed", "T1", "2026-10-10 09:59:59", status="solved")
    run.feed(solved).until(END)
    assert [(k, tier) for k, tier, _ in escalations(run)] == [
        ("escalation", "technical_support"),
        ("retraction", "technical_support"),
    ]
    escalated, retracted = [f for f in run.facts if f.metric is TIER]
    assert retracted.sla_id == escalated.sla_id
    assert retracted.reason == "solved in time"


def test_003_waiting_on_the_customer_stops_the_escalation_clock() -> None:
    run = desk().feed(
        ev("ticket.status_changed", "T1", "2026-10-08 09:00", status="pending"),
        ev("ticket.status_changed", "T1", "2026-10-09 09:00", status="open"),
    )
    run.until("2026-10-12 10:00:00")
    assert escalations(run) == []  # a working day later than without the pause
    run.until("2026-10-12 10:00:01")
    assert escalations(run) == [("escalation", "technical_support", "2026-10-12T10:00:00+08:00")]


# --- 003 5.1: the appeal window ---------------------------------------------------------------

SOLVED_AT = "2026-10-12 10:00:00"


def solved_desk_ticket() -> Run:
    return desk().feed(ev("ticket.status_changed", "T1", SOLVED_AT, status="solved"))


@pytest.mark.parametrize("at", ["2026-10-27 09:59:59", "2026-10-27 10:00:00"])
def test_003_appeal_inside_the_window_reopens_the_resolution_clock(at: str) -> None:
    run = solved_desk_ticket()
    run.feed(ev("ticket.appealed", "T1", at))
    assert run.replay.rejections == []
    state = run.replay.states["t:T1"]
    assert (state.appeals, state.finished_at, state.status) == (1, None, "open")
    review = state.clock(Metric.RESOLUTION)
    assert review is not None
    assert (review.seq, review.started_at) == (1, t(at))
    # The review is a resolution target of its own (3 working days), breached if missed.
    run.until(END)
    reviews = [f for f in run.facts if f.metric is Metric.RESOLUTION and f.seq == 1]
    assert [(f.kind, f.clause) for f in reviews] == [
        (Kind.WARNING, "003 3.2"),
        (Kind.BREACH, "003 3.2"),
    ]
    # 27 working hours from Tue 10-27: 8 + 9 + 9 + 1, so Friday at the appeal's time of day.
    assert local(reviews[-1].deadline) == f"2026-10-30T{at[11:]}+08:00"


def test_003_appeal_one_second_outside_the_window_is_rejected_with_the_clause() -> None:
    run = solved_desk_ticket().feed(ev("ticket.appealed", "T1", "2026-10-27 10:00:01"))
    ((event, reason),) = run.replay.rejections
    assert event.type is EventType.TICKET_APPEALED
    assert "003 5.1" in reason
    assert "appeal rejected" in reason
    assert "2026-10-27T10:00:01+08:00" in reason
    assert run.replay.states["t:T1"].appeals == 0


def test_003_appeal_before_any_result_is_rejected() -> None:
    run = desk().feed(ev("ticket.appealed", "T1", "2026-10-08 10:00"))
    ((_, reason),) = run.replay.rejections
    assert "no result to appeal" in reason


def test_an_appeal_under_a_policy_without_a_window_is_rejected() -> None:
    run = Run().feed(
        ticket("acme", "2026-10-08 10:00"),
        ev("ticket.status_changed", "T1", "2026-10-08 11:00", status="solved"),
        ev("ticket.appealed", "T1", "2026-10-08 12:00"),
    )
    ((_, reason),) = run.replay.rejections
    assert "has no appeal window (003 5.1)" in reason


def test_an_appeal_window_longer_than_retention_stops_start_up(tmp_path: Path) -> None:
    doc = yaml.safe_load((BUNDLED_POLICIES / "service-desk.yaml").read_text(encoding="utf-8"))
    doc["retention"] = "7d"
    (tmp_path / "desk.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(PolicyError, match="retention: 7d is shorter than the appeal window 15d"):
        load_policy_set(tmp_path / "desk.yaml")


def test_escalation_tiers_must_be_in_order(tmp_path: Path) -> None:
    doc = yaml.safe_load((BUNDLED_POLICIES / "service-desk.yaml").read_text(encoding="utf-8"))
    doc["escalation"]["tiers"][1]["after"] = "2wd"
    (tmp_path / "desk.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(PolicyError, match=r"escalation\.tiers\[1\]\.after: 2wd is not after"):
        load_policy_set(tmp_path / "desk.yaml")


def test_escalation_facts_match_their_schema() -> None:
    run = desk().until("2026-10-10 11:00")
    run.feed(ev("ticket.status_changed", "T1", "2026-10-10 09:59:59", status="solved"))
    tz = run.policies.named("service-desk").timezone
    facts = [f.to_dict(tz) for f in run.facts]
    tiers = [f for f in facts if f["metric"] == "tier_escalation"]
    assert [f["kind"] for f in tiers] == ["escalation", "retraction"]
    escalation = schemas.validator("tier-escalation.schema.json")
    for fact in tiers:
        assert [e.message for e in escalation.iter_errors(fact)] == [], fact
    # every other fact stays an SLA fact of the unchanged output schema
    sla = schemas.validator(schemas.SLA_EVENT)
    for fact in facts:
        if fact["metric"] != "tier_escalation":
            assert [e.message for e in sla.iter_errors(fact)] == [], fact
    # without its tier, or on another metric, an escalation is not a fact we emit
    assert list(escalation.iter_errors({k: v for k, v in tiers[0].items() if k != "tier"}))
    assert list(escalation.iter_errors(tiers[0] | {"metric": "resolution"}))


def test_escalations_are_counted_as_their_own_outcome() -> None:
    registry = CollectorRegistry()
    metrics = SlaMetrics(registry)
    for fact in desk().until("2026-10-10 11:00").facts:
        metrics.observe_sla_event(fact)
    labels = {"metric": "tier_escalation", "tenant": "contract-003", "policy": "service-desk"}
    assert registry.get_sample_value("sla_outcomes_total", labels | {"outcome": "escalation"}) == 1
    assert registry.get_sample_value("sla_outcomes_total", labels | {"outcome": "breach"}) == 0


def test_check_validates_the_bundled_contract_policies(capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.cli import main

    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "support-standard (ticket; tenants contract-001)" in out
    assert "calendar CN/weekdays" in out
    assert "technical_support after 3 wd, customer_care_manager after 5 wd" in out
    assert "appeal within 15 d wall (003 5.1)" in out
    assert "service-sla (ticket; tenants contract-004)" in out
    assert "availability >= 0.999; FCR >= 0.75; CSAT mean >= 4; CSAT good share >= 0.85" in out


def test_an_appealed_ticket_record_survives_serialisation() -> None:
    run = solved_desk_ticket().feed(ev("ticket.appealed", "T1", "2026-10-20 10:00"))
    state = run.replay.states["t:T1"]
    assert state.appeals == 1
    assert SubjectState.from_bytes(state.to_bytes()) == state
    # a record without appeals keeps the 17-item layout older workers wrote
    fresh = desk().replay.states["t:T1"]
    assert len(orjson.loads(fresh.to_bytes())) == 17
