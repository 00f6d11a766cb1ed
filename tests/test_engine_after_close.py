"""A response that happened before the close but arrives after it (a producer retried its
send): judged as if it had arrived in order. Found by tests/live/test_faults_disorder.py's
"events after close" case: the close dropped the clock, so a reply in time left the breach
the close let stand (a false penalty), or no ``met`` at all.
"""

from __future__ import annotations

from monitor.engine import SubjectState
from monitor.sla_event import Kind
from monitor.vocabulary import Metric
from tests.factories import Run, ev, t


def chat(*events: tuple[str, str, str | None]) -> Run:
    """Session s1 started by a customer at 10:00:00, then ``(type, time, actor)`` in order."""
    run = Run().feed(
        ev("session.started", "s1", "2026-10-08 10:00:00"),
        ev("message.sent", "s1", "2026-10-08 10:00:00", actor="customer"),
    )
    for type_, at, actor in events:
        fields = {"actor": actor} if actor else {}
        run.feed(ev(type_, "s1", f"2026-10-08 {at}", **fields))
    return run


def sorted_run(*events: tuple[str, str, str | None]) -> Run:
    return chat(*sorted(events, key=lambda e: e[1]))


def verdict(run: Run) -> Kind | None:
    last = None
    for f in run.facts:
        if f.metric is Metric.FIRST_RESPONSE and f.kind is not Kind.WARNING:
            last = f.kind
    return last


def test_a_reply_in_time_arriving_after_a_late_close_retracts_the_breach() -> None:
    # 180 s target (a working day); closed at 10:05, past the deadline; replied at 10:02.
    events = (("session.closed", "10:05:00", None), ("message.sent", "10:02:00", "agent"))
    run = chat(*events)
    assert run.kinds(Metric.FIRST_RESPONSE)[-3:] == [
        ("first_response", "breach"),
        ("first_response", "retraction"),
        ("first_response", "met"),
    ]
    met = run.only(Kind.MET)
    assert met.responded_at == t("2026-10-08 10:02:00")
    assert run.only(Kind.RETRACTION).sla_id == run.only(Kind.BREACH).sla_id == met.sla_id
    assert verdict(run) is verdict(sorted_run(*events)) is Kind.MET


def test_a_reply_arriving_after_a_close_before_the_deadline_is_met() -> None:
    events = (("session.closed", "10:02:00", None), ("message.sent", "10:01:00", "agent"))
    run = chat(*events)
    assert Kind.BREACH not in {f.kind for f in run.facts}
    assert run.only(Kind.MET).responded_at == t("2026-10-08 10:01:00")
    assert verdict(run) is verdict(sorted_run(*events)) is Kind.MET


def test_a_late_reply_arriving_after_the_close_leaves_the_breach() -> None:
    events = (("session.closed", "10:05:00", None), ("message.sent", "10:04:00", "agent"))
    run = chat(*events)
    assert verdict(run) is verdict(sorted_run(*events)) is Kind.BREACH
    assert Kind.RETRACTION not in {f.kind for f in run.facts}


def test_a_reply_after_the_close_answers_nothing() -> None:
    run = chat(("session.closed", "10:02:00", None), ("message.sent", "10:02:30", "agent"))
    assert [f.kind for f in run.facts if f.kind is not Kind.WARNING] == []


def test_the_closed_clock_is_judged_once_and_survives_a_restart() -> None:
    run = chat(("session.closed", "10:05:00", None))
    state = run.replay.states["c:s1"]
    assert len(state.closed) == 1
    restored = SubjectState.from_bytes(state.to_bytes())
    assert restored == state  # the worker's table holds it between the close and the reply
    run.feed(ev("message.sent", "s1", "2026-10-08 10:01:00", actor="agent"))
    run.feed(ev("message.sent", "s1", "2026-10-08 10:01:30", actor="agent"))
    assert [k for _, k in run.kinds(Metric.FIRST_RESPONSE)].count("met") == 1
    assert run.replay.states["c:s1"].closed == ()


def test_a_ticket_solved_before_its_late_arriving_reply_is_met() -> None:
    run = Run().feed(
        ev("ticket.created", "T1", "2026-10-08 10:00:00", priority="P1"),  # 30 min, 24x7
        ev("ticket.status_changed", "T1", "2026-10-08 10:40:00", status="solved"),
        ev("ticket.comment", "T1", "2026-10-08 10:20:00", actor="agent", public=True),
    )
    assert run.kinds(Metric.FIRST_RESPONSE)[-3:] == [
        ("first_response", "breach"),
        ("first_response", "retraction"),
        ("first_response", "met"),
    ]
