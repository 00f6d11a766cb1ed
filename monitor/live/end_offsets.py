"""The end of a partition (its last offset + 1), exact on every broker.

Who calls what: :func:`install` is applied by :class:`monitor.live.app.SlaWorker` to its Faust
app, so that table recovery reads each changelog partition to its true end; the monthly
report's Kafka source (:mod:`monitor.accounting.kafka_source`) and the bench's readers call
:func:`end_offsets` instead of ``AIOKafkaConsumer.end_offsets``. Both do what aiokafka does
(ListOffsets) unless the ``end_offsets_by_fetch`` setting is on, as it is on Tansu.

Why: Tansu 0.6.0 answers ListOffsets ("latest") with the *base* offset of the partition's last
record batch + 1, not its last offset + 1: a batch of five records at offsets 5-9 reports 6
(:mod:`monitor.live.broker`). Faust's table recovery reads a changelog partition up to that
answer, so a restarted worker lost the last records of every partition. The work-around used
to be one record per produce batch on Tansu, which made its answer right but cost every
record a batch of its own: aiokafka's sender took 25 % of the worker's CPU there against 7 % on
Kafka, and the worker ran at 0.29 of a bare Faust agent against 0.71-0.94 (BENCHMARKS.md). The
fetch response's high watermark is right on Tansu, so here the end is read from it: one Fetch
per broker for the partitions ListOffsets named, each at its reported end - 1 (an offset in
the last batch, so it exists), asking for at most one byte. That costs a round trip per broker
at recovery and when a reader starts, never one per record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import for_code
from aiokafka.protocol.fetch import FetchRequest

from monitor.errors import ConfigError


async def end_offsets(
    consumer: Any, partitions: Iterable[TopicPartition], *, by_fetch: bool
) -> dict[TopicPartition, int]:
    """The end offset of each partition of a started ``AIOKafkaConsumer``: ListOffsets' answer,
    corrected by the fetch high watermark when ``by_fetch`` (the ``end_offsets_by_fetch``
    setting)."""
    reported: Mapping[TopicPartition, int] = await consumer.end_offsets(list(partitions))
    if not by_fetch:
        return dict(reported)
    return await fetched_ends(consumer._client, reported)


async def fetched_ends(
    client: Any, reported: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """``reported`` (ListOffsets' ends), each replaced by its partition's fetch high watermark.

    Raises :class:`ConfigError` when a broker answers with an error for a partition (the
    partition moved, or the topic is gone) or not at all: an end that cannot be trusted is not
    guessed."""
    ends = dict(reported)
    left = {tp for tp, end in reported.items() if end > 0}  # 0: empty, nothing to correct
    wait_ms = _FIRST_WAIT_MS
    while left:
        if wait_ms > _LAST_WAIT_MS:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(left))
            raise ConfigError(
                f"no broker told the end of {names}; retry once the cluster is stable"
            )
        by_leader: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for tp in left:
            leader = client.cluster.leader_for_partition(tp)
            by_leader[leader][tp.topic].append((tp.partition, reported[tp] - 1, 1))
        for leader, topics in by_leader.items():
            # At most one byte, no minimum: only the high watermark of the answer is read.
            request = FetchRequest(wait_ms, 0, 1, 0, list(topics.items()))
            response = await client.send(leader, request)
            for topic, answers in response.topics:
                for partition, error_code, highwater, *_ in answers:
                    tp = TopicPartition(topic, partition)
                    if error_code != 0:
                        raise ConfigError(
                            f"cannot read the end of {topic}[{partition}] from broker "
                            f"{leader}: {for_code(error_code).__name__}; retry once the "
                            "cluster is stable"
                        )
                    ends[tp] = max(ends[tp], highwater)
                    left.discard(tp)
        wait_ms *= 4
    return ends


async def seek_to_end(consumer: Any, *, by_fetch: bool) -> None:
    """``AIOKafkaConsumer.seek_to_end`` for every assigned partition, to :func:`end_offsets`: a
    reader that wants only what comes next (on Tansu, ListOffsets' end re-read the last batch
    but one record of each partition, facts that came before)."""
    for tp, end in (await end_offsets(consumer, consumer.assignment(), by_fetch=by_fetch)).items():
        consumer.seek(tp, end)


# Tansu 0.6.0 answers a Fetch with a wait of 0 with no partitions at all, data or not; with
# 10 ms it answers at once with the high watermark (found by trying). A partition left out of
# an answer is asked again with four times the wait, up to a second.
_FIRST_WAIT_MS = 10
_LAST_WAIT_MS = 1000


def install(app: Any, *, by_fetch: bool) -> None:
    """Makes this app's consumer (Faust's ``highwaters``, which table recovery reads up to)
    return :func:`fetched_ends` when ``by_fetch``; per instance, on the consumer thread."""
    if not by_fetch:
        return
    thread = app.consumer._thread
    if getattr(thread, "_sla_ends_by_fetch", False):
        return

    async def _highwaters(partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        consumer = thread._ensure_consumer()
        if thread.consumer.in_transaction:  # never on Tansu (no transactions): Faust's own
            return {tp: consumer.last_stable_offset(tp) for tp in partitions}
        return await end_offsets(consumer, partitions, by_fetch=True)

    thread._highwaters = _highwaters
    thread._sla_ends_by_fetch = True
