"""Rebalances under load (issue 10): a third worker joins and leaves while traffic flows, and a
zombie — a worker frozen (SIGSTOP) past the session timeout while the other takes over its
partitions, then thawed (SIGCONT). What the workers published equals replay's.

The input is :class:`tests.live.load.PacedDay` (a generated day ahead of the wall clock, paced by
a background producer; see that module for why), and the oracle :func:`tests.live.load.audit`:
final kind per ``sla_id`` and the set of ``fact_id`` equal replay's, no missing or extra id,
repeats only of the same fact. Throughout, :class:`OffsetWatch` reads the group's committed
offsets (every 0.2 s, through the admin API) and records any that moves backwards: a zombie
that commits over the new owner's work would do that (and lose nothing only by luck).

The zombie, thawed, still believes it owns its partitions: it may hand the records it had
fetched to its agent and publish their facts again (at-least-once: repeats of the same fact,
counted and printed), and its next commit or heartbeat meets a group that has moved on
(``ILLEGAL_GENERATION`` / ``UNKNOWN_MEMBER_ID`` on Kafka), so it re-joins. The test records
which of those its log shows.

Short versions only (each ~45 s of traffic per broker); ``SLA_FAULTS_LONG=1`` paces the same
day four times slower (~3 minutes) and keeps the zombie frozen for 30 s instead of the
session timeout plus 3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from monitor.live.broker import Broker
from monitor.live.config import Settings
from tests.live.harness import LiveSetup, TopicReader, WorkerProcess, chat, iso, opened, produce
from tests.live.load import Audit, PacedDay, Pacer, fact_topics, holes, wait_for_oracle

pytestmark = pytest.mark.broker

LONG = os.environ.get("SLA_FAULTS_LONG") == "1"
RATE = 25.0 if LONG else 100.0
REBUILT = "deadline index rebuilt"


class OffsetWatch:
    """Samples the consumer group's committed offsets and keeps every backward move."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last: dict[TopicPartition, int] = {}
        self.backwards: list[tuple[TopicPartition, int, int]] = []
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        # A consumer of the group that never subscribes (so never joins it): `committed()` is
        # an OffsetFetch, which both brokers serve (Tansu's admin API does not list offsets).
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers, group_id=s.app_id, enable_auto_commit=False,
            **s.aiokafka_security(),
        )  # fmt: skip
        await consumer.start()
        tps = [TopicPartition(t, p) for t in s.input_topics for p in range(s.partitions)]
        try:
            while True:
                for tp in tps:
                    with contextlib.suppress(Exception):  # a coordinator moving: next round
                        offset = await consumer.committed(tp)
                        before = self.last.get(tp)
                        if offset is None:
                            continue
                        if before is not None and offset < before:
                            self.backwards.append((tp, before, offset))
                        self.last[tp] = offset
                self.samples += 1
                await asyncio.sleep(0.2)
        finally:
            await consumer.stop()

    def __enter__(self) -> OffsetWatch:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def split(workers: list[WorkerProcess], partitions: int) -> bool:
    """Every worker's last rebalance gave it partitions, disjoint, covering them all."""
    sets = [set(w.assigned()) for w in workers]
    together: set[int] = set().union(*sets)
    return (
        all(sets)
        and sum(len(x) for x in sets) == len(together)
        and together == set(range(partitions))
    )


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


async def started(broker: Broker, tmp_path: Path, labels: str) -> tuple[
    LiveSetup, PacedDay, dict[str, WorkerProcess]
]:  # fmt: skip
    setup = LiveSetup(broker, tmp_path, policies=None, partitions=4)
    await setup.create_topics()
    day = PacedDay(setup, seed=7)
    return setup, day, {label: setup.worker(label) for label in labels}


def report(broker: Broker, what: str, result: Audit, watch: OffsetWatch, began: float) -> None:
    print(
        f"\n{type(broker).__name__} {what}: {result.facts} facts, repeats {dict(result.repeats)} "
        f"({result.redetected} redetected); {watch.samples} offset samples, "
        f"{len(watch.backwards)} backwards; {time.monotonic() - began:.0f} s"
    )


async def test_a_third_worker_joins_and_leaves_under_load(broker: Broker, tmp_path: Path) -> None:
    began = time.monotonic()
    setup, day, w = await started(broker, tmp_path, "abc")
    s = setup.settings
    pacer = Pacer(day, rate=RATE)
    try:
        w["a"].start()
        w["b"].start()
        for label in "ab":
            await w[label].wait_ready(timeout=90)
        with OffsetWatch(s) as watch:
            async with TopicReader(s, fact_topics(setup)) as reader:
                pacer.start()
                await reader.wait_for(
                    lambda r: sum(len(v) for v in r.records.values()) >= 50, 90, "the first facts"
                )
                w["c"].start()  # joins: the partitions are split three ways
                await until(lambda: split([w["a"], w["b"], w["c"]], s.partitions), 120, "3 ways")
                joined_under_load = pacer.running
                facts_then = sum(len(v) for v in reader.records.values())
                await reader.wait_for(
                    lambda r: sum(len(v) for v in r.records.values()) > facts_then + 20,
                    90, "facts after the third joined",
                )  # fmt: skip
                w["c"].stop()  # SIGTERM: leaves the group; its partitions go back to a and b
                left_under_load = pacer.running
                await until(lambda: split([w["a"], w["b"]], s.partitions), 120, "2 ways again")
                await pacer.finish(timeout=600)
                result = await wait_for_oracle(reader, day, timeout=120)
        report(broker, "join+leave", result, watch, began)
        assert result.ok, str(result)
        assert not holes(*(x.log_path.read_text(errors="replace") for x in w.values()))
        assert not watch.backwards, watch.backwards
        assert len(watch.last) == 2 * s.partitions, watch.last  # every input partition seen
        assert joined_under_load, "the day had all been sent before the third worker joined"
        assert left_under_load, "the day had all been sent before the third worker left"
        assert w["c"].proc is not None
        assert w["c"].proc.returncode == 0, w["c"].log()[-3000:]
    finally:
        await pacer.cancel()
        for worker in w.values():
            worker.stop()


