"""One live worker (a subprocess) on the embedded broker: breaches, warnings, met, retraction,
duplicates, dead letters and retention, observed only through Kafka topics.

The test policies (``tests/live/policies``) set 4-second targets with a warning at 50%, so each
scenario takes seconds. Every test uses its own session ids on a shared worker.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.engine import SlaEngine
from monitor.errors import InvalidEvent, Reason
from monitor.live.broker import Broker, free_port
from monitor.policy import load_policy_set
from monitor.replay import final_kinds, replay_events
from monitor.timeutil import parse_rfc3339
from monitor.validation import MAX_EVENT_BYTES, event_from_dict, parse_event
from monitor.vocabulary import SubjectType
from tests.fuzzing import Pipeline
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
)

pytestmark = pytest.mark.broker

TARGET = 4_000_000  # the test policy's first_response target, in microseconds


@pytest.fixture(scope="module")
def live(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveSetup, WorkerProcess]]:
    # The metrics endpoint: the fuzz test reads the dead-letter codes from it.
    setup = LiveSetup(
        broker, Path(tmp_path_factory.mktemp("worker")), overrides={"metrics_port": free_port()}
    )
    asyncio.run(setup.create_topics())
    worker = setup.worker()
    worker.start()
    try:
        asyncio.run(worker.wait_ready())
        yield setup, worker
    finally:
        worker.stop()


def of(facts: list[dict[str, Any]], sid: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in facts if f["subject_id"] == sid and (kind is None or f["kind"] == kind)]


def us(text: str) -> int:
    return parse_rfc3339(text)


async def test_breach_detected_with_no_further_traffic(
    live: tuple[LiveSetup, WorkerProcess],
) -> None:
    setup, _ = live
    s = setup.settings
    sid = session_id("breach")
    await produce(s, [chat(setup, e) for e in opened(sid, iso())])
    # Nothing else is sent: only the worker's timer can notice the silence.
    async with TopicReader(s, [s.topic_breaches, s.topic_outcomes]) as reader:
        await reader.wait_for(
            lambda r: of(r.facts(s.topic_breaches), sid) and of(r.facts(s.topic_outcomes), sid),
            timeout=20,
            what="a breach on sla.breaches and sla.outcomes",
        )
        detected_wall = time.time()
    [breach] = of(reader.facts(s.topic_breaches), sid)
    assert breach["kind"] == "breach"
    assert breach["metric"] == "first_response"
    assert us(breach["deadline"]) - us(breach["started_at"]) == TARGET
    assert us(breach["detected_at"]) > us(breach["deadline"])
    # Detected promptly by the timer (tick 0.25 s), not whenever some later event came by.
    assert us(breach["detected_at"]) - us(breach["deadline"]) < 3_000_000
    assert detected_wall * 1e6 - us(breach["deadline"]) < 6_000_000
    assert "responded_at" not in breach
    assert breach["penalty"] == {"amount": 100.0, "currency": "CNY"}
    assert of(reader.facts(s.topic_outcomes), sid)[0]["fact_id"] == breach["fact_id"]


async def test_warning_before_the_deadline(live: tuple[LiveSetup, WorkerProcess]) -> None:
    setup, _ = live
    s = setup.settings
    sid = session_id("warn")
    at = iso()
    await produce(s, [chat(setup, e) for e in opened(sid, at)])
    async with TopicReader(s, [s.topic_warnings]) as reader:
        await reader.wait_for(
            lambda r: of(r.facts(s.topic_warnings), sid), timeout=15, what="a warning"
        )
    [warning] = of(reader.facts(s.topic_warnings), sid)
    assert warning["kind"] == "warning"
    assert warning["share"] == 0.5
    detected = us(warning["detected_at"])
    assert us(at) + TARGET // 2 < detected < us(warning["deadline"])


async def test_response_in_time_is_met(live: tuple[LiveSetup, WorkerProcess]) -> None:
    setup, _ = live
    s = setup.settings
    sid = session_id("met")
    start = iso()
    await produce(s, [chat(setup, e) for e in opened(sid, start)])
    await asyncio.sleep(1.0)
    reply_at = iso()
    await produce(s, [chat(setup, ev(sid, "message.sent", reply_at, sender="agent"))])
    async with TopicReader(s, [s.topic_outcomes, s.topic_breaches]) as reader:
        await reader.wait_for(
            lambda r: of(r.facts(s.topic_outcomes), sid), timeout=15, what="a met"
        )
        # Past the deadline (and a few ticks): the timer must not breach an answered target.
        while time.time() * 1e6 < us(start) + TARGET + 1_500_000:
            await reader.poll()
    [met] = of(reader.facts(s.topic_outcomes), sid)
    assert met["kind"] == "met"
    assert us(met["responded_at"]) == us(reply_at)
    assert 0.9 < met["elapsed_seconds"] < TARGET / 1e6
    assert of(reader.facts(s.topic_breaches), sid) == []


async def test_late_response_retracts_the_breach(live: tuple[LiveSetup, WorkerProcess]) -> None:
    setup, _ = live
    s = setup.settings
    sid = session_id("late")
    start = iso()
    await produce(s, [chat(setup, e) for e in opened(sid, start)])
    async with TopicReader(s, [s.topic_breaches, s.topic_outcomes]) as reader:
        await reader.wait_for(
            lambda r: of(r.facts(s.topic_breaches), sid, "breach"), timeout=15, what="a breach"
        )
        # The agent did answer 2 s in, but the platform delivers the event only now.
        reply_at = iso(2.0, base=_dt(start))
        await produce(s, [chat(setup, ev(sid, "message.sent", reply_at, sender="agent"))])
        await reader.wait_for(
            lambda r: (
                of(r.facts(s.topic_breaches), sid, "retraction")
                and of(r.facts(s.topic_outcomes), sid, "met")
            ),
            timeout=15,
            what="a retraction and a met",
        )
    breach, retraction = of(reader.facts(s.topic_breaches), sid)
    assert (breach["kind"], retraction["kind"]) == ("breach", "retraction")
    assert retraction["sla_id"] == breach["sla_id"]
    assert retraction["reason"]
    assert us(retraction["responded_at"]) == us(reply_at)
    [met] = of(reader.facts(s.topic_outcomes), sid, "met")
    assert met["sla_id"] == breach["sla_id"]


async def test_duplicates_are_harmless(live: tuple[LiveSetup, WorkerProcess]) -> None:
    setup, _ = live
    s = setup.settings
    sid = session_id("dup")
    events = opened(sid, iso())
    # An at-least-once producer re-sends everything, some of it twice.
    await produce(s, [chat(setup, e) for e in events + events + events[:1]])
    async with TopicReader(s, [s.topic_warnings, s.topic_breaches]) as reader:
        await reader.wait_for(
            lambda r: of(r.facts(s.topic_breaches), sid), timeout=15, what="a breach"
        )
        await produce(s, [chat(setup, e) for e in events])  # and once more, later
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            await reader.poll()
    assert [f["kind"] for f in of(reader.facts(s.topic_warnings), sid)] == ["warning"]
    assert [f["kind"] for f in of(reader.facts(s.topic_breaches), sid)] == ["breach"]


async def test_bad_input_goes_to_the_dead_letter_topic(
    live: tuple[LiveSetup, WorkerProcess],
) -> None:
    setup, _ = live
    s = setup.settings
    sid = session_id("dlq")
    key = sid.encode()
    good = opened(sid, iso())
    naive = dict(good[0], event_id="naive", occurred_at=iso()[:23])
    bad: list[tuple[str, bytes, bytes]] = [
        (s.topic_chat, key, b"not json at all"),
        (s.topic_chat, key, orjson.dumps({"event_id": "x", "type": "session.started"})),
        (s.topic_chat, key, orjson.dumps(naive)),
        (s.topic_chat, key, orjson.dumps(dict(good[0], event_id="u", type="session.exploded"))),
        (s.topic_chat, key, orjson.dumps(dict(good[0], event_id="big", pad="x" * MAX_EVENT_BYTES))),
        (s.topic_chat, key, orjson.dumps(dict(good[1], event_id="early"))),  # no session yet
        (s.topic_tickets, key, orjson.dumps(dict(good[0], event_id="misrouted"))),
        (s.topic_chat, b"another-key", orjson.dumps(dict(good[0], event_id="wrong-key"))),
    ]
    # The bad records come first, on the good session's partition: it must keep flowing.
    await produce(s, bad + [chat(setup, e) for e in good])
    async with TopicReader(
        s, [s.topic_deadletter, s.topic_breaches, s.topic_chat, s.topic_tickets]
    ) as reader:
        await reader.wait_for(
            lambda r: (
                of(r.facts(s.topic_breaches), sid)
                and len(_letters_for(r, s.topic_deadletter, bad)) == len(bad)
            ),
            timeout=20,
            what="every bad record dead-lettered and the good session breached",
        )
    letters = _letters_for(reader, s.topic_deadletter, bad)
    originals = {
        (r.value, r.topic): r for t in (s.topic_chat, s.topic_tickets) for r in reader.records[t]
    }
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        assert headers["reason"]
        original = originals[(letter.value, headers["topic"])]
        assert letter.key == original.key
        assert int(headers["partition"]) == original.partition
        assert int(headers["offset"]) == original.offset
    reasons = " | ".join(dict(x.headers)["reason"].decode() for x in letters)
    for word in ("JSON", "occurred_at", "session.exploded", "no session.started", "key"):
        assert word.lower() in reasons.lower(), (word, reasons)


def hostile_records(
    setup: LiveSetup, seed: int, count: int
) -> list[tuple[str, bytes | None, bytes | None]]:
    """``count`` records a careless or hostile producer might send: random bytes, truncated
    and mangled JSON, invalid UTF-8, lone surrogates, JSON nested 2,000 deep or over the size
    limit, valid events with fields replaced by wrong types, numbers as timestamps, far-past
    and out-of-range dates, NUL bytes in ids, tombstones and missing keys, on both input
    topics. Seeded: the same corpus every run.

    Valid dates stay in the past: a valid event moves its partition's event time even when it
    is then refused (README, "Event time"), so a valid far-future one would change the good
    sessions' verdicts: the skewed-clock scenario, open on issue 10 (tests/test_fuzz.py)."""
    rnd = random.Random(seed)
    s = setup.settings
    junk: list[Any] = [
        None, True, -1, 2**63 - 1, -(2**63), 1.5e308, "", "x" * 5000,
        "\u0000\ud7ff\U0001f600", "\ud800", "S\u0000", [], {},
        {"nested": {"deep": [1, {"a": None}]}}, "2026-13-45T99:99:99Z", "2026-10-08T10:00:00",
        1791888000, 1791888000000, "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z", "1975-06-01T12:00:00+08:00",
    ]  # fmt: skip
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for i in range(count):
        sid = rnd.choice((f"S-fuzz-{seed}-{i}", f"S-fuzz-{seed}-{i}\x00"))
        base = rnd.choice(opened(sid, iso(-rnd.uniform(0, 3600))))
        topic = rnd.choice((s.topic_chat, s.topic_chat, s.topic_tickets))
        key: bytes | None = rnd.choice((sid.encode(), sid.encode(), b"", None, rnd.randbytes(8)))
        shape = rnd.randrange(10)
        text = orjson.dumps(base)
        if shape == 0:
            value: bytes | None = rnd.randbytes(rnd.randrange(0, 300))
        elif shape == 1:
            value = text[: rnd.randrange(len(text))]
        elif shape == 2:
            event = dict(base)
            event[rnd.choice(list(event))] = rnd.choice(junk)
            # json, not orjson: orjson refuses to write a lone surrogate (producers do).
            value = json.dumps(event).encode()
        elif shape == 3:
            event = dict(base)
            del event[rnd.choice(list(event))]
            value = orjson.dumps(event)
        elif shape == 4:
            value = json.dumps(rnd.choice(junk)).encode()
        elif shape == 5:
            value = None  # a tombstone (Kafka needs a key then)
            key = key or sid.encode()
        elif shape == 6:  # invalid UTF-8 inside a valid event
            cut = text.index(b'"session_id"')
            value = text[:cut] + rnd.choice((b"\xff", b"\xed\xa0\x80", b"\xc0\xaf")) + text[cut:]
        elif shape == 7:
            value = b"[" * 2000 + b"]" * 2000
        elif shape == 8:
            value = text[:-1] + b',"pad":"' + b"x" * MAX_EVENT_BYTES + b'"}'
        else:  # valid, hostile only by its subject (NUL bytes) and its key
            value = text
        out.append((topic, key, value))
    return out


