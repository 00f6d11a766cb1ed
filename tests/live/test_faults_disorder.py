"""Event disorder (issue 10): producers with skewed clocks, a session's events spread over
producer retries, duplicates (on the right partition, and on another one under a wrong key),
events after close. The worker's output equals replay's over the records as it reads them,
and the records it cannot use are dead-lettered with the right reason code.

The traffic: 72 chat sessions over 18 minutes an hour ago (a backlog, produced before the
worker starts), a 180 s first and next response target. Each session's platform events
(start, customer messages, close) come from one of three "platform" producers and its agent
replies from one of three "desk" producers, each producer with its own clock skew (-120 s to
+120 s on ``occurred_at``). Records are produced in the order they were *sent*: by true time,
a retried send later. Per session, one of:

* plain (skew only);
* the agent reply's first send failed and was retried 30-240 s later (a late event: replay and
  the worker may breach, then retract);
* a record sent twice, the copy 60-180 s later, same key (a duplicate: counts once);
* a copy re-sent under a wrong key that lands on another partition (after a producer retry
  with a broken partitioner), before or after the right copy: dead-lettered ``misrouted``, the
  right copy counts once;
* events after close: a customer and an agent message after the close (nothing), or an agent
  reply sent before the close whose send was retried after it;
* a session.started re-sent with a regenerated event id (``duplicate_subject``), or whose first
  send failed, so that the customer message arrives first (``unknown_subject``).

The oracle is replay over the records *as the worker reads them*: each partition of the chat
topic read back from the broker in offset order, less the misrouted records (replay of a file
cannot see keys), one :class:`monitor.replay.Replay` per partition because the worker keeps a
clock per partition. Replay of the production order (what ``sla-monitor replay`` of the sent
records gives, misrouted copies left out) must reach the same verdicts.

What "equal" means here: the worker's clock trails replay's (event time less a grace while
behind, and timers travel through a topic), so where a late event disproves a deadline replay
has already fired, replay emits breach-then-retraction (or a warning) that the worker, not yet
having fired, never does. So: every fact the worker emits is one of replay's (same
``fact_id``; breaches with replay's deadline), each published once; and every target's
verdict (met, breach, or none: warned, retracted or silent) equals replay's.

No long version: the cases are enumerated, not sampled.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from monitor.engine import SlaEngine
from monitor.errors import Reason
from monitor.live.broker import Broker
from monitor.policy import load_policy_set
from monitor.replay import Replay, final_kinds, iter_replay
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import MICROS_PER_SECOND, format_rfc3339, parse_rfc3339
from monitor.validation import event_from_dict, parse_event
from tests.live.harness import (
    BEIJING,
    LiveSetup,
    TopicReader,
    chat_policy_dir,
    final_kinds_from_topics,
    produce,
    session_id,
)
from tests.live.probes import free_port, scrape, total

pytestmark = pytest.mark.broker

S = MICROS_PER_SECOND
PARTITIONS = 4
PLATFORM_SKEW = (-120 * S, 0, 90 * S)  # three platform producers' clocks
DESK_SKEW = (120 * S, -45 * S, 30 * S)  # three agent-desk producers' clocks
REPLY_AFTER = (40, 120, 170, 190, 240, None)  # true seconds to the agent's reply


@dataclass
class Send:
    """One send of a producer: when (true time, retries included), what, and what the worker
    must make of it (a dead-letter reason code, or None: applied or ignored as a duplicate)."""

    sent: int
    key: str
    event: dict[str, Any]
    code: Reason | None = None
    sent_after_close: bool = False  # a reply that happened before the close, sent after it


def partition_of(key: str) -> int:
    """The partition aiokafka's default (murmur2) partitioner gives ``key``."""
    chosen: int = DefaultPartitioner()(key.encode(), list(range(PARTITIONS)), [])
    return chosen


def wrong_key(sid: str) -> str:
    """A key a broken retry path might use, on another partition than the session's."""
    n = 0
    while partition_of(f"{sid}/retry{n}") == partition_of(sid):
        n += 1
    return f"{sid}/retry{n}"


