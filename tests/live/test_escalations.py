"""The worker's escalation stage (issue 8) against replay, and ``sla-monitor report kafka:``.

The known month (tests/accounting/known_month.py: 42 breaches, one retracted, three slow days)
goes to the worker on the embedded broker as a backlog: chat events to the chat topic, agent
presence to the ``agents`` topic, plus two agent records the worker must dead-letter. Then:

* the worker's ``sla.escalations`` equal ``sla-monitor replay --escalations`` exactly (ids,
  evidence, due dates), and the known answer's 15 trips;
* the report read from the broker (``kafka:``) equals the report read from replay's output.

One input partition: the escalation stage sees one tenant's facts in arrival order, and only
then is arrival order replay's detection order (see monitor.live.escalation_agent for what a
backlog racing over several partitions changes). The tenant re-keying, table and changelog
are the same code at any partition count.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.live.broker import EmbeddedBroker
from tests.accounting.known_month import known_month
from tests.accounting.test_known_month import expected_escalations, project
from tests.live.harness import ROOT, LiveSetup, TopicReader, produce

pytestmark = pytest.mark.broker

UNTIL = "2026-11-01T12:00:00+08:00"


def cli(env: dict[str, str] | None, *args: str) -> bytes:
    done = subprocess.run(
        [sys.executable, "-c", "from monitor.cli import main; raise SystemExit(main())", *args],
        capture_output=True, cwd=ROOT, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout


def unique(facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At-least-once: one record per ``fact_id``."""
    return list({f["fact_id"]: f for f in facts}.values())


async def test_live_escalations_equal_replay_and_the_kafka_report_equals_the_file_report(
    tansu: EmbeddedBroker, tmp_path: Path
) -> None:
    month = known_month()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in month.events))
    replayed = tmp_path / "replayed.jsonl"
    replayed.write_bytes(cli(None, "replay", "--escalations", "--until", UNTIL, str(events)))
    oracle = [orjson.loads(line) for line in replayed.read_bytes().splitlines()]
    oracle_escalations = [f for f in oracle if f.get("kind") == "escalation"]
    # Live, a timer fires through a topic a moment after its partition's clock passed it, so
    # a breach replay emits and then retracts (8 Oct) may, live, never be emitted when the
    # retracting reply is the very next event: the verdicts agree, not every retracted fact.
    oracle_outcomes = {f["sla_id"] for f in oracle if f.get("kind") in ("met", "breach")}
    assert len(oracle_escalations) == 15  # the known answer: 14 breach_count, 1 slow_days

    setup = LiveSetup(tansu, tmp_path, policies=None, partitions=1)
    s = setup.settings
    await setup.create_topics()
    records: list[tuple[str, bytes | None, bytes | None]] = []
    for e in month.events:
        if e["type"] == "agent.status":
            records.append((s.topic_agents, e["agent_id"].encode(), orjson.dumps(e)))
        else:
            records.append((s.topic_chat, e["session_id"].encode(), orjson.dumps(e)))
    bad_status = {**month.events[0], "agent_id": "A9", "status": "busy"}
    assert bad_status["type"] == "agent.status"
    misrouted = {**month.events[0], "event_id": "k-misrouted"}
    records += [
        (s.topic_agents, b"A9", orjson.dumps(bad_status)),
        (s.topic_agents, b"not-the-agent", orjson.dumps(misrouted)),
    ]
    await produce(s, records)

    worker = setup.worker()
    worker.start()
    try:
        topics = [s.topic_escalations, s.topic_outcomes, s.topic_deadletter]
        async with TopicReader(s, topics) as reader:
            await worker.wait_ready()

            def done(r: TopicReader) -> bool:
                outcomes = {f["sla_id"] for f in r.facts(s.topic_outcomes)}
                return (
                    len(unique(r.facts(s.topic_escalations))) >= len(oracle_escalations)
                    and outcomes >= oracle_outcomes
                    and len(r.records[s.topic_deadletter]) >= 2
                )

            try:
                await reader.wait_for(done, timeout=60, what="escalations, outcomes, letters")
            except AssertionError as exc:
                got = {t: len(reader.records[t]) for t in topics}
                seen = {f["sla_id"] for f in reader.facts(s.topic_outcomes)}
                got["missing"] = sorted(oracle_outcomes - seen)[:5]  # type: ignore[assignment]
                got["extra"] = sorted(seen - oracle_outcomes)[:5]  # type: ignore[assignment]
                raise AssertionError(f"{exc}: {got}\n{worker.log()[-3000:]}") from None
            live = unique(reader.facts(s.topic_escalations))
            dead = {
                r.key: {k: v.decode() for k, v in r.headers}
                for r in reader.records[s.topic_deadletter]
            }

        def by_id(e: dict[str, Any]) -> str:
            return str(e["escalation_id"])

        assert sorted(live, key=by_id) == sorted(oracle_escalations, key=by_id)
        by_rule = sorted((project(e) for e in live), key=lambda e: (e["rule"], e["ordinal"]))
        assert by_rule == sorted(
            expected_escalations(month), key=lambda e: (e["rule"], e["ordinal"])
        )
        assert {r.key for r in reader.records[s.topic_escalations]} == {b"known"}
        # Invalid presence is dead-lettered with a precise reason, like every input.
        assert set(dead) == {b"A9", b"not-the-agent"}, dead
        assert "status" in dead[b"A9"]["reason"], dead[b"A9"]
        assert dead[b"A9"]["topic"] == s.topic_agents
        assert "is not the agent id" in dead[b"not-the-agent"]["reason"]
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()

    # The report from the broker (what the worker wrote, and the agents topic) equals the
    # report from replay's output (which carries the agent statuses through).
    env = setup.env(tmp_path / "unused")
    month_args = ("report", "--month", "2026-10", "--format", "json")
    from_kafka = orjson.loads(cli(env, *month_args, "kafka:"))
    from_file = orjson.loads(cli(None, *month_args, str(replayed)))
    from_kafka.pop("sources")
    from_file.pop("sources")
    # How many breaches were retracted is the one figure that may differ (see above).
    assert from_file["tenants"][0]["ledger"].pop("retracted") == 1
    assert from_kafka["tenants"][0]["ledger"].pop("retracted") in (0, 1)
    assert from_kafka == from_file
    (tenant,) = from_kafka["tenants"]
    breaches = [x for x in month.sessions if x.outcome == "breach"]
    assert tenant["ledger"]["totals"] == {"CNY": 100.0 * len(breaches)}
    assert len(tenant["escalations"]) == 15
    presence = {p["channel"]: p["online_agent_hours"] for p in tenant["presence"]}
    assert presence == month.agent_hours