def expected_code(
    setup: LiveSetup, pipeline: Pipeline, topic: str, key: bytes | None, value: bytes | None
) -> Reason | None:
    """The code the worker must dead-letter a record with (None: it is applied), worked out
    the way the worker's agent handles a record (tombstone, decoder, route, engine)."""
    s = setup.settings
    if value is None:
        return Reason.TOMBSTONE
    try:
        event = parse_event(value)
    except InvalidEvent as exc:
        return exc.code
    kind = s.topic_chat if event.subject_type is SubjectType.CHAT_SESSION else s.topic_tickets
    if topic != kind or key != event.subject_id.encode():
        return Reason.MISROUTED
    letter = pipeline.feed(value)
    return None if letter is None else letter.code


def invalid_counts(setup: LiveSetup) -> Counter[str]:
    """``sla_input_invalid_total`` of the setup's input topics by reason code, from /metrics."""
    s = setup.settings
    url = f"http://127.0.0.1:{s.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sla_input_invalid_total" and sample.labels["topic"] in (
                s.topic_chat,
                s.topic_tickets,
            ):
                out[sample.labels["reason"]] += int(sample.value)
    return out


async def test_fuzzed_hostile_input_is_dead_lettered_and_blocks_nothing(
    live: tuple[LiveSetup, WorkerProcess],
) -> None:
    """1,500 hostile records interleaved with 24 good sessions: each hostile record is
    dead-lettered at its coordinates with a reason, the worker counts it under the code the
    decoder and engine give it (none as an internal error), and the good sessions end as
    replay says they do."""
    setup, worker = live
    s = setup.settings
    hostile = hostile_records(setup, seed=20261122, count=1500)
    start = datetime.now(UTC)
    good_events: list[dict[str, Any]] = []
    for n in range(24):
        sid = session_id(f"after-fuzz-{n}")
        at = iso(0, start)
        good_events += opened(sid, at)
        if n % 3 == 0:  # answered in time: met
            good_events.append(ev(sid, "message.sent", iso(1, start), sender="agent"))
        elif n % 3 == 1:  # answered late: breach (the 4 s target)
            good_events.append(ev(sid, "message.sent", iso(6, start), sender="agent"))
        # else unanswered: breach at the deadline, by the worker's timer
    good_events.sort(key=lambda e: us(e["occurred_at"]))
    good = [chat(setup, e) for e in good_events]
    records = list(hostile)
    for i, record in enumerate(good):  # spread the good records through the hostile ones
        records.insert((i + 1) * len(hostile) // len(good) + i, record)
    # What the worker must do with each hostile record, by the oracle's pipeline.
    pipeline = Pipeline(SlaEngine(load_policy_set(POLICIES)), serialise=False)
    expected: Counter[str] = Counter()
    refused = []
    for topic, key, value in hostile:
        code = expected_code(setup, pipeline, topic, key, value)
        if code is not None:
            expected[code.value] += 1
            refused.append((topic, value))
    assert len(refused) > 1200  # the corpus really is hostile
    before = invalid_counts(setup)
    began = time.monotonic()
    await produce(s, records)
    sids = {e["session_id"] for e in good_events}
    oracle = final_kinds(
        replay_events(
            SlaEngine(load_policy_set(POLICIES)),
            [event_from_dict(e) for e in good_events],
            us(iso(60, start)),
        )
    )
    outputs = [s.topic_warnings, s.topic_breaches, s.topic_outcomes]
    async with TopicReader(
        s,
        [*outputs, s.topic_deadletter, s.topic_chat, s.topic_tickets],
    ) as reader:

        def live_kinds(r: TopicReader) -> dict[str, Any]:
            facts = [[f for f in r.facts(t) if f["subject_id"] in sids] for t in outputs]
            return final_kinds_from_topics(*facts)

        await reader.wait_for(
            lambda r: live_kinds(r) == oracle,
            timeout=60,
            what="the good sessions' verdicts after 1,500 hostile records, as replay gives them",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counted = invalid_counts(setup) - before
            if counted == expected:
                break
            await asyncio.sleep(0.5)
        await reader.poll()
    elapsed = time.monotonic() - began
    # Every code as the decoder and engine give it, once per record; none internal.
    assert invalid_counts(setup) - before == expected, (invalid_counts(setup) - before, expected)
    assert "internal" not in expected
    # Every refused record is on the dead-letter topic at its coordinates, with a reason.
    letters = {}
    for letter in reader.records[s.topic_deadletter]:
        headers = {k: v.decode() for k, v in letter.headers}
        letters[(headers["topic"], int(headers["partition"]), int(headers["offset"]))] = headers
    produced = {
        (r.topic, r.value): r for t in (s.topic_chat, s.topic_tickets) for r in reader.records[t]
    }
    codes: Counter[str] = Counter()
    for topic, value in refused:
        record = produced[(topic, value)]
        where = (topic, record.partition, record.offset)
        assert where in letters, (where, value)
        assert letters[where]["reason"]
        codes[letters[where]["code"]] += 1
    # The `code` header says, per record, what the metric counts (a consumer can route on it).
    assert codes == expected, (codes, expected)
    assert not [h for h in letters.values() if h["reason"].startswith("internal error")]
    assert worker.proc is not None
    assert worker.proc.poll() is None  # still running
    print(f"live fuzz: {len(hostile)} hostile + {len(good)} good records in {elapsed:.1f} s")


def _letters_for(reader: TopicReader, topic: str, bad: list[tuple[str, bytes, bytes]]) -> list[Any]:
    values = {v for _, _, v in bad}
    return [r for r in reader.records[topic] if r.value in values]


async def test_finished_sessions_are_removed_after_retention(
    live: tuple[LiveSetup, WorkerProcess],
) -> None:
    setup, _ = live
    s = setup.settings
    sid = session_id("gone")
    start = iso()
    events = [
        *opened(sid, start, tenant="ephemeral"),  # policy test-chat-shortlived: retention 2 s
        ev(sid, "message.sent", iso(0.5, _dt(start)), "ephemeral", sender="agent"),
        ev(sid, "session.closed", iso(1.0, _dt(start)), "ephemeral"),
    ]
    await produce(s, [chat(setup, e) for e in events])
    key = f"c:{sid}".encode()
    async with TopicReader(s, [s.changelog_topic]) as reader:
        await reader.wait_for(
            lambda r: any(x.key == key and x.value is None for x in r.records[s.changelog_topic]),
            timeout=20,
            what="a tombstone for the finished session in the table's changelog",
        )
    writes = [x for x in reader.records[s.changelog_topic] if x.key == key]
    assert writes[0].value is not None  # it was stored first...
    assert writes[-1].value is None  # ...and deleted last


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)
