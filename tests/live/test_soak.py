"""Soak (issue 10): a worker under a steady live load for minutes, its resident memory, open
timers and input lag sampled every few seconds. Once retention sweeps finished sessions out,
memory is flat and open timers stay bounded, and breaches are still detected on time.

The load: ``SLA_SOAK_RATE`` chat sessions a second (default 10), each opened by a customer,
answered after 1-6 s (a 4 s target: a third are breached), closed 8 s after it started, and
forgotten ``RETENTION`` (10 s) after closing. So about ``rate x (8 + 10 + sweep)`` sessions
are alive at any time, and a worker that kept finished sessions (no retention) would grow by
``rate x`` one record a second without end.

Printed: one line per sample (seconds, RSS MiB, open timers, lag), for the README.

Versions:

* CI: 180 s on the embedded broker (Tansu), as issue 10 asks: two minutes of samples after
  retention kicks in.
* long: ``SLA_SOAK_SECONDS=1800 SLA_SOAK_BROKER=kafka`` (Apache Kafka; ``tansu`` is the
  default), optionally ``SLA_SOAK_STORE=rocksdb://`` (default ``memory://``, where every
  record the worker keeps is in its RSS) and ``SLA_SOAK_RATE``. With RocksDB,
  ``SLA_SOAK_ROCKSDB=write_buffer_mib,write_buffers,block_cache_mib`` sets its memory bounds
  (the ``rocksdb_*`` settings; default: theirs), for example ``64,3,2048``, Faust's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.live.broker import Broker
from monitor.live.config import Settings
from tests.live.harness import (
    LiveSetup,
    TopicReader,
    WorkerProcess,
    chat_policy_dir,
    ev,
    iso,
    session_id,
)
from tests.live.probes import free_port, rss_kib, scrape, total

pytestmark = pytest.mark.broker

SECONDS = float(os.environ.get("SLA_SOAK_SECONDS", "180"))
RATE = float(os.environ.get("SLA_SOAK_RATE", "10"))
STORE = os.environ.get("SLA_SOAK_STORE", "memory://")
SAMPLE_EVERY = 5.0
TARGET = 4.0
REPLY_AFTER = (1.0, 2.0, 3.0, 5.0, 6.0, 1.5)  # seconds; 5 and 6 breach the 4 s target
CLOSE_AFTER = 8.0
RETENTION = 10.0
# The RSS slope over the second half, in MiB per minute, above which memory is not flat.
# * 2-minute runs (CI): a worker keeping every finished session grows by RATE x ~5 KB (a record
#   in the memory store, its changelog entry and index key; bench --live --recovery measured
#   5 KB per session) a second, 10/s -> ~3 MiB/min; measured with retention off (1 h): +2.6.
#   With it, +0.3 to +0.4 (the end of warm-up). 1.5 sits between the two.
# * long runs (from 15 minutes): warm-up is over by the second half. 10-minute runs measured
#   +0.04 MiB/min, and +0.23 when the worker's KPI tracker kept every session it had seen
#   (~350 bytes each, KpiTracker.forget); 0.12 sits between the two.
MAX_SLOPE_MIB_PER_MIN = 1.5 if SECONDS < 900 else 0.12
_ROCKSDB = os.environ.get("SLA_SOAK_ROCKSDB")
ROCKSDB: dict[str, int] = (
    {}
    if not _ROCKSDB
    else dict(
        zip(
            ("rocksdb_write_buffer_mib", "rocksdb_write_buffers", "rocksdb_block_cache_mib"),
            map(int, _ROCKSDB.split(",")),
            strict=True,
        )
    )
)


@pytest.fixture
def soak_broker(request: pytest.FixtureRequest) -> Broker:
    chosen: Broker = request.getfixturevalue(os.environ.get("SLA_SOAK_BROKER", "tansu"))
    return chosen


async def steady_load(settings: Settings, seconds: float, breached: list[str]) -> int:
    """Opens RATE sessions a second for ``seconds``, each answered and closed on schedule
    (occurred_at = the moment it is sent: live traffic). Returns how many were opened;
    ``breached`` receives the ids of sessions answered after the target."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        max_batch_size=settings.producer_max_batch_size,
        linger_ms=5,
    )
    await producer.start()
    pending: list[tuple[float, int, str, dict[str, Any]]] = []
    order = itertools.count()
    began = time.monotonic()
    opened = 0
    try:
        while True:
            now = time.monotonic()
            while opened < (now - began) * RATE and now - began < seconds:
                sid = session_id("soak")
                reply = REPLY_AFTER[opened % len(REPLY_AFTER)]
                if reply > TARGET:
                    breached.append(sid)
                at = now
                for delay, kind, fields in (
                    (0.0, "session.started", {"channel": "web"}),
                    (0.0, "message.sent", {"sender": "customer"}),
                    (reply, "message.sent", {"sender": "agent"}),
                    (CLOSE_AFTER, "session.closed", {}),
                ):
                    spec = {"type": kind, **fields}
                    heapq.heappush(pending, (at + delay, next(order), sid, spec))
                opened += 1
            while pending and pending[0][0] <= now:
                _, _, sid, spec = heapq.heappop(pending)
                fields = {k: v for k, v in spec.items() if k != "type"}
                event = ev(sid, spec["type"], iso(), **fields)
                await producer.send(settings.topic_chat, orjson.dumps(event), key=sid.encode())
            if not pending and now - began >= seconds:
                break
            await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
    return opened


