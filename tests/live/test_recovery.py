"""A generated day of traffic through live workers, checked against replay (the oracle).

* a worker killed with SIGKILL mid-stream and restarted loses no breach;
* two workers sharing the partitions produce, between them, replay's result;
* a worker joining mid-stream, and the first one then leaving, hand partitions over (twice)
  without losing or adding anything.

"The same result" is the set of ``sla_id`` with their final kinds
(:func:`monitor.replay.final_kinds`), read back from the output topics as a downstream consumer
would (:func:`tests.live.harness.final_kinds_from_topics`). The day lies in the past, so once a
worker has caught up its wall clock passes every deadline still open; replay gets the same
``until``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from monitor.engine import SlaEngine
from monitor.policy import load_policy_set
from monitor.replay import final_kinds, replay_events
from monitor.sla_event import Kind
from monitor.validation import event_from_dict
from tests.live.harness import (
    LiveSetup,
    TopicReader,
    WorkerProcess,
    generated_day,
    iso,
    live_kinds,
    opened,
    produce,
    record_for,
    session_id,
    store_and_stop,
)

pytestmark = pytest.mark.broker


def expected(events: list[dict[str, Any]]) -> dict[str, Kind]:
    engine = SlaEngine(load_policy_set(None))
    until = time.time_ns() // 1000
    return final_kinds(replay_events(engine, [event_from_dict(e) for e in events], until))


def diff(live: dict[str, Kind], oracle: dict[str, Kind], reader: TopicReader | None = None) -> str:
    wrong = {k: (live.get(k), v) for k, v in oracle.items() if live.get(k) != v}
    extra = {k: v for k, v in live.items() if k not in oracle}
    text = f"{len(wrong)} differ (live, replay): {list(wrong.items())[:5]}; {len(extra)} extra"
    if reader is not None:
        for sla_id in list(wrong)[:3]:
            for topic, records in reader.records.items():
                for r in records:
                    if sla_id.encode() in (r.value or b""):
                        text += f"\n  {topic}@{r.partition}:{r.offset} {r.value[:400]!r}"
    return text


def unique_facts(reader: TopicReader, setup: LiveSetup) -> int:
    s = setup.settings
    topics = (s.topic_warnings, s.topic_breaches, s.topic_outcomes)
    return len({f["fact_id"] for t in topics for f in reader.facts(t)})


async def wait_for_oracle(
    reader: TopicReader, setup: LiveSetup, oracle: dict[str, Kind], timeout: float
) -> dict[str, Kind]:
    deadline = time.monotonic() + timeout
    while True:
        await reader.poll()
        live = live_kinds(reader, setup)
        if live == oracle or time.monotonic() > deadline:
            return live


def pending_after_rebuild(worker: WorkerProcess) -> list[int]:
    return [int(n) for n in re.findall(r"deadline index rebuilt: (\d+) pending", worker.log())]


async def wait_for_split(a: WorkerProcess, b: WorkerProcess, partitions: int) -> None:
    """Waits until the two workers' last rebalances split every partition between them."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        x, y = set(a.assigned()), set(b.assigned())
        if x and y and x.isdisjoint(y) and x | y == set(range(partitions)):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"no split: {a.assigned()} / {b.assigned()}")


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_sigkill_and_restart_lose_no_breach(broker: Any, tmp_path: Path, store: str) -> None:
    setup = LiveSetup(broker, tmp_path, policies=None, store=store)
    s = setup.settings
    await setup.create_topics()
    # Four days' traffic in one: the worker drains a plain day in a second or two, about what
    # the reader takes to see a quarter of its facts, so the kill could come after the end.
    events = generated_day(seed=11, scale=4.0)
    oracle = expected(events)
    assert Counter(oracle.values())[Kind.BREACH] > 100  # the day has plenty to lose
    await produce(s, [record_for(setup, e) for e in events])

    worker = setup.worker()
    worker.start()
    try:
        facts = [s.topic_warnings, s.topic_breaches, s.topic_outcomes]
        async with TopicReader(s, [*facts, s.changelog_topic]) as reader:
            await worker.wait_ready()
            # A quarter of the facts, not the first ones, and records in the changelog: a
            # batch's records are stored only after its facts are out, and several batches of
            # up to `batch_max` records are in flight; killed at its first facts, the worker
            # had stored nothing yet (seen: an empty changelog, nothing for the restart to
            # resume; and on Tansu, with the changelog a record per produce request, "0
            # pending" after the restart at a quarter of the facts, clean-clone CI at 7e13f30).
            await reader.wait_for(
                lambda r: (
                    unique_facts(r, setup) >= len(oracle) // 4
                    and len(r.records[s.changelog_topic]) >= 200
                ),
                timeout=60,
                what="a quarter of the facts and 200 stored records",
            )
            worker.kill()  # SIGKILL: no flush, no commit, no goodbye
            await reader.poll()
            at_kill = live_kinds(reader, setup)
            assert at_kill != oracle, "the worker finished before it was killed"

            worker.start()  # same data directory (RocksDB), and the changelog
            await worker.wait_ready(timeout=60)
            live = await wait_for_oracle(reader, setup, oracle, timeout=90)
        assert live == oracle, diff(live, oracle, reader)
        # The restarted worker resumed open timers from its recovered table.
        assert pending_after_rebuild(worker)[-1] > 0
        # Neither run read its input with a hole (see monitor.live.faust_fixes).
        assert "never reached the worker" not in worker.log_path.read_text()
    finally:
        worker.stop()


