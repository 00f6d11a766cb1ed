"""Network faults between the worker and the broker: a cut longer than the consumer session
timeout, and a degraded link. The worker recovers by itself and its output equals replay's.

The worker runs in its own network namespace (:mod:`tests.live.netns`: ``ip netns`` and a veth
pair, created and removed by the test, unique names, swept if a run died), the broker on the
host end of the veth, so every byte between them crosses a link the test controls:

* **the cut** is nf_tables dropping every packet on the veth, both ways: a silent partition
  (open connections hang; no reset, no "unreachable"), kept for the session timeout (6 s) plus
  4 s. Kafka's group coordinator evicts the worker meanwhile (it rejoins after the restore);
  Tansu 0.6.0 does not (the worker's heartbeats simply resume). Traffic reaches the broker
  from the host during the cut: a session answered in time while the worker could not see the
  answer must not become a breach, and the ones nobody answered must each come out once;
* **the degraded link** loses 5 % of packets each way (nf_tables ``numgen``), is shaped to
  8 Mbit/s (``tbf``) and delays data 50 ± 20 ms each way (toxiproxy, below) while hours of
  generated traffic drain as a backlog.

The oracle is ``sla-monitor replay`` on the same input: the set of ``sla_id`` with their final
kinds, **and** the set of ``fact_id`` once exact repeats are dropped, must be replay's. Final
kinds alone would not do: a false breach later retracted ends in the same final kind (``met``)
but adds a ``breach`` and a ``retraction`` fact. Broken on purpose once: with the worker firing,
before each event, what *its* clock (the wall clock during the cut) had passed rather than what
the event's own time had passed, both brokers emitted warning, breach and retraction for the two
sessions answered in time during the cut, and this test failed on the extra fact ids.

Why there was no false breach: a timer firing travels through the ``sla.timeouts`` topic
(:mod:`monitor.live.app`), and a key has one timer in flight at a time (it is scheduled again
only once its firing is handled). Seen on both brokers (the topic read back after a run): the
breach timer of ``answered`` was decided on the wall clock during the cut (1.7 s and 1.8 s into
it, past the deadline, the answer unseen), reached the broker only after the restore, and was
read after the answer, which had waited there since the cut began; with the worker changed to
handle timer records *before* input records of a batch, still no false breach on either broker
(the answer came in an earlier fetch). That is an ordering, not a rule: if the consumer's
connection resumed later than the producer's, one fetch could carry both, and then the order
Faust yields the two partitions decides. A rule would be a wall clock only for partitions
fetched recently (``_is_caught_up`` in :mod:`monitor.live.app` takes a high watermark from
before the cut as "caught up"). That rule is now in :mod:`monitor.live.clock`: caught-up
time runs no further than the broker's last fetch response, and the test checks it directly
(no firing of ``answered`` decided during the cut past its deadline), after the luck ran out
once in four CI runs on Kafka.

Recovery after the restore is bounded by TCP, not by the worker: the hung connections resume
at their next retransmission, and the kernel doubles the retransmission timeout up to 120 s;
failing that, the client gives up on a request after Faust's ``broker_request_timeout`` (90 s)
and reconnects. Measured here (time from the restore until the live output equals replay's):
10 s silent cut, 4.2 s on Tansu, 6.2 s on Kafka; 60 s (``SLA_NETFAULT_LONG=1``), 48 s and
50 s, the worker noticing only at the 90 s request timeout, and the same for the interface
taken down for 60 s (49 s and 52.5 s: established connections are not aborted by a missing
route, they back off the same way; on Kafka about 20 s of it is the rebalance waiting for the
acknowledgements of batches whose produce requests hung). With the worker's namespace
capping the backoff (``SLA_NETFAULT_RTO_MAX_MS=2000`` sets ``net.ipv4.tcp_rto_max_ms``,
Linux >= 6.15, per network namespace), the 60 s silent cut recovered in 2.1 s and 3.7 s.

Why not ``tc netem``: this CI kernel has no ``sch_netem`` (``tc qdisc add dev X root netem
delay 100ms`` answers "Specified qdisc kind is unknown"; ``CONFIG_NET_SCH_NETEM`` is unset in
``/proc/config.gz`` and there are no modules to load), nor ``act_gact`` (tc's random drop). So
loss and the cut are nf_tables rules, the rate is ``tbf`` (both built in), and latency with
jitter comes from Shopify's toxiproxy (``make tools`` builds it from ``tools/toxiproxy``) in
front of a broker that advertises the proxy's address (:class:`Link`), so that every
connection of the worker, not just its bootstrap, crosses it.

Needs root (``CAP_NET_ADMIN``), iproute2 and nftables (``make tools`` installs both).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.engine import SlaEngine
from monitor.engine.state import state_key
from monitor.live.broker import Broker, EmbeddedBroker, free_port
from monitor.live.kafka import KafkaBroker
from monitor.policy import load_policy_set
from monitor.replay import final_kinds, replay_events
from monitor.sla_event import Kind, SlaEvent
from monitor.traffic import generate
from monitor.validation import event_from_dict
from monitor.vocabulary import SubjectType
from tests.live.harness import (
    DAY,
    POLICIES,
    LiveSetup,
    TopicReader,
    chat,
    ev,
    final_kinds_from_topics,
    iso,
    opened,
    produce,
    record_for,
    session_id,
)
from tests.live.netns import NetNamespace
from tests.live.toxiproxy import Toxiproxy

pytestmark = pytest.mark.broker

LONG = os.environ.get("SLA_NETFAULT_LONG") == "1"
LOSS_PERCENT = 5
LATENCY_MS, JITTER_MS = 50, 20
PROXY = "broker"
# A silent cut (nf_tables drops every packet) always; a loud one (the interface goes down) with
# the long run.
CUTS = ["drop", "link-down"] if LONG else ["drop"]
BACKLOG_HOURS = 24.0 if LONG else 6.0  # of generated traffic (566 events; 4127 for 24 h)
# Tansu takes one record per produce request (monitor.live.broker), so over 100 ms round trips
# the worker's output is slow: 25 s for the 6 h here, more than 120 s for the whole day.
DRAIN_TIMEOUT = 900.0 if LONG else 120.0


@dataclass
class ThroughProxy:
    """A broker as clients see it through the proxy: bootstrap and every advertised address
    are the proxy's (the broker advertises it)."""

    name: str
    bootstrap: str
    overrides: dict[str, Any]

    def settings_overrides(self) -> dict[str, Any]:
        return {**self.overrides, "broker": self.bootstrap}


