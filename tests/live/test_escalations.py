"""The worker's escalation stage (issue 8) against replay, and ``sla-monitor report kafka:``.

The known month (tests/accounting/known_month.py: 42 breaches, one retracted, three slow days)
goes to the worker on the embedded broker as a backlog: chat events to the chat topic, agent
presence to the ``agents`` topic, plus two agent records the worker must dead-letter. Then:

* the worker's ``sla.escalations`` equal ``sla-monitor replay --escalations`` exactly (ids,
  evidence, due dates), and the known answer's 15 trips;
* the report read from the broker (``kafka:``) equals the report read from replay's output.

On one input partition, arrival order is replay's detection order and everything equals
replay. On four, as a backlog, the partitions drift days apart: the second test shows the
stage still closing days as replay does (monitor.live.escalation_agent, "Order").
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.live.broker import Broker, EmbeddedBroker
from monitor.live.kafka import KafkaBroker
from monitor.sla_event import make_sla_id
from tests.accounting.known_month import KnownMonth, known_month
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


@dataclass
class Run:
    """The known month through a worker, and replay's answer for it."""

    month: KnownMonth
    setup: LiveSetup
    replayed: Path  # replay --escalations output: the oracle, and the file source
    events: Path  # the input events (JSONL)
    oracle: list[dict[str, Any]]  # replay's escalations
    live: list[dict[str, Any]]  # the worker's sla.escalations, one per fact_id
    dead: dict[bytes, dict[str, str]]  # dead letters by key: headers
    log: str
    metrics: str  # the worker's /metrics page once the escalations were read


async def run_known_month(
    broker: Broker, tmp_path: Path, partitions: int, policies: str | None = None
) -> Run:
    month = known_month()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in month.events))
    replayed = tmp_path / "replayed.jsonl"
    where = ("--policies", policies) if policies else ()
    replayed.write_bytes(
        cli(None, "replay", "--escalations", *where, "--until", UNTIL, str(events))
    )
    oracle = [orjson.loads(line) for line in replayed.read_bytes().splitlines()]
    oracle_escalations = [f for f in oracle if f.get("kind") == "escalation"]
    # Live, a timer fires through a topic a moment after its partition's clock passed it, so
    # a breach replay emits and then retracts (8 Oct) may, live, never be emitted when the
    # retracting reply is the very next event: the verdicts agree, not every retracted fact.
    oracle_outcomes = {f["sla_id"] for f in oracle if f.get("kind") in ("met", "breach")}
    assert len(oracle_escalations) == 15  # the known answer: 14 breach_count, 1 slow_days

    port = free_port()
    setup = LiveSetup(
        broker,
        tmp_path,
        policies=policies,
        partitions=partitions,
        overrides={"metrics_port": port, "escalation_stage": True},
    )
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
        (s.topic_chat, b"S-garbled", b"{not json"),
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
                    and len(r.records[s.topic_deadletter]) >= 3
                )

            try:
                await reader.wait_for(done, timeout=60, what="escalations, outcomes, letters")
            except AssertionError as exc:
                got = {t: len(reader.records[t]) for t in topics}
                raise AssertionError(f"{exc}: {got}\n{worker.log()[-3000:]}") from None
            assert {r.key for r in reader.records[s.topic_escalations]} == {b"known"}
            return Run(
                month,
                setup,
                replayed,
                events,
                oracle_escalations,
                unique(reader.facts(s.topic_escalations)),
                {
                    r.key: {k: v.decode() for k, v in r.headers}
                    for r in reader.records[s.topic_deadletter]
                },
                worker.log(),
                scrape(port),
            )
    finally:
        worker.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        return str(page.read().decode())


def by_id(e: dict[str, Any]) -> str:
    return str(e["escalation_id"])


async def test_live_escalations_equal_replay_and_the_kafka_report_equals_the_file_report(
    tansu: EmbeddedBroker, tmp_path: Path
) -> None:
    await check_escalations_and_report(tansu, tmp_path)


