"""What only real Apache Kafka can show: a client nobody here wrote, SASL, broker restarts.

* **kcat** (librdkafka, the C client under confluent-kafka-python and most non-Java producers)
  produces the input and reads ``sla.breaches``. The embedded Tansu broker cannot serve it
  (see :mod:`monitor.live.broker`); a worker on Kafka must.
* **SASL_PLAINTEXT with SCRAM-SHA-256**: the worker, the topics command and the test clients
  connect with the ``SLA_SASL_*`` settings; a wrong password stops start-up with one line and
  exit code 2 instead of a worker that retries forever.
* **Broker restart**, by SIGTERM (controlled shutdown) and by SIGKILL (a crash), for longer
  than the consumer session timeout, with traffic waiting to be produced: the worker recovers
  by itself, output equals replay, and the timer that fell due during the outage fires once.

Each scenario starts its own broker where it stops or reconfigures it; the rest share the
session's ``kafka`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.engine import SlaEngine
from monitor.live.config import Settings
from monitor.live.kafka import KafkaBroker, ScramUser
from monitor.policy import load_policy_set
from monitor.replay import final_kinds, replay_events
from monitor.sla_event import Kind
from monitor.validation import event_from_dict
from tests.live.harness import (
    POLICIES,
    LiveSetup,
    TopicReader,
    WorkerProcess,
    chat,
    ev,
    final_kinds_from_topics,
    generated_day,
    iso,
    opened,
    produce,
    record_for,
    session_id,
)

pytestmark = pytest.mark.broker

USER = ScramUser("sla-worker", "s3cret-for-tests")


def sasl(broker: KafkaBroker, password: str) -> dict[str, Any]:
    return {
        "broker": broker.sasl_bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": USER.name,
        "sasl_password": password,
    }


# -- kcat -------------------------------------------------------------------------------------


def kcat(*args: str, stdin: bytes = b"", timeout: float = 30) -> bytes:
    kcat_bin = shutil.which("kcat")
    assert kcat_bin, "kcat is installed by `make test` (Debian's kcat package)"
    done = subprocess.run(
        [kcat_bin, *args], input=stdin, capture_output=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


async def test_kcat_produces_the_input_and_reads_the_breach(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    setup = LiveSetup(kafka, tmp_path)
    s = setup.settings
    await setup.create_topics()
    worker = setup.worker()
    worker.start()
    try:
        await worker.wait_ready()
        sid = session_id("kcat")
        # key<TAB>value per line, keyed by the session id. librdkafka hashes keys with CRC32
        # by default; `murmur2_random` is the Java client's (and aiokafka's) partitioner, so a
        # session's events land on one partition whichever client produced them (README).
        lines = b"".join(sid.encode() + b"\t" + orjson.dumps(e) + b"\n" for e in opened(sid, iso()))
        kcat("-P", "-b", kafka.bootstrap, "-t", s.topic_chat, "-K", "\t",
             "-X", "partitioner=murmur2_random", stdin=lines)  # fmt: skip
        deadline = time.monotonic() + 30
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            out = kcat("-C", "-b", kafka.bootstrap, "-t", s.topic_breaches, "-o", "beginning",
                       "-e", "-q", "-f", "%k\t%s\n")  # fmt: skip
            for line in out.splitlines():
                key, _, value = line.partition(b"\t")
                fact = orjson.loads(value)
                if key == sid.encode() and fact["subject_id"] == sid:
                    found.append(fact)
            if not found:
                await asyncio.sleep(0.5)
        assert [f["kind"] for f in found] == ["breach"], worker.log()[-3000:]
        assert found[0]["metric"] == "first_response"
        assert "never reached the worker" not in worker.log()
    finally:
        worker.stop()


# -- SASL -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scram_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("scram-kafka"), scram=(USER,))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_worker_connects_with_scram_credentials(
    scram_kafka: KafkaBroker, tmp_path: Path
) -> None:
    setup = LiveSetup(scram_kafka, tmp_path, overrides=sasl(scram_kafka, USER.password))
    s = setup.settings
    assert s.bootstrap_servers == scram_kafka.sasl_bootstrap
    await setup.create_topics()  # the admin client authenticates too
    worker = setup.worker()
    worker.start()
    try:
        await worker.wait_ready()
        sid = session_id("sasl")
        await produce(s, [chat(setup, e) for e in opened(sid, iso())])
        async with TopicReader(s, [s.topic_breaches]) as reader:
            await reader.wait_for(
                lambda r: any(f["subject_id"] == sid for f in r.facts(s.topic_breaches)),
                timeout=30,
                what="a breach read over SASL",
            )
    finally:
        worker.stop()


async def test_wrong_password_stops_start_up(scram_kafka: KafkaBroker, tmp_path: Path) -> None:
    setup = LiveSetup(scram_kafka, tmp_path, overrides=sasl(scram_kafka, "not-the-password"))
    worker = setup.worker()
    started = time.monotonic()
    worker.start()
    assert worker.proc is not None
    code = worker.proc.wait(timeout=60)
    assert code == 2, worker.log()
    # Refused at once (no retry loop), with the user, the mechanism and what to fix.
    assert time.monotonic() - started < 30
    lines = [ln for ln in worker.log().splitlines() if "sla-monitor: error" in ln]
    assert len(lines) == 1, worker.log()
    assert "refused the credentials of SASL user 'sla-worker' (SCRAM-SHA-256)" in lines[0]
    assert "SLA_SASL_PASSWORD" in lines[0]


# -- broker restart ---------------------------------------------------------------------------


def oracle(events: list[dict[str, Any]]) -> dict[str, Any]:
    engine = SlaEngine(load_policy_set(POLICIES))
    facts = replay_events(engine, [event_from_dict(e) for e in events], time.time_ns() // 1000)
    return final_kinds(facts)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_broker_restart_loses_nothing(tmp_path: Path, how: str) -> None:
    broker = KafkaBroker(data_dir=tmp_path / "kafka")
    broker.start()
    setup = LiveSetup(broker, tmp_path)
    s = setup.settings
    worker: WorkerProcess | None = None
    try:
        await setup.create_topics()
        worker = setup.worker()
        worker.start()
        await worker.wait_ready()
        before, during_ok, during_late = (session_id(t) for t in ("before", "ok", "late"))
        events = opened(before, iso())  # falls due (4 s) while the broker is down
        await produce(s, [chat(setup, e) for e in events])
        await asyncio.sleep(1.0)  # the worker has read it (its timer is armed)
        outage_start = time.monotonic()
        if how == "sigkill":
            broker.kill()
        else:
            broker.stop()
        # Traffic that waits for the broker: a session answered in time, and one nobody answers.
        waiting = [
            *opened(during_ok, iso()),
            ev(during_ok, "message.sent", iso(2.0), sender="agent"),
            *opened(during_late, iso()),
        ]
        await asyncio.sleep(max(0.0, s.session_timeout + 2.0 - (time.monotonic() - outage_start)))
        broker.start()  # same port, same data directory
        await produce(s, [chat(setup, e) for e in waiting])
        events += waiting
        expected = oracle(events)
        async with TopicReader(s, [s.topic_warnings, s.topic_breaches, s.topic_outcomes]) as r:

            def live(r: TopicReader) -> dict[str, Any]:
                facts = (r.facts(s.topic_warnings), r.facts(s.topic_breaches))
                return final_kinds_from_topics(*facts, r.facts(s.topic_outcomes))

            try:
                await r.wait_for(lambda r: live(r) == expected, timeout=60, what="replay")
            except AssertionError:
                raise AssertionError(
                    f"after a {how} of the broker: live {live(r)} != replay {expected}\n"
                    + worker.log()[-6000:]
                ) from None
            await asyncio.sleep(2.0)  # anything repeated would arrive by now
            await r.poll()
            breaches = r.facts(s.topic_breaches)
        assert worker.proc is not None
        assert worker.proc.poll() is None, "the worker gave up"
        # The timer that fell due during the outage fired once, not once per reconnect.
        per_fact = Counter(f["fact_id"] for f in breaches)
        assert per_fact, breaches
        assert max(per_fact.values()) == 1, per_fact
        assert {f["subject_id"] for f in breaches} == {before, during_late}
        assert "never reached the worker" not in worker.log()
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()


# -- exactly-once -----------------------------------------------------------------------------


def replay_facts_by_topic(events: list[dict[str, Any]], s: Settings) -> dict[str, set[str]]:
    """Replay's ``fact_id``s, per output topic, routed as the worker routes them."""
    engine = SlaEngine(load_policy_set(None))
    facts = replay_events(engine, [event_from_dict(e) for e in events], time.time_ns() // 1000)
    routes = {
        Kind.WARNING: (s.topic_warnings,),
        Kind.BREACH: (s.topic_breaches, s.topic_outcomes),
        Kind.RETRACTION: (s.topic_breaches,),
        Kind.MET: (s.topic_outcomes,),
    }
    out: dict[str, set[str]] = {
        t: set() for t in (s.topic_warnings, s.topic_breaches, s.topic_outcomes)
    }
    for fact in facts:
        for topic in routes[fact.kind]:
            out[topic].add(fact.fact_id)
    return out


async def test_exactly_once_across_worker_kills(kafka: KafkaBroker, tmp_path: Path) -> None:
    setup = LiveSetup(
        kafka, tmp_path, policies=None, overrides={"processing_guarantee": "exactly_once"}
    )
    s = setup.settings
    await setup.create_topics()
    events = generated_day(seed=41)
    expected = replay_facts_by_topic(events, s)
    total = sum(len(ids) for ids in expected.values())
    assert total > 300  # plenty to lose or repeat
    await produce(s, [record_for(setup, e) for e in events])
    topics = list(expected)
    worker = setup.worker()
    kills = 0
    try:
        async with TopicReader(s, topics, read_committed=True) as reader:

            def seen() -> int:
                return len({f["fact_id"] for t in topics for f in reader.facts(t)})

            # SIGKILL the worker three times while it drains the day, at growing progress.
            for share in (0.15, 0.4, 0.7):
                worker.start()
                await worker.wait_ready(timeout=60)
                await reader.wait_for(
                    lambda r, share=share: seen() >= share * total,
                    timeout=90,
                    what=f"{share:.0%} of replay's facts (after {kills} kills)",
                )
                worker.kill()
                kills += 1
            worker.start()
            await worker.wait_ready(timeout=60)
            with contextlib.suppress(AssertionError):  # the report below says what is missing
                await reader.wait_for(lambda r: seen() >= total, timeout=120, what="every fact")
            await asyncio.sleep(3 * s.commit_interval + 1)  # a repeat would be committed by now
            await reader.poll()
        report = []
        for topic, ids in expected.items():
            counts = Counter(f["fact_id"] for f in reader.facts(topic))
            missing = ids - set(counts)
            repeated = {k: n for k, n in counts.items() if n > 1}
            extra = set(counts) - ids
            if missing or repeated or extra:
                report.append(
                    f"{topic}: {len(missing)} missing, {len(repeated)} repeated "
                    f"{list(repeated.items())[:3]}, {len(extra)} not in replay"
                )
        assert kills == 3
        assert not report, "\n".join(report)
        assert "never reached the worker" not in worker.log_path.read_text()
    finally:
        worker.stop()