def traffic(t0: int) -> list[Send]:
    """The sends, in the order they reach the broker (see the module doc)."""
    out: list[Send] = []
    for i in range(72):
        sid = session_id(f"dis{i % 6}")
        rnd = random.Random(i)
        true = t0 + i * 15 * S
        platform, desk = PLATFORM_SKEW[i % 3], DESK_SKEW[(i // 3) % 3]

        def event(type_: str, at: int, skew: int, n: int = 0, **fields: Any) -> dict[str, Any]:
            return _event(sid, type_, at + skew, n, **fields)  # noqa: B023 - called at once

        start = event("session.started", true, platform, channel="web")
        ask = event("message.sent", true, platform, sender="customer")
        sends = [Send(true, sid, start), Send(true, sid, ask)]
        reply_after = REPLY_AFTER[(i // 6) % len(REPLY_AFTER)]
        reply = None
        if reply_after is not None:
            reply_at = true + reply_after * S
            reply = Send(reply_at, sid, event("message.sent", reply_at, desk, sender="agent"))
            sends.append(reply)
            if i % 2:  # the customer writes again, and the next reply comes or not
                again = true + (reply_after + 30) * S
                sends.append(Send(again, sid, event("message.sent", again, platform, 1,
                                                    sender="customer")))  # fmt: skip
                if i % 4 == 1:
                    second = again + 100 * S
                    sends.append(Send(second, sid, event("message.sent", second, desk, 1,
                                                         sender="agent")))  # fmt: skip
        case = i % 6
        if case == 1 and reply is not None:  # the reply's first send failed: retried later
            reply.sent += rnd.randrange(30, 240) * S
        elif case == 2:  # sent twice, the copy later, same key
            copy = rnd.choice(sends)
            sends.append(Send(copy.sent + rnd.randrange(60, 180) * S, sid, copy.event))
        elif case == 3:  # a copy under a wrong key, after (or, every other time, before)
            copy = rnd.choice(sends[1:])
            late = copy.sent + 60 * S
            if i % 12 == 9:
                copy.sent, late = late, copy.sent
            sends.append(Send(late, wrong_key(sid), copy.event, Reason.MISROUTED))
        elif case == 4:  # events after close
            closed = true + 100 * S
            sends.append(Send(closed, sid, event("session.closed", closed, platform)))
            if i % 12 == 10:  # a reply before the close, its send retried after it
                before = event("message.sent", true + 60 * S, desk, 5, sender="agent")
                sends.append(Send(closed + 120 * S, sid, before, sent_after_close=True))
            for sender, skew, after in (("customer", platform, 30), ("agent", desk, 40)):
                at = closed + after * S
                sends.append(Send(at, sid, event("message.sent", at, skew, 9, sender=sender)))
        elif case == 5 and i % 12 == 11:  # the start's first send failed: the message is early
            sends[0].sent += 20 * S
            sends[1].code = Reason.UNKNOWN_SUBJECT
        elif case == 5:  # the start re-sent with a regenerated event id
            again = dict(start, event_id=f"{start['event_id']}:regenerated")
            sends.append(Send(true + 5 * S, sid, again, Reason.DUPLICATE_SUBJECT))
        out += sends
    return sorted(out, key=lambda x: x.sent)  # stable: same instant, built order


def _event(sid: str, type_: str, at: int, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{sid}:{type_}:{fields.get('sender', '')}:{n}",
        "type": type_,
        "occurred_at": format_rfc3339(at, BEIJING),
        "tenant": "acme",
        "session_id": sid,
        **fields,
    }


def verdicts(kinds: dict[str, Kind]) -> dict[str, Kind]:
    """The decided targets: met, breach (a warning, a lone retraction or silence: none)."""
    return {k: v for k, v in kinds.items() if v in (Kind.MET, Kind.BREACH)}


def replay_partitions(engine: SlaEngine, records: Iterable[Any], until: int) -> list[SlaEvent]:
    """Replay of the chat topic as the worker reads it: per partition, in offset order, the
    misrouted records (key not the subject id) left out; facts of all partitions together."""
    out: list[SlaEvent] = []
    for events in _lanes(records).values():
        out += iter_replay(Replay(engine), events, until)
    return out


async def test_disordered_input_gives_replays_verdicts(broker: Broker, tmp_path: Path) -> None:
    policies = chat_policy_dir(
        tmp_path, "disorder-chat", "minute-scale targets, against +-2 min clock skews",
        within="180s", retention="1h",
    )  # fmt: skip
    port = free_port()
    setup = LiveSetup(
        broker, tmp_path, policies=str(policies), partitions=PARTITIONS,
        overrides={"metrics_port": port, "batch_max": 25},
    )  # fmt: skip
    s = setup.settings
    await setup.create_topics()
    engine = SlaEngine(load_policy_set(str(policies)))
    tz = engine.timezone_of("disorder-chat")
    sends = traffic(time.time_ns() // 1000 - 3600 * S)
    await produce(s, [(s.topic_chat, x.key.encode(), orjson.dumps(x.event)) for x in sends])
    codes = {(x.key.encode(), orjson.dumps(x.event)): x.code for x in sends}
    expected_codes = Counter(x.code.value for x in sends if x.code is not None)

    worker = setup.worker()
    worker.start()
    topics = [s.topic_warnings, s.topic_breaches, s.topic_outcomes, s.topic_deadletter]
    try:
        async with TopicReader(s, [*topics, s.topic_chat]) as reader:
            await worker.wait_ready(timeout=60)
            until = time.time_ns() // 1000
            oracle: list[SlaEvent] = []

            def settled(r: TopicReader) -> bool:
                nonlocal oracle
                if len(r.records[s.topic_chat]) < len(sends):
                    return False
                oracle = replay_partitions(SlaEngine(engine.policies), r.records[s.topic_chat],
                                           until)  # fmt: skip
                live = final_kinds_from_topics(*(r.facts(t) for t in topics[:3]))
                letters = len(r.records[s.topic_deadletter])
                same = verdicts(live) == verdicts(final_kinds(oracle))
                return same and letters >= sum(expected_codes.values())

            await reader.wait_for(settled, timeout=120, what="replay's verdicts")
            metrics = scrape(port)
    finally:
        worker.stop()

    # Where each record landed: the misrouted copies really are on another partition.
    chat = reader.records[s.topic_chat]
    at = {(r.partition, r.offset): r for r in chat}
    for r in chat:
        if codes[(r.key, r.value)] is Reason.MISROUTED:
            assert r.partition != partition_of(orjson.loads(r.value)["session_id"])

    # Dead letters: exactly the records built to be refused, each under its reason code.
    lettered = []
    for letter in reader.records[s.topic_deadletter]:
        h = {k: v.decode() for k, v in letter.headers}
        original = at[(int(h["partition"]), int(h["offset"]))]
        assert (letter.key, letter.value) == (original.key, original.value)
        lettered.append((original.partition, original.offset))
        assert codes[(original.key, original.value)] is not None, h["reason"]
    assert len(lettered) == len(set(lettered)) == sum(expected_codes.values())
    for code, n in expected_codes.items():
        assert total(metrics, "sla_input_invalid_total", reason=code) == n, code
    assert total(metrics, "sla_input_invalid_total") == sum(expected_codes.values())

    # Replay agrees on what to refuse: the engine's rejections are the records built for them.
    engine_refused = {Reason.UNKNOWN_SUBJECT.value, Reason.DUPLICATE_SUBJECT.value}
    replay_rejected = 0
    for events in _lanes(chat).values():
        replay = Replay(SlaEngine(engine.policies))
        list(iter_replay(replay, events, until))
        replay_rejected += len(replay.rejections)
    assert replay_rejected == sum(n for c, n in expected_codes.items() if c in engine_refused)

    # The facts: each breach, met and retraction of the worker's is one of replay's, with
    # replay's deadline; every fact is published once. Warnings may differ the other way too:
    # replay fires timers only when its clock moves, so the warning of a subject a *late*
    # event created, already due on arrival, waits for the clock to move again and is lost if
    # the subject's own next event (its close, say) comes first; the worker fires a subject's
    # due timers at its next event (SlaWorker._on_input), so it warns. Counted below.
    expected = {f.fact_id: f for f in oracle}
    warned_alone = 0
    for topic in topics[:3]:
        facts = reader.facts(topic)
        repeated = [k for k, n in Counter(f["fact_id"] for f in facts).items() if n > 1]
        assert not repeated, (topic, repeated)
        for fact in facts:
            if fact["kind"] == "warning" and fact["fact_id"] not in expected:
                warned_alone += 1
                continue
            assert fact["fact_id"] in expected, explain(fact, chat, reader, topics, oracle)
            want = expected[fact["fact_id"]].to_dict(tz)
            met = fact["kind"] == "met"
            fields = ["deadline", "started_at"] + (["responded_at"] if met else [])
            for field in fields:
                assert fact.get(field) == want.get(field), (field, fact, want)
    live = final_kinds_from_topics(*(reader.facts(t) for t in topics[:3]))
    want_kinds = final_kinds(oracle)
    assert verdicts(live) == verdicts(want_kinds)

    # A reply sent before the close but delivered after it counts as if delivered in order:
    # the verdict of the session's own events sorted by occurred_at (an engine that judged
    # only clocks still running at the reply left a false breach here).
    for sid in {x.event["session_id"] for x in sends if x.sent_after_close}:
        own = {x.event["event_id"]: x.event for x in sends if x.event["session_id"] == sid}
        ordered = sorted(own.values(), key=lambda e: parse_rfc3339(e["occurred_at"]))
        alone = Replay(SlaEngine(engine.policies))
        facts = list(iter_replay(alone, [event_from_dict(e) for e in ordered], until))
        truth = verdicts(final_kinds(facts))
        for sla_id in {f.sla_id for f in facts if f.metric == "first_response"}:
            assert verdicts(live).get(sla_id) == truth.get(sla_id), (sid, sla_id, truth)

    # Replay of the production order (sla-monitor replay of the sent records, less the
    # misrouted copies) reaches the same verdicts: one clock or one per partition.
    produced = [event_from_dict(x.event) for x in sends if x.code is not Reason.MISROUTED]
    in_order = final_kinds(iter_replay(Replay(SlaEngine(engine.policies)), produced, until))
    assert verdicts(in_order) == verdicts(want_kinds)

    kinds = Counter(v.value for v in verdicts(live).values())
    transient = sum(1 for k, v in want_kinds.items() if live.get(k) != v)
    retracted = sum(1 for f in oracle if f.kind is Kind.RETRACTION)
    print(
        f"\ndisorder: {len(sends)} records, {len(chat)} read back; verdicts equal replay's "
        f"({dict(kinds)}); dead letters {dict(expected_codes)}; replay retracted {retracted} "
        f"breaches; {warned_alone} warnings replay deferred past the subject's close; "
        f"{transient} targets where replay's warning or breach-then-retraction "
        "came before the late event the worker read first"
    )


def _lanes(records: Iterable[Any]) -> dict[int, list[Any]]:
    lanes: dict[int, list[Any]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = parse_event(r.value)
        if r.key == event.subject_id.encode():
            lanes.setdefault(r.partition, []).append(event)
    return lanes


def explain(
    fact: dict[str, Any], chat: list[Any], reader: TopicReader, topics: list[str],
    oracle: list[SlaEvent],
) -> str:  # fmt: skip
    """The subject's records (as read back) and facts, live and replay's, for a failure."""
    sid = fact["subject_id"]
    lines = [f"not in replay: {fact['fact_id']} of {sid}; its records:"]
    for r in sorted(chat, key=lambda r: (r.partition, r.offset)):
        if sid.encode() in r.value:
            e = orjson.loads(r.value)
            lines.append(f"  {r.partition}@{r.offset} key={r.key!r} {e['type']} "
                         f"{e.get('sender', '')} {e['occurred_at']} {e['event_id']}")  # fmt: skip
    for topic in topics[:3]:
        for f in reader.facts(topic):
            if f["subject_id"] == sid:
                lines.append(f"  live {f['kind']} {f['metric']} detected {f['detected_at']}")
    lines += [f"  replay {f.kind} {f.metric} at {f.detected_at}" for f in oracle
              if f.subject_id == sid]  # fmt: skip
    return "\n".join(lines)
