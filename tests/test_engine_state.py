"""Subject records round-trip through bytes, and the deadline index rebuilds from them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.engine import DeadlineIndex, SubjectState
from monitor.errors import StateError
from monitor.sla_event import Kind
from tests.factories import Run, ev, t


def busy_run() -> Run:
    return Run().feed(
        ev("ticket.created", "T1", "2026-10-08 09:00", priority="P2"),
        ev("ticket.comment", "T1", "2026-10-08 09:10", actor="agent", public=True),
        ev("ticket.status_changed", "T1", "2026-10-08 10:00", status="pending"),
        ev("ticket.status_changed", "T1", "2026-10-08 11:00", status="open"),
        ev("session.started", "S1", "2026-10-08 11:00:30"),
    )


def test_records_round_trip_and_stay_small() -> None:
    run = busy_run()
    for state in run.replay.states.values():
        data = state.to_bytes()
        assert SubjectState.from_bytes(data) == state
        assert len(data) < 1024


def test_a_restored_replay_continues_exactly_like_the_original() -> None:
    original = busy_run()
    restored = busy_run()
    # Simulate a restart: records survive as bytes; the index is rebuilt from them.
    states = {k: SubjectState.from_bytes(s.to_bytes()) for k, s in restored.replay.states.items()}
    restored.replay.states = states
    restored.replay.index = DeadlineIndex()
    for key, state in states.items():
        restored.replay.index.schedule(key, state.next_due)
    original.until("2026-10-20 00:00")
    restored.until("2026-10-20 00:00")
    assert original.facts == restored.facts
    assert any(f.kind is Kind.BREACH for f in original.facts)


def test_deadline_index_pops_in_order() -> None:
    index = DeadlineIndex()
    index.schedule("a", 30)
    index.schedule("b", 10)
    index.schedule("c", 20)
    index.schedule("a", 5)  # rescheduled earlier; the old entry is stale
    assert index.next_due() == 5
    assert index.pop_due(20) == ["a", "b"]  # strictly before 20
    assert index.pop_due(100) == ["c"]
    assert len(index) == 0
    index.schedule("e", 7)
    index.schedule("e", None)
    assert index.pop_due(100) == []


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["schedule", "pop", "clear"]),
            st.sampled_from("abcd"),
            st.none() | st.integers(0, 50),
        ),
        max_size=40,
    )
)
def test_due_bound_never_passes_a_pending_deadline(ops: list[tuple[str, str, int | None]]) -> None:
    """Replay skips pop_due while its clock has not passed due_bound: no due key may hide."""
    index = DeadlineIndex()
    live: dict[str, int] = {}
    for op, key, value in ops:
        if op == "schedule":
            index.schedule(key, value)
            if value is None:
                live.pop(key, None)
            else:
                live[key] = value
        elif op == "pop" and value is not None:
            assert sorted(index.pop_due(value)) == sorted(k for k, d in live.items() if d < value)
            live = {k: d for k, d in live.items() if d >= value}
        elif op == "clear":
            index.clear()
            live.clear()
        assert all(index.due_bound <= d for d in live.values())


def test_instants_are_microseconds() -> None:
    assert t("2026-10-08T01:00:00Z") == t("2026-10-08 09:00")


def test_a_record_of_another_format_names_its_key_and_the_format_seen() -> None:
    state = busy_run().replay.states["t:T1"]
    other = b"[2" + state.to_bytes()[2:]  # the format number is the first item
    with pytest.raises(StateError) as raised:
        SubjectState.from_bytes(other, key=b"t:T1")
    assert (raised.value.key, raised.value.format) == ("t:T1", 2)
    assert "'t:T1' has format 2, but this release reads format 1" in str(raised.value)
    for junk in (b"", b"{}", b"7", b"[]"):
        with pytest.raises(StateError, match="a state record is unreadable") as raised:
            SubjectState.from_bytes(junk)
        assert raised.value.format is None
