"""``sla-monitor demo``: the whole system on one machine, until Ctrl-C.

Who calls what: :func:`monitor.live.cli.cmd_demo` calls :func:`run_demo`, which

1. starts the embedded Tansu broker (:mod:`monitor.live.broker`) on a free port,
2. creates the topics (:func:`monitor.live.topics.ensure_topics`),
3. runs the real worker (:func:`monitor.live.worker.run_worker`, metrics on ``--metrics-port``)
   with two extra tasks on its event loop: a **producer** publishing
   :func:`monitor.traffic.iter_live` traffic to ``chat.sessions`` and ``tickets`` at the pace
   the generator asks for, and a **printer** that reads ``sla.breaches`` and ``sla.warnings``
   back from Kafka and prints one line per fact, as downstream consumers would see them.

Fast-forward (``--speed``): the generator stamps ``occurred_at`` in *simulated* time, which
runs ``speed`` times faster than real time from the moment the demo starts. The worker's
"wall clock" (the clock of caught-up partitions, :mod:`monitor.live.clock`) is the same
simulated clock, so a 3-minute chat target breaches after 3 real seconds at ``--speed 60``,
with no further traffic needed, exactly as in production at speed 1. At ``--speed 1`` the
simulated clock is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson

from monitor.live.broker import EmbeddedBroker
from monitor.live.config import Settings
from monitor.live.records import route
from monitor.live.topics import ensure_topics
from monitor.timeutil import Micros, format_rfc3339, parse_rfc3339


class SimulatedClock:
    """Real time, fast-forwarded ``speed`` times from ``origin`` (both in microseconds)."""

    def __init__(self, speed: float, origin: Micros | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.origin = origin if origin is not None else Micros(time.time_ns() // 1000)
        self._real_origin = time.time_ns() // 1000

    def __call__(self) -> Micros:
        elapsed = time.time_ns() // 1000 - self._real_origin
        return Micros(self.origin + round(elapsed * self.speed))

    def real_delay(self, due: int) -> float:
        """Real seconds until the generator's ``due`` (real-time micros from ``origin``)."""
        return (due - self.origin - (time.time_ns() // 1000 - self._real_origin)) / 1e6


def format_fact(fact: dict[str, Any]) -> str:
    """One readable line for a published SLA fact (a warning, breach or retraction) or a
    002 6.2 escalation (issue 8)."""
    kind = str(fact.get("kind", "?")).upper()
    if kind == "ESCALATION":
        return (
            f"{str(fact.get('tripped_at', ''))[11:19]} ESCALATION {fact.get('tenant')} "
            f"{fact.get('rule')} #{fact.get('ordinal')} of {fact.get('window')}: written "
            f"explanation due {fact.get('explanation_due')}  [{fact.get('clause')}]"
        )
    detected = str(fact.get("detected_at", ""))[11:19]
    who = f"{fact.get('subject_type', '?')} {fact.get('subject_id', '?')}"
    where = ", ".join(str(v) for v in (fact.get("tenant"), fact.get("channel")) if v)
    prio = f" {fact['priority']}" if fact.get("priority") else ""
    target = _duration(float(fact.get("target_seconds", 0)))
    line = (
        f"{detected} {kind:<10} {who} ({where}{prio}) {fact.get('metric')} "
        f"target {target} ({fact.get('clock')}), deadline {str(fact.get('deadline', ''))[11:19]}"
    )
    if kind == "WARNING" and fact.get("share") is not None:
        line += f", {round(float(fact['share']) * 100)}% used"
    if fact.get("penalty") and kind == "BREACH":
        line += f", penalty {fact['penalty']['amount']:g} {fact['penalty']['currency']}"
    if fact.get("reason"):
        line += f": {fact['reason']}"
    return line + f"  [{fact.get('clause')}]"


def _duration(total: float) -> str:
    if total >= 3600 and total % 3600 == 0:
        return f"{total / 3600:g}h"
    if total >= 60 and total % 60 == 0:
        return f"{total / 60:g}m"
    return f"{total:g}s"


def demo_settings(
    broker: EmbeddedBroker, partitions: int, metrics_port: int, policies: str | None
) -> Settings:
    return Settings(
        **broker.settings_overrides(),
        app_id="sla-monitor-demo",
        partitions=partitions,
        policies=policies,
        store="memory://",  # the broker keeps nothing either: every demo starts fresh
        escalation_stage=True,  # a demo's traffic is small: 6.2 escalations live, for the report
        data_dir=tempfile.mkdtemp(prefix="sla-monitor-demo-"),
        metrics_port=metrics_port,
        log_level="warning",
        tick_interval=0.25,
        event_time_grace=1.0,
        retention_interval=30.0,
        rebalance_timeout=5.0,
        session_timeout=6.0,
        heartbeat_interval=1.0,
        commit_interval=1.0,
    )


def run_demo(
    *,
    speed: float = 60.0,
    seed: int = 7,
    rate: float = 1.0,
    partitions: int = 4,
    metrics_port: int = 9108,
    policies: str | None = None,
    port: int | None = None,
    show_warnings: bool = True,
    start: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Runs broker, topics, worker, traffic and printer until Ctrl-C; returns the exit code."""
    from monitor.live.worker import run_worker  # noqa: PLC0415 - Faust is heavy to import

    log_path = Path(tempfile.gettempdir()) / "sla-monitor-demo-broker.log"
    broker = EmbeddedBroker(port=port, log_path=log_path)
    broker.start()
    try:
        settings = demo_settings(broker, partitions, metrics_port, policies)
        asyncio.run(ensure_topics(settings))
        origin = Micros(parse_rfc3339(start)) if start else None
        clock = SimulatedClock(speed, origin)
        say = _printer(out)
        say(
            f"sla-monitor demo: broker {broker.bootstrap}, {partitions} partitions, "
            f"speed x{speed:g} (simulated time starts "
            f"{format_rfc3339(clock.origin)[:19]}Z), metrics "
            + (f"http://localhost:{metrics_port}/metrics" if metrics_port else "off")
            + ". Ctrl-C to stop."
        )

        def setup(app: Any) -> None:
            app.task(_producer_task(settings, clock, seed, rate, say))
            app.task(_printer_task(settings, show_warnings, say))

        with contextlib.suppress(SystemExit, KeyboardInterrupt):
            run_worker(settings, wall=clock, setup=setup, quiet=True)
    finally:
        broker.stop()
    say("sla-monitor demo: stopped")
    return 0


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return say


def _producer_task(
    settings: Settings, clock: SimulatedClock, seed: int, rate: float, say: Callable[[str], None]
) -> Callable[[], Any]:
    """Publishes generated traffic at the generator's pace (it never sleeps; we do)."""

    async def produce() -> None:
        from aiokafka import AIOKafkaProducer  # noqa: PLC0415

        from monitor.traffic import iter_live  # noqa: PLC0415

        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            max_batch_size=settings.producer_max_batch_size,
        )
        await producer.start()
        sent = 0
        last_report = time.monotonic()
        try:
            traffic = iter_live(
                clock.origin,
                seed,
                speedup=clock.speed,
                chats_per_hour=20.0 * rate,
                tickets_per_hour=8.0 * rate,
                presence=True,  # issue 8: agents' presence, so the demo feeds a report
            )
            for due, event in traffic:
                delay = clock.real_delay(due)
                if delay > 0:
                    await asyncio.sleep(delay)
                topic, key = route(settings, event)
                await producer.send(topic, orjson.dumps(event), key=key)
                sent += 1
                if time.monotonic() - last_report > 30:
                    last_report = time.monotonic()
                    now = format_rfc3339(clock(), _beijing())[:19]
                    say(f"-- {sent} events published; simulated time {now} (Beijing)")
        finally:
            await producer.stop()

    return produce


def _printer_task(
    settings: Settings, show_warnings: bool, say: Callable[[str], None]
) -> Callable[[], Any]:
    """Reads the output topics back and prints each fact once (at-least-once may repeat)."""

    async def consume() -> None:
        from aiokafka import AIOKafkaConsumer  # noqa: PLC0415

        topics = [settings.topic_breaches, settings.topic_escalations]
        topics += [settings.topic_warnings] if show_warnings else []
        consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
        )
        await consumer.start()
        seen: set[str] = set()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        fact = orjson.loads(record.value)
                        if fact.get("fact_id") in seen:
                            continue
                        seen.add(fact.get("fact_id"))
                        say(format_fact(fact))
        finally:
            await consumer.stop()

    return consume


def _beijing() -> Any:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    return ZoneInfo("Asia/Shanghai")
