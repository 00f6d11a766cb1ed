"""Repeated crashes under load (issue 10): a generated day flows in at a steady rate while the
workers are SIGKILLed at random moments and restarted; what they published equals replay's.

Two workers share the partitions, ``a`` on RocksDB and ``b`` on the memory store (so both
stores are crashed and recovered in one run: ``b`` rebuilds everything from the changelog,
``a`` from its local files plus the changelog's tail). A seeded RNG (:data:`SEED`) orders the
kills and picks victims and moments; the schedule always holds

* **under load**: a worker killed while records flow, restarted after a random pause (its
  partitions move to the other worker meanwhile, then back);
* **during recovery**: a worker restarted and killed again as soon as its log shows the new
  assignment, before it has rebuilt its deadline index (checked from its log, per kill; retried
  when the kill came too late), on each store;
* **during a rebalance**: one worker killed and restarted, and the *other* killed as soon as
  the group rebalances for the comer (its log shows it re-joining), before that rebalance
  completes.

The input is :class:`tests.live.load.PacedDay` (a day ahead of the wall clock, so every
partition runs on event time exactly like replay; its module doc says why), paced by a
background producer. The oracle (:func:`tests.live.load.audit`): final kind per ``sla_id`` and
the set of ``fact_id`` equal replay's, no missing and no extra id, and a repeated ``fact_id``
(at-least-once) carries an identical payload. Repeats are counted and printed, with the kills
per store and the phases they hit.

Every kill lands while records flow in: the pacer has two generated days to send and stops (then
sends the end markers) once the schedule is done; replay gets exactly what was sent.

Short version (CI, both brokers): at least 6 kills at 70 records/s (~40-60 s of traffic).
``SLA_FAULTS_LONG=1``: at least 20 kills at 20 records/s (~3.5 minutes).
``SLA_FAULTS_SEED=N`` picks another schedule.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitor.live.broker import Broker
from tests.live.harness import LiveSetup, TopicReader, WorkerProcess
from tests.live.load import PacedDay, Pacer, fact_topics, holes, wait_for_oracle

pytestmark = pytest.mark.broker

LONG = os.environ.get("SLA_FAULTS_LONG") == "1"
SEED = int(os.environ.get("SLA_FAULTS_SEED", "20261201"))
KILLS = 20 if LONG else 6
RATE = 20.0 if LONG else 70.0  # records per second
STORES = {"a": "rocksdb://", "b": "memory://"}

ASSIGNED = "Executing _on_partitions_assigned"
REBUILT = "deadline index rebuilt"
REJOINING = "(Re-)joining group"


@dataclass
class Kill:
    kind: str  # the scheduled kind: load, recovery, rebalance
    victim: str
    phase: str  # what the victim's log says it was doing when killed
    under_load: bool  # the producer was still sending


def phase_of(worker: WorkerProcess) -> str:
    """What the worker was doing, from its log since its last start."""
    log = worker.log()
    if ASSIGNED not in log:
        return "starting"  # not yet assigned anything
    after = log.rsplit(ASSIGNED, 1)[1]
    if REBUILT not in after:
        return "recovering"  # assigned, table recovery or index rebuild not finished
    if REJOINING in after.rsplit(REBUILT, 1)[1]:
        return "rebalancing"
    return "running"


async def until_log(worker: WorkerProcess, needle: str, count: int, timeout: float) -> bool:
    """Polls the worker's log (every 10 ms) until ``needle`` occurs ``count`` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.log().count(needle) >= count:
            return True
        if not worker.alive:
            return False
        await asyncio.sleep(0.01)
    return False


