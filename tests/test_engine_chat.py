"""Contract 002 (online chat) as the default policy encodes it, boundary by boundary."""

from __future__ import annotations

import pytest

from monitor.sla_event import Kind
from monitor.timeutil import MICROS_PER_SECOND
from monitor.vocabulary import Metric, Period
from tests.factories import Run, ev, t


def started(at: str, sid: str = "s1", **kw: object) -> Run:
    return Run().feed(ev("session.started", sid, at, **kw))


@pytest.mark.parametrize(
    ("at", "target", "period"),
    [
        ("2026-10-08 09:00:00", 180, Period.WORKING_HOURS),  # first working day after National Day
        ("2026-10-08 08:59:59", 300, Period.AFTER_HOURS),
        ("2026-10-08 17:59:59", 180, Period.WORKING_HOURS),
        ("2026-10-08 18:00:00", 300, Period.AFTER_HOURS),
        ("2026-10-10 10:00:00", 180, Period.WORKING_HOURS),  # make-up working Saturday
        ("2026-02-28 10:00:00", 180, Period.WORKING_HOURS),  # make-up working Saturday
        ("2026-10-01 10:00:00", 300, Period.REST_DAY),  # National Day, a Thursday
        ("2026-10-11 10:00:00", 300, Period.REST_DAY),  # an ordinary Sunday
        ("2026-01-01 10:00:00", 300, Period.REST_DAY),  # New Year's Day
    ],
)
def test_target_is_chosen_by_when_the_session_started(at: str, target: int, period: Period) -> None:
    run = started(at).until("2026-12-30 00:00")
    breach = run.only(Kind.BREACH)
    assert breach.target_seconds == target
    assert breach.period is period
    assert breach.deadline == t(at) + target * MICROS_PER_SECOND
    assert breach.clause.startswith("002 2.2")


def test_offsets_in_the_input_are_honoured() -> None:
    # 01:59:59Z is 09:59:59 in Beijing: working hours.
    run = started("2026-10-08T01:59:59Z").until("2026-10-09 00:00")
    assert run.only(Kind.BREACH).target_seconds == 180
    run = started("2026-10-08T05:00:00-05:00").until("2026-10-09 00:00")  # 18:00 Beijing
    assert run.only(Kind.BREACH).target_seconds == 300


def test_response_exactly_at_the_deadline_is_met_one_second_later_is_a_breach() -> None:
    run = started("2026-10-08 10:00:00").feed(
        ev("message.sent", "s1", "2026-10-08 10:03:00", actor="agent")
    )
    met = run.only(Kind.MET)
    assert met.elapsed_seconds == 180
    assert Kind.BREACH not in {f.kind for f in run.facts}

    run = started("2026-10-08 10:00:00").feed(
        ev("message.sent", "s1", "2026-10-08 10:03:01", actor="agent")
    )
    breach = run.only(Kind.BREACH)
    assert breach.penalty is not None
    assert (breach.penalty.amount, breach.penalty.currency) == (100, "CNY")
    assert [f.kind for f in run.facts if f.metric is Metric.FIRST_RESPONSE] == [
        Kind.WARNING,
        Kind.BREACH,
    ]


def test_bot_and_system_messages_never_count_as_a_response() -> None:
    run = started("2026-10-08 10:00:00").feed(
        ev("message.sent", "s1", "2026-10-08 10:00:05", actor="bot"),
        ev("message.sent", "s1", "2026-10-08 10:00:06", actor="system"),
        ev("message.sent", "s1", "2026-10-08 10:04:00", actor="agent"),
    )
    assert run.only(Kind.BREACH).target_seconds == 180
    assert not [f for f in run.facts if f.kind is Kind.MET]


def test_breach_is_detected_by_time_alone() -> None:
    run = started("2026-10-08 10:00:00").until("2026-10-08 10:03:00")
    assert Kind.BREACH not in {f.kind for f in run.facts}  # not passed yet: at the deadline
    run.until("2026-10-08 10:03:00.000001")
    assert run.only(Kind.BREACH).detected_at == t("2026-10-08 10:03:00") + 1


