"""The worker's per-batch step (:meth:`monitor.live.app.SlaWorker.process_batch`), driven
in-process on a ``memory://`` app (issue 7): no agent, no consumer, no rebalance.

The app is the one ``sla-monitor worker`` runs (:func:`monitor.live.app.create_app`); only its
producer is started, against each of the session's brokers, Tansu and Kafka (faust-streaming
0.15.3 has no in-memory transport, and the facts, dead letters and changelog records must
reach a broker).
Input records are the bytes the chat platform's producer sends
(:func:`monitor.live.records.input_record`), on the partition Kafka's default partitioner
picks for their key, wrapped in Faust messages and events by the app's own
``create_event``, as Faust's topic channel does for every consumed record. Outputs are read
back from the topics with aiokafka, up to the end of every partition.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP, Message
from prometheus_client import CollectorRegistry

from monitor.engine import SubjectState
from monitor.errors import Reason
from monitor.live.app import SlaWorker, create_app
from monitor.live.broker import Broker
from monitor.live.direct_delivery import take_waiting
from monitor.live.records import input_record
from monitor.live.worker import build_engine
from monitor.metrics import SlaMetrics
from monitor.sla_event import Kind
from monitor.timeutil import MICROS_PER_SECOND, parse_rfc3339
from tests.live.harness import LiveSetup, TopicReader, ev, session_id

pytestmark = pytest.mark.broker

# Event times: a Thursday morning in Beijing, in the past (the worker judges on event time).
START = "2026-10-08T10:00:00.000+08:00"
REPLY = "2026-10-08T10:00:01.500+08:00"  # inside the test policy's 4 s first_response target


@pytest.fixture(scope="module")
def setup(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> LiveSetup:
    """One topic set per broker; each test has its own app (its own table) and sessions."""
    live = LiveSetup(broker, Path(tmp_path_factory.mktemp("batch")))
    asyncio.run(live.create_topics())
    return live


@dataclass
class Driven:
    """A worker app with only its producer started, and a way to make its input events."""

    setup: LiveSetup
    worker: SlaWorker
    registry: CollectorRegistry
    offsets: Counter[TP]

    def event(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> Any:
        """A Faust event for a record the consumer would deliver: on ``partition``, else the
        one Kafka's default partitioner picks for ``key``; the partition's next offset."""
        if partition is None:
            partition = self.partition(key)
        tp = TP(topic, partition)
        offset = self.offsets[tp]
        self.offsets[tp] += 1
        message = Message(topic, partition, offset, time.time(), 0, [], key, value, None, tp=tp)
        return self.worker.app.create_event(key, value, [], message)

    def partition(self, key: bytes) -> int:
        n = self.setup.partitions
        partition: int = DefaultPartitioner()(key, list(range(n)), list(range(n)))
        return partition

    def events(self, inputs: Iterable[dict[str, Any]]) -> list[Any]:
        """Faust events for input events (dicts), as the chat platform's producer sends them."""
        return [self.event(*input_record(self.setup.settings, e)) for e in inputs]

    def records(self) -> dict[bytes, bytes]:
        """Every record of the table, by key."""
        everything = set(range(self.setup.partitions))
        return {key: value for key, value, _ in self.worker.table.items(everything)}


@pytest.fixture
async def driven(setup: LiveSetup, tmp_path: Path) -> AsyncIterator[Driven]:
    settings = setup.settings.replace(data_dir=str(tmp_path))
    assert settings.store == "memory://"
    registry = CollectorRegistry()
    app = create_app(
        settings, build_engine(settings), SlaMetrics(registry, topics=settings.input_topics)
    )
    worker: SlaWorker = app.sla_worker
    # The least machinery process_batch needs: the producer (facts, dead letters, changelog).
    # The table's store is created on first use (Collection.data); touch it so a missing one
    # fails here, not as a confusing error inside the batch.
    assert worker.table.table.data is not None
    await app.producer.start()
    try:
        yield Driven(setup, worker, registry, Counter())
    finally:
        await app.producer.stop()


