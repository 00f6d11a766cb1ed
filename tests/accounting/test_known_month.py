"""The generated month with a known answer: replay's escalations and the report match it.

The expected figures are computed here from the generator's records (tests/accounting/
known_month.py), never from the monitor's output: counts, means, p90, penalties, causes,
presence, and which 6.2 escalations trip, when, with which evidence and due date.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from monitor.sla_event import make_sla_id
from tests.accounting.known_month import BEIJING, SLOW_DAYS, TENANT, KnownMonth, known_month

ROOT = Path(__file__).resolve().parents[2]
UNTIL = "2026-11-01T12:00:00+08:00"


def cli(*args: str) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[KnownMonth, Path, Path]:
    work = tmp_path_factory.mktemp("known")
    generated = known_month()
    events = work / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in generated.events))
    facts = work / "facts.jsonl"
    facts.write_bytes(cli("replay", "--escalations", "--until", UNTIL, str(events)))
    return generated, events, facts


def sla_id(session_id: str) -> str:
    return make_sla_id(TENANT, "chat_session", session_id, "first_response", 0)


def expected_escalations(generated: KnownMonth) -> list[dict[str, object]]:
    breaches = sorted(
        (s for s in generated.sessions if s.outcome == "breach"),
        key=lambda s: (s.deadline, sla_id(s.session_id)),
    )
    out: list[dict[str, object]] = []
    for i in range(0, len(breaches) - len(breaches) % 3, 3):
        group = breaches[i : i + 3]
        tripped = max(s.deadline for s in group)
        out.append(
            {
                "rule": "breach_count",
                "ordinal": i // 3 + 1,
                "tripped_at": tripped.isoformat(),
                "explanation_due": (tripped.date() + timedelta(days=7)).isoformat(),
                "evidence": {"sla_ids": [sla_id(s.session_id) for s in group]},
            }
        )
    mean = round((10 * (60 / 180) + 12 * 2.0) / 22, 6)
    out.append(
        {
            "rule": "slow_days",
            "ordinal": 1,
            "tripped_at": datetime(2026, 10, SLOW_DAYS[-1] + 1, tzinfo=BEIJING).isoformat(),
            "explanation_due": date(2026, 10, SLOW_DAYS[-1] + 8).isoformat(),
            "evidence": {
                "days": [
                    {"date": f"2026-10-{d}", "mean_ratio": mean, "targets": 22} for d in SLOW_DAYS
                ]
            },
        }
    )
    return out


def project(escalation: dict[str, object]) -> dict[str, object]:
    keys = ("rule", "ordinal", "tripped_at", "explanation_due", "evidence")
    return {k: escalation[k] for k in keys}


def test_replay_trips_exactly_the_expected_escalations(
    month: tuple[KnownMonth, Path, Path],
) -> None:
    generated, _, facts = month
    lines = [orjson.loads(line) for line in facts.read_bytes().splitlines()]
    escalations = [f for f in lines if f.get("kind") == "escalation"]
    expected = expected_escalations(generated)
    assert len([e for e in expected if e["rule"] == "breach_count"]) == 14  # 42 breaches
    got = sorted((project(e) for e in escalations), key=lambda e: (e["rule"], e["ordinal"]))
    assert got == sorted(expected, key=lambda e: (e["rule"], e["ordinal"]))
    ids = [e["escalation_id"] for e in escalations]
    assert len(set(ids)) == len(ids)


def test_the_report_matches_the_known_answer(month: tuple[KnownMonth, Path, Path]) -> None:
    generated, events, facts = month
    # The input events are a source too: they decide bot_only (and carry agent statuses).
    raw = cli("report", "--month", "2026-10", "--format", "json", str(facts), str(events))
    report = orjson.loads(raw)
    assert report["due_date"] == "2026-11-06"  # 5 working days after 31 Oct 2026
    (tenant,) = report["tenants"]
    assert tenant["tenant"] == TENANT
    rows = {
        (r["channel"], r["period"]): r for r in tenant["metrics"] if r["metric"] == "first_response"
    }
    sessions = [s for s in generated.sessions if s.started.month == 10]
    for channel in ("web", "app"):
        for period in ("all", "working_hours", "after_hours", "rest_day"):
            mine = [s for s in sessions if s.channel == channel and period in ("all", s.period)]
            if not mine:
                assert (channel, period) not in rows
                continue
            row = rows[(channel, period)]
            met = [s for s in mine if s.outcome == "met"]
            assert (row["requests"], row["met"], row["breached"]) == (
                len(mine),
                len(met),
                len(mine) - len(met),
            ), (channel, period)
            assert row["compliance"] == round(len(met) / len(mine), 6)
            elapsed = sorted(float(s.reply_after) for s in met)  # breaches: no measured reply
            assert row["measured"] == len(elapsed)
            if elapsed:
                assert row["mean_seconds"] == round(math.fsum(elapsed) / len(elapsed), 3)
                assert row["p90_seconds"] == elapsed[math.ceil(0.9 * len(elapsed)) - 1]
            else:
                assert row["mean_seconds"] is row["p90_seconds"] is None
    breaches = [s for s in sessions if s.outcome == "breach"]
    causes = Counter(s.cause for s in breaches)
    assert tenant["causes"] == {
        "no_agent_online": causes["no_agent_online"],
        "overloaded": causes["overloaded"],
        "bot_only": causes["bot_only"],
        "slow_response": causes["slow_response"],
    }
    assert {b["sla_id"]: b["cause"] for b in tenant["breaches"]} == {
        sla_id(s.session_id): s.cause for s in breaches
    }
    ledger = tenant["ledger"]
    assert ledger["totals"] == {"CNY": 100.0 * len(breaches)}
    assert sorted(r["sla_id"] for r in ledger["rows"]) == sorted(
        sla_id(s.session_id) for s in breaches
    )
    assert {r["clause"] for r in ledger["rows"]} == {"002 6.1"}
    assert ledger["retracted"] == sum(1 for s in sessions if s.retracted)
    presence = {p["channel"]: p for p in tenant["presence"]}
    for channel, hours in generated.agent_hours.items():
        assert presence[channel]["online_agent_hours"] == hours
        assert presence[channel]["uncovered_working_hours"] == generated.uncovered_hours[channel]
    got = sorted(
        (project(e) for e in tenant["escalations"]), key=lambda e: (e["rule"], e["ordinal"])
    )
    assert got == sorted(expected_escalations(generated), key=lambda e: (e["rule"], e["ordinal"]))


def test_report_counts_equal_a_plain_count_of_replay_output(
    month: tuple[KnownMonth, Path, Path],
) -> None:
    """Consistency with replay: per channel, met / breached and the penalty total equal the
    last verdict per sla_id counted straight from the facts."""
    _, _, facts = month
    last: dict[str, dict[str, object]] = {}
    for line in facts.read_bytes().splitlines():
        fact = orjson.loads(line)
        if fact.get("kind") in ("met", "breach", "retraction"):
            last[str(fact["sla_id"])] = fact
    report = orjson.loads(cli("report", "--month", "2026-10", "--format", "json", str(facts)))
    (tenant,) = report["tenants"]
    for row in tenant["metrics"]:
        if row["period"] != "all":
            continue
        mine = [
            f
            for f in last.values()
            if (f["channel"], f["metric"]) == (row["channel"], row["metric"])
            and str(f["started_at"]).startswith("2026-10")
        ]
        assert row["met"] == sum(1 for f in mine if f["kind"] == "met")
        assert row["breached"] == sum(1 for f in mine if f["kind"] == "breach")
    penalties = sum(
        float(f["penalty"]["amount"])  # type: ignore[index]
        for f in last.values()
        if f["kind"] == "breach" and str(f["started_at"]).startswith("2026-10")
    )
    assert tenant["ledger"]["totals"] == {"CNY": penalties}
    # Without the input events, bot_only cannot be decided and the report says so.
    assert any("bot_only" in note for note in tenant["notes"])


def test_escalations_and_the_report_follow_their_schemas(
    month: tuple[KnownMonth, Path, Path],
) -> None:
    from monitor import schemas

    _, events, facts = month
    escalation = schemas.validator("escalation.schema.json")
    lines = [orjson.loads(line) for line in facts.read_bytes().splitlines()]
    checked = [escalation.validate(f) for f in lines if f.get("kind") == "escalation"]
    assert len(checked) == 15
    report = orjson.loads(
        cli("report", "--month", "2026-10", "--format", "json", str(facts), str(events))
    )
    schemas.validator("report.schema.json").validate(report)


def test_days_close_on_the_slowest_lane(month: tuple[KnownMonth, Path, Path]) -> None:
    """The live stage's order problem without a broker: replay's facts split into 4 lanes (as
    4 partitions would), lane 0 delivered whole before the others (a backlog read unevenly).
    With lanes, the slow_days trip is replay's; fed as one lane, the early lane closes days
    before the others' facts arrive, and the trip is lost."""
    import dataclasses
    import zlib

    from monitor.accounting.escalation import Escalator, TenantState
    from monitor.accounting.facts import fact_from_dict
    from monitor.policy import load_policy_set

    _, _, facts = month
    lines = [orjson.loads(line) for line in facts.read_bytes().splitlines()]
    replayed = [e for e in lines if e.get("kind") == "escalation" and e["rule"] == "slow_days"]
    sla = [fact_from_dict(f) for f in lines if f.get("kind") in ("met", "breach", "retraction")]
    lane_of = {f.sla_id: str(zlib.crc32(f.subject_id.encode()) % 4) for f in sla}
    skewed = sorted(sla, key=lambda f: lane_of[f.sla_id] != "0")  # stable: lane order kept
    policies = load_policy_set(None)

    def slow_days(with_lanes: bool, patience: int | None = None) -> list[dict[str, object]]:
        if patience is not None:
            for policy in policies.policies.values():
                if policy.accounting and policy.accounting.escalation:
                    rules = dataclasses.replace(
                        policy.accounting.escalation, partition_patience=patience
                    )
                    accounting = dataclasses.replace(policy.accounting, escalation=rules)
                    object.__setattr__(policy, "accounting", accounting)  # this test's copy
        lanes = ("0", "1", "2", "3") if with_lanes else ()
        escalator, state, out = Escalator(policies, lanes), TenantState(), []
        for fact in skewed:
            lane = lane_of[fact.sla_id] if with_lanes else ""
            out += escalator.apply(state, fact, lane)
        tz = BEIJING
        return [e.to_dict(tz) for e in out if e.rule == "slow_days"]

    assert len(replayed) == 1
    assert slow_days(with_lanes=False) == []
    month_us = 31 * 24 * 3600 * 1_000_000
    got = slow_days(with_lanes=True, patience=month_us)
    assert [project(e) for e in got] == [project(e) for e in replayed]
    # Lanes further apart than the patience are taken as quiet: the backlog's lag is lost.
    assert slow_days(with_lanes=True, patience=3600 * 1_000_000) == []