def test_session_closed_before_deadline_without_response_is_no_breach() -> None:
    run = started("2026-10-08 10:00:00").feed(ev("session.closed", "s1", "2026-10-08 10:01:00"))
    run.until("2026-10-09 00:00")
    assert run.facts == []


def test_urgent_sessions_are_due_at_once() -> None:
    run = started("2026-10-08 10:00:00", priority="urgent").until("2026-10-09 00:00")
    breach = run.only(Kind.BREACH)
    assert breach.target_seconds == 60
    assert breach.clause == "002 2.2(4)"


def test_warning_at_eighty_percent() -> None:
    run = started("2026-10-08 10:00:00").until("2026-10-08 10:02:24")
    assert run.facts == []
    run.until("2026-10-08 10:02:25")
    warning = run.only(Kind.WARNING)
    assert warning.share == 0.8
    assert warning.sla_id == run.facts[0].sla_id


def test_duplicates_are_ignored() -> None:
    start = ev("session.started", "s1", "2026-10-08 10:00:00", event_id="x1")
    reply = ev("message.sent", "s1", "2026-10-08 10:01:00", actor="agent", event_id="x2")
    run = Run().feed(start, start, reply, reply).until("2026-10-09 00:00")
    assert run.kinds() == [("first_response", "met")]
    assert run.replay.stats.duplicates == 2


def test_late_response_retracts_the_breach_with_the_same_sla_id() -> None:
    run = started("2026-10-08 10:00:00").feed(
        ev("session.started", "s2", "2026-10-08 10:05:00"),  # moves the clock on
        ev("message.sent", "s1", "2026-10-08 10:02:00", actor="agent"),  # arrives late
    )
    breach = run.only(Kind.BREACH)
    retraction = run.only(Kind.RETRACTION)
    met = run.only(Kind.MET)
    assert breach.sla_id == retraction.sla_id == met.sla_id
    assert met.elapsed_seconds == 120
    assert run.replay.stats.late == 1


def test_late_close_before_the_deadline_retracts_without_a_met() -> None:
    run = started("2026-10-08 10:00:00").feed(
        ev("session.started", "s2", "2026-10-08 10:05:00"),
        ev("session.closed", "s1", "2026-10-08 10:01:00"),
    )
    kinds = [f.kind for f in run.facts if f.subject_id == "s1"]
    assert kinds == [Kind.WARNING, Kind.BREACH, Kind.RETRACTION]


def test_next_response_after_an_agent_reply() -> None:
    run = started("2026-10-08 10:00:00").feed(
        ev("message.sent", "s1", "2026-10-08 10:01:00", actor="agent"),
        ev("message.sent", "s1", "2026-10-08 10:02:00", actor="customer"),
        ev("message.sent", "s1", "2026-10-08 10:02:30", actor="customer"),  # same wait
        ev("message.sent", "s1", "2026-10-08 10:06:00", actor="agent"),
    )
    assert run.kinds() == [
        ("first_response", "met"),
        ("next_response", "warning"),
        ("next_response", "breach"),
    ]
    breach = run.only(Kind.BREACH, Metric.NEXT_RESPONSE)
    assert breach.seq == 1
    assert breach.started_at == t("2026-10-08 10:02:00")
    assert breach.penalty is None  # contract 002 charges first responses only


def test_message_for_an_unknown_session_is_rejected_with_a_reason() -> None:
    run = Run().feed(ev("message.sent", "nope", "2026-10-08 10:00:00", actor="agent"))
    assert run.replay.stats.rejected == 1
    assert "no session.started" in run.replay.rejections[0][1]


def test_sla_ids_are_deterministic() -> None:
    a = started("2026-10-08 10:00:00").until("2026-10-09 00:00").only(Kind.BREACH)
    b = started("2026-10-08 10:00:00").until("2026-10-09 00:00").only(Kind.BREACH)
    c = started("2026-10-08 10:00:00", sid="s9").until("2026-10-09 00:00").only(Kind.BREACH)
    assert a.sla_id == b.sla_id != c.sla_id