class Chaos:
    """Runs the kill schedule against the workers, recording each kill."""

    def __init__(self, workers: dict[str, WorkerProcess], pacer: Pacer, rng: random.Random):
        self.workers = workers
        self.pacer = pacer
        self.rng = rng
        self.kills: list[Kill] = []

    def kill(self, kind: str, label: str) -> None:
        worker = self.workers[label]
        phase = phase_of(worker)
        worker.kill()
        self.kills.append(Kill(kind, label, phase, self.pacer.running))

    async def under_load(self, label: str) -> None:
        self.kill("load", label)
        await asyncio.sleep(self.rng.uniform(0.2, 3.0))
        self.workers[label].start()

    async def during_recovery(self, label: str) -> None:
        worker = self.workers[label]
        for _ in range(5):  # until one kill lands inside recovery (the window can be short)
            worker.kill()
            worker.start()
            await until_log(worker, ASSIGNED, 1, timeout=90)
            self.kill("recovery", label)
            if self.kills[-1].phase == "recovering":
                break
        worker.start()

    async def during_rebalance(self, label: str) -> None:
        other_label = "b" if label == "a" else "a"
        other = self.workers[other_label]
        self.kill("load", label)
        rejoins = other.log().count(REJOINING)
        self.workers[label].start()
        # The group rebalances for the comer (on Kafka, maybe first for the one that left):
        # the other worker re-joins; kill it before that rebalance completes.
        await until_log(other, REJOINING, rejoins + 1, timeout=90)
        self.kill("rebalance", other_label)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        other.start()

    async def run(self, kills: int) -> None:
        """At least ``kills`` kills: one during recovery on each store and one during a
        rebalance (two kills), in random order, then the rest drawn at random; each after a
        random pause."""
        must: list[tuple[str, str | None]] = [("recovery", "a"), ("recovery", "b")]
        must.append(("rebalance", None))
        self.rng.shuffle(must)  # first, while the day is still flowing in
        kinds = ["load", "load", "recovery", "rebalance"]
        plan = must + [(self.rng.choice(kinds), None) for _ in range(max(0, kills - 4))]
        while plan or len(self.kills) < kills:
            kind, label = plan.pop(0) if plan else ("load", None)
            await asyncio.sleep(self.rng.uniform(0.5, 2.5))
            label = label or self.rng.choice(sorted(self.workers))
            if kind == "load":
                await self.under_load(label)
            elif kind == "recovery":
                await self.during_recovery(label)
            else:
                await self.during_rebalance(label)

    def summary(self) -> dict[str, Any]:
        return {
            "per store": dict(Counter(STORES[k.victim] for k in self.kills)),
            "phases": dict(Counter(k.phase for k in self.kills)),
            "under load": sum(k.under_load for k in self.kills),
        }


async def test_repeated_sigkills_under_load_equal_replay(broker: Broker, tmp_path: Path) -> None:
    began = time.monotonic()
    setup = LiveSetup(broker, tmp_path, policies=None, partitions=4)
    s = setup.settings
    await setup.create_topics()
    # Two days of traffic: more than the kills need; the pacer stops once they are done.
    day = PacedDay(setup, seed=SEED % 1000, hours=48.0)
    workers: dict[str, WorkerProcess] = {}
    for label, store in STORES.items():
        env = setup.env(tmp_path / f"{setup.name}-{label}-data")
        env["SLA_STORE"] = store
        workers[label] = WorkerProcess(env, tmp_path / f"{setup.name}-{label}.log")
    pacer = Pacer(day, rate=RATE)
    chaos = Chaos(workers, pacer, random.Random(SEED))
    try:
        for worker in workers.values():
            worker.start()
        for worker in workers.values():
            await worker.wait_ready(timeout=90)
        async with TopicReader(s, fact_topics(setup)) as reader:
            pacer.start()
            await reader.wait_for(
                lambda r: sum(len(v) for v in r.records.values()) >= 50, 90, "the first facts"
            )
            await chaos.run(KILLS)
            pacer.stop()
            await pacer.finish(timeout=600)
            result = await wait_for_oracle(reader, day, timeout=120)
        took = time.monotonic() - began
        report = chaos.summary()
        print(
            f"\n{type(broker).__name__}: day from {day.start.isoformat()} (SLA_LOAD_START), "
            f"{len(chaos.kills)} kills {report}; "
            f"{result.facts} facts, repeats {dict(result.repeats)} "
            f"({result.redetected} redetected); "
            f"{took:.0f} s"
        )
        logs = [w.log_path.read_text(errors="replace") for w in workers.values()]
        assert result.ok, f"{result}\nkills: {chaos.kills}"
        assert not holes(*logs)
        # The schedule did what it says: enough kills, of each kind, while the day flowed in.
        assert len(chaos.kills) >= 5
        recovering = {STORES[k.victim] for k in chaos.kills if k.phase == "recovering"}
        assert recovering == set(STORES.values()), chaos.kills  # each store, during recovery
        assert any(k.kind == "rebalance" for k in chaos.kills), chaos.kills
        assert report["under load"] == len(chaos.kills), chaos.kills
        assert pacer.sent >= 1000, pacer.sent  # a real stream, not a handful of records
        assert set(report["per store"]) == set(STORES.values()), chaos.kills
    finally:
        await pacer.cancel()
        for worker in workers.values():
            worker.stop()
