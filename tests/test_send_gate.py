"""The producer's side of the stall fence (monitor.live.send_gate) on a real aiokafka producer's
accumulator: records handed to it and not yet sent. The producer is not started, so nothing is
sent while the test looks (the zombie of tests/live/test_faults_rebalance.py is the live test)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from monitor.live.send_gate import WithdrawnWrite, install, withdraw


async def test_withdraw_fails_the_unsent_records_of_the_fenced_topics_only() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started
    accumulator = producer._message_accumulator
    changelog, facts = TopicPartition("subjects-changelog", 0), TopicPartition("sla.breaches", 1)
    stored = [await accumulator.add_message(changelog, b"k%d" % i, b"v", 5) for i in range(3)]
    fact = await accumulator.add_message(facts, b"k", b"breach", 5)

    assert withdraw(producer, {"subjects-changelog", "sla.timeouts"}) == 3

    for future in stored:
        with pytest.raises(WithdrawnWrite):
            await future
    assert not fact.done()  # a fact is left to go
    assert list(accumulator._batches) == [facts]
    assert withdraw(producer, {"subjects-changelog"}) == 0  # nothing left to withdraw


async def test_the_sender_checks_for_a_stall_before_every_drain() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    accumulator = producer._message_accumulator
    tp = TopicPartition("sla.timeouts", 0)
    pending = await accumulator.add_message(tp, b"c:s1", b"123", 5)
    seen: list[str] = []

    def thawed() -> None:  # what SlaWorker._check_stall does when the loop stood still
        seen.append("check")
        withdraw(producer, {"sla.timeouts"})

    install(producer, lambda: seen.append("stale check"))
    install(producer, thawed)  # installing again replaces the check
    drained, _ = accumulator.drain_by_nodes(ignore_nodes=set())
    assert seen == ["check"]
    assert drained == {}  # withdrawn before the drain could hand it to a request
    await asyncio.sleep(0)
    assert isinstance(pending.exception(), WithdrawnWrite)
