"""From breach to page: a real worker's /metrics scraped by a real Prometheus with
deploy/prometheus/rules.yml, alerts routed by a real Alertmanager with
deploy/alertmanager/alertmanager.yml, delivered to a webhook receiver in the test.

Only timings differ from the shipped files (tests/live/alerting.py): 1 s scrape and evaluation,
``for:`` 1 s, group waits 1 s. The rules' windows (5 m, 1 h, ...) are the shipped ones, so the
page resolves the way it does in production: answered sessions bring the 5-minute breach ratio
back under the threshold.

The broker is Apache Kafka (the ``kafka`` fixture, started once per session for the live suite
anyway) because the skipped-offsets alert needs a hole in an input partition, and the honest way
to make one is a transactional producer: each commit writes a marker that takes an offset no
consumer ever receives (README, "Delivery"). The embedded broker has no transactions.

The second test checks the Grafana dashboard against the same Prometheus and the worker's real
scrape: every panel's PromQL runs without error and names only series the worker exports or
rules.yml records.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from monitor.live.broker import free_port
from monitor.live.kafka import KafkaBroker
from tests.live.alerting import (
    RULES,
    AlertReceiver,
    Server,
    fast_alertmanager_config,
    fast_rules,
    query,
    start_alertmanager,
    start_prometheus,
)
from tests.live.harness import LiveSetup, WorkerProcess, chat, iso, produce
from tests.test_metrics import metric_names

pytestmark = pytest.mark.broker

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "sla-monitor.json"
TENANT = "e2e-acme"
POLICY = "test-chat"  # tests/live/policies/chat.yaml: first response within 4 s, for every tenant
_ids = itertools.count(1)


@dataclass
class Stack:
    setup: LiveSetup
    worker: WorkerProcess
    metrics_url: str
    prometheus: Server
    alertmanager: Server
    receiver: AlertReceiver
    traffic: bool = False  # set by the alerting test, whose traffic the dashboard test reads


@pytest.fixture(scope="module")
def stack(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = Path(tmp_path_factory.mktemp("alerting"))
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    setup = LiveSetup(kafka, tmp, overrides={"metrics_port": metrics_port})
    asyncio.run(setup.create_topics())
    worker = setup.worker()
    receiver = AlertReceiver()
    started: list[Any] = []
    try:
        worker.start()
        started.append(worker)
        receiver.start()
        started.append(receiver)
        alertmanager = start_alertmanager(
            tmp, fast_alertmanager_config(tmp / "alertmanager.yml", receiver.url)
        )
        started.append(alertmanager)
        # Up before Prometheus starts, so its first scrape (about 5 s in: the scrape manager's
        # reload ticker) finds it; "no worker reports" keeps a 20 s `for:` (fast_rules).
        wait_until(lambda: _responds(metrics_url), 30, f"the worker's {metrics_url}")
        prometheus = start_prometheus(
            tmp,
            fast_rules(tmp / "rules.yml"),
            targets=[f"127.0.0.1:{metrics_port}"],
            alertmanager=alertmanager.base.removeprefix("http://"),
        )
        started.append(prometheus)
        asyncio.run(worker.wait_ready())
        yield Stack(
            setup,
            worker,
            metrics_url,
            prometheus,
            alertmanager,
            receiver,
        )
    finally:
        for each in reversed(started):
            each.stop()


def _responds(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def sid(tag: str) -> str:
    return f"E2E-{tag}-{next(_ids)}-{time.time_ns() % 10**9}"


def ev(session: str, type_: str, at: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{session}:{type_}:{fields.get('sender', '')}:{at}",
        "type": type_,
        "occurred_at": at,
        "tenant": TENANT,
        "session_id": session,
        **fields,
    }


def unanswered(session: str) -> list[dict[str, Any]]:
    at = iso()
    return [
        ev(session, "session.started", at, channel="web"),
        ev(session, "message.sent", at, sender="customer"),
    ]


def answered(session: str) -> list[dict[str, Any]]:
    """A session whose agent answers 0.5 s after the customer: met at once."""
    return [*unanswered(session), ev(session, "message.sent", iso(0.5), sender="agent")]


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


async def produce_transactions(setup: LiveSetup, records: list[tuple[str, bytes, bytes]]) -> None:
    """Each record in its own committed transaction: every commit adds a marker offset."""
    s = setup.settings
    producer = AIOKafkaProducer(
        bootstrap_servers=s.bootstrap_servers,
        transactional_id=f"{setup.name}-tx",
        **s.aiokafka_security(),
    )
    await producer.start()
    try:
        for topic, key, value in records:
            async with producer.transaction():
                await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_breach_pages_the_tenant_and_resolves_dead_letters_and_holes_open_tickets(
    stack: Stack,
) -> None:
    setup, prom, receiver = stack.setup, stack.prometheus, stack.receiver
    s = setup.settings
    started = time.monotonic()

    # The worker is scraped (its input counters exist at 0 from start-up, so the first dead
    # letter and the first hole are increases Prometheus can see).
    wait_until(
        lambda: query(prom, 'sla_input_skipped_offsets_total{job="sla-monitor"}'),
        20,
        "the first scrape of the worker",
    )

    # One answered session first. Prometheus 2.x cannot see the increment that creates a
    # counter series (its first sample is the baseline), so the tenant's outcome series must
    # exist before the breaches for them to count: in production, the tenant's first decided
    # target after a worker start plays this part.
    asyncio.run(produce(s, [chat(setup, e) for e in answered(sid("warmup"))]))
    wait_until(
        lambda: query(prom, f'sla_outcomes_total{{tenant="{TENANT}",outcome="breach"}}'),
        20,
        "the tenant's outcome series",
    )
    time.sleep(1.5)  # one more scrape with the breach series at 0

    # Five sessions nobody answers (each a breach 4 s later), a record that is not JSON, and a
    # session whose two events come in two transactions (one marker offset between them).
    breaching = [sid("breach") for _ in range(5)]
    asyncio.run(
        produce(
            s,
            [chat(setup, e) for b in breaching for e in unanswered(b)]
            + [(s.topic_chat, b"not-json", b"{this is not json")],
        )
    )
    tx = sid("tx")
    at = iso()
    asyncio.run(
        produce_transactions(
            setup,
            [
                chat(setup, ev(tx, "session.started", at, channel="web")),
                chat(setup, ev(tx, "session.closed", at)),  # closed at once: no SLA outcome
            ],
        )
    )

    def burn(alert: dict[str, Any]) -> bool:
        labels = alert["labels"]
        return bool(
            labels["alertname"] == "SlaFirstResponseBudgetBurnFast"
            and labels.get("tenant") == TENANT
        )

    path, page = receiver.wait_for(burn, "firing", 40, "the fast burn-rate page")
    assert path == "/sla-oncall"  # severity=page, not the VIP tenant
    labels = page["labels"]
    assert labels["policy"] == POLICY
    assert labels["metric"] == "first_response"
    assert labels["severity"] == "page"
    assert (
        page["annotations"]["summary"]
        == f"Tenant {TENANT}, policy {POLICY}: first-response SLO budget burning at over 14.4x"
    )
    # 5 breaches, and the warm-up's met happened before the series' first sample: 100 %.
    assert page["annotations"]["description"].startswith("100% of first-response targets")

    path, dead = receiver.wait_for(
        lambda a: a["labels"]["alertname"] == "SlaDeadLetters", "firing", 20, "dead letters"
    )
    assert path == "/sla-ops-tickets"
    assert dead["labels"]["topic"] == s.topic_chat
    assert dead["labels"]["reason"] == "json"
    assert dead["labels"]["severity"] == "ticket"
    assert dead["annotations"]["summary"] == f"Dead letters on {s.topic_chat} (json)"

    path, hole = receiver.wait_for(
        lambda a: a["labels"]["alertname"] == "SlaInputSkipped", "firing", 20, "skipped offsets"
    )
    assert path == "/sla-ops-tickets"
    assert hole["labels"]["topic"] == s.topic_chat
    assert "offsets skipped in the last 10 minutes" in hole["annotations"]["description"]
    # One commit marker between the two transactional records: exactly one offset.
    [skipped] = query(prom, f'sla_input_skipped_offsets_total{{topic="{s.topic_chat}"}}')
    assert skipped["value"][1] == "1"
    assert "never reached the worker" in stack.worker.log()

    # Breaches stop: the next 15 sessions are answered in time. 5 bad of 20 decided in the
    # 5-minute window is under 72 %, so the page resolves (the 1 h ratio alone cannot hold it).
    asyncio.run(produce(s, [chat(setup, e) for _ in range(15) for e in answered(sid("recovered"))]))
    path, resolved = receiver.wait_for(burn, "resolved", 40, "the resolved page")
    assert path == "/sla-oncall"
    assert resolved["labels"] == labels
    # Nothing else paged: the worker was up, scraped and making progress throughout.
    pages = {a["labels"]["alertname"] for p, a in receiver.alerts() if p == "/sla-oncall"}
    assert pages <= {"SlaFirstResponseBudgetBurnFast", "SlaFirstResponseBudgetBurnSlow"}, pages
    stack.traffic = True
    elapsed = time.monotonic() - started
    assert elapsed < 90, f"the alerting path took {elapsed:.0f}s"


# --- the dashboard against the same Prometheus and the worker's real scrape -----------------

# Grafana's variables, as "All" expands them.
_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$__interval": "15s",
}


def panel_queries() -> list[tuple[tuple[str, int], str]]:
    """((panel title, target index), PromQL with the variables expanded) of every target."""
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in doc["panels"]:
        for idx, target in enumerate(panel.get("targets", [])):
            expr = target["expr"]
            for name, value in _VARIABLES.items():
                expr = expr.replace(name, value)
            expr = re.sub(r"\$\{?\w+\}?", ".+", expr)  # $tenant, $job, ...: "All"
            out.append(((panel["title"], idx), expr))
    return out


def test_every_dashboard_query_runs_and_names_exported_series(stack: Stack) -> None:
    assert stack.traffic, "runs after the alerting test of this module, on its traffic"
    with urllib.request.urlopen(stack.metrics_url, timeout=5) as resp:
        scrape = resp.read().decode()
    exported = {
        sample.name
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }
    recorded = {
        rule["record"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    queries = panel_queries()
    assert len(queries) >= 20
    empty = set()
    for target, expr in queries:
        if not query(stack.prometheus, expr):  # raises with Prometheus' parse error
            empty.add(target)
        names = metric_names(expr)
        assert names, (target, expr)
        unknown = names - exported - recorded
        assert not unknown, f"{target} names {unknown}, which the worker does not export"
    # Every panel shows the traffic of the first test (with job="sla-monitor" and the
    # instance matchers the linter asks for), except retractions: there were none.
    assert empty == {("Breaches per minute by tenant / channel", 1)}