async def test_the_same_on_apache_kafka(kafka: KafkaBroker, tmp_path: Path) -> None:
    """What production runs: the report's ``kafka:`` source found no topics on Kafka (its
    first metadata answer is empty, Tansu's is not) until this test ran there."""
    await check_escalations_and_report(kafka, tmp_path)


async def check_escalations_and_report(broker: Broker, tmp_path: Path) -> None:
    run = await run_known_month(broker, tmp_path, partitions=1)
    assert sorted(run.live, key=by_id) == sorted(run.oracle, key=by_id)
    by_rule = sorted((project(e) for e in run.live), key=lambda e: (e["rule"], e["ordinal"]))
    assert by_rule == sorted(
        expected_escalations(run.month), key=lambda e: (e["rule"], e["ordinal"])
    )
    # Invalid presence is dead-lettered with a precise reason, like every input.
    dead, s = run.dead, run.setup.settings
    assert set(dead) == {b"A9", b"not-the-agent", b"S-garbled"}, dead
    assert "status" in dead[b"A9"]["reason"], dead[b"A9"]
    assert dead[b"A9"]["topic"] == s.topic_agents
    assert "is not the agent id" in dead[b"not-the-agent"]["reason"]
    assert "Traceback" not in run.log
    # The escalations are counted, by rule (the worker's own Prometheus endpoint).
    assert 'sla_escalations_total{rule="breach_count",tenant="known"} 14.0' in run.metrics
    assert 'sla_escalations_total{rule="slow_days",tenant="known"} 1.0' in run.metrics
    assert 'sla_input_events_total{topic="' + s.topic_agents + '",type="agent.status"}' in (
        run.metrics
    )

    # The report from the broker (what the worker wrote, the agents and chat topics) equals
    # the report from replay's output and the input events (the bot messages: bot_only).
    env = run.setup.env(tmp_path / "unused")
    month_args = ("report", "--month", "2026-10", "--format", "json")
    from_kafka = orjson.loads(cli(env, *month_args, "kafka:"))
    from_file = orjson.loads(cli(None, *month_args, str(run.replayed), str(run.events)))
    from_kafka.pop("sources")
    from_file.pop("sources")
    # How many breaches were retracted is the one figure that may differ (see above).
    assert from_file["tenants"][0]["ledger"].pop("retracted") == 1
    assert from_kafka["tenants"][0]["ledger"].pop("retracted") in (0, 1)
    assert from_kafka == from_file
    (tenant,) = from_kafka["tenants"]
    breaches = [x for x in run.month.sessions if x.outcome == "breach"]
    assert tenant["ledger"]["totals"] == {"CNY": 100.0 * len(breaches)}
    assert len(tenant["escalations"]) == 15
    presence = {p["channel"]: p["online_agent_hours"] for p in tenant["presence"]}
    assert presence == run.month.agent_hours
    # Every breach has the known cause, bot_only included (from the chat topic's bot reply).
    assert {b["sla_id"]: b["cause"] for b in tenant["breaches"]} == {
        make_sla_id("known", "chat_session", x.session_id, "first_response", 0): x.cause
        for x in breaches
    }
    assert tenant["causes"]["bot_only"] == 1
    assert not [n for n in tenant["notes"] if "not decided" in n], tenant["notes"]


