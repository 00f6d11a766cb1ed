"""monitor.validation: every valid type accepted, every bad shape rejected with a precise reason,
and the fast path agreeing with the schema files (Hypothesis)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import schemas, validation
from monitor.errors import ConfigError, InvalidEvent
from monitor.timeutil import parse_rfc3339
from monitor.vocabulary import Actor, EventType, SubjectType, TicketStatus

BASE = {"event_id": "e-1", "occurred_at": "2026-10-08T09:00:00+08:00", "tenant": "acme"}
VALID: dict[str, dict[str, Any]] = {
    "session.started": {"session_id": "S-1", "channel": "web", "priority": "urgent"},
    "message.sent": {"session_id": "S-1", "sender": "agent"},
    "session.closed": {"session_id": "S-1"},
    "ticket.created": {"ticket_id": "T-1", "channel": "email", "priority": "P1"},
    "ticket.comment": {"ticket_id": "T-1", "author": "bot", "public": False},
    "ticket.priority_changed": {"ticket_id": "T-1", "priority": "P3"},
    "ticket.status_changed": {"ticket_id": "T-1", "status": "on_hold"},
    "ticket.transferred": {"ticket_id": "T-1", "channel": "web", "designated": True},
}


def event(event_type: str, **changes: Any) -> dict[str, Any]:
    out = {**BASE, "type": event_type, **VALID[event_type], **changes}
    return {k: v for k, v in out.items() if v is not DROP}


DROP: Any = object()


# --- valid ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(VALID))
def test_every_type_is_accepted_from_bytes_str_and_dict(event_type: str) -> None:
    obj = event(event_type)
    parsed = validation.parse_event(orjson.dumps(obj))
    assert parsed == validation.parse_event(json.dumps(obj)) == validation.event_from_dict(obj)
    assert parsed.type is EventType(event_type)
    assert parsed.event_id == "e-1"
    assert parsed.tenant == "acme"
    assert parsed.occurred_at == parse_rfc3339("2026-10-08T01:00:00Z")
    chat = event_type.startswith("session.") or event_type == "message.sent"
    assert parsed.subject_type is (SubjectType.CHAT_SESSION if chat else SubjectType.TICKET)
    assert parsed.subject_id == ("S-1" if chat else "T-1")


def test_fields_land_in_the_record() -> None:
    started = validation.event_from_dict(event("session.started"))
    assert (started.channel, started.priority) == ("web", "urgent")
    assert validation.event_from_dict(event("message.sent")).actor is Actor.AGENT
    comment = validation.event_from_dict(event("ticket.comment"))
    assert (comment.actor, comment.public) == (Actor.BOT, False)
    status = validation.event_from_dict(event("ticket.status_changed"))
    assert status.status is TicketStatus.ON_HOLD
    moved = validation.event_from_dict(event("ticket.transferred", designated=False))
    assert (moved.channel, moved.designated) == ("web", False)
    created = validation.event_from_dict(event("ticket.created"))
    assert (created.channel, created.priority, created.actor) == ("email", "P1", None)


def test_defaults_are_applied() -> None:
    started = validation.event_from_dict(event("session.started", priority=DROP))
    assert started.priority == "normal"
    assert validation.event_from_dict(event("ticket.created")).designated is True
    assert validation.event_from_dict(event("ticket.created", designated=False)).designated is False
    # Fields a type does not carry stay None.
    assert validation.event_from_dict(event("session.closed")).priority is None


def test_extra_properties_are_allowed_and_ignored() -> None:
    plain = validation.event_from_dict(event("message.sent"))
    extra = validation.event_from_dict(
        event("message.sent", agent_id="a-7", meta={"x": [1, 2]}, ticket_id=5)
    )
    assert plain == extra


@pytest.mark.parametrize(
    "stamp",
    ["2026-10-08T01:00:00Z", "2026-10-08T09:00:00+08:00", "2026-10-08T09:00:00.000+08:00"],
)
def test_offsets_give_the_same_instant(stamp: str) -> None:
    parsed = validation.event_from_dict(event("session.closed", occurred_at=stamp))
    assert parsed.occurred_at == parse_rfc3339("2026-10-08T01:00:00Z")


def test_fractions_are_kept_to_the_microsecond() -> None:
    parsed = validation.event_from_dict(
        event("session.closed", occurred_at="2026-10-08T09:00:00.123456+08:00")
    )
    assert parsed.occurred_at == parse_rfc3339("2026-10-08T01:00:00Z") + 123_456


# --- invalid --------------------------------------------------------------------------------

LONG = "x" * 257


@pytest.mark.parametrize(
    ("raw", "path", "reason"),
    [
        (b"\xff\xfe{}", "", "not UTF-8"),
        ('{"a": "\udcff"}', "", "not UTF-8"),
        (b'{"type": ', "", "not JSON"),
        (b"", "", "not JSON"),
        (b'{"a": NaN}', "", "not JSON"),
        (b"[1, 2]", "", "expected a JSON object, got array"),
        (b'"session.started"', "", "expected a JSON object, got string"),
        (b"null", "", "expected a JSON object, got null"),
        (b" " * (validation.MAX_EVENT_BYTES + 1), "", "over the limit of 65536 bytes"),
        ("\u4e2d" * 30_000, "", "over the limit"),  # 90 kB in UTF-8, under 64 Ki characters
    ],
)
def test_raw_input_problems(raw: bytes | str, path: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validation.parse_event(raw)
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_oversized_is_checked_before_parsing() -> None:
    padded = {**event("session.closed"), "pad": "y" * validation.MAX_EVENT_BYTES}
    with pytest.raises(InvalidEvent, match="bytes, over the limit"):
        validation.parse_event(orjson.dumps(padded))
    # The same dict without the size limit is fine: extra properties are allowed.
    validation.event_from_dict(padded)


@pytest.mark.parametrize(
    ("obj", "path", "reason"),
    [
        ({k: v for k, v in event("session.closed").items() if k != "type"}, "type", "missing"),
        (
            event("session.closed", type="session.opened"),
            "type",
            "unknown event type 'session.opened'",
        ),
        (event("session.closed", type=3), "type", "unknown event type 3"),
        (event("session.closed", event_id=DROP), "event_id", "missing"),
        (event("session.closed", tenant=DROP), "tenant", "missing"),
        (event("session.closed", occurred_at=DROP), "occurred_at", "missing"),
        (event("session.closed", event_id=17), "event_id", "expected string, got number"),
        (event("session.closed", event_id=""), "event_id", "must not be empty"),
        (event("session.closed", event_id=LONG), "event_id", "too long: 257 characters"),
        (event("session.closed", tenant=None), "tenant", "expected string, got null"),
        (
            event("session.closed", session_id=DROP),
            "session_id",
            "missing (required for session.closed events)",
        ),
        (event("message.sent", session_id=DROP, ticket_id="T-1"), "session_id", "missing"),
        (event("ticket.comment", ticket_id=DROP, session_id="S-1"), "ticket_id", "missing"),
        (event("session.started", channel=DROP), "channel", "missing"),
        (event("session.started", channel=["web"]), "channel", "expected string, got array"),
        (event("session.started", priority="high"), "priority", "'high' is not one of"),
        (event("message.sent", sender="robot"), "sender", "'robot' is not one of"),
        (event("message.sent", sender=DROP), "sender", "missing"),
        (event("ticket.created", priority="P5"), "priority", "'P5' is not one of P1, P2, P3, P4"),
        (event("ticket.created", priority="urgent"), "priority", "is not one of"),
        (event("ticket.created", designated="yes"), "designated", "expected boolean, got string"),
        (event("ticket.comment", public=1), "public", "expected boolean, got number"),
        (event("ticket.comment", public=DROP), "public", "missing"),
        (event("ticket.comment", author="system"), "author", "'system' is not one of"),
        (event("ticket.status_changed", status="reopened"), "status", "is not one of"),
        (event("ticket.transferred", designated=DROP), "designated", "missing"),
        (event("ticket.priority_changed", priority=DROP), "priority", "missing"),
        (
            event("session.closed", occurred_at="2026-10-09T10:00:00"),
            "occurred_at",
            "'2026-10-09T10:00:00' has no UTC offset",
        ),
        (
            event("session.closed", occurred_at="2026-10-09 10:00:00"),
            "occurred_at",
            "has no UTC offset",
        ),
        (
            event("session.closed", occurred_at="2026-10-09T10:00:00+0800"),
            "occurred_at",
            "is not in RFC 3339 form",
        ),
        (
            event("session.closed", occurred_at="yesterday"),
            "occurred_at",
            "'yesterday' is not an RFC 3339 date-time",
        ),
        (event("session.closed", occurred_at=1760000000), "occurred_at", "expected string"),
        (
            event("session.closed", occurred_at="2026-13-09T10:00:00Z"),
            "occurred_at",
            "is not an RFC 3339 date-time",
        ),
        (
            event("session.closed", occurred_at="2026-10-09T24:00:00+08:00"),
            "occurred_at",
            "is not an RFC 3339 date-time",
        ),
    ],
)
def test_invalid_events_are_rejected_with_path_and_reason(
    obj: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validation.parse_event(orjson.dumps(obj))
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: ")


def test_the_type_is_reported_before_other_problems() -> None:
    obj = {"type": "bogus", "tenant": 5}
    with pytest.raises(InvalidEvent) as caught:
        validation.event_from_dict(obj)
    assert caught.value.path == "type"


def test_the_message_names_the_naive_timestamp() -> None:
    with pytest.raises(InvalidEvent) as caught:
        validation.event_from_dict(event("session.closed", occurred_at="2026-10-09T10:00:00"))
    assert str(caught.value) == (
        "occurred_at: '2026-10-09T10:00:00' has no UTC offset (naive timestamps are ambiguous)"
    )


# --- the fast path and the schema agree -----------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
# Values chosen near the schema's boundaries, so that mutations hit them often.
interesting = st.one_of(
    json_values,
    st.sampled_from(
        [
            "",
            "x" * 64,
            "x" * 65,
            "x" * 128,
            "x" * 129,
            "x" * 256,
            "x" * 257,
            "urgent",
            "normal",
            "P1",
            "P4",
            "P5",
            "customer",
            "agent",
            "bot",
            "system",
            "open",
            "closed",
            "solved",
            "on_hold",
            "pending",
            *VALID,
            "2026-10-08T09:00:00Z",
            "2026-10-08T09:00:00",
            "2026-10-08T09:00:00.1234567+08:00",
            "2026-02-30T09:00:00+08:00",
            "2026-10-08T09:00:60+08:00",
            "2026-10-08T09:00:00-23:59",
            "2026-10-08T09:00:00+24:00",
            "2026-10-08T09:00:00+08:00\n",
            "2026-10-08t09:00:00z",
            True,
            False,
        ]
    ),
)
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis adds the time zone
    max_value=datetime(9998, 12, 30),  # noqa: DTZ001
    timezones=st.timezones(),
).map(lambda d: d.isoformat().replace("+00:00", "Z"))
keys = st.sampled_from(
    [
        "event_id",
        "type",
        "occurred_at",
        "tenant",
        "session_id",
        "ticket_id",
        "channel",
        "priority",
        "sender",
        "author",
        "public",
        "status",
        "designated",
        "other",
    ]
)


@st.composite
def candidate_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event, then zero or more mutations (drop a key, set a key to anything)."""
    event_type = draw(st.sampled_from(list(VALID)))
    obj = event(event_type, occurred_at=draw(timestamps))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(keys)
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(interesting)
    return obj


