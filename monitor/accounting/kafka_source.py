"""``kafka:`` as a report source: every record of ``sla.outcomes``, ``sla.breaches`` (for
retractions), ``sla.escalations``, ``agents``, ``chat.sessions`` (bot messages, for the ``bot_only``
cause; session ratings) and ``tickets`` (tickets, ratings and ``channel.status``, for the
KPIs of 004 3.3-3.5) on the configured broker, from the beginning to the end offsets read at
start, with a tqdm progress bar on stderr.

Called by :func:`monitor.accounting.source.read_sources`. A plain aiokafka consumer without a
group (nothing committed): a report never moves anyone's offsets.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

from monitor.errors import ConfigError


def read_kafka(settings: Any, progress: bool = True) -> Iterator[tuple[str, int, int, bytes]]:
    """``(topic, partition, offset, value)`` of every record with a value; the caller decodes
    (an ``agents`` record the worker dead-lettered is skipped there, a bad fact is an error)."""
    return iter(asyncio.run(_read_all(settings, progress)))


async def _read_all(settings: Any, progress: bool) -> list[tuple[str, int, int, bytes]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from monitor.live.end_offsets import end_offsets  # noqa: PLC0415

    topics = list(settings.report_topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.aiokafka_security(),
    )
    await consumer.start()
    out: list[tuple[str, int, int, bytes]] = []
    try:
        # The metadata fetched here, not the client's cached view: Kafka's first metadata
        # answer holds no topics, so the cache read after it found none of them (Tansu's
        # holds all: only a test on real Kafka showed it).
        metadata = await consumer._client.fetch_all_metadata()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(metadata.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            raise ConfigError(f"{settings.broker}: none of the topics {topics} exist")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await end_offsets(consumer, partitions, by_fetch=settings.end_offsets_by_fetch)
        left = {tp: end for tp, end in ends.items() if end > 0}
        total = sum(left.values())
        bar = tqdm(total=total, unit=" records", file=sys.stderr, disable=not progress)
        while left:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if tp in left and record.offset < left[tp]:
                        if record.value is not None:
                            out.append((tp.topic, tp.partition, record.offset, record.value))
                        bar.update(1)
                if tp in left and await consumer.position(tp) >= left[tp]:
                    del left[tp]
        bar.close()
    finally:
        await consumer.stop()
    return out