async def test_partitions_racing_apart_in_a_backlog_still_close_days_as_replay(
    tansu: EmbeddedBroker, tmp_path: Path
) -> None:
    """Four partitions, the month as a backlog: one tenant's facts reach the stage from all
    of them, partitions days apart (10 measured). Days close on the slowest partition (the
    ``lane`` of each fact), so the slow_days trip is replay's exactly; which breaches make up
    each breach_count trip follows arrival order, its id and count do not."""
    policies = tmp_path / "policies"
    policies.mkdir()
    for source in (ROOT / "deploy" / "policies").glob("*.yaml"):
        text = source.read_text()
        # Patience beyond the whole month: a backlog of a month may spread partitions that far.
        text = text.replace("partition_patience: 2d", "partition_patience: 31d")
        (policies / source.name).write_text(text)
    assert "partition_patience: 31d" in (policies / "online-chat.yaml").read_text()
    run = await run_known_month(tansu, tmp_path, partitions=4, policies=str(policies))
    assert sorted(map(by_id, run.live)) == sorted(map(by_id, run.oracle))
    slow = [e for e in run.live if e["rule"] == "slow_days"]
    assert slow == [e for e in run.oracle if e["rule"] == "slow_days"]
    breached = {
        f["sla_id"]
        for f in map(orjson.loads, run.replayed.read_bytes().splitlines())
        if f.get("kind") == "breach"
    }
    for trip in run.live:
        if trip["rule"] == "breach_count":
            assert len(set(trip["evidence"]["sla_ids"])) == 3
            assert set(trip["evidence"]["sla_ids"]) <= breached


async def test_sigkill_mid_streak_and_restart_keep_replays_escalations(
    broker: Broker, tmp_path: Path
) -> None:
    """The stage's state survives a SIGKILL: the known month as a backlog on one partition,
    the worker killed once the stage has closed the first of the three slow days (19 Oct: the
    breach_count trip #6 falls on 20 Oct) and before the slow_days trip, then restarted. The
    memory store holds nothing but the changelog, so the restarted worker has only what the
    stage wrote there. After dedup by ``fact_id`` the escalations are replay's exactly: no
    lost trip (the streak and the pending breaches were stored), no extra one (the facts read
    again after the restart, their offsets not committed, count once); a trip published twice
    is the same record twice."""
    month = known_month()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in month.events))
    replayed = cli(None, "replay", "--escalations", "--until", UNTIL, str(events))
    oracle = [f for f in map(orjson.loads, replayed.splitlines()) if f.get("kind") == "escalation"]
    assert len(oracle) == 15

    setup = LiveSetup(
        broker, tmp_path, policies=None, partitions=1, store="memory://",
        overrides={"escalation_stage": True},
    )  # fmt: skip
    s = setup.settings
    await setup.create_topics()
    await produce(
        s,
        [
            (s.topic_agents, e["agent_id"].encode(), orjson.dumps(e))
            if e["type"] == "agent.status"
            else (s.topic_chat, e["session_id"].encode(), orjson.dumps(e))
            for e in month.events
        ],
    )

    def mid_streak(r: TopicReader) -> bool:
        return any(
            e["rule"] == "breach_count" and e["ordinal"] >= 6 for e in r.facts(s.topic_escalations)
        )

    worker = setup.worker()
    worker.start()
    try:
        async with TopicReader(s, [s.topic_escalations]) as reader:
            await worker.wait_ready()
            await reader.wait_for(mid_streak, timeout=60, what="breach_count trip #6 (20 Oct)")
            worker.kill()  # SIGKILL: no flush, no commit
            await reader.poll()
            at_kill = unique(reader.facts(s.topic_escalations))
            assert not [e for e in at_kill if e["rule"] == "slow_days"], (
                "the worker was killed after the streak had tripped: nothing was tested"
            )
            assert len(at_kill) < len(oracle)

            worker.start()
            await worker.wait_ready(timeout=60)
            await reader.wait_for(
                lambda r: len(unique(r.facts(s.topic_escalations))) >= len(oracle),
                timeout=60,
                what="all of replay's escalations",
            )
            await asyncio.sleep(2.0)  # anything extra would follow the last trip closely
            await reader.poll()
            records = reader.facts(s.topic_escalations)
        live = unique(records)
        assert sorted(live, key=by_id) == sorted(oracle, key=by_id), worker.log()[-3000:]
        # A repeat (published, then killed before the state was stored) is the same record.
        for record in records:
            assert record == next(e for e in live if e["fact_id"] == record["fact_id"])
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()
