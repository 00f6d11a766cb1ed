"""`sla-monitor replay` on the bundled sample day.

Two checks of different strength:

* the output equals the reviewed golden file ``tests/golden/sample-day.sla.jsonl`` (any change
  of behaviour shows up as a diff to review, then regenerate with ``make golden``);
* an independent oracle — written from contract 002 directly, with chinese_calendar and plain
  datetime arithmetic, none of the engine's code — agrees with every chat first-response
  verdict in it.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import orjson

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "monitor" / "data" / "sample-day.jsonl"
GOLDEN = ROOT / "tests" / "golden" / "sample-day.sla.jsonl"
UNTIL = "2026-10-09T00:00:00+08:00"
BEIJING = ZoneInfo("Asia/Shanghai")


def run_replay() -> tuple[list[dict[str, object]], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--until", UNTIL, str(SAMPLE)],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    return [orjson.loads(line) for line in proc.stdout.splitlines()], proc.stderr.decode()


def test_replay_of_the_sample_day_matches_the_reviewed_output() -> None:
    facts, summary = run_replay()
    expected = [orjson.loads(line) for line in GOLDEN.read_bytes().splitlines()]
    assert facts == expected
    assert "0 invalid, 0 rejected" in summary
    kinds = {f["kind"] for f in facts}
    assert kinds == {"warning", "breach", "met", "retraction"}


def oracle_first_response(sample: list[dict[str, object]]) -> dict[str, str]:
    """Contract 002 2.2, read literally: verdict per session ('met', 'breach' or 'none')."""
    seen: set[object] = set()
    started: dict[str, datetime] = {}
    urgent: set[str] = set()
    first_agent: dict[str, datetime] = {}
    closed: dict[str, datetime] = {}
    for e in sample:
        if e["event_id"] in seen or "session_id" not in e:
            continue
        seen.add(e["event_id"])
        sid, at = str(e["session_id"]), datetime.fromisoformat(str(e["occurred_at"]))
        if e["type"] == "session.started":
            started[sid] = at
            if e.get("priority") == "urgent":
                urgent.add(sid)
        elif e["type"] == "message.sent" and e["sender"] == "agent":
            first_agent[sid] = min(at, first_agent.get(sid, at))
        elif e["type"] == "session.closed":
            closed[sid] = at
    end = datetime.fromisoformat(UNTIL)
    verdicts = {}
    for sid, at in started.items():
        local = at.astimezone(BEIJING)
        working = chinese_calendar.is_workday(local.date()) and 9 <= local.hour < 18
        limit = timedelta(seconds=60 if sid in urgent else 180 if working else 300)
        deadline = at + limit
        answer = first_agent.get(sid)
        if answer is not None and answer <= deadline:
            verdicts[sid] = "met"
        elif sid in closed and closed[sid] <= deadline and (answer is None or answer > closed[sid]):
            verdicts[sid] = "none"
        elif deadline < end:
            verdicts[sid] = "breach"
    return verdicts


def test_an_independent_reading_of_contract_002_agrees_on_every_session() -> None:
    facts, _ = run_replay()
    sample = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines()]
    engine: dict[str, str] = {}
    for f in facts:
        if f["metric"] == "first_response" and f["subject_type"] == "chat_session":
            if f["kind"] in ("met", "breach"):
                engine[str(f["subject_id"])] = str(f["kind"])
            elif f["kind"] == "retraction":
                engine[str(f["subject_id"])] = "none"
    oracle = oracle_first_response(sample)
    for sid in oracle:
        engine.setdefault(sid, "none")
    assert engine == oracle
    assert sum(v == "breach" for v in oracle.values()) > 5  # the sample exercises breaches
    assert sum(v == "met" for v in oracle.values()) > 50
