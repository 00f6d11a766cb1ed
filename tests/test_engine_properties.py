"""Properties of replay on generated traffic (hypothesis picks the day, the seed, the cut)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.engine import ClockPhase, DeadlineIndex, SlaEngine, SubjectState
from monitor.events import Event
from monitor.replay import Replay, final_kinds, replay_events
from monitor.sla_event import Kind, SlaEvent
from monitor.traffic import generate
from monitor.validation import event_from_dict
from tests.factories import default_policies

BEIJING = ZoneInfo("Asia/Shanghai")
DAYS = [datetime(2026, 9, 30, tzinfo=BEIJING) + timedelta(days=n) for n in range(12)]
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def traffic(day: int, hour: int, seed: int) -> list[Event]:
    start = DAYS[day] + timedelta(hours=hour)
    return [event_from_dict(e) for e in generate(start, 3.0, seed, chats_per_hour=60.0)]


def engine() -> SlaEngine:
    return SlaEngine(default_policies())


def replay_all(events: list[Event], until: int) -> list[SlaEvent]:
    return replay_events(engine(), events, until)


@PROPERTY
@given(st.integers(0, 11), st.integers(0, 23), st.integers(0, 10_000), st.data())
def test_a_restart_from_the_records_changes_nothing(
    day: int, hour: int, seed: int, data: st.DataObject
) -> None:
    events = traffic(day, hour, seed)
    until = events[-1].occurred_at + 86_400_000_000 if events else 0
    cut = data.draw(st.integers(0, len(events)))
    whole = replay_all(events, until)

    first = Replay(engine())
    facts = [f for e in events[:cut] for f in first.feed(e)]
    # The worker dies: only the records survive, as bytes; the index is rebuilt from them.
    second = Replay(engine())
    second.clock = first.clock
    for key, state in first.states.items():
        restored = SubjectState.from_bytes(state.to_bytes())
        second.states[key] = restored
        second.index.schedule(key, restored.next_due)
    facts += [f for e in events[cut:] for f in second.feed(e)]
    facts += second.advance_to(until)
    assert facts == whole


@PROPERTY
@given(st.integers(0, 11), st.integers(0, 23), st.integers(0, 10_000), st.data())
def test_redelivered_events_change_nothing(
    day: int, hour: int, seed: int, data: st.DataObject
) -> None:
    events = traffic(day, hour, seed)
    until = events[-1].occurred_at + 86_400_000_000 if events else 0
    if not events:
        return
    # At-least-once delivery: some events come again, right after themselves.
    again = set(data.draw(st.lists(st.integers(0, len(events) - 1), max_size=20)))
    redelivered = [x for i, e in enumerate(events) for x in ([e, e] if i in again else [e])]
    assert replay_all(redelivered, until) == replay_all(events, until)


@PROPERTY
@given(st.integers(0, 11), st.integers(0, 23), st.integers(0, 10_000))
def test_nothing_overdue_is_left_unfired_and_facts_are_consistent(
    day: int, hour: int, seed: int
) -> None:
    events = traffic(day, hour, seed)
    until = events[-1].occurred_at + 30 * 86_400_000_000 if events else 0
    replay = Replay(engine())
    facts = [f for e in events for f in replay.feed(e)] + replay.advance_to(until)
    for state in replay.states.values():
        assert state.next_due is None or state.next_due >= until
        for clock in state.clocks:  # still open a month later: only if breached or paused
            assert clock.phase in {ClockPhase.BREACHED, ClockPhase.PAUSED}
    verdicts = final_kinds(facts)
    for fact in facts:
        assert verdicts[fact.sla_id] is not Kind.RETRACTION or fact.kind is not Kind.MET
        if fact.kind is Kind.BREACH:
            chat_first = fact.metric == "first_response" and fact.subject_type == "chat_session"
            assert (fact.penalty is not None) == chat_first
            assert fact.detected_at > fact.deadline
        if fact.kind is Kind.MET:
            assert fact.responded_at is not None
            assert fact.responded_at <= fact.deadline


def test_index_is_derived_state() -> None:
    index = DeadlineIndex()
    assert index.next_due() is None


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 11 * 86_400 * 10**6),
    st.integers(0, 40 * 3600 * 10**6) | st.sampled_from([0, 1, 3 * 3600 * 10**6]),
    st.integers(1, 40 * 3600 * 10**6) | st.sampled_from([1, 3600 * 10**6]),
)
def test_working_time_adds_up_as_schedule_assumes(start: int, first: int, rest: int) -> None:
    """The engine walks a working-time deadline on from its warning: that is only right if
    add(s, a + b) == add(add(s, a), b) for b > 0, which this checks on the bundled policies'
    calendars (around the 2026 National Day holidays, lunch breaks included)."""
    start += int(DAYS[0].timestamp()) * 10**6
    for policy in default_policies().policies.values():
        wt = policy.working_time
        assert wt.add(wt.add(start, first), rest) == wt.add(start, first + rest)