async def test_a_zombie_worker_thawed_after_the_session_timeout(
    broker: Broker, tmp_path: Path
) -> None:
    began = time.monotonic()
    setup, day, w = await started(broker, tmp_path, "ab")
    s = setup.settings
    frozen_for = 30.0 if LONG else s.session_timeout + 3.0
    pacer = Pacer(day, rate=RATE)
    live, zombie = w["a"], w["b"]
    try:
        for worker in w.values():
            worker.start()
        for worker in w.values():
            await worker.wait_ready(timeout=90)
        await until(lambda: split([live, zombie], s.partitions), 120, "a split")
        rebuilt = live.log().count(REBUILT)
        with OffsetWatch(s) as watch:
            async with TopicReader(s, fact_topics(setup)) as reader:
                pacer.start()
                await reader.wait_for(
                    lambda r: sum(len(v) for v in r.records.values()) >= 100, 90, "facts"
                )
                zombie.pause()  # SIGSTOP: no heartbeat, no commit, sockets left open
                frozen_at = time.monotonic()
                # The group evicts it after the session timeout; the other takes everything.
                await until(
                    lambda: live.log().count(REBUILT) > rebuilt
                    and sorted(live.assigned()) == list(range(s.partitions)),
                    120, "the live worker to take over every partition",
                )  # fmt: skip
                took_over_after = time.monotonic() - frozen_at
                await asyncio.sleep(max(0.0, frozen_for - took_over_after))
                thawed_under_load = pacer.running
                zombie.resume()  # SIGCONT: it still believes it owns its old partitions
                await until(lambda: split([live, zombie], s.partitions), 120, "a split again")
                await pacer.finish(timeout=600)
                result = await wait_for_oracle(reader, day, timeout=120)
        report(broker, "zombie", result, watch, began)
        zlog = zombie.log()
        errors = sorted(set(re.findall(
            r"IllegalGeneration|ILLEGAL_GENERATION|UnknownMemberId|UNKNOWN_MEMBER_ID|"
            r"member_id was not recognized|"
            r"CommitFailedError|RebalanceInProgress|REBALANCE_IN_PROGRESS", zlog
        )))  # fmt: skip
        print(f"evicted after {took_over_after:.1f} s; the zombie's log on resume: {errors}")
        assert result.ok, str(result)
        assert not holes(*(x.log_path.read_text(errors="replace") for x in w.values()))
        assert not watch.backwards, watch.backwards
        assert len(watch.last) == 2 * s.partitions, watch.last  # every input partition seen
        assert thawed_under_load, "the day had all been sent before the zombie came back"
        assert zombie.alive, zlog[-3000:]  # it re-joined rather than crashed
        # Thawed, it fenced itself before storing or firing anything (monitor.live.fence).
        # Without the fence, Kafka 4.1.1 showed a warning and a breach replay never emits.
        assert "the event loop stood still" in zlog, zlog[-3000:]
    finally:
        await pacer.cancel()
        for worker in w.values():
            worker.stop()


def is_committed(watch: OffsetWatch, tp: TopicPartition, offset: int) -> bool:
    return watch.last.get(tp) == offset


async def test_the_offset_watch_sees_a_commit_going_back(broker: Broker, tmp_path: Path) -> None:
    """The watch the two tests above rely on: a group's commit moved backwards (what a zombie
    committing over the new owner's work does) is recorded."""
    setup = LiveSetup(broker, tmp_path, partitions=1)
    s = setup.settings
    await setup.create_topics()
    await produce(s, [chat(setup, e) for e in opened("S-watch", iso())] * 5)
    tp = TopicPartition(s.topic_chat, 0)
    committer = AIOKafkaConsumer(
        bootstrap_servers=s.bootstrap_servers, group_id=s.app_id, enable_auto_commit=False,
        **s.aiokafka_security(),
    )  # fmt: skip
    await committer.start()
    try:
        committer.assign([tp])
        with OffsetWatch(s) as watch:
            for offset in (8, 10, 4):  # forwards, forwards, then back over work done
                await committer.commit({tp: offset})
                await until(partial(is_committed, watch, tp, offset), 30, f"offset {offset}")
        assert watch.backwards == [(tp, 10, 4)]
    finally:
        await committer.stop()
