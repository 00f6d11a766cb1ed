"""``sla-monitor report kafka:`` measures the service-quality KPIs (004 3.3-3.5) from the broker's
input topics: the known-answer KPI month of tests/test_kpi.py produced to the ``tickets`` topic
(tickets and ratings keyed by ticket, ``channel.status`` keyed by channel, as the worker reads
them) on two partitions, read back by the report, equals the known answer and the report of
the same events from a file. No worker: the KPIs come from the input events alone."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from monitor.live.broker import Broker
from tests.live.harness import LiveSetup, produce
from tests.live.test_escalations import cli
from tests.test_kpi import TENANT, generate_month

pytestmark = pytest.mark.broker


async def test_the_kafka_report_has_the_known_kpis(broker: Broker, tmp_path: Path) -> None:
    objs, expected = generate_month(seed=7)
    setup = LiveSetup(broker, tmp_path, policies=None, partitions=2)
    s = setup.settings
    await setup.create_topics()
    await produce(
        s,
        [
            (s.topic_tickets, str(o.get("ticket_id") or o["channel"]).encode(), orjson.dumps(o))
            for o in objs
        ],
    )
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    args = ("report", "--month", "2026-10", "--format", "json")
    from_kafka = orjson.loads(cli(setup.env(tmp_path / "unused"), *args, "kafka:"))
    from_file = orjson.loads(cli(None, *args, str(events)))
    from_kafka.pop("sources")
    from_file.pop("sources")
    assert from_kafka == from_file
    (tenant,) = from_kafka["tenants"]
    assert tenant["tenant"] == TENANT
    kpis = {k["channel"]: k for k in tenant["kpis"]}
    assert set(kpis) == set(expected)
    for channel, want in expected.items():
        k = kpis[channel]
        assert k["first_contact_resolution"]["solved"] == want["solved"], channel
        assert k["first_contact_resolution"]["first_contact"] == want["fcr"], channel
        assert (k["csat"]["ratings"], k["csat"]["mean"]) == (
            want["ratings"],
            pytest.approx(want["points"] / want["ratings"]),
        ), channel
        assert k["availability"]["service_seconds"] == want.get("service", 0), channel
        assert k["availability"]["unavailable_seconds"] == want.get("down", 0), channel
