"""``sla-monitor bench --live --recovery N``: memory per open session, and recovery after a crash.

Figures are printed, never asserted (BENCHMARKS.md). On the embedded broker or real Kafka
(``--kafka``), with the worker as a subprocess (the production entry point):

1. **memory per open session**: the worker starts on empty topics; its resident memory (RSS,
   ``/proc/PID/status``) is read, then ``N`` sessions start and are never answered (tenant
   ``bench-recovery``, a 2 h target: all stay open), and RSS is read again once the worker has
   handled them. Growth ÷ N (target ≤ 2 KiB);
2. **recovery**: a few urgent sessions (20 s target) start, the worker is SIGKILLed, and
   restarted once their deadlines have passed, on the same data directory (RocksDB) or from
   the changelog alone (``memory://``). The time from the restart to their first breach on
   ``sla.breaches`` is what an outage of the worker costs (target ≤ 60 s at 1M sessions).

Who calls what: :func:`monitor.cli.cmd_bench` calls :func:`run_recovery_bench`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from monitor.live import end_offsets
from monitor.live.bench import (
    WORKER,
    _input_count,
    _produce,
    _subprocess,
    bench_policy,
    bench_settings,
    start_broker,
)
from monitor.live.topics import ensure_topics
from monitor.policy.loader import BUNDLED_POLICIES

TENANT = "bench-recovery"
URGENT = 20
POLICY = bench_policy(
    "bench-recovery",
    TENANT,
    f"      - when: {{priority: [urgent]}}\n        within: {URGENT}s\n        clock: wall\n"
    "      - within: 2h\n        clock: wall\n",
    f"urgent sessions breach after {URGENT} s, the others stay open for two hours.",
)


def run_recovery_bench(*, sessions: int, store: str, kafka: bool, partitions: int = 4) -> int:
    """Runs the two measurements (see the module doc) and prints their figures."""
    work = Path(tempfile.mkdtemp(prefix="sla-monitor-bench-recovery-"))
    broker = start_broker(kafka, work)
    try:
        return asyncio.run(
            _recovery(broker.settings_overrides(), work, sessions, store, partitions)
        )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _session(i: int, priority: str) -> dict[str, Any]:
    return {
        "event_id": f"rec-{priority}-{i}",
        "type": "session.started",
        "occurred_at": datetime.now(UTC).isoformat(),
        "session_id": f"REC-{priority}-{i}",
        "tenant": TENANT,
        "channel": "web",
        "priority": priority,
    }


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _wait_count(url: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (_input_count(url) or 0) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not handle {count} events in {timeout:.0f} s")
        await asyncio.sleep(1.0)


async def _recovery(
    overrides: dict[str, Any], work: Path, sessions: int, store: str, partitions: int
) -> int:
    policies = work / "policies"
    shutil.copytree(BUNDLED_POLICIES, policies)
    (policies / "bench-recovery.yaml").write_text(POLICY)
    settings = bench_settings(
        "rec", overrides, work, policies, store=store, partitions=partitions, log_level="info"
    )
    await ensure_topics(settings)
    log_path = work / "worker.log"
    chat = settings.topic_chat
    with _subprocess(settings, log_path, WORKER) as (url, pid):
        while "deadline index rebuilt" not in log_path.read_text(errors="replace"):
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        before = _rss_bytes(pid)
        print(f"producing {sessions:,} open sessions ...")
        records = [(chat, f"REC-normal-{i}".encode(), orjson.dumps(_session(i, "normal")))
                   for i in range(sessions)]  # fmt: skip
        await _produce(settings, records)
        await _wait_count(url, sessions, timeout=120 + sessions / 200)
        await asyncio.sleep(3.0)  # the last batches stored
        after = _rss_bytes(pid)
        per = (after - before) / sessions
        print(
            f"memory:                  RSS {before / 2**20:,.0f} -> {after / 2**20:,.0f} MiB "
            f"for {sessions:,} open sessions: {per:,.0f} B per session (target <= 2 KiB)"
        )
        urgent = [(chat, f"REC-urgent-{i}".encode(), orjson.dumps(_session(i, "urgent")))
                  for i in range(10)]  # fmt: skip
        await _produce(settings, urgent)
        await _wait_count(url, sessions + len(urgent), timeout=60)
        await asyncio.sleep(1.0)
        os.kill(pid, signal.SIGKILL)  # a crash: no flush, no commit
        print(f"worker SIGKILLed with {sessions + len(urgent):,} open sessions")
    consumer = AIOKafkaConsumer(
        settings.topic_breaches, bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="latest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        await end_offsets.seek_to_end(consumer, by_fetch=settings.end_offsets_by_fetch)
        await asyncio.sleep(URGENT + 2)  # the urgent deadlines pass while nothing runs
        restarted = time.monotonic()
        with _subprocess(settings, log_path, WORKER):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                facts = [orjson.loads(r.value) for rs in batch.values() for r in rs]
                if any(f.get("tenant") == TENANT and f.get("kind") == "breach" for f in facts):
                    break
                if time.monotonic() - restarted > 600:
                    raise RuntimeError("no breach within 10 minutes of the restart")
            took = time.monotonic() - restarted
    finally:
        await consumer.stop()
    pending = re.findall(r"deadline index rebuilt: (\d+) pending", log_path.read_text())
    rebuilt = pending[-1] if pending else "?"
    print(
        f"recovery ({store}):  restart -> first breach on sla.breaches in {took:.1f} s "
        f"({rebuilt} timers rebuilt; target <= 60 s at 1M sessions)"
    )
    return 0
