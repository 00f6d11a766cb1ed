"""``sla-monitor bench --live``: the live worker on a real broker, for BENCHMARKS.md.

Figures are printed, never asserted. Against the embedded Tansu broker, real Apache Kafka
(``--kafka``, started here from :mod:`monitor.live.kafka`) or ``--broker`` (one already
running), on generated traffic (:mod:`monitor.traffic`; ``--events N`` sizes the backlog):

1. **bare consumer**: a bare aiokafka consumer reads the input backlog (every record, nothing
   done with it): the fastest this broker hands these records to one Python process;
2. **ceiling**: a bare Faust agent that only counts (:mod:`monitor.live.ceiling`, a
   subprocess with the worker's consumer settings) drains the same backlog as a fresh consumer
   group: what Faust itself costs per message, the limit the worker is measured against;
3. **worker**: ``sla-monitor worker`` (a subprocess, the production entry point, RocksDB store
   by default) works through the same backlog as a fresh consumer group: input events/s, read
   off its ``sla_input_messages_total`` counter, and the ratio to (2) (target ≥ 0.7). This is
   the whole job per event: validate, read and write the table (and its changelog), publish
   facts and timer firings, commit;
4. **detection delay**: while that worker runs, sessions start *now* under a bench-only policy
   (tenant ``bench-latency``: first response within a few seconds of wall-clock time) and
   are never answered. For each, the delay from its deadline to the moment its breach can be
   read from ``sla.breaches``, as a downstream consumer sees it (target p99 ≤ 1 s).

Who calls what: :func:`monitor.cli.cmd_bench` calls :func:`run_live_bench`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor import traffic
from monitor.live import end_offsets
from monitor.live.broker import EmbeddedBroker, free_port, stop_process
from monitor.live.config import Settings
from monitor.live.kafka import KafkaBroker
from monitor.live.process import WORKER_ARGS, settings_env, spawn
from monitor.live.records import Record, input_record, produce
from monitor.live.topics import ensure_topics
from monitor.policy.loader import BUNDLED_POLICIES
from monitor.timeutil import parse_rfc3339

LATENCY_TENANT = "bench-latency"


def bench_policy(name: str, tenant: str, targets: str, why: str) -> str:
    """A chat policy for one bench tenant: round-the-clock wall-clock targets (``targets``, the
    YAML list items), so deadlines fall while a benchmark watches. ``why`` heads the file."""
    return f"""\
# Written by `sla-monitor bench --live`: {why}
policy: {name}
applies_to: chat_session
tenants: ["{tenant}"]
timezone: Asia/Shanghai
calendar:
  country: CN
  unknown_dates: weekdays
working_hours:
  - ["00:00", "23:59"]