class EndReader(TopicReader):
    """A :class:`TopicReader` that reads every partition up to its end: the fetch high
    watermark (exact on Tansu, where ListOffsets is not: :mod:`monitor.live.end_offsets`)."""

    async def read_to_end(self, timeout: float = 10.0) -> None:
        consumer = self._consumer
        assert consumer is not None
        deadline = time.monotonic() + timeout
        while True:
            await self.poll(0.2)
            ends = {tp: consumer.highwater(tp) for tp in consumer.assignment()}
            if all(end is not None for end in ends.values()):
                positions = {tp: await consumer.position(tp) for tp in ends}
                if all(positions[tp] >= end for tp, end in ends.items()):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"topics not read to their end in {timeout}s: {ends}")


async def read_topic(setup: LiveSetup, topic: str) -> list[Any]:
    """Every record of ``topic`` now (process_batch returns after the broker has its outputs)."""
    reader = EndReader(setup.settings, [topic])
    async with reader:
        await reader.read_to_end()
    return reader.records[topic]


def facts_of(records: list[Any], sid: str) -> list[dict[str, Any]]:
    facts = [orjson.loads(r.value) for r in records]
    return [f for f in facts if f["subject_id"] == sid]


def key(sid: str) -> bytes:
    return f"c:{sid}".encode()


def started(sid: str) -> dict[str, Any]:
    return ev(sid, "session.started", START, channel="web")


def reply(sid: str) -> dict[str, Any]:
    return ev(sid, "message.sent", REPLY, sender="agent")


async def test_one_record_per_subject_and_the_met_fact(driven: Driven) -> None:
    a, b = session_id("batch-a"), session_id("batch-b")
    events = driven.events([started(a), reply(a), started(b)])

    batch = await driven.worker.process_batch(events)

    assert batch.dead_letters == []
    # Each changed subject written once, with its last state: a's reply did not add a write.
    assert sorted(k for k, _, _ in batch.writes) == sorted([key(a), key(b)])
    records = driven.records()
    assert set(records) == {key(a), key(b)}
    writes = {k: value for k, value, _ in batch.writes}
    assert writes == records
    state_a = SubjectState.from_bytes(records[key(a)], key(a))
    state_b = SubjectState.from_bytes(records[key(b)], key(b))
    assert state_a.responded_at is not None
    assert state_b.responded_at is None
    assert driven.worker.table.get(key(a), events[0]) == records[key(a)]
    # Each written on the changelog partition of its subject's input partition.
    partitions = {key(a): events[0].message.partition, key(b): events[2].message.partition}
    assert {k: event.message.partition for k, _, event in batch.writes} == partitions
    assert driven.worker.overlay == {}  # stored: nothing left waiting

    s = driven.setup.settings
    outcomes = await read_topic(driven.setup, s.topic_outcomes)
    [met] = facts_of(outcomes, a)
    assert met["kind"] == Kind.MET
    assert met["metric"] == "first_response"
    assert facts_of(outcomes, b) == []  # b is open, nothing judged yet
    changelog = await read_topic(driven.setup, s.changelog_topic)
    assert Counter(r.key for r in changelog if r.key in (key(a), key(b))) == {key(a): 1, key(b): 1}


async def test_the_same_batch_again_stores_and_emits_nothing(driven: Driven) -> None:
    a, b = session_id("dup-a"), session_id("dup-b")
    inputs = [started(a), reply(a), started(b)]
    first = await driven.worker.process_batch(driven.events(inputs))
    assert len(first.writes) == 2
    assert len(first.facts) == 1
    before = driven.records()

    again = await driven.worker.process_batch(driven.events(inputs))  # same event ids

    assert again.dead_letters == []  # duplicates are dropped, not dead-lettered
    assert again.writes == []
    assert again.facts == []
    assert again.deliveries == []
    assert driven.records() == before
    s = driven.setup.settings
    assert len(facts_of(await read_topic(driven.setup, s.topic_outcomes), a)) == 1
    changelog = await read_topic(driven.setup, s.changelog_topic)
    assert Counter(r.key for r in changelog if r.key in (key(a), key(b))) == {key(a): 1, key(b): 1}


