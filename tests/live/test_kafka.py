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
* **Retention past the committed offset** (DeleteRecords, which Tansu 0.6.0 lacks): a worker
  back after the input it had not read yet was deleted reads on from what is left.

Each scenario starts its own broker where it stops or reconfigures it; the rest share the
session's ``kafka`` fixture.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from monitor.engine import SlaEngine
from monitor.live.kafka import KafkaBroker, ScramUser
from monitor.policy import load_policy_set
from monitor.replay import final_kinds, replay_events
from monitor.validation import event_from_dict
from tests.live.harness import (
    POLICIES,
    LiveSetup,
    TopicReader,
    WorkerProcess,
    chat,
    ev,
    final_kinds_from_topics,
    iso,
    opened,
    produce,
    session_id,
    store_and_stop,
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


# -- retention ---------------------------------------------------------------------------------


async def test_input_deleted_past_the_committed_offset_is_read_from_what_is_left(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """A worker stopped for longer than the input topic keeps records comes back to a
    partition whose committed offset is gone. The consumer resets to the first record left,
    which is past the committed offset; the worker's check of the first record after a
    rebalance (fix 8 in monitor.live.faust_fixes) sought back to the committed offset, the
    broker answered "out of range", the consumer reset again, and the partition was held for
    good: this test, before ``SlaWorker._seek_back`` read the log start, stored none of the
    later sessions in 60 s (the log: "past the committed offset 6: reading again from 6",
    "held for 30 s", a rebalance, then the same again). DeleteRecords stands in for
    retention (the log start moves the same way); Kafka only: Tansu 0.6.0 closes the
    connection on a DeleteRecords request."""
    setup = LiveSetup(kafka, tmp_path, partitions=1)
    s = setup.settings
    await setup.create_topics()
    at = iso(6 * 3600)  # nothing falls due
    tp = TopicPartition(s.topic_chat, 0)
    first = [session_id("kept") for _ in range(3)]
    await produce(s, [chat(setup, e) for sid in first for e in opened(sid, at)])
    worker = setup.worker()
    worker.start()
    try:
        await store_and_stop(setup, worker, first)
        committed = 2 * len(first)  # two events per session, all of them handled

        # Meanwhile: more sessions, then retention deletes the committed offset and the next
        # (the first later session's two events): the first record left is committed + 2.
        later = [session_id("late") for _ in range(4)]
        await produce(s, [chat(setup, e) for sid in later for e in opened(sid, at)])
        admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
        await admin.start()
        try:
            deleted = await admin.delete_records({tp: RecordsToDelete(committed + 2)})
        finally:
            await admin.close()
        assert deleted == {tp: committed + 2}

        worker.start()
        await worker.wait_ready(timeout=60)
        try:
            await store_and_stop(setup, worker, later[1:])
        except AssertionError:
            raise AssertionError(worker.log()[-6000:]) from None
        assert f"offsets {committed}..{committed + 1} are gone" in worker.log()
        assert "has not been read again" not in worker.log()
    finally:
        worker.stop()


# -- exactly-once -----------------------------------------------------------------------------


def test_exactly_once_is_refused_at_start_up(kafka: KafkaBroker, tmp_path: Path) -> None:
    """Faust's transactional mode lost and repeated facts under worker kills (README,
    'Delivery'): the worker must refuse it rather than run with a promise it breaks."""
    setup = LiveSetup(kafka, tmp_path, overrides={"processing_guarantee": "at_least_once"})
    worker = setup.worker()
    worker.env["SLA_PROCESSING_GUARANTEE"] = "exactly_once"
    worker.start()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=60) == 2, worker.log()
    [line] = [ln for ln in worker.log().splitlines() if "sla-monitor: error" in ln]
    assert "'exactly_once' is not offered" in line
    assert "at_least_once" in line