retention: 1h
metrics:
  first_response:
    clause: "benchmark only"
    targets:
{targets}"""


def bench_settings(
    prefix: str,
    overrides: dict[str, Any],
    work: Path,
    policies: Path,
    *,
    store: str,
    partitions: int,
    log_level: str = "warning",
) -> Settings:
    """The settings of one bench run: fresh topic and group names (``prefix``, the pid and the
    time), its own data directory and metrics port, and a short session timeout so a rebalance
    between the measured phases takes seconds. Caller: every bench of this module and
    :mod:`monitor.live.bench_recovery`."""
    return Settings.namespaced(
        f"{prefix}{os.getpid()}x{int(time.time())}",
        **overrides,
        partitions=partitions,
        policies=str(policies),
        store=store,
        data_dir=str(work / "data"),
        metrics_port=free_port(),
        log_level=log_level,
        rebalance_timeout=5.0,
        session_timeout=6.0,
        heartbeat_interval=1.0,
    )


def run_live_bench(
    *,
    hours: float = 24.0,
    scale: float = 20.0,
    partitions: int = 4,
    store: str = "rocksdb://",
    broker: str | None = None,
    kafka: bool = False,
    events: int | None = None,
    scale_out: bool = False,
    latency_sessions: int = 400,
    latency_target: float = 3.0,
) -> int:
    """Runs the measurements (see the module doc) and prints their figures."""
    work = Path(tempfile.mkdtemp(prefix="sla-monitor-bench-"))
    started: EmbeddedBroker | KafkaBroker | None = None
    try:
        overrides: dict[str, Any] = {"broker": broker}
        if broker is None:
            started = start_broker(kafka, work)
            overrides = started.settings_overrides()
        plan = Plan(
            hours, scale, partitions, store, latency_sessions, latency_target, events, scale_out
        )
        return asyncio.run(_bench(overrides, work, plan))
    finally:
        if started is not None:
            started.stop()
        shutil.rmtree(work, ignore_errors=True)


def start_broker(kafka: bool, work: Path) -> EmbeddedBroker | KafkaBroker:
    """Starts real Kafka (``kafka``) or the embedded broker in ``work``; prints its start time."""
    started: EmbeddedBroker | KafkaBroker
    if kafka:
        started = KafkaBroker(data_dir=work / "kafka")
    else:
        started = EmbeddedBroker(log_path=work / "broker.log")
    began = time.perf_counter()
    started.start()
    print(f"{started.name} started in {time.perf_counter() - began:.1f} s")
    return started


@dataclass(frozen=True)
class Plan:
    """What to measure (the options of ``sla-monitor bench --live``)."""

    hours: float
    scale: float
    partitions: int
    store: str
    latency_sessions: int
    latency_target: float
    events: int | None = None  # backlog size; None: as hours and scale give
    scale_out: bool = False  # also two workers on the same backlog


async def _bench(overrides: dict[str, Any], work: Path, plan: Plan) -> int:
    hours, scale, partitions, store = plan.hours, plan.scale, plan.partitions, plan.store
    latency_sessions, latency_target = plan.latency_sessions, plan.latency_target
    policies = work / "policies"
    shutil.copytree(BUNDLED_POLICIES, policies)
    target = f"{latency_target:g}s"
    (policies / "bench-latency.yaml").write_text(
        bench_policy(
            "bench-latency",
            LATENCY_TENANT,
            f"      - within: {target}\n        clock: wall\n",
            f"a first response within {target} of wall-clock time, every hour alike.",
        )
    )
    settings = bench_settings(
        "bench", overrides, work, policies, store=store, partitions=partitions
    )
    await ensure_topics(settings)

    start = datetime(2026, 10, 8, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    if plan.events is not None:
        # One generated hour at the given scale says how many events an hour holds.
        per_hour = len(_traffic(start, 1.0, scale))
        hours = max(plan.events / max(per_hour, 1), 0.01)
    print(f"generating {hours:g} h of traffic at {scale:g}x the sample's rate ...")
    events = _traffic(start, hours, scale)
    if plan.events is not None:
        events = events[: plan.events]
    n = len(events)
    print(f"producing {n:,} events to {settings.broker} ({partitions} partitions) ...")
    await _produce(settings, [input_record(settings, e) for e in events])

    bare = await _bare_consumer(settings, n)
    print(f"bare aiokafka consumer:  {bare:,.0f} events/s  (reads the backlog, does nothing)")

    ceiling = await _ceiling(settings, work, n, direct=False)
    print(
        f"bare Faust agent:        {ceiling.rate:,.0f} events/s, {ceiling.cpu_us:,.0f} µs CPU "
        "per event  (counts each event: the ceiling)"
    )
    direct = await _ceiling(settings, work, n, direct=True)
    print(
        f"... with the worker's hand-overs: {direct.rate:,.0f} events/s, {direct.cpu_us:,.0f} µs "
        "CPU per event  (monitor.live.direct_delivery)"
    )

    log_path = work / "worker.log"
    with _subprocess(settings, log_path, WORKER) as (metrics_url, pid):
        worker = await _drain(metrics_url, pid, n, log_path)
        rate = worker.rate
        batches = _total(metrics_url, "sla_batch_records_count")
        records = _total(metrics_url, "sla_batch_records_sum")
        print(f"worker batches:          {records / max(batches, 1):.1f} records per batch")
        print(
            f"live worker ({store}):  {rate:,.0f} events/s, {worker.cpu_us:,.0f} µs CPU per "
            f"event on the backlog: {rate / ceiling.rate:.2f}x the bare Faust agent's rate, "
            f"{ceiling.cpu_us / worker.cpu_us:.2f}x by CPU per event (target >= 0.7x), "
            f"{rate / bare:.3f}x the bare consumer's rate; {rate / direct.rate:.2f}x by rate, "
            f"{direct.cpu_us / worker.cpu_us:.2f}x by CPU against the agent with its hand-overs"
        )
        # The backlog's own deadlines (a day in the past) all fire now that the worker is
        # caught up; time the new sessions once that burst is over.
        await _wait_quiet(metrics_url, "sla_events_total", quiet=2.0, timeout=120)
        delays = await _detection_delays(settings, latency_sessions, latency_target)
        _print_delays("detection delay, idle:  ", delays, settings)
        # The same again while the worker carries a steady load at half the rate it just
        # drained the backlog at: fresh sessions, stamped as they are sent (issue 7).
        load = asyncio.create_task(_steady_load(settings, events, rate / 2))
        try:
            delays = await _detection_delays(settings, latency_sessions, latency_target)
        finally:
            load.cancel()
            sent = await load
        _print_delays(f"... under {rate / 2:,.0f} ev/s:", delays, settings)
        print(f"                         ({sent:,} load events sent meanwhile)")
    if plan.scale_out:
        pair = await _two_workers(settings, work, n)
        print(
            f"two workers:             {pair:,.0f} events/s on the same backlog, "
            f"{pair / rate:.2f}x one worker (target >= 1.6x)"
        )
    return 0


async def _ceiling(settings: Settings, work: Path, expected: int, *, direct: bool) -> Drain:
    """The bare Faust agent (:mod:`monitor.live.ceiling`) through the backlog as a consumer group
    of its own; ``direct``: with the worker's hand-overs instead of Faust's."""
    name, args = ("ceiling-direct", [*CEILING, "--direct"]) if direct else ("ceiling", CEILING)
    app_id = f"{settings.app_id}-direct" if direct else settings.app_id  # (app: app_id-ceiling)
    own = settings.replace(metrics_port=free_port(), app_id=app_id)
    log_path = work / f"{name}.log"
    with _subprocess(own, log_path, args) as (metrics_url, pid):
        return await _drain(metrics_url, pid, expected, log_path)


async def _two_workers(settings: Settings, work: Path, expected: int) -> float:
    """Two worker processes, a fresh consumer group, the same backlog: events/s of both
    together, from the first event either handles to the ``expected``-th."""
    pair = settings.replace(app_id=f"{settings.app_id}-pair", data_dir=str(work / "pair"))
    await ensure_topics(pair)  # the new group's changelog
    a = pair.replace(metrics_port=free_port(), data_dir=str(work / "pair-a"))
    b = pair.replace(metrics_port=free_port(), data_dir=str(work / "pair-b"))
    with (
        _subprocess(a, work / "pair-a.log", WORKER) as (url_a, _),
        _subprocess(b, work / "pair-b.log", WORKER) as (url_b, _),
    ):
        deadline = time.monotonic() + 120 + expected / 500
        first: tuple[float, float] | None = None
        while time.monotonic() < deadline:
            count = (_input_count(url_a) or 0.0) + (_input_count(url_b) or 0.0)
            now = time.perf_counter()
            if count:
                if first is None:
                    first = (now, count)
                if count >= expected:
                    return (count - first[1]) / max(now - first[0], 1e-9)
            await asyncio.sleep(2.0)
    raise RuntimeError("the two workers did not finish the backlog in time")


def _print_delays(label: str, delays: list[float], settings: Settings) -> None:
    if not delays:
        print(f"{label} no breach came out")
        return
    delays.sort()
    p50 = delays[len(delays) // 2]
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(
        f"{label}  p50 {p50:.3f} s, p99 {p99:.3f} s, max {delays[-1]:.3f} s over "
        f"{len(delays)} breaches, deadline -> readable on the breach topic "
        f"(target p99 <= 1 s; tick {settings.tick_interval:g} s)"
    )


async def _steady_load(settings: Settings, events: list[dict[str, Any]], rate: float) -> int:
    """Sends ``events`` again, renamed (new subjects) and stamped with the time they are sent,
    at ``rate`` events/s until cancelled; returns how many it sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        max_batch_size=settings.producer_max_batch_size,
    )
    await producer.start()
    sent, step = 0, 0.05
    began = time.monotonic()
    try:
        for event in itertools.cycle(events):
            now = datetime.now(UTC).isoformat()
            renamed: dict[str, Any] = dict(event, occurred_at=now)
            renamed["event_id"] = f"load-{sent}-{event['event_id']}"
            for field in ("session_id", "ticket_id"):  # new subjects on every lap
                if field in event:
                    renamed[field] = f"LOAD{sent // len(events)}-{event[field]}"
            topic, key, value = input_record(settings, renamed)
            await producer.send(topic, value, key=key)
            sent += 1
            ahead = began + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(max(ahead, step))
    except asyncio.CancelledError:
        pass
    finally:
        await producer.stop()
    return sent


