"""Input records for the worker's topics: which topic and key an event goes to, and a producer
that writes a list of them.

Who calls what: the benchmark (:mod:`monitor.live.bench`), the demo (:mod:`monitor.live.demo`)
and the live tests' harness build their input with :func:`input_record` and write it with
:func:`produce`, so the routing rule the worker checks (:meth:`monitor.live.app.SlaWorker.
_misrouted`: a subject's events share one partition, keyed by the subject id, on its kind's
topic) is spelled once on the producing side too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from monitor.live.config import Settings

Record = tuple[str, bytes | None, bytes | None]  # topic, key, value


def route(settings: Settings, event: dict[str, Any]) -> tuple[str, bytes]:
    """The topic and key of an input event (as a JSON-ready dict): tickets and channel status
    on the tickets topic (by ticket id, channel), agent presence on the agents topic (by agent
    id), chat on the chat topic (by session id)."""
    kind = str(event["type"])
    if kind == "agent.status":
        return settings.topic_agents, str(event["agent_id"]).encode()
    if kind == "channel.status":  # 004 3.3: availability, keyed by channel
        return settings.topic_tickets, str(event["channel"]).encode()
    if kind.startswith("ticket."):
        return settings.topic_tickets, str(event["ticket_id"]).encode()
    return settings.topic_chat, str(event["session_id"]).encode()


def input_record(settings: Settings, event: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """``(topic, key, value)`` of an input event, ready for :func:`produce`."""
    topic, key = route(settings, event)
    return topic, key, orjson.dumps(event)


async def produce(
    settings: Settings, records: Iterable[Record], *, max_batch_size: int | None = None
) -> None:
    """Sends ``(topic, key, value)`` records in order and waits until the broker has them all.

    Batched as the settings say (``producer_max_batch_size``), unless ``max_batch_size`` says
    otherwise: the benchmark writes its backlog in larger batches."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        max_batch_size=max_batch_size or settings.producer_max_batch_size,
        linger_ms=5,
        acks=settings.producer_acks if settings.producer_acks != -1 else "all",
        **settings.aiokafka_security(),
    )
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k) for t, k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
