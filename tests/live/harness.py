"""Test harness for the live worker: isolated topic sets, worker subprocesses, a producer and
readers of the output topics. Everything talks to a real broker (Tansu or Apache Kafka).

Each :class:`LiveSetup` has its own app id and topic names (a unique prefix), so tests sharing
the session's broker cannot see each other's messages or consumer groups.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.engine.state import state_key
from monitor.live.broker import Broker, stop_process
from monitor.live.config import Settings
from monitor.live.process import WORKER_ARGS, settings_env, spawn
from monitor.live.records import input_record, produce
from monitor.live.topics import ensure_topics
from monitor.sla_event import Kind
from monitor.traffic import generate
from monitor.vocabulary import SubjectType

__all__ = ["produce"]  # re-exported (monitor.live.records): the live tests import it from here

POLICIES = str(Path(__file__).parent / "policies")
ROOT = Path(__file__).resolve().parents[2]
BEIJING = timezone(timedelta(hours=8))
_names = itertools.count(1)
_ids = itertools.count(1)


def iso(offset_seconds: float = 0.0, base: datetime | None = None) -> str:
    """An RFC 3339 instant ``offset_seconds`` from ``base`` (default: now), Beijing time."""
    when = (base or datetime.now(UTC)) + timedelta(seconds=offset_seconds)
    return when.astimezone(BEIJING).isoformat(timespec="milliseconds")


@dataclass
class LiveSetup:
    """One isolated deployment: settings, topic names and the environment of its workers.

    ``broker`` is a started broker of either kind; its quirks (ends read from the fetch high
    watermark and a short fetch wait on Tansu, nothing on Kafka) reach every client through
    :attr:`settings`.
    """

    broker: Broker
    tmp: Path
    policies: str | None = POLICIES
    store: str = "memory://"
    partitions: int = 4
    name: str = field(default_factory=lambda: f"t{os.getpid()}x{next(_names)}")
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings.namespaced(
            self.name,
            **{
                **self.broker.settings_overrides(),
                "partitions": self.partitions,
                "policies": self.policies,
                "store": self.store,
                "metrics_port": 0,
                "tick_interval": 0.25,
                "retention_interval": 1.0,
                "rebalance_timeout": 5.0,
                "session_timeout": 6.0,
                "heartbeat_interval": 1.0,
                "commit_interval": 0.5,
                **self.overrides,
            },
        )

    def env(self, data_dir: Path) -> dict[str, str]:
        return settings_env(self.settings.replace(data_dir=str(data_dir)))

    async def create_topics(self) -> None:
        await ensure_topics(self.settings)

    def worker(self, label: str = "w", prefix: Sequence[str] = ()) -> WorkerProcess:
        """A worker of this setup; ``prefix`` wraps its command (``ip netns exec NS``)."""
        data_dir = self.tmp / f"{self.name}-{label}-data"
        return WorkerProcess(self.env(data_dir), self.tmp / f"{self.name}-{label}.log", prefix)


class WorkerProcess:
    """``sla-monitor worker`` as a subprocess, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, prefix: Sequence[str] = ()) -> None:
        self.env = env
        self.log_path = log_path
        self.prefix = list(prefix)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> None:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = spawn(WORKER_ARGS, self.env, self.log_path, prefix=self.prefix, cwd=ROOT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[self._log_start :]
        except FileNotFoundError:
            return ""

    async def wait_ready(self, timeout: float = 40.0, count: int = 1) -> None:
        """Waits for the ``count``-th deadline-index rebuild (the end of a rebalance)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count("deadline index rebuilt") >= count:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.log()}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log()[-4000:]}")

    def assigned(self) -> list[int]:
        """The partitions of the last completed rebalance, from the worker's log."""
        lines = [ln for ln in self.log().splitlines() if "deadline index rebuilt" in ln]
        if not lines:
            return []
        text = lines[-1].rsplit("partitions", 1)[1].strip().strip("[]")
        return [int(p) for p in text.split(",") if p.strip()]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # a paused worker cannot stop
            stop_process(self.proc, timeout=15)

    def pause(self) -> None:
        """SIGSTOP: the process freezes (no heartbeat, no fetch) until :meth:`resume`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


DAY = datetime(2026, 10, 8, 18, 0, tzinfo=BEIJING)


def chat_policy_dir(
    tmp: Path, name: str, why: str, *, within: str, retention: str, next_response: bool = True
) -> Path:
    """A policy folder under ``tmp`` holding one wall-clock chat policy ``name`` for every
    tenant (Beijing working hours, a warning at half the target): the shape the fault and soak
    tests vary only in their targets. ``why`` becomes the file's first comment."""
    targets = f"""    clause: "{name.removesuffix("-chat")} test"
    targets:
      - within: {within}
        clock: wall
"""
    text = f"""# {why}
policy: {name}
applies_to: chat_session
tenants: ["*"]
timezone: Asia/Shanghai
calendar:
  country: CN
  unknown_dates: weekdays
working_hours:
  - ["09:00", "18:00"]
warnings: [0.5]
retention: {retention}
metrics:
  first_response:
{targets}"""
    if next_response:
        text += f"  next_response:\n{targets}"
    folder = tmp / "policies"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(text)
    return folder


def generated_day(seed: int, scale: float = 1.0) -> list[dict[str, Any]]:
    """A day of chats and tickets in the past (a backlog, judged on event time), ``scale``
    times the usual traffic."""
    return generate(DAY, 24.0, seed, chats_per_hour=40.0 * scale, tickets_per_hour=12.0 * scale)


def chat(setup: LiveSetup, event: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """A chat event as a record of the setup's chat topic, keyed by its session id."""
    return (setup.settings.topic_chat, event["session_id"].encode(), orjson.dumps(event))


def record_for(setup: LiveSetup, event: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """Any generated event, to its topic, keyed by its subject id."""
    return input_record(setup.settings, event)


async def store_and_stop(setup: LiveSetup, worker: WorkerProcess, sids: Iterable[str]) -> None:
    """Waits until the started ``worker`` is ready and every chat session of ``sids`` has its
    record in the changelog, then until their input is committed, and stops the worker: a
    restart then has its table to recover and nothing to read again."""
    s = setup.settings
    keys = {state_key(SubjectType.CHAT_SESSION, sid).encode() for sid in sids}
    async with TopicReader(s, [s.changelog_topic]) as reader:
        await worker.wait_ready()
        await reader.wait_for(
            lambda r: keys <= {x.key for x in r.records[s.changelog_topic]},
            timeout=60,
            what="every session in the changelog",
        )
    await asyncio.sleep(3 * s.commit_interval)
    worker.stop()


def session_id(tag: str) -> str:
    """A chat session id no other test (or earlier run on the same broker) uses."""
    return f"S-{tag}-{next(_ids)}-{time.time_ns() % 10**9}"


def ev(sid: str, type_: str, at: str, tenant: str = "acme", **fields: Any) -> dict[str, Any]:
    """A chat event of session ``sid`` at ``at``, with an id derived from its content."""
    return {
        "event_id": f"{sid}:{type_}:{fields.get('sender', '')}:{at}",
        "type": type_,
        "occurred_at": at,
        "tenant": tenant,
        "session_id": sid,
        **fields,
    }


def opened(sid: str, at: str, tenant: str = "acme") -> list[dict[str, Any]]:
    """A session started by a customer message at ``at``, nobody answering yet."""
    return [
        ev(sid, "session.started", at, tenant, channel="web"),
        ev(sid, "message.sent", at, tenant, sender="customer"),
    ]


class TopicReader:
    """Reads whole topics from the beginning (no consumer group) and keeps every record."""

    def __init__(
        self, settings: Settings, topics: Iterable[str], *, read_committed: bool = False
    ) -> None:
        self.settings = settings
        self.isolation_level = "read_committed" if read_committed else "read_uncommitted"
        self.topics = list(topics)
        self.records: dict[str, list[Any]] = {t: [] for t in self.topics}
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=self.isolation_level,
            **self.settings.aiokafka_security(),
        )
        await consumer.start()
        tps = []
        for topic in self.topics:
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self, timeout: float = 0.3) -> int:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=int(timeout * 1000))
        n = 0
        for tp, records in batches.items():
            self.records[tp.topic].extend(records)
            n += len(records)
        return n

    async def wait_for(
        self, predicate: Callable[[TopicReader], bool], timeout: float, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            await self.poll()
            if predicate(self):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def facts(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.records[topic] if r.value is not None]


def final_kinds_from_topics(
    warnings: list[dict[str, Any]], breaches: list[dict[str, Any]], outcomes: list[dict[str, Any]]
) -> dict[str, Kind]:
    """The final kind per ``sla_id`` as a downstream consumer of the three topics sees it.

    Order across topics is not defined, so: a ``met`` always ends a target (nothing follows
    it); otherwise the last of ``sla.breaches`` (breach or retraction, in order on one
    partition) decides; a target with only warnings is a warning. Exact repeats (same
    ``fact_id``, at-least-once) are ignored.
    """
    out: dict[str, Kind] = {}
    for fact in warnings:
        out.setdefault(fact["sla_id"], Kind.WARNING)
    seen: set[str] = set()
    for fact in breaches:
        if fact["fact_id"] in seen:
            continue
        seen.add(fact["fact_id"])
        out[fact["sla_id"]] = Kind(fact["kind"])
    for fact in outcomes:
        if fact["kind"] == Kind.MET:
            out[fact["sla_id"]] = Kind.MET
        else:
            out.setdefault(fact["sla_id"], Kind(fact["kind"]))
    return out


def live_kinds(reader: TopicReader, setup: LiveSetup) -> dict[str, Kind]:
    """:func:`final_kinds_from_topics` over the three fact topics ``setup``'s worker writes."""
    s = setup.settings
    return final_kinds_from_topics(
        reader.facts(s.topic_warnings),
        reader.facts(s.topic_breaches),
        reader.facts(s.topic_outcomes),
    )