def _traffic(start: datetime, hours: float, scale: float) -> list[dict[str, Any]]:
    return traffic.generate(
        start, hours, seed=7, chats_per_hour=20.0 * scale, tickets_per_hour=8.0 * scale
    )


async def _produce(settings: Settings, records: Iterable[Record]) -> None:
    # Input records may share batches even on Tansu, so the backlog is written quickly.
    await produce(settings, records, max_batch_size=16384)


async def _bare_consumer(settings: Settings, expected: int) -> float:
    """Reads ``expected`` records of the input topics from the beginning; records/s from the
    first fetch to the last record (connecting and joining excluded, as for the worker)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in settings.input_topics
            for p in range(settings.partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        first = time.perf_counter()
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batch:
                raise RuntimeError(f"the bare consumer stalled at {seen} of {expected} records")
            seen += sum(len(records) for records in batch.values())
        return seen / max(time.perf_counter() - first, 1e-9)
    finally:
        await consumer.stop()


WORKER = list(WORKER_ARGS)
CEILING = ["-m", "monitor.live.ceiling"]


@contextmanager
def _subprocess(settings: Settings, log_path: Path, args: list[str]) -> Iterator[tuple[str, int]]:
    """``python ARGS`` (the worker, or the ceiling) as a subprocess with ``settings`` as its
    ``SLA_*`` environment; yields its metrics URL and pid; SIGTERM at the end."""
    proc = spawn(args, settings_env(settings), log_path)
    try:
        yield f"http://127.0.0.1:{settings.metrics_port}/metrics", proc.pid
    finally:
        stop_process(proc, timeout=20)


def _input_count(url: str) -> float | None:
    for line in _scrape(url):
        if line.startswith("sla_input_messages_total "):
            return float(line.split()[1])
    return None


def _scrape(url: str) -> list[str]:
    with suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
        lines: list[str] = response.read().decode().splitlines()
        return lines
    return []


async def _send_sessions(settings: Settings, sessions: int, spread: float) -> None:
    """Sends ``sessions`` session starts over ``spread`` seconds, each when it happens (as a
    chat platform would), tenant ``bench-latency``, never answered."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0)
    await producer.start()
    try:
        began = time.time()
        for i in range(sessions):
            at = began + spread * i / sessions
            await asyncio.sleep(max(at - time.time(), 0.0))
            event = {
                "event_id": f"bench-{began:.6f}-{i}",
                "type": "session.started",
                "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
                "session_id": f"BENCH-{os.getpid()}-{began:.6f}-{i}",  # new on every call
                "tenant": LATENCY_TENANT,
                "channel": "web",
            }
            key = event["session_id"].encode()
            await producer.send(settings.topic_chat, orjson.dumps(event), key=key)
        await producer.flush()
    finally:
        await producer.stop()


