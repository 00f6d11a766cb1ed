"""The fast path agrees with the schema files on the event types of contracts 003 and 004
(ticket.appealed, session.rated, ticket.rated, channel.status), integers included (Hypothesis).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from monitor import validation
from monitor.errors import InvalidEvent
from tests.test_validation import schema_says_valid, timestamps

BASE = {"event_id": "e-1", "occurred_at": "2026-10-08T09:00:00+08:00", "tenant": "acme"}
VALID: dict[str, dict[str, Any]] = {
    "ticket.appealed": {"ticket_id": "T-1"},
    "ticket.rated": {"ticket_id": "T-1", "score": 4},
    "session.rated": {"session_id": "S-1", "score": 1},
    "channel.status": {"channel": "phone", "status": "down"},
}
values = st.one_of(
    st.integers(-2, 8),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=10),
    st.sampled_from([5.0, 1.0, 4.5, 1e300, True, False, None, "", "5", "up", "down", "web", []]),
    st.text(max_size=5),
)
keys = st.sampled_from(["score", "status", "channel", "ticket_id", "session_id", "type", "x"])


@st.composite
def candidates(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(list(VALID)))
    obj = {**BASE, "type": event_type, **VALID[event_type], "occurred_at": draw(timestamps)}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(keys)
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(values)
    return obj


def rated(score: object) -> dict[str, Any]:
    return {**BASE, "type": "ticket.rated", "ticket_id": "T-1", "score": score}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidates())
@example(rated(5.0))  # JSON Schema: an integer
@example(rated(True))  # ... and a boolean is none
@example(rated(1e300))
@example(rated(0))
@example({**BASE, "type": "channel.status", "channel": "", "status": "up"})
def test_fast_path_agrees_with_the_schema_on_new_types(obj: dict[str, Any]) -> None:
    fast = validation._fast_path(obj)
    assert (fast is not None) == schema_says_valid(obj), obj
    if fast is None:
        assert isinstance(validation.explain(obj), InvalidEvent)
    elif "score" in obj and obj["type"].endswith(".rated"):
        assert fast.score == obj["score"]
        assert type(fast.score) is int