@dataclass
class Link:
    """The worker's namespace; a broker on the host end of its veth (``direct``); and the same
    kind of broker behind toxiproxy (``proxied``: all connections cross the proxy)."""

    ns: NetNamespace
    direct: Broker
    proxied: Broker
    toxiproxy: Toxiproxy


@pytest.fixture(scope="module", params=["tansu", "kafka"])
def link(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Link]:
    tmp = tmp_path_factory.mktemp(f"netfault-{request.param}")
    with NetNamespace() as ns, contextlib.ExitStack() as stack:
        toxiproxy = Toxiproxy(tmp / "toxiproxy.log")
        toxiproxy.start()
        stack.callback(toxiproxy.stop)
        proxy = f"{ns.host_address}:{free_port(ns.host_address)}"
        direct: EmbeddedBroker | KafkaBroker
        if request.param == "tansu":
            # Tansu has one listener: a second broker advertises the proxy.
            direct = EmbeddedBroker(host=ns.host_address, log_path=tmp / "tansu.log")
            behind = EmbeddedBroker(
                host=ns.host_address, log_path=tmp / "tansu-proxied.log", advertised=proxy
            )
            behind.start()
            stack.callback(behind.stop)
            upstream, overrides = behind.bootstrap, behind.settings_overrides()
        else:
            direct = KafkaBroker(host=ns.host_address, data_dir=tmp / "kafka", proxy=proxy)
            assert direct.proxied_port is not None
            upstream = f"{ns.host_address}:{direct.proxied_port}"
            overrides = direct.settings_overrides()
        direct.start()
        stack.callback(direct.stop)
        toxiproxy.proxy(PROXY, proxy, upstream)
        yield Link(ns, direct, ThroughProxy(request.param, proxy, overrides), toxiproxy)