async def test_an_invalid_record_is_dead_lettered_and_the_rest_handled(driven: Driven) -> None:
    a, b, bad = session_id("dl-a"), session_id("dl-b"), session_id("dl-bad")
    s = driven.setup.settings
    garbage = b'{"event_id": "x", "type": "session.started", '  # cut short: not JSON
    invalid = driven.event(s.topic_chat, bad.encode(), garbage)
    events = [*driven.events([started(a)]), invalid, *driven.events([reply(a), started(b)])]

    batch = await driven.worker.process_batch(events)

    [(message, reason, code)] = batch.dead_letters
    assert message is invalid.message
    assert code is Reason.JSON
    assert set(driven.records()) == {key(a), key(b)}  # the records around it were handled
    assert [fact.kind for fact, _ in batch.facts] == [Kind.MET]

    [letter] = [
        r for r in await read_topic(driven.setup, s.topic_deadletter) if r.key == bad.encode()
    ]
    assert letter.value == garbage  # the bytes as they came, nothing lost
    headers = dict(letter.headers)
    assert headers["reason"].decode() == reason
    assert "JSON" in reason
    assert headers["code"] == b"json"
    assert headers["topic"] == s.topic_chat.encode()
    assert headers["partition"] == str(invalid.message.partition).encode()
    assert headers["offset"] == str(invalid.message.offset).encode()
    [met] = facts_of(await read_topic(driven.setup, s.topic_outcomes), a)
    assert met["kind"] == Kind.MET
    invalid_total = driven.registry.get_sample_value(
        "sla_input_invalid_total", {"topic": s.topic_chat, "reason": "json"}
    )
    assert invalid_total == 1.0


async def test_the_next_batch_reads_the_record_from_the_table(driven: Driven) -> None:
    a = session_id("next")
    first = await driven.worker.process_batch(driven.events([started(a)]))
    assert [k for k, _, _ in first.writes] == [key(a)]
    assert driven.worker.overlay == {}

    second = await driven.worker.process_batch(driven.events([reply(a)]))

    assert second.dead_letters == []  # not "no session.started was seen"
    assert [fact.kind for fact, _ in second.facts] == [Kind.MET]
    [(k, value, _)] = second.writes
    assert k == key(a)
    assert value == driven.records()[key(a)]
    state = SubjectState.from_bytes(value, k)
    assert state.responded_at is not None
    assert state.created_at < state.responded_at


async def test_the_next_batch_reads_an_unstored_record_from_the_overlay(driven: Driven) -> None:
    a = session_id("overlay")
    start_event, reply_event = driven.events([started(a), reply(a)])
    # The agent hands the next batch in while the first waits for the broker: handled, its
    # record in the overlay, nothing stored yet.
    first = await driven.worker.handle_batch([start_event])
    assert driven.worker.table.get(key(a), start_event) is None
    assert set(driven.worker.overlay) == {key(a)}

    second = await driven.worker.process_batch([reply_event])

    assert second.dead_letters == []
    assert [fact.kind for fact, _ in second.facts] == [Kind.MET]
    await asyncio.gather(*first.deliveries)
    assert driven.worker.overlay == {}  # the later batch's record replaced it, and was stored
    state = SubjectState.from_bytes(driven.records()[key(a)], key(a))
    assert state.responded_at is not None


async def test_records_fetched_before_a_rebalance_wait_for_the_ones_it_dropped(
    driven: Driven,
) -> None:
    """A batch made stale by a revocation is dropped unacknowledged (``_release``); records
    of the same partition fetched before the rebalance may still reach the agent after it.
    Handled first, a session's message would come before its (dropped) start: "no
    session.started was seen". They are held until the read from the committed offset
    comes back to the dropped ones."""
    worker, sid = driven.worker, session_id("held")
    started, message = driven.events(
        [ev(sid, "session.started", START), ev(sid, "message.sent", REPLY, sender="customer")]
    )
    tp = TP(started.message.topic, started.message.partition)
    other = TP(tp.topic, tp.partition + 1)
    await worker._on_assigned(None, [tp, other])

    worker._release([started])  # a revocation made its batch stale
    assert worker.held == {tp: started.message.offset}
    assert worker._holds(message)  # fetched before the rebalance: not handled yet
    assert started.message.acked  # Faust does not wait for them
    assert message.message.acked
    assert worker.held == {tp: started.message.offset}
    assert not worker._holds(started)  # the read from the committed offset is back
    assert worker.held == {}
    assert not worker._holds(message)  # and the partition flows again

    worker._release([started])  # dropped again; meanwhile another owner committed past it
    worker.app.consumer._committed_offset[tp] = message.message.offset
    assert not worker._holds(message)  # not held for good: its last owner moved it on
    assert worker.held == {}

    worker._release([message])
    await worker._on_assigned(None, [other])  # it moved away: its next owner commits anew
    assert worker.held == {}
    worker._release([message])  # dropped after it moved away: not held either
    assert worker.held == {}