def _total(url: str, name: str) -> float:
    """The sum of every series of metric ``name`` in a scrape."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in _scrape(url)
        if line.startswith((name + " ", name + "{"))
    )


async def _wait_quiet(url: str, name: str, quiet: float, timeout: float) -> None:
    """Waits until counter ``name`` has not moved for ``quiet`` seconds (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        value = _total(url, name)
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Drain:
    """How a process drained the backlog: events/s of wall time, and CPU time per event.

    CPU per event is the figure to compare on a shared machine: other jobs on the two cores
    stretch the wall time of a run but hardly change how much CPU the process itself spends
    per event (seen: the ceiling's events/s moved 2x between runs on a busy day)."""

    rate: float  # events/s, from the first counted event to the last
    cpu_us: float  # CPU microseconds (user + system, all threads) per event, same interval


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drain(url: str, pid: int, expected: int, log_path: Path) -> Drain:
    """The worker's (or the ceiling's) input counter from its first event to the
    ``expected``-th: its events/s, and its CPU time per event."""
    deadline = time.monotonic() + 120 + expected / 500
    first: tuple[float, float, float] | None = None
    while time.monotonic() < deadline:
        count = _input_count(url)
        now, cpu = time.perf_counter(), _cpu_seconds(pid)
        if count:
            if first is None:
                first = (now, count, cpu)
            if count >= expected:
                done = count - first[1]
                if done < expected / 2:
                    raise RuntimeError(
                        "the backlog was done before it could be timed: use more --hours/--scale"
                    )
                return Drain(done / max(now - first[0], 1e-9), (cpu - first[2]) / done * 1e6)
        # Every 2 s, not faster: rendering /metrics costs the worker tens of milliseconds of
        # its CPU (10 % of it at two scrapes a second, by py-spy). But near the end as often
        # as it takes to see the end within ~0.1 s: the drain is timed to the scrape that
        # first sees the whole backlog, and a 2 s step could add up to 2 s to a drain of 10.
        # And every 0.1 s until the first event is counted, so the timed span starts early
        # (the ceiling with the worker's hand-overs drains 45k events in under 3 s).
        step = 2.0 if first is not None else 0.1
        if first is not None and count and count > first[1]:
            left = (expected - count) * (now - first[0]) / (count - first[1])
            step = min(step, max(0.05, 0.8 * left))
        await asyncio.sleep(step)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the worker did not finish the backlog in time; its log ends:\n{tail}")


async def _detection_delays(settings: Settings, sessions: int, target: float) -> list[float]:
    """Starts ``sessions`` unanswered sessions over a few seconds and times their breaches."""
    consumer = AIOKafkaConsumer(
        settings.topic_breaches, bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="latest", enable_auto_commit=False, fetch_max_wait_ms=20,
    )  # fmt: skip
    await consumer.start()
    try:
        # An explicit end (not aiokafka's lazy "latest"), set before anything is produced.
        await end_offsets.seek_to_end(consumer, by_fetch=settings.end_offsets_by_fetch)
        spread = 5.0
        # Reading runs beside sending: the first deadlines pass before the last session starts.
        sending = asyncio.create_task(_send_sessions(settings, sessions, spread))
        delays: list[float] = []
        until = time.monotonic() + spread + target + 30
        while len(delays) < sessions and time.monotonic() < until:
            batch = await consumer.getmany(timeout_ms=200)
            received = time.time()
            for records in batch.values():
                for record in records:
                    fact = orjson.loads(record.value)
                    if fact.get("tenant") == LATENCY_TENANT and fact.get("kind") == "breach":
                        delays.append(received - parse_rfc3339(fact["deadline"]) / 1_000_000)
        await sending
        return delays
    finally:
        await consumer.stop()
