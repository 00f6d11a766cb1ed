"""Contract 000 (customer requests) and 004 3.2 as the default ticket policy encodes them."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.engine import ClockPhase, SlaEngine, state_key
from monitor.engine.state import SlaClock
from monitor.errors import Reason, RejectedEvent
from monitor.policy import load_policy_set
from monitor.sla_event import Kind
from monitor.timeutil import format_rfc3339
from monitor.validation import parse_event
from monitor.vocabulary import Metric, Period, SubjectType
from tests.factories import Run, default_policies, ev, t

END = "2026-12-30 00:00"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def created(at: str, priority: str = "P3", tid: str = "T1", **kw: object) -> Run:
    return Run().feed(ev("ticket.created", tid, at, priority=priority, **kw))


def first_breach(run: Run) -> tuple[str, Period]:
    """The deadline (as Beijing RFC 3339 text, for readable failures) and period of the breach."""
    breach = run.until(END).only(Kind.BREACH)
    tz = run.policies.named("customer-requests").timezone
    return format_rfc3339(breach.deadline, tz), breach.period


@pytest.mark.parametrize(
    ("at", "priority", "deadline", "period"),
    [
        # P1: 30 min on the wall clock, round the clock (5.1(a), 6.2), even on a holiday night.
        ("2026-10-03 22:00", "P1", "2026-10-03T22:30:00+08:00", Period.REST_DAY),
        # P2 within working time: 2 working hours.
        ("2026-10-08 10:00", "P2", "2026-10-08T12:00:00+08:00", Period.WORKING_HOURS),
        # ... across the lunch break.
        ("2026-10-08 11:00", "P2", "2026-10-08T14:00:00+08:00", Period.WORKING_HOURS),
        # created during the break: working time counts from the break's end.
        ("2026-10-08 12:30", "P3", "2026-10-08T17:00:00+08:00", Period.WORKING_HOURS),
        # P4: 8 working hours span into the next working day.
        ("2026-10-08 09:00", "P4", "2026-10-09T10:00:00+08:00", Period.WORKING_HOURS),
        # after hours (6.1): 1 working hour after the next working time starts.
        ("2026-10-08 18:30", "P4", "2026-10-09T10:00:00+08:00", Period.AFTER_HOURS),
        ("2026-10-08 08:59:59", "P2", "2026-10-08T10:00:00+08:00", Period.AFTER_HOURS),
        ("2026-10-08 17:00", "P3", "2026-10-09T10:00:00+08:00", Period.AFTER_HOURS),
        # a holiday: the next working day is 10-08, the day after National Day.
        ("2026-10-03 10:00", "P2", "2026-10-08T10:00:00+08:00", Period.REST_DAY),
        # Friday evening before a make-up working Saturday (2026-10-10).
        ("2026-10-09 17:30", "P3", "2026-10-10T10:00:00+08:00", Period.AFTER_HOURS),
    ],
)
def test_first_response_targets(at: str, priority: str, deadline: str, period: Period) -> None:
    got_deadline, got_period = first_breach(created(at, priority))
    assert got_deadline == deadline
    assert got_period is period


def test_only_a_public_agent_comment_is_a_response() -> None:
    run = created("2026-10-08 10:00", "P2").feed(
        ev("ticket.comment", "T1", "2026-10-08 10:05", actor="bot", public=True),
        ev("ticket.comment", "T1", "2026-10-08 10:06", actor="agent", public=False),
        ev("ticket.comment", "T1", "2026-10-08 10:07", actor="customer", public=True),
    )
    run.until("2026-10-08 12:00:01")
    assert run.only(Kind.BREACH).metric is Metric.FIRST_RESPONSE
    run2 = created("2026-10-08 10:00", "P2").feed(
        ev("ticket.comment", "T1", "2026-10-08 11:00", actor="agent", public=True)
    )
    assert run2.only(Kind.MET).elapsed_seconds == 3600


def test_priority_change_recomputes_from_the_original_start() -> None:
    run = created("2026-10-08 09:00", "P4").feed(
        ev("ticket.priority_changed", "T1", "2026-10-08 10:00", priority="P2")
    )
    run.until("2026-10-08 11:00")
    assert not [f for f in run.facts if f.kind is Kind.BREACH]
    run.until("2026-10-08 11:00:01")
    breach = run.only(Kind.BREACH)
    assert breach.deadline == t("2026-10-08 11:00")
    assert breach.priority == "P2"


def test_downgrade_after_a_breach_retracts_it() -> None:
    run = created("2026-10-08 09:00", "P2").until("2026-10-08 11:30")
    breach = run.only(Kind.BREACH)
    run.feed(ev("ticket.priority_changed", "T1", "2026-10-08 11:30", priority="P4"))
    retraction = run.only(Kind.RETRACTION)
    assert retraction.sla_id == breach.sla_id
    assert retraction.reason == "priority changed"
    run.feed(ev("ticket.comment", "T1", "2026-10-08 14:00", actor="agent", public=True))
    assert run.only(Kind.MET).sla_id == breach.sla_id


def test_a_breach_after_a_retraction_is_a_new_fact() -> None:
    """Breached, retracted by a downgrade, breached again by the upgrade back: the second breach
    has the first one's deadline and payload, yet it is a new fact (the verdict flipped twice),
    so its ``fact_id`` differs; a consumer that drops repeats by id kept only the retraction."""
    run = created("2026-10-08 09:00", "P2").until("2026-10-08 11:30")
    run.feed(ev("ticket.priority_changed", "T1", "2026-10-08 11:30", priority="P4"))
    run.feed(ev("ticket.priority_changed", "T1", "2026-10-08 11:40", priority="P2"))
    run.until("2026-10-08 11:41")
    run.feed(ev("ticket.priority_changed", "T1", "2026-10-08 11:50", priority="P4"))
    verdicts = [f for f in run.facts if f.kind in (Kind.BREACH, Kind.RETRACTION)]
    assert [(f.kind, f.round) for f in verdicts] == [
        (Kind.BREACH, 1), (Kind.RETRACTION, 1), (Kind.BREACH, 2), (Kind.RETRACTION, 2)
    ]  # fmt: skip
    sla_id = verdicts[0].sla_id
    assert [f.fact_id for f in verdicts] == [
        f"{sla_id}:breach", f"{sla_id}:retraction", f"{sla_id}:breach:2", f"{sla_id}:retraction:2"
    ]  # fmt: skip
    assert verdicts[0].deadline == verdicts[2].deadline  # only the round tells them apart
    assert "round" not in verdicts[0].to_dict(SHANGHAI)
    assert verdicts[2].to_dict(SHANGHAI)["round"] == 2


def test_the_round_survives_the_stored_record() -> None:
    """The live worker stores the record between events: the count of retracted breaches
    goes with it, and a record stored before rounds existed (13 fields a clock) reads as none."""
    run = created("2026-10-08 09:00", "P2").until("2026-10-08 11:30")
    run.feed(ev("ticket.priority_changed", "T1", "2026-10-08 11:30", priority="P4"))
    state = run.replay.states[state_key(SubjectType.TICKET, "T1")]
    clock = next(c for c in state.clocks if c.metric is Metric.FIRST_RESPONSE)
    assert clock.retracted == 1
    assert SlaClock.from_list(clock.to_list()).retracted == 1
    assert SlaClock.from_list(clock.to_list()[:13]).retracted == 0


def test_upgrade_to_p1_moves_to_the_wall_clock() -> None:
    run = created("2026-10-08 16:50", "P3").feed(
        ev("ticket.priority_changed", "T1", "2026-10-08 17:00", priority="P1")
    )
    run.until("2026-10-08 17:20:01")
    breach = run.only(Kind.BREACH)
    assert breach.deadline == t("2026-10-08 17:20")
    assert breach.clock == "wall"


def test_non_designated_channel_starts_the_clock_at_transfer() -> None:
    run = created("2026-10-08 10:00", "P2", channel="phone-personal", designated=False)
    run.until("2026-10-08 16:00")
    assert run.facts == []
    run.feed(
        ev("ticket.transferred", "T1", "2026-10-08 14:00", channel="portal", designated=True)
    ).until(END)
    breach = [f for f in run.facts if f.kind is Kind.BREACH and f.metric is Metric.FIRST_RESPONSE]
    assert breach[0].started_at == t("2026-10-08 14:00")
    assert breach[0].deadline == t("2026-10-08 16:00")
    assert breach[0].channel == "portal"


def test_resolution_pauses_while_pending_on_the_customer() -> None:
    # P2 resolution: 1 working day = 7 working hours.
    run = created("2026-10-08 09:00", "P2").feed(
        ev("ticket.comment", "T1", "2026-10-08 09:10", actor="agent", public=True),
        ev("ticket.status_changed", "T1", "2026-10-08 10:00", status="pending"),
        ev("ticket.status_changed", "T1", "2026-10-09 10:00", status="open"),
    )
    run.until(END)
    breach = [f for f in run.facts if f.kind is Kind.BREACH and f.metric is Metric.RESOLUTION]
    # 1 h used before the pause; 6 h left from 10-09 10:00 -> 17:00.
    assert breach[0].deadline == t("2026-10-09 17:00")


def test_solved_in_time_meets_the_resolution_target() -> None:
    run = created("2026-10-08 09:00", "P2").feed(
        ev("ticket.comment", "T1", "2026-10-08 09:10", actor="agent", public=True),
        ev("ticket.status_changed", "T1", "2026-10-08 14:00", status="solved"),  # update due 14:10
    )
    run.until(END)
    assert ("resolution", "met") in run.kinds()
    assert ("first_response", "met") in run.kinds()
    assert not [f for f in run.facts if f.kind is Kind.BREACH]


def test_periodic_update_after_the_first_response() -> None:
    # P2 updates every 4 working hours (000 9.2).
    run = created("2026-10-08 09:00", "P2").feed(
        ev("ticket.comment", "T1", "2026-10-08 09:10", actor="agent", public=True),
        ev("ticket.comment", "T1", "2026-10-08 12:00", actor="agent", public=True),
    )
    run.until("2026-10-08 17:00:01")
    updates = [f for f in run.facts if f.metric is Metric.PERIODIC_UPDATE]
    assert [(f.seq, f.kind) for f in updates] == [
        (1, Kind.MET),
        (2, Kind.WARNING),
        (2, Kind.BREACH),
    ]
    assert updates[-1].deadline == t("2026-10-08 17:00")  # 12:00 + 4 h less lunch


def test_next_response_on_tickets() -> None:
    run = created("2026-10-08 09:00", "P3").feed(
        ev("ticket.comment", "T1", "2026-10-08 09:30", actor="agent", public=True),
        ev("ticket.comment", "T1", "2026-10-08 10:00", actor="customer", public=True),
        ev("ticket.comment", "T1", "2026-10-08 11:00", actor="agent", public=True),
    )
    assert ("next_response", "met") in run.kinds()


def test_year_end_without_calendar_data_is_rejected_not_guessed() -> None:
    run = created("2026-12-31 16:00", "P4")
    assert run.replay.stats.rejected == 1
    reason = run.replay.rejections[0][1]
    assert "2027" in reason


def test_year_end_with_an_operator_override(tmp_path: Path) -> None:
    overrides = tmp_path / "cn-2027.yaml"
    overrides.write_text("years: [2027]\nholidays: ['2027-01-01']\nworking_days: []\n")
    policy = Path("deploy/policies/customer-requests.yaml").read_text()
    policy = policy.replace(
        "  unknown_dates: error", f"  overrides: {overrides}\n  unknown_dates: error"
    )
    (tmp_path / "tickets.yaml").write_text(policy)
    run = Run(policies=load_policy_set(tmp_path / "tickets.yaml"))
    run.feed(ev("ticket.created", "T1", "2026-12-31 16:00", priority="P4")).until(
        "2027-01-30 00:00"
    )
    breach = [f for f in run.facts if f.kind is Kind.BREACH and f.metric is Metric.FIRST_RESPONSE]
    # 1 h on 12-31, then 01-01 is a holiday, then 7 h on Monday 01-04 (01-02/03 a weekend).
    assert breach[0].deadline == t("2027-01-04 17:00")


def test_a_resolution_clock_goes_through_its_phases() -> None:
    """The transitions listed in monitor/engine/state.py, on one P2 ticket's resolution."""
    run = created("2026-10-08 09:00", "P2")

    def phase() -> ClockPhase:
        clock = run.replay.states["t:T1"].clock(Metric.RESOLUTION)
        assert clock is not None
        return clock.phase

    assert phase() is ClockPhase.RUNNING
    run.feed(ev("ticket.status_changed", "T1", "2026-10-08 10:00", status="pending"))
    assert phase() is ClockPhase.PAUSED
    run.feed(ev("ticket.status_changed", "T1", "2026-10-09 10:00", status="open"))
    assert phase() is ClockPhase.RUNNING
    run.until("2026-10-09 17:00:01")  # 1 h used before the pause, 6 h after: due 17:00
    assert phase() is ClockPhase.BREACHED
    # Retargeted to P4 (2 working days): the deadline moves past now, the breach is retracted.
    run.feed(ev("ticket.priority_changed", "T1", "2026-10-09 17:00:02", priority="P4"))
    assert phase() is ClockPhase.RUNNING
    assert run.kinds(Metric.RESOLUTION)[-2:] == [
        ("resolution", "breach"),
        ("resolution", "retraction"),
    ]


