"""monitor.traffic: deterministic, valid, and as realistic as its docstring claims."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from monitor import traffic, validation
from monitor.events import Event
from monitor.timeutil import parse_rfc3339
from monitor.vocabulary import Actor, EventType


@pytest.fixture(scope="module")
def sample() -> list[dict[str, Any]]:
    return traffic.sample_events()


@pytest.fixture(scope="module")
def parsed(sample: list[dict[str, Any]]) -> list[Event]:
    return [validation.event_from_dict(e) for e in sample]


def test_committed_sample_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    traffic.write_jsonl(traffic.sample_events(), out)
    assert out.read_bytes() == traffic.SAMPLE_PATH.read_bytes(), (
        "regenerate with: .venv/bin/python -m monitor.traffic"
    )


def test_same_seed_same_bytes_other_seed_other_events(tmp_path: Path) -> None:
    start = datetime(2026, 10, 10, 8, tzinfo=traffic.BEIJING)
    a, b, c = (tmp_path / n for n in "abc")
    traffic.write_jsonl(traffic.generate(start, 6, seed=7), a)
    traffic.write_jsonl(traffic.generate(start, 6, seed=7), b)
    traffic.write_jsonl(traffic.generate(start, 6, seed=8), c)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_every_sample_line_validates() -> None:
    lines = traffic.SAMPLE_PATH.read_bytes().splitlines()
    assert 300 <= len(lines) <= 2500
    for line in lines:
        validation.parse_event(line)  # raises on the first bad one


def test_sample_spans_the_holiday_evening_to_the_working_day_evening(
    parsed: list[Event],
) -> None:
    first, last = parsed[0].occurred_at, parsed[-1].occurred_at
    assert first >= parse_rfc3339("2026-10-07T20:00:00+08:00")
    assert last < parse_rfc3339("2026-10-08T20:00:00+08:00")
    assert last - first > 23 * 3600 * 1_000_000


def test_events_are_in_occurred_at_order(parsed: list[Event]) -> None:
    times = [e.occurred_at for e in parsed]
    assert times == sorted(times)


def test_working_hours_are_busier_than_the_holiday_evening(parsed: list[Event]) -> None:
    def count(since: str, until: str) -> int:
        lo, hi = parse_rfc3339(since), parse_rfc3339(until)
        return sum(lo <= e.occurred_at < hi for e in parsed)

    holiday_evening = count("2026-10-07T20:00:00+08:00", "2026-10-07T23:00:00+08:00")
    working_morning = count("2026-10-08T09:00:00+08:00", "2026-10-08T12:00:00+08:00")
    night = count("2026-10-08T01:00:00+08:00", "2026-10-08T06:00:00+08:00")
    assert working_morning > 2 * holiday_evening > 0
    assert night < holiday_evening


def test_duplicates_are_exact_resends(sample: list[dict[str, Any]]) -> None:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sample:
        by_id[e["event_id"]].append(e)
    repeats = [group for group in by_id.values() if len(group) > 1]
    assert 5 <= len(repeats) <= 0.05 * len(sample)
    for group in repeats:
        assert all(e == group[0] for e in group)


def test_chat_traffic_has_what_the_chat_contract_cares_about(parsed: list[Event]) -> None:
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in parsed:
        if e.subject_type == "chat_session":
            sessions[e.subject_id].append(e)
    actors = Counter(e.actor for e in parsed if e.type is EventType.MESSAGE_SENT)
    assert actors[Actor.BOT] > 50
    assert actors[Actor.SYSTEM] > 10
    assert actors[Actor.AGENT] > actors[Actor.BOT]
    assert {e.channel for e in parsed if e.type is EventType.SESSION_STARTED} == {
        "web",
        "app",
        "wechat",
    }
    assert any(e.priority == "urgent" for e in parsed)

    def actors_of(events: list[Event]) -> list[Actor | None]:
        return [e.actor for e in events if e.type is EventType.MESSAGE_SENT]

    abandoned = [
        s
        for s in sessions.values()
        if s[-1].type is EventType.SESSION_CLOSED and Actor.AGENT not in actors_of(s)
    ]
    assert abandoned, "sessions closed before any reply"
    follow_ups = [
        s
        for s in sessions.values()
        if Actor.AGENT in actors_of(s)
        and Actor.CUSTOMER in actors_of(s)[actors_of(s).index(Actor.AGENT) :]
    ]
    assert follow_ups, "customers writing again after an agent reply"
    bot_first = [s for s in sessions.values() if actors_of(s)[:2] == [Actor.CUSTOMER, Actor.BOT]]
    assert bot_first


def first_response_seconds(events: list[Event]) -> float | None:
    asked = next((e.occurred_at for e in events if e.actor is Actor.CUSTOMER), None)
    answered = next((e.occurred_at for e in events if e.actor is Actor.AGENT), None)
    if asked is None or answered is None:
        return None
    return (answered - asked) / 1_000_000


def test_most_agents_are_prompt_but_some_breach(parsed: list[Event]) -> None:
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in parsed:
        if e.type is EventType.MESSAGE_SENT:
            sessions[e.subject_id].append(e)
    waits = [w for s in sessions.values() if (w := first_response_seconds(s)) is not None]
    assert sum(w <= 180 for w in waits) > 0.6 * len(waits)
    assert sum(w > 300 for w in waits) >= 5


def test_ticket_traffic_has_what_the_request_contract_cares_about(parsed: list[Event]) -> None:
    tickets = [e for e in parsed if e.subject_type == "ticket"]
    created = [e for e in tickets if e.type is EventType.TICKET_CREATED]
    assert {e.priority for e in created} == {"P1", "P2", "P3", "P4"}
    comments = [e for e in tickets if e.type is EventType.TICKET_COMMENT]
    kinds = {(e.actor, e.public) for e in comments}
    assert kinds >= {
        (Actor.AGENT, True),
        (Actor.AGENT, False),
        (Actor.BOT, True),
        (Actor.CUSTOMER, True),
    }
    statuses = {e.status for e in tickets if e.type is EventType.TICKET_STATUS_CHANGED}
    assert {s.value for s in statuses if s} >= {"pending", "on_hold", "solved", "closed", "open"}
    assert any(e.type is EventType.TICKET_PRIORITY_CHANGED for e in tickets)
    elsewhere = {e.subject_id for e in created if e.designated is False}
    moved = {e.subject_id for e in tickets if e.type is EventType.TICKET_TRANSFERRED}
    assert elsewhere, "some tickets recorded on a non-designated channel"
    assert moved <= elsewhere
    assert moved


def test_both_offsets_and_extra_metadata_appear(sample: list[dict[str, Any]]) -> None:
    stamps = [e["occurred_at"] for e in sample]
    assert any(s.endswith("Z") for s in stamps)
    assert sum(s.endswith("+08:00") for s in stamps) > 0.7 * len(stamps)
    assert any("agent_id" in e for e in sample)
    assert any("priority" not in e for e in sample if e["type"] == "session.started")
    assert any("designated" not in e for e in sample if e["type"] == "ticket.created")


def test_generate_needs_an_aware_start() -> None:
    with pytest.raises(ValueError, match="naive"):
        traffic.generate(datetime(2026, 10, 8), 1, seed=1)  # noqa: DTZ001 - on purpose


def test_iter_live_is_paced_by_the_caller() -> None:
    start = parse_rfc3339("2026-10-08T09:00:00+08:00")
    first = list(islice(traffic.iter_live(start, seed=3, speedup=60), 300))
    again = list(islice(traffic.iter_live(start, seed=3, speedup=60), 300))
    assert first == again
    dues = [due for due, _ in first]
    assert dues == sorted(dues)
    assert dues[0] >= start
    for due, event in first:
        simulated = parse_rfc3339(event["occurred_at"]) - start
        assert abs((due - start) - simulated / 60) <= 1
        validation.event_from_dict(event)
    # 300 events of a working morning at 60x take minutes of wall time, not hours.
    assert dues[-1] - start < 3600 * 1_000_000
    with pytest.raises(ValueError, match="speedup"):
        next(traffic.iter_live(start, seed=3, speedup=0))