def schema_says_valid(obj: object) -> bool:
    if next(schemas.validator(schemas.ENVELOPE).iter_errors(obj), None) is not None:
        return False
    try:
        parse_rfc3339(obj["occurred_at"])  # type: ignore[index]
    except ValueError:
        return False
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidate_events())
def test_fast_path_agrees_with_the_schema(obj: dict[str, Any]) -> None:
    fast = validation._fast_path(obj)
    assert (fast is not None) == schema_says_valid(obj), obj
    if fast is None:
        reason = validation.explain(obj)
        assert "a bug" not in reason.reason
    else:
        assert fast.occurred_at == parse_rfc3339(obj["occurred_at"])


@settings(max_examples=500, deadline=None)
@given(
    timestamps,
    st.lists(
        st.tuples(
            st.sampled_from([":", ":", "x"]),
            st.sampled_from(["00", "07", "59", "60", "99", "0", "0x", "٠٣"]),
            st.sampled_from(["", ".5", ".05", ".123456", ".1234567", ".", ".1a", ".٣", "5", "x12"]),
            st.sampled_from([None, "Z", "+00:00", "-03:30", "+0800", ""]),
            st.sampled_from(["", "\n", "x"]),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_timestamps_of_one_minute_agree_with_the_schema(
    first: str, variants: list[tuple[str, str, str, str | None, str]]
) -> None:
    """The fast path checks and converts timestamps a minute at a time: after the first
    timestamp of a minute, others of that minute (any separator, seconds, fraction, offset,
    trailing junk) still get exactly the schema's verdict and value."""
    zone = first[19:].lstrip(".0123456789")
    for sep, seconds, fraction, other_zone, junk in [(":", "00", "", None, ""), *variants]:
        offset = zone if other_zone is None else other_zone
        text = f"{first[:16]}{sep}{seconds}{fraction}{offset}{junk}"
        obj = event("session.closed", occurred_at=text)
        fast = validation._fast_path(obj)
        assert (fast is not None) == schema_says_valid(obj), text
        if fast is not None:
            assert fast.occurred_at == parse_rfc3339(text)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_is_either_an_event_or_an_invalid_event(value: object) -> None:
    reason = None
    try:
        validation.parse_event(orjson.dumps(value))
    except InvalidEvent as exc:
        reason = exc.reason
    assert reason is None or (reason and "a bug" not in reason)


# --- the schema is the source of truth ------------------------------------------------------


@pytest.fixture
def schema_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    copy = tmp_path / "schemas"
    shutil.copytree(schemas.SCHEMA_DIR, copy)
    monkeypatch.setenv(schemas.ENV_VAR, str(copy))
    validation.reload_schemas()
    yield copy
    monkeypatch.delenv(schemas.ENV_VAR)
    validation.reload_schemas()


def edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_tightened_schema_tightens_the_fast_path(schema_copy: Path) -> None:
    edit(
        schema_copy / "events" / "session.started.schema.json",
        lambda s: s["properties"]["priority"].update(enum=["urgent"]),
    )
    validation.event_from_dict(event("session.started"))
    with pytest.raises(InvalidEvent, match="'normal' is not one of urgent"):
        validation.event_from_dict(event("session.started", priority="normal"))


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["properties"]["channel"].update(minimum=3),
        lambda s: s.update(additionalProperties=False),
        lambda s: s["properties"].update(count={"type": "integer"}),
    ],
    ids=["unsupported-keyword", "closed-object", "unsupported-type"],
)
def test_schema_features_the_fast_path_lacks_are_refused(schema_copy: Path, change: Any) -> None:
    edit(schema_copy / "events" / "session.started.schema.json", change)
    with pytest.raises(ConfigError):
        validation.event_from_dict(event("session.closed"))


def test_an_envelope_that_does_more_than_dispatch_is_refused(schema_copy: Path) -> None:
    edit(schema_copy / "events" / "event.schema.json", lambda s: s.update(maxProperties=5))
    with pytest.raises(ConfigError, match="dispatch"):
        validation.event_from_dict(event("session.closed"))
