"""The end of a partition written in multi-record batches (:mod:`monitor.live.end_offsets`), on
both brokers: exact with the broker's settings, and ListOffsets' own answer wrong on Tansu (the
reason ``end_offsets_by_fetch`` exists; if a Tansu release fixes it, this test says so and the
work-around can go). That table recovery reads to this end is checked by
``tests/live/test_recovery.py::test_a_restart_recovers_every_stored_record``: a worker stopped
once its input is committed, restarted on the memory store and rebuilt from its changelog, which
is written in multi-record batches on both brokers."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor.live.broker import Broker
from monitor.live.end_offsets import end_offsets, seek_to_end
from tests.live.harness import LiveSetup

pytestmark = pytest.mark.broker


async def test_end_offsets_of_multi_record_batches(broker: Broker, tmp_path: Path) -> None:
    setup = LiveSetup(broker, tmp_path, policies=None, partitions=2)
    s = setup.settings
    await setup.create_topics()
    tps = [TopicPartition(s.topic_breaches, p) for p in (0, 1)]
    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, linger_ms=100)
    consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        consumer.assign(tps)
        expected = {tps[0]: 0, tps[1]: 0}
        for counts in [(5, 3), (4, 0)]:  # two rounds: the end is the last batch's, not the first
            sent = [
                await producer.send(tp.topic, b"fact", partition=tp.partition)
                for tp, n in zip(tps, counts, strict=True)
                for _ in range(n)
            ]  # not awaited one by one: the lingering producer puts each partition's in one batch
            await producer.flush()
            offsets = [(await future).offset for future in sent]
            expected = {tp: expected[tp] + n for tp, n in zip(tps, counts, strict=True)}
            assert max(offsets) + 1 == max(expected.values())
            reported = await consumer.end_offsets(tps)
            ends = await end_offsets(consumer, tps, by_fetch=s.end_offsets_by_fetch)
            assert ends == expected, (reported, ends)
            if s.end_offsets_by_fetch:  # Tansu: the last batch's base offset + 1
                assert reported[tps[0]] < expected[tps[0]], reported
            else:
                assert reported == expected
            await seek_to_end(consumer, by_fetch=s.end_offsets_by_fetch)
            assert {tp: await consumer.position(tp) for tp in tps} == expected
    finally:
        await consumer.stop()
        await producer.stop()