async def sample(worker: WorkerProcess, port: int, began: float, out: list[tuple[float, ...]],
                 stop: asyncio.Event) -> None:  # fmt: skip
    """Every SAMPLE_EVERY seconds: (seconds, RSS MiB, open timers, lag in messages)."""
    assert worker.proc is not None
    while not stop.is_set():
        metrics = await asyncio.to_thread(scrape, port)
        row = (
            time.monotonic() - began,
            rss_kib(worker.proc.pid) / 1024,
            total(metrics, "sla_open_timers"),
            total(metrics, "sla_partition_lag_messages"),
        )
        out.append(row)
        print(f"soak {row[0]:7.1f} s  RSS {row[1]:7.1f} MiB  open timers {row[2]:5.0f}  "
              f"lag {row[3]:5.0f}", flush=True)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return 60 * sxy / sxx


async def test_memory_is_flat_under_a_steady_load(soak_broker: Broker, tmp_path: Path) -> None:
    policies = chat_policy_dir(
        tmp_path, "soak-chat", "a second-scale target and a short retention, so finished "
        "sessions are swept out within the run",
        within=f"{TARGET:.0f}s", retention=f"{RETENTION:.0f}s", next_response=False,
    )  # fmt: skip
    port = free_port()
    setup = LiveSetup(
        soak_broker, tmp_path, policies=str(policies), store=STORE,
        overrides={"metrics_port": port, "retention_interval": 2.0, **ROCKSDB},
    )  # fmt: skip
    s = setup.settings
    await setup.create_topics()
    worker = setup.worker()
    worker.start()
    samples: list[tuple[float, ...]] = []
    breached: list[str] = []
    try:
        await worker.wait_ready(timeout=60)
        stop = asyncio.Event()
        began = time.monotonic()
        sampler = asyncio.create_task(sample(worker, port, began, samples, stop))
        opened = await steady_load(s, SECONDS, breached)
        await asyncio.sleep(TARGET + 2)  # the last targets fall due
        stop.set()
        await sampler
        async with TopicReader(s, [s.topic_breaches]) as reader:
            await reader.wait_for(
                lambda r: {f["subject_id"] for f in r.facts(s.topic_breaches)} >= set(breached),
                timeout=60,
                what="a breach for every session answered late",
            )
        assert worker.proc is not None
        assert worker.proc.poll() is None
    finally:
        worker.stop()

    # The second half of the load (the samples after it stopped would flatten any slope).
    second_half = [row for row in samples if SECONDS / 2 <= row[0] <= SECONDS]
    assert len(second_half) >= 6, samples
    slope = slope_per_minute([(row[0], row[1]) for row in second_half])
    first_half_timers = max(row[2] for row in samples if row[0] < SECONDS / 2)
    # At most RATE x (target + a tick and a batch) sessions wait for a response at once.
    bound = RATE * (TARGET + 2)
    print(
        f"soak {SECONDS:.0f} s at {RATE:.0f} sessions/s ({opened} sessions, {len(breached)} "
        f"breached, store {STORE} {_ROCKSDB or ''}): "
        f"RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MiB, "
        f"second-half slope {slope:+.2f} MiB/min, open timers max "
        f"{max(row[2] for row in samples):.0f}, lag max {max(row[3] for row in samples):.0f}"
    )
    assert slope < MAX_SLOPE_MIB_PER_MIN, f"RSS grows {slope:.2f} MiB/min: {second_half}"
    assert max(row[2] for row in second_half) <= bound, second_half
    assert max(row[2] for row in second_half) <= max(first_half_timers, 1) * 1.5 + 5
    assert max(row[3] for row in second_half) <= RATE * 4 * 5, "the worker fell behind"
