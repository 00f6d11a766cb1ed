"""The schema files: well-formed, complete, and exactly what the code reads and writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from jsonschema import Draft202012Validator

from monitor import schemas
from monitor.errors import ConfigError
from monitor.sla_event import Kind, SlaEvent, make_sla_id
from monitor.timeutil import parse_rfc3339
from monitor.vocabulary import EventType, Metric, Penalty, Period

SHANGHAI = ZoneInfo("Asia/Shanghai")


def all_schema_files() -> list[Path]:
    return sorted(schemas.SCHEMA_DIR.rglob("*.schema.json"))


@pytest.mark.parametrize("path", all_schema_files(), ids=lambda p: p.name)
def test_schema_files_are_valid_draft_2020_12(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(path.relative_to(schemas.SCHEMA_DIR).as_posix())


def test_one_schema_per_event_type_and_the_envelope_lists_them_all() -> None:
    files = {p.name for p in (schemas.SCHEMA_DIR / "events").glob("*.schema.json")}
    expected = {f"{t.value}.schema.json" for t in EventType}
    # agent.status travels on its own topic (agents), outside the envelope (issue 8).
    assert files == expected | {
        "common.schema.json",
        "event.schema.json",
        "agent.status.schema.json",
    }
    envelope = schemas.load_schema(schemas.ENVELOPE)
    assert sorted(envelope["properties"]["type"]["enum"]) == sorted(t.value for t in EventType)
    branches = {
        b["if"]["properties"]["type"]["const"]: b["then"]["$ref"] for b in envelope["allOf"]
    }
    assert branches == {t.value: f"{t.value}.schema.json" for t in EventType}


def test_every_ref_resolves() -> None:
    for name in [schemas.ENVELOPE, schemas.SLA_EVENT]:
        schemas.validator(name)  # compiles
    # A valid event exercises every $ref on its branch.
    event = {
        "event_id": "e",
        "type": "ticket.created",
        "occurred_at": "2026-10-08T09:00:00+08:00",
        "tenant": "acme",
        "ticket_id": "T-1",
        "channel": "email",
        "priority": "P2",
    }
    assert list(schemas.validator(schemas.ENVELOPE).iter_errors(event)) == []


def make_fact(kind: Kind, **overrides: object) -> SlaEvent:
    start = parse_rfc3339("2026-10-08T09:00:00+08:00")
    fields: dict[str, object] = {
        "sla_id": make_sla_id("acme", "chat_session", "S-1", "first_response", 0),
        "kind": kind,
        "metric": Metric.FIRST_RESPONSE,
        "seq": 0,
        "subject_type": "chat_session",
        "subject_id": "S-1",
        "tenant": "acme",
        "channel": "web",
        "priority": None,
        "policy": "chat-default",
        "clause": "002 2.2",
        "target_seconds": 180.0,
        "clock": "wall",
        "period": Period.WORKING_HOURS,
        "started_at": start,
        "deadline": start + 180_000_000,
        "detected_at": start + 200_000_000,
    }
    fields.update(overrides)
    return SlaEvent(**fields)  # type: ignore[arg-type]


FACTS = {
    "warning": make_fact(
        Kind.WARNING, share=0.8, detected_at=parse_rfc3339("2026-10-08T09:02:24Z")
    ),
    "breach": make_fact(Kind.BREACH, penalty=Penalty(100.0, "CNY")),
    "met": make_fact(
        Kind.MET,
        metric=Metric.NEXT_RESPONSE,
        seq=2,
        responded_at=parse_rfc3339("2026-10-08T09:01:30.250+08:00"),
    ),
    "retraction": make_fact(
        Kind.RETRACTION,
        subject_type="ticket",
        priority="P2",
        clock="working",
        period=Period.AFTER_HOURS,
        penalty=Penalty(100.0, "CNY"),
        reason="a late agent reply at 09:02:10 arrived before the deadline",
        responded_at=parse_rfc3339("2026-10-08T09:02:10+08:00"),
    ),
    "rest-day breach": make_fact(Kind.BREACH, period=Period.REST_DAY, channel=None),
    "second breach": make_fact(Kind.BREACH, round=2),
    "second retraction": make_fact(Kind.RETRACTION, round=2, reason="paused (pending) in time"),
}


@pytest.mark.parametrize("tz", [SHANGHAI, ZoneInfo("UTC")], ids=str)
@pytest.mark.parametrize("name", FACTS)
def test_output_schema_accepts_every_kind_of_fact(name: str, tz: ZoneInfo) -> None:
    out = json.loads(json.dumps(FACTS[name].to_dict(tz)))  # as published: through JSON
    errors = [e.message for e in schemas.validator(schemas.SLA_EVENT).iter_errors(out)]
    assert errors == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.pop("deadline"), "'deadline' is a required property"),
        (lambda d: d.update(extra=1), "Additional properties"),
        (lambda d: d.update(kind="late"), "'late' is not one of"),
        (lambda d: d.pop("share"), "'share' is a required property"),
        (lambda d: d.update(started_at="2026-10-08T09:00:00"), "does not match"),
        (lambda d: d.update(sla_id="nope"), "does not match"),
    ],
)
def test_output_schema_rejects_what_to_dict_never_produces(change: object, fragment: str) -> None:
    out = FACTS["warning"].to_dict(SHANGHAI)
    change(out)  # type: ignore[operator]
    messages = [e.message for e in schemas.validator(schemas.SLA_EVENT).iter_errors(out)]
    assert any(fragment in m for m in messages), messages


def test_output_schema_lists_exactly_the_keys_to_dict_can_emit() -> None:
    emitted: set[str] = set()
    for fact in FACTS.values():
        emitted |= fact.to_dict(SHANGHAI).keys()
    schema = schemas.load_schema(schemas.SLA_EVENT)
    assert set(schema["properties"]) == emitted


def test_schema_dir_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "elsewhere"
    shutil.copytree(schemas.SCHEMA_DIR, copy)
    monkeypatch.setenv(schemas.ENV_VAR, str(copy))
    try:
        assert schemas.schema_dir() == copy.resolve()
        assert schemas.load_schema(schemas.SLA_EVENT)["title"] == "SLA fact (output)"
        monkeypatch.setenv(schemas.ENV_VAR, str(tmp_path / "missing"))
        with pytest.raises(ConfigError, match="not found"):
            schemas.load_schema(schemas.SLA_EVENT)
    finally:
        schemas.clear_cache()