def test_stop_returns_the_phase_a_clock_ended_in() -> None:
    engine = SlaEngine(default_policies())
    call = engine._load("customer-requests").call
    for met, at, ended in [
        (True, "2026-10-08 09:30", ClockPhase.MET),  # in time
        (True, "2026-10-09 09:30", ClockPhase.STOPPED),  # late: a breach
        (False, "2026-10-08 09:30", ClockPhase.STOPPED),  # finished first: nothing
    ]:
        state = engine.apply(None, ev("ticket.created", "T9", "2026-10-08 09:00"), t(at)).state
        assert state is not None
        clock = state.clock(Metric.FIRST_RESPONSE)
        assert clock is not None
        call.now, call.out = t(at), []
        assert call.stop(state, clock, t(at), met=met, why="test") is ended
        assert state.clock(Metric.FIRST_RESPONSE) is None


def test_a_channel_status_is_refused_even_where_a_ticket_shares_its_key() -> None:
    """A channel is keyed by its name, a ticket by its id: "t:web" can be both. The engine
    refuses the channel.status (it has no SLA clock) rather than fail on the ticket's record."""
    engine = SlaEngine(default_policies())
    ticket = ev("ticket.created", "web", "2026-10-08 09:00")
    state = engine.apply(None, ticket, ticket.occurred_at).state
    assert state is not None
    status = parse_event(
        b'{"event_id": "c1", "type": "channel.status", "tenant": "acme", '
        b'"occurred_at": "2026-10-08T10:00:00+08:00", "channel": "web", "status": "down"}'
    )
    assert state_key(status.subject_type, status.subject_id) == state.key
    with pytest.raises(RejectedEvent) as refused:
        engine.apply(state, status, status.occurred_at)
    assert refused.value.code is Reason.NOT_FOR_ENGINE