async def test_a_first_record_past_the_committed_offset_is_read_again_from_it(
    driven: Driven,
) -> None:
    """After a rebalance the first record of a partition must be the committed one. One
    further on means the records between may have been lost on the way to the agent (fix 8
    in monitor.live.faust_fixes; even one: a transaction marker may sit at the committed
    offset, or a lost record): it is dropped, the partition sought back and held until the
    re-read, from the committed offset (or, one past, the record after a marker)."""
    worker, sid = driven.worker, session_id("ahead")
    (probe,) = driven.events([ev(sid, "session.started", START)])
    tp = TP(probe.message.topic, probe.message.partition)
    await worker._on_assigned(None, [tp])
    committed = worker.app.consumer._committed_offset
    driven.offsets[tp] = 40
    ahead, next_one = driven.events(
        [ev(sid, "message.sent", REPLY, sender="customer"), ev(sid, "session.closed", REPLY)]
    )

    worker.resuming = {tp}
    committed[tp] = 40
    assert not worker._skipped_ahead(ahead)  # at the committed offset: in order
    assert worker.resuming == set()  # only the first record is checked
    # One past: 39 may hold a transaction marker, or a record lost like the others (seen: a
    # ticket.created, when one offset past was let through).
    worker.resuming = {tp}
    committed[tp] = 39
    assert worker._skipped_ahead(ahead)
    assert worker.held == {tp: 40}  # held at its own offset: a marker may sit at 39
    assert worker._seeking is not None
    await worker._seeking  # the consumer is not started here: the seek fails, logged
    assert worker._holds(next_one)  # fetched before the seek: waits for the re-read
    (after_marker,) = driven.events([ev(sid, "message.sent", REPLY, sender="customer")])
    after_marker.message.offset = 40  # the re-read, 39 being a marker, begins at 40
    assert not worker._holds(after_marker)
    assert worker.held == {}

    worker.resuming = {tp}
    committed[tp] = 12
    assert worker._skipped_ahead(ahead)  # 12..39 never reached the agent
    assert worker.held == {tp: 12}  # the re-read must begin there
    assert ahead.message.acked  # dropped unacknowledged: Faust does not wait for it
    assert worker._seeking is not None
    await worker._seeking  # the consumer is not started here: the seek fails, logged
    assert worker._holds(next_one)  # later records wait for the re-read
    assert worker._rejoining is None
    worker.held_since[tp] -= 31.0  # ... for over _HOLD_LIMIT: the re-read is not coming
    assert worker._holds(next_one)
    assert worker._rejoining is not None  # the group rebalances, and its seek reads it
    await worker._rejoining  # no group here: the request fails, logged
    assert worker._holds(next_one)
    (reread,) = driven.events([ev(sid, "session.started", START)])
    reread.message.offset = 12
    assert not worker._holds(reread)  # the re-read is back at the committed offset
    assert worker.held == {}
    assert worker.held_since == {}


async def test_a_timer_partition_it_dropped_records_of_is_read_again(driven: Driven) -> None:
    """Timer firings are records of ``sla.timeouts``: one lost on the way to the agent is a
    key that never fires again (it is scheduled anew only once its firing is handled). Seen
    in a clean-clone CI run on Kafka (``test_cut_longer_than_session_timeout[kafka-drop]``):
    two firings the agent had gathered when the group evicted it were released, were not
    handled after the rebalance, and every later firing of that partition was held behind
    them for good (no breach for two sessions). Now such a partition's first record after
    the rebalance is checked like an input partition's, against the first record it dropped
    when nothing is committed; and a hold is checked on every tick, not only when a later
    record comes (none may: each key's next firing waits for the one dropped)."""
    worker, settings = driven.worker, driven.setup.settings
    tp = TP(settings.topic_timeouts, 0)
    chat = TP(settings.topic_chat, 0)
    assert worker._timer_partitions([tp, chat, TP(settings.topic_timeouts, 3)]) == {
        tp,
        TP(settings.topic_timeouts, 3),
    }
    await worker._on_assigned(None, [tp, chat])
    driven.offsets[tp] = 2
    gathered = [driven.event(tp.topic, b"c:x", b"1", partition=0) for _ in range(2)]
    worker._release(gathered)  # the revocation's first step
    assert worker.held == {tp: 2}
    assert worker.app.consumer._committed_offset.get(tp) is None  # nothing committed yet

    worker.resuming = {tp}  # as _on_rebalance_complete sets it for a held timer partition
    (later,) = [driven.event(tp.topic, b"c:y", b"2", partition=0)]
    assert worker._skipped_ahead(later)  # offsets 2 and 3 were not read again
    assert worker.held == {tp: 2}
    assert later.message.acked  # dropped unacknowledged: Faust does not wait for it
    assert worker._seeking is not None
    await worker._seeking  # the consumer is not started here: the seek fails, logged

    # A hold no later record comes for: the tick asks for the rebalance that reads it again.
    worker.ready = True
    await worker._tick()
    assert worker._rejoining is None  # not yet: the re-read comes one fetch after the seek
    worker.held_since[tp] -= 31.0
    await worker._tick()
    assert worker._rejoining is not None
    await worker._rejoining  # no group here: the request fails, logged
    assert worker.held == {tp: 2}  # held until the re-read comes back to offset 2
    assert not worker._holds(gathered[0])
    assert worker.held == {}