async def test_two_workers_share_the_partitions(broker: Any, tmp_path: Path) -> None:
    setup = LiveSetup(broker, tmp_path, policies=None, store="memory://", partitions=4)
    s = setup.settings
    await setup.create_topics()
    events = generated_day(seed=23)
    oracle = expected(events)
    # The day is a backlog when the workers start (as after an outage): they join together
    # and work through it between them, on event time. (A day arriving at workers already
    # caught up on an idle topic would be judged by the wall clock: every open target breached
    # at once, then retracted by the day's own responses. Correct, but not replay's output.)
    await produce(s, [record_for(setup, e) for e in events])
    first, second = setup.worker("a"), setup.worker("b")
    first.start()
    second.start()
    try:
        await first.wait_ready()
        await second.wait_ready()
        await wait_for_split(first, second, s.partitions)
        async with TopicReader(s, [s.topic_warnings, s.topic_breaches, s.topic_outcomes]) as reader:
            live = await wait_for_oracle(reader, setup, oracle, timeout=90)
        assert live == oracle, diff(live, oracle, reader)
        for w in (first, second):
            assert "never reached the worker" not in w.log()
        a, b = set(first.assigned()), set(second.assigned())
        assert a, (a, b)
        assert b, (a, b)
        assert a.isdisjoint(b), (a, b)
        assert a | b == set(range(s.partitions)), (a, b)
    finally:
        second.stop()
        first.stop()


async def test_a_worker_joins_then_the_first_leaves_mid_stream(broker: Any, tmp_path: Path) -> None:
    setup = LiveSetup(broker, tmp_path, policies=None, store="rocksdb://", partitions=4)
    s = setup.settings
    await setup.create_topics()
    events = generated_day(seed=31)
    oracle = expected(events)
    await produce(s, [record_for(setup, e) for e in events])
    first, second = setup.worker("a"), setup.worker("b")
    first.start()
    try:
        async with TopicReader(s, [s.topic_warnings, s.topic_breaches, s.topic_outcomes]) as reader:
            await first.wait_ready()
            await reader.wait_for(
                lambda r: unique_facts(r, setup) >= 100, timeout=60, what="the first facts"
            )
            second.start()  # rebalance 1: the partitions are split, mid-stream
            await wait_for_split(first, second, s.partitions)
            await reader.poll()
            assert live_kinds(reader, setup) != oracle, "all done before the second joined"
            first.stop()  # rebalance 2: a graceful leave, the second takes everything
            await second.wait_ready(count=2, timeout=60)
            assert sorted(second.assigned()) == list(range(s.partitions))
            live = await wait_for_oracle(reader, setup, oracle, timeout=90)
        assert live == oracle, diff(live, oracle, reader)
        for w in (first, second):
            assert "never reached the worker" not in w.log_path.read_text()
    finally:
        second.stop()
        first.stop()


async def test_a_restart_recovers_every_stored_record(broker: Any, tmp_path: Path) -> None:
    """Open sessions stored, the worker stopped once they are committed, restarted on the memory
    store: its table, rebuilt from the changelog alone, holds every one of them (each with its
    timer). The changelog is written in multi-record batches, so a recovery that stops at
    ListOffsets' end on Tansu keeps only the first record of each partition's last batch
    (:mod:`monitor.live.end_offsets`); with nothing left to re-read, nothing puts them back."""
    setup = LiveSetup(broker, tmp_path, policies=None, store="memory://")
    s = setup.settings
    await setup.create_topics()
    # Six hours ahead of the wall clock: no deadline passes during the test.
    at = iso(6 * 3600)
    sessions = [session_id("rec") for _ in range(120)]
    await produce(s, [record_for(setup, e) for sid in sessions for e in opened(sid, at)])
    worker = setup.worker()
    worker.start()
    try:
        await store_and_stop(setup, worker, sessions)  # committed: nothing to re-read
        worker.start()
        await worker.wait_ready(timeout=60)
        assert pending_after_rebuild(worker)[-1] == len(sessions), worker.log()[-3000:]
    finally:
        worker.stop()
