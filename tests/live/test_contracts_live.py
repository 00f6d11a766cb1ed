"""Contracts 003 and 004 in the live worker on the embedded broker: tier escalations are
published, an appeal outside its window is dead-lettered with its reason, and a channel.status
feeds the availability metrics (004 3.3) instead of the engine.

Runs on Tansu only (one worker, a few seconds): the routing under test is the worker's, not the
broker's. Dates are in October 2026, so every escalation deadline is in the past of the wall
clock and fires as soon as the worker has caught up.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.live.broker import EmbeddedBroker, free_port
from monitor.policy.loader import BUNDLED_POLICIES
from tests.live.harness import LiveSetup, TopicReader, WorkerProcess, produce

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def live003(
    tansu: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveSetup, WorkerProcess]]:
    setup = LiveSetup(
        tansu,
        Path(tmp_path_factory.mktemp("c003")),
        policies=str(BUNDLED_POLICIES),
        overrides={"metrics_port": free_port()},
    )
    asyncio.run(setup.create_topics())
    worker = setup.worker()
    worker.start()
    try:
        asyncio.run(worker.wait_ready())
        yield setup, worker
    finally:
        worker.stop()


def ticket(tid: str, type_: str, at: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{tid}:{type_}:{at}",
        "type": type_,
        "occurred_at": at,
        "tenant": "contract-003",
        "ticket_id": tid,
        **fields,
    }


async def test_escalations_published_and_late_appeals_dead_lettered(
    live003: tuple[LiveSetup, WorkerProcess],
) -> None:
    setup, _ = live003
    s = setup.settings
    escalating = [
        ticket("L-1", "ticket.created", "2026-09-30T10:00:00+08:00", channel="web", priority="P3")
    ]
    appealed = [
        ticket("L-2", "ticket.created", "2026-10-12T09:00:00+08:00", channel="web", priority="P3"),
        ticket("L-2", "ticket.status_changed", "2026-10-12T10:00:00+08:00", status="solved"),
        ticket("L-2", "ticket.appealed", "2026-10-27T10:00:01+08:00"),  # 15 d + 1 s
    ]
    status = {
        "event_id": "st-1",
        "type": "channel.status",
        "tenant": "contract-003",
        "occurred_at": "2026-10-12T09:00:00+08:00",
        "channel": "phone",
        "status": "down",
    }
    records = [(s.topic_tickets, e["ticket_id"].encode(), orjson.dumps(e)) for e in escalating]
    records += [(s.topic_tickets, e["ticket_id"].encode(), orjson.dumps(e)) for e in appealed]
    records.append((s.topic_tickets, b"phone", orjson.dumps(status)))
    await produce(s, records)

    def escalations(r: TopicReader) -> list[dict[str, Any]]:
        return [f for f in r.facts(s.topic_escalations) if f["kind"] == "escalation"]

    def reasons(r: TopicReader) -> list[str]:
        return [dict(x.headers)["reason"].decode() for x in r.records[s.topic_deadletter]]

    async with TopicReader(s, [s.topic_escalations, s.topic_deadletter]) as reader:
        await reader.wait_for(
            lambda r: len(escalations(r)) >= 3 and len(reasons(r)) >= 1,
            timeout=30,
            what="three tier escalations of L-1 and the late appeal's dead letter",
        )
    tiers = [(f["subject_id"], f["tier"], f["rule"]) for f in escalations(reader)]
    assert tiers == [
        ("L-1", "technical_support", "tier_escalation"),
        ("L-1", "customer_care_manager", "tier_escalation"),
        ("L-1", "management", "tier_escalation"),
    ]
    assert escalations(reader)[0]["deadline"] == "2026-10-10T10:00:00+08:00"
    letters = " | ".join(reasons(reader))
    assert "appeal rejected" in letters
    assert "003 5.1" in letters
    assert "channel.status" not in letters
    # The status reached the availability KPI: the phone channel is down for contract-003.
    url = f"http://127.0.0.1:{s.metrics_port}/metrics"
    up = 'sla_channel_up{channel="phone",tenant="contract-003"}'
    for _ in range(50):
        with urllib.request.urlopen(url, timeout=2) as response:
            lines = response.read().decode().splitlines()
        if any(line.startswith(up) for line in lines):
            break
        await asyncio.sleep(0.2)
    assert f"{up} 0.0" in lines, [ln for ln in lines if ln.startswith("sla_channel")]