def oracle(events: list[dict[str, Any]], policies: str | None) -> list[SlaEvent]:
    engine = SlaEngine(load_policy_set(policies))
    return replay_events(engine, [event_from_dict(e) for e in events], time.time_ns() // 1000)


class Output:
    """The three fact topics of a setup, as a downstream consumer reads them."""

    def __init__(self, reader: TopicReader, setup: LiveSetup) -> None:
        self.reader = reader
        s = setup.settings
        self.topics = (s.topic_warnings, s.topic_breaches, s.topic_outcomes)

    def facts(self) -> list[dict[str, Any]]:
        return [f for t in self.topics for f in self.reader.facts(t)]

    def kinds(self) -> dict[str, Kind]:
        return final_kinds_from_topics(*(self.reader.facts(t) for t in self.topics))

    def fact_ids(self) -> set[str]:
        return {f["fact_id"] for f in self.facts()}


def compare(out: Output, expected: list[SlaEvent]) -> str:
    """Empty when live equals replay; else what differs."""
    want_kinds = final_kinds(expected)
    want_ids = {f.fact_id for f in expected}
    live_kinds, live_ids = out.kinds(), out.fact_ids()
    if live_kinds == want_kinds and live_ids == want_ids:
        return ""
    wrong = {k: (live_kinds.get(k), v) for k, v in want_kinds.items() if live_kinds.get(k) != v}
    return (
        f"final kinds differing (live, replay): {wrong}; extra sla_ids "
        f"{sorted(set(live_kinds) - set(want_kinds))}; fact_ids missing "
        f"{sorted(want_ids - live_ids)}; extra {sorted(live_ids - want_ids)}"
    )


def assert_repeats_identical(out: Output) -> None:
    """At-least-once may repeat a fact, but only as the very same fact."""
    by_id: dict[str, dict[str, Any]] = {}
    for fact in out.facts():
        first = by_id.setdefault(fact["fact_id"], fact)
        assert first == fact, f"two different facts with one fact_id: {first} != {fact}"


@pytest.mark.parametrize("how", CUTS)
async def test_cut_longer_than_session_timeout(link: Link, tmp_path: Path, how: str) -> None:
    ns, broker = link.ns, link.direct
    setup = LiveSetup(broker, tmp_path)
    s = setup.settings
    await setup.create_topics()
    if os.environ.get("SLA_NETFAULT_RTO_MAX_MS"):
        ns.sysctl("net.ipv4.tcp_rto_max_ms", os.environ["SLA_NETFAULT_RTO_MAX_MS"])
    worker = setup.worker(prefix=ns.exec_prefix)
    worker.start()
    try:
        await worker.wait_ready()
        # Seen before the cut, with their 50 % warnings out: one answered during the cut, in
        # time, one never. Their deadlines pass during the cut, so the worker's timer for
        # `answered` is decided on the wall clock without the answer it cannot see.
        answered, ignored = session_id("cut-answered"), session_id("cut-ignored")
        t0 = iso()
        events = [*opened(answered, t0), *opened(ignored, t0)]
        opened_at = time.monotonic()
        await produce(s, [chat(setup, e) for e in events])
        async with TopicReader(s, [s.topic_warnings]) as warnings:
            await warnings.wait_for(
                lambda r: (
                    {answered, ignored} <= {f["subject_id"] for f in r.facts(s.topic_warnings)}
                ),
                timeout=10,
                what="the warnings of the sessions opened before the cut",
            )
        assert "never reached" not in worker.log()

        cut_length = 60.0 if LONG else s.session_timeout + 4.0
        if how == "drop":
            ns.cut()
        else:
            ns.link_down()
        cut_at = time.monotonic()
        # The answer must reach the broker before the deadline (4 s), or it is simply late.
        assert cut_at - opened_at < 3.5, "too slow to cut before the deadline: rerun"
        # Traffic the worker cannot see: the answer, and two sessions opened during the cut.
        during_ok, during_late = session_id("during-ok"), session_id("during-late")
        start = iso()
        waiting = [
            ev(answered, "message.sent", start, sender="agent"),
            *opened(during_ok, start),
            ev(during_ok, "message.sent", iso(1.0, _parse(start)), sender="agent"),
            *opened(during_late, start),
        ]
        await produce(s, [chat(setup, e) for e in waiting])
        events += waiting
        await asyncio.sleep(max(0.0, cut_length - (time.monotonic() - cut_at)))
        dropped = ns.dropped()
        ns.restore()
        restored_at, restored_wall_ms = time.monotonic(), time.time_ns() // 1_000_000
        if how == "drop":
            assert dropped > 0, "the cut dropped nothing: the worker did not talk to the broker"

        # Every deadline of the sessions above has passed: replay's verdicts, now.
        expected = oracle(events, POLICIES)
        breached = {f.subject_id for f in expected if f.kind is Kind.BREACH}
        assert breached == {ignored, during_late}
        async with TopicReader(s, _topics(setup)) as reader:
            out = Output(reader, setup)

            async def settle(what: str) -> None:
                try:
                    await reader.wait_for(lambda r: not compare(out, expected), 60, what)
                except AssertionError:
                    raise AssertionError(
                        f"{what}: {compare(out, expected)}\n{worker.log()[-6000:]}"
                    ) from None

            await settle(f"after a {cut_length:.0f} s cut")
            recovered = time.monotonic() - restored_at
            # And live again: a new session nobody answers is a breach on time.
            after = session_id("after")
            late_events = opened(after, iso())
            await produce(s, [chat(setup, e) for e in late_events])
            events += late_events
            await asyncio.sleep(4.5)  # its deadline passes
            expected = oracle(events, POLICIES)
            await settle("a session opened after the restore")
            await asyncio.sleep(2.0)  # a repeat or a late false fact would arrive by now
            await reader.poll()
            assert not compare(out, expected), compare(out, expected)
            assert_repeats_identical(out)
            per_fact = Counter(f["fact_id"] for f in reader.facts(s.topic_breaches))
        assert set(per_fact) == {f.fact_id for f in expected if f.kind is Kind.BREACH}
        # The rule, not just its luck: no timer of `answered` decided during the cut at an
        # instant past its deadline (its clock held at the broker's last answer). Before the
        # rule, every run sent one, 1.7 s into the cut; the output was right only when the
        # answer happened to be read before that firing (module doc).
        deadline = next(f.deadline for f in expected if f.subject_id == answered)
        async with TopicReader(s, [s.topic_timeouts]) as timers:
            while await timers.poll(1.0):
                pass  # read to the end
            blind = [
                int(r.value) - deadline
                for r in timers.records[s.topic_timeouts]
                if r.key == state_key(SubjectType.CHAT_SESSION, answered).encode()
                and r.value.isdigit()  # a timer firing, not a retention check
                and r.timestamp < restored_wall_ms
                and int(r.value) >= deadline
            ]
        assert not blind, f"timers fired past the deadline during the cut, by {blind} µs"
        assert worker.proc is not None
        assert worker.proc.poll() is None, "the worker gave up"
        print(
            f"\n[{broker.name}] {how} cut {cut_length:.1f} s "
            f"(session timeout {s.session_timeout} s), "
            f"{dropped} packets dropped; replay's verdicts {recovered:.1f} s after the restore; "
            f"{len(expected)} facts, breaches {dict(per_fact)}"
        )
        assert "never reached the worker" not in worker.log()
    finally:
        worker.stop()


async def test_degraded_link_drains_a_backlog(link: Link, tmp_path: Path) -> None:
    """Hours of generated traffic as a backlog, over a link that loses 5 % of packets each way,
    delays data by 50 ± 20 ms each way and is shaped to 8 Mbit/s: the worker gets replay's
    result."""
    ns, broker = link.ns, link.proxied
    setup = LiveSetup(broker, tmp_path, policies=None)
    s = setup.settings
    await setup.create_topics()
    events = generate(DAY, BACKLOG_HOURS, 41, chats_per_hour=40.0, tickets_per_hour=12.0)
    expected = oracle(events, None)
    assert sum(f.kind is Kind.BREACH for f in expected) > 50  # plenty to lose
    await produce(s, [record_for(setup, e) for e in events])
    ns.degrade(LOSS_PERCENT)
    ns.limit_rate("8mbit", "100ms")
    link.toxiproxy.latency(PROXY, LATENCY_MS, JITTER_MS)
    worker = setup.worker(prefix=ns.exec_prefix)
    started = time.monotonic()
    worker.start()
    try:
        async with TopicReader(s, _topics(setup)) as reader:
            out = Output(reader, setup)
            try:
                await reader.wait_for(lambda r: not compare(out, expected), DRAIN_TIMEOUT, "replay")
            except AssertionError:
                raise AssertionError(
                    f"over a lossy link: {compare(out, expected)}\n" + worker.log()[-6000:]
                ) from None
            drained = time.monotonic() - started
            dropped = ns.dropped()
            ns.restore()
            await asyncio.sleep(2.0)
            await reader.poll()
            assert not compare(out, expected), compare(out, expected)
            assert_repeats_identical(out)
        assert dropped > 0, "no packet was lost: the fault was not in the path"
        print(
            f"\n[{broker.name}] {len(events)} events over a {LOSS_PERCENT} % lossy 8 Mbit/s link, "
            f"{LATENCY_MS} ± {JITTER_MS} ms each way: "
            f"{dropped} packets dropped, replay's {len(expected)} facts in {drained:.1f} s"
        )
        assert "never reached the worker" not in worker.log()
    finally:
        worker.stop()
        ns.restore()
        link.toxiproxy.clear(PROXY)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _topics(setup: LiveSetup) -> list[str]:
    s = setup.settings
    return [s.topic_warnings, s.topic_breaches, s.topic_outcomes]