async def test_a_revocation_does_not_wait_for_the_records_the_agent_gathered(
    driven: Driven,
) -> None:
    """Faust's revocation waits until every record the agent took is acknowledged before it
    tells the worker (``Consumer.wait_empty``, then ``on_partitions_revoked``). Records the
    agent gathered for its next batch would never be: the stream is suspended, so the agent
    waits for a next record that does not come (seen: a worker stuck so until the group
    evicted it). The revocation's first step (fix 9 in monitor.live.faust_fixes) releases
    them; batches already handled are left to finish (their outputs may be out)."""
    worker, sid = driven.worker, session_id("revoked")
    gathered = driven.events(
        [ev(sid, "session.started", START), ev(sid, "message.sent", REPLY, sender="customer")]
    )
    tp = TP(gathered[0].message.topic, gathered[0].message.partition)
    await worker._on_assigned(None, [tp])
    worker.ready = True
    consumer = worker.app.consumer
    for event in gathered:  # as Faust's stream does when it hands a record to the agent
        consumer._unacked_messages.add(event.message)
    worker._gathered.extend(gathered)
    epoch = worker.epoch

    worker.app.tables.on_partitions_revoked({tp})  # what Faust calls first in a revocation
    waiting = asyncio.ensure_future(consumer.wait_empty())  # the wait it then makes
    done, _ = await asyncio.wait({waiting}, timeout=10)
    if not done:  # (the wait ignores cancellation: end it, then fail)
        consumer._unacked_messages.clear()
        await waiting
    assert done, "the revocation still waits for the records the agent gathered"

    assert worker._gathered == []
    assert not worker.ready  # nothing more is handled until the rebalance completes
    assert worker.held == {tp: gathered[0].message.offset}  # read again from there
    assert worker.epoch == epoch  # batches in flight are not stale: they finish
    # The order the fix relies on: the tables' hook comes before the wait, in Faust's code.
    source = inspect.getsource(type(worker.app)._on_partitions_revoked)
    assert source.index("tables.on_partitions_revoked") < source.index("_consumer_wait_empty")


async def test_a_fetched_record_is_handed_over_in_the_fetchers_own_task(driven: Driven) -> None:
    """Faust's fetcher hands each record over through ``wait_first``: four tasks per record, so
    that a rebalance can cut short a hand-over that blocks (13 % of the worker's CPU on a
    backlog, py-spy). When nothing can block, the worker's app hands it over directly
    (:mod:`monitor.live.direct_delivery`); when something can (here: the rebalance suspended
    the flow), Faust's ``wait_first`` still lets the suspension end the hand-over."""
    app, sid = driven.worker.app, session_id("handover")
    conductor, consumer = app.topics, app.consumer
    channel = driven.worker.inputs.clone(is_iterator=True)  # what the agent's stream iterates
    conductor.add(channel)
    first, second = driven.events([started(sid), reply(sid)])
    await conductor.on_partitions_assigned({first.message.tp})
    handed: list[asyncio.Task[Any] | None] = []
    put = channel.queue.put_nowait_enhanced

    def put_nowait_enhanced(value: Any, **kwargs: Any) -> Any:  # Faust's Cython handler's call
        handed.append(asyncio.current_task())
        return put(value, **kwargs)

    channel.queue.put_nowait_enhanced = put_nowait_enhanced
    app.flow_control.resume()
    consumer.resume_flow()

    await consumer.wait_first(consumer.callback(first.message), consumer.suspend_flow.wait())
    assert handed == [asyncio.current_task()], "handed over in a task of its own"
    assert channel.queue.get_nowait().message is first.message

    app.flow_control.suspend()  # what a revocation does first (App._on_partitions_revoked)
    consumer.stop_flow()
    handing = consumer.wait_first(consumer.callback(second.message), consumer.suspend_flow.wait())
    await asyncio.wait_for(handing, timeout=5)  # awaited directly, it would never end
    assert len(handed) == 1  # the suspension won: nothing handed
    assert channel.queue.empty()


