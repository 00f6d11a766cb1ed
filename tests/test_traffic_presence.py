"""monitor.traffic's opt-in agent presence (issue 8): what ``make demo`` publishes on
``agents`` so a report has 服务人员在线情况, without touching the sample day or tests/golden."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from monitor import schemas, traffic
from monitor.validation import agent_status_from_dict, parse_agent_status

ROOT = Path(__file__).resolve().parents[1]
MONDAY = datetime(2026, 10, 12, 0, 0, tzinfo=traffic.BEIJING)  # a working day


def _cli(*args: str) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout


def test_presence_is_opt_in_and_leaves_the_subjects_events_alone() -> None:
    plain = traffic.sample_events()
    with_presence = traffic.generate(
        traffic.SAMPLE_START, traffic.SAMPLE_HOURS, traffic.SAMPLE_SEED, presence=True
    )
    statuses = [e for e in with_presence if e["type"] == "agent.status"]
    assert statuses
    assert [e for e in with_presence if e["type"] != "agent.status"] == plain
    assert not any(e["type"] == "agent.status" for e in plain)
    # Merged in time order.
    times = [agent_status_from_dict(e).occurred_at for e in statuses]
    assert times == sorted(times)


def test_every_status_is_valid_and_each_agent_has_a_sensible_day() -> None:
    events = [
        e for e in traffic.generate(MONDAY, 24, 5, presence=True) if e["type"] == "agent.status"
    ]
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        status = parse_agent_status(orjson.dumps(e))
        assert status.agent_id.startswith(status.tenant + "-")  # unique across tenants
        by_agent[status.agent_id].append(e)
    assert {e["tenant"] for e in events} == {"acme", "globex"}
    day_shift = by_agent["acme-agent-01"]
    assert [e["status"] for e in day_shift] == ["online", "away", "online", "offline"]
    assert day_shift[0]["channels"] == ["web", "app", "wechat"]
    assert day_shift[-1]["channels"] == []
    evening = by_agent["acme-agent-07"]
    assert [e["status"] for e in evening] == ["online", "offline"]
    assert "wechat" not in evening[0]["channels"]  # wechat is served by day only


def test_a_stream_joined_midway_says_who_is_on_shift() -> None:
    noon = MONDAY.replace(hour=14)
    first = traffic.generate(noon, 0.01, 5, presence=True)
    online = {e["agent_id"] for e in first if e["type"] == "agent.status"}
    assert online == {f"{t}-agent-{n:02d}" for t in ("acme", "globex") for n in range(1, 7)}


def test_a_generated_day_feeds_the_reports_presence(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    traffic.write_jsonl(traffic.generate(MONDAY, 24, 5, presence=True), events)

    facts = tmp_path / "facts.jsonl"
    facts.write_bytes(
        _cli("replay", "--escalations", "--until", "2026-10-13T12:00:00+08:00", str(events))
    )
    report = orjson.loads(
        _cli("report", "--month", "2026-10", "--format", "json", "--tenant", "acme", str(facts))
    )
    (tenant,) = report["tenants"]
    hours = {p["channel"]: p["online_agent_hours"] for p in tenant["presence"]}
    # 6 agents x (9 h - 1 h lunch) on every channel, 2 x 5 h evening on web and app; each
    # log-in and log-out is up to 10 minutes early or late.
    assert abs(hours["wechat"] - 48) <= 2, hours
    assert abs(hours["web"] - 58) <= 2.5, hours
    assert abs(hours["app"] - 58) <= 2.5, hours


def test_a_month_still_in_progress_counts_presence_only_as_far_as_the_data(
    tmp_path: Path,
) -> None:
    """A report read from a running demo: agents still online when the data ends are not
    counted as online to the end of the month."""
    events = tmp_path / "events.jsonl"
    traffic.write_jsonl(traffic.generate(MONDAY, 14, 5, presence=True), events)  # to 14:00
    report = orjson.loads(
        _cli("report", "--month", "2026-10", "--format", "json", "--tenant", "acme", str(events))
    )
    (tenant,) = report["tenants"]
    hours = {p["channel"]: p["online_agent_hours"] for p in tenant["presence"]}
    # 6 agents from about 09:00 to the last status (back from lunch, before 14:00), less the
    # lunch; counted to the month's end, it would be hundreds of hours.
    assert 12 <= hours["wechat"] <= 30, hours
    assert any("the sources end at 2026-10-12T1" in note for note in tenant["notes"]), tenant


def test_a_december_report_is_made_before_next_years_calendar_is_known(tmp_path: Path) -> None:
    """``make demo`` in December, then a report of December: its due date falls in January,
    which chinese-calendar does not know until the State Council publishes the holidays. The
    report is made anyway (the month's own figures need only this year), the due date left
    open with the reason; every format renders."""
    events = tmp_path / "events.jsonl"
    start = datetime(2026, 12, 14, 9, tzinfo=traffic.BEIJING)  # a Monday
    traffic.write_jsonl(traffic.generate(start, 6, 5, presence=True), events)
    facts = tmp_path / "facts.jsonl"
    facts.write_bytes(_cli("replay", "--escalations", str(events)))
    report = orjson.loads(_cli("report", "--month", "2026-12", "--format", "json", str(facts)))
    assert report["due_date"] is None
    schemas.validator("report.schema.json").validate(report)
    assert any("2027" in note and "override" in note for note in report["notes"]), report["notes"]
    assert {t["tenant"] for t in report["tenants"]} == {"acme", "globex"}
    html = _cli("report", "--month", "2026-12", "--format", "html", str(facts)).decode()
    assert "2027" in html
    assert b"due unknown" in _cli("report", "--month", "2026-12", "--format", "csv", str(facts))