async def test_the_records_waiting_in_the_stream_are_taken_as_the_stream_would_yield_them(
    driven: Driven,
) -> None:
    """The agent takes the records already waiting behind the one Faust's stream yielded in one
    go, not one per loop turn (:func:`monitor.live.direct_delivery.take_waiting`). Each is
    tracked as unacknowledged as the stream does (Faust's revocation waits for it, its commit
    stops below it); a record of an older consumer generation, which the stream skips, and
    everything after it are left to the stream."""
    app, sid = driven.worker.app, session_id("waiting")
    stream = app.stream(driven.worker.inputs.clone(is_iterator=True))
    app.topics.add(stream.channel)
    await app.topics._update_indices()  # what subscribing does: its topics are acked
    queue = stream.channel.queue
    events = driven.events([started(sid), reply(sid), reply(sid), reply(sid)])
    for event in events:
        event.message.generation_id = app.consumer_generation_id
        event.message.tracked = False  # as the consumer's messages start (ConsumerMessage)
        queue.put_nowait(event)
    events[3].message.generation_id = app.consumer_generation_id - 1  # fetched before a rebalance
    unacked = app.consumer.unacked

    assert take_waiting(stream, 10) == []  # the flow is suspended until a rebalance completes
    app.flow_control.resume()
    queue.put_nowait(events[0])  # (resuming clears the queues Faust manages)
    for event in events[1:]:
        queue.put_nowait(event)

    assert take_waiting(stream, 1) == events[:1]
    assert take_waiting(stream, 10) == events[1:3]
    assert all(e.message.tracked and e.message in unacked for e in events[:3])
    assert queue.qsize() == 1  # the stream's to skip
    assert events[3].message not in unacked


async def test_a_timer_firing_decides_nothing_past_the_workers_own_clock(driven: Driven) -> None:
    """A timer firing carries the instant the sender's clock had reached. One sent before a
    crash is read again after it, while the input that moved that clock is still to be read
    again: applied at its instant to the stored (older) record, it fired a breach that the
    re-read answer then retracted (tests/live/test_recovery.py). The worker applies a firing
    only up to its own clock of the subject's partition."""
    worker, s = driven.worker, driven.setup.settings
    sid = session_id("clamped")
    [opening] = driven.events([started(sid)])
    partition = opening.message.partition
    await worker.process_batch([opening])
    an_hour_later = parse_rfc3339(START) + 3600 * MICROS_PER_SECOND

    def firing() -> Any:  # as the tick sends it: to the subject's partition of sla.timeouts
        return driven.event(s.topic_timeouts, key(sid), str(an_hour_later).encode(), partition)

    batch = await worker.process_batch([firing()])
    assert [f.kind for f, _ in batch.facts] == []  # this worker's clock is still at the start

    # Another session on the same partition, a minute later, moves the clock past the 4 s
    # deadline (not to the firing's instant): the same firing now decides the breach.
    other = next(
        o
        for o in (session_id(f"clock-{i}") for i in range(1000))
        if driven.partition(o.encode()) == partition
    )
    minute = "2026-10-08T10:01:00.000+08:00"
    [moved] = driven.events([ev(other, "session.started", minute, channel="web")])
    batch = await worker.process_batch([moved, firing()])
    decided = {f.kind: f for f, _ in batch.facts if f.subject_id == sid}
    assert set(decided) == {Kind.WARNING, Kind.BREACH}
    assert decided[Kind.BREACH].detected_at < an_hour_later  # at the clock, not the firing
