"""Traffic under load for the fault tests (``test_faults_crash.py``, ``test_faults_rebalance.py``):
a generated day paced onto the input topics at a steady rate, and the oracle check of what the
workers published against ``sla-monitor replay`` of the same input.

Why the day lies in the *future* (it starts :data:`LEAD` after the test begins): a day from the
past, paced, would be judged on the wall clock whenever the worker catches up with the producer
(:mod:`monitor.live.clock`: lag 0 means "live"), and the wall clock is weeks past every deadline
of that day — every open target would breach at once and be retracted by its answer, which is
correct for a live stream but is not replay's output. With every ``occurred_at`` ahead of the
wall clock, each partition's clock is its own event time (the newest ``occurred_at`` read, less
the grace) whether it is caught up or not, exactly the clock replay uses, and a test can pace,
kill and restart as it likes.

The end of the day: a partition's clock only moves with its records, so after the day each
input partition gets one *end marker* (:func:`end_markers`: a ``session.started`` or
``ticket.created`` at :attr:`PacedDay.end` on that partition, opening nothing that falls due
before it). Every deadline up to ``end - grace`` then fires live, and replay is run with
``until = end - grace``: both see the same clock at the end.

The comparison (:func:`audit`): the set of ``sla_id`` with their final kinds
(:func:`tests.live.harness.final_kinds_from_topics`), and the ``fact_id`` s once repeats are
dropped, equal replay's — no missing fact, no extra one — and a repeated ``fact_id`` carries the
same payload (at-least-once with idempotent ids: a consumer that keeps the first copy loses
nothing). Repeats are counted, per topic, for the report.

One field may differ between repeats: ``detected_at`` of a fact a *timer* found. It is the
instant the worker's clock stood at when it noticed the deadline had passed; a fact published
and then repeated after a crash (its record not yet stored) is noticed again, by a later tick,
on a clock that has moved on. Seen under repeated SIGKILLs: ``…:breach`` published with
``detected_at`` 17:06:08 and again with 17:07:01.3, every other field equal. Facts found by an
event carry that event's time and repeat identically. :attr:`Audit.redetected` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from monitor.engine import SlaEngine
from monitor.policy import load_policy_set
from monitor.replay import final_kinds, replay_events
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import MICROS_PER_SECOND, from_datetime, to_datetime
from monitor.traffic import generate
from monitor.validation import event_from_dict
from tests.live.harness import BEIJING, LiveSetup, TopicReader, live_kinds, record_for

#: How far ahead of the wall clock the day starts: the wall clock must never reach it during a
#: test (the long versions run for minutes).
LEAD = timedelta(hours=6)
#: ``SLA_LOAD_START=2026-12-02T16:00+08:00`` starts every paced day at that hour instead (it must
#: still lie ahead of the wall clock). The day's deadlines depend on the hour it starts (working
#: hours, holidays), so a failure seen in CI is replayed with the start its test printed.
START = os.environ.get("SLA_LOAD_START")

Record = tuple[str, int | None, bytes, bytes]  # topic, partition (None: by key), key, value


@dataclass
class PacedDay:
    """A generated day of traffic ahead of the wall clock, its end markers and replay's facts."""

    setup: LiveSetup
    seed: int
    hours: float = 24.0
    chats_per_hour: float = 40.0
    tickets_per_hour: float = 12.0
    events: list[dict[str, Any]] = field(init=False)
    start: datetime = field(init=False)  # the first hour (SLA_LOAD_START replays one)
    end: int = field(init=False)  # the end markers' occurred_at, microseconds
    oracle: list[SlaEvent] = field(init=False)  # replay's facts, once :meth:`settle` ran

    def __post_init__(self) -> None:
        start = (
            datetime.fromisoformat(START)
            if START
            else (datetime.now(UTC) + LEAD)
            .astimezone(BEIJING)
            .replace(minute=0, second=0, microsecond=0)
        )
        self.start = start
        self.events = generate(
            start,
            self.hours,
            self.seed,
            chats_per_hour=self.chats_per_hour,
            tickets_per_hour=self.tickets_per_hour,
        )
        # Two days after the last event: every chat and ticket target of the day falls due
        # before it. The odd 0.37 s keeps `end - grace` off the round instants deadlines use.
        last = max(from_datetime(datetime.fromisoformat(e["occurred_at"])) for e in self.events)
        self.end = last + 2 * 86_400 * MICROS_PER_SECOND + 370_000
        self.settle(len(self.events))

    def settle(self, sent: int) -> None:
        """Replays the first ``sent`` events (what the pacer sent before the end markers)."""
        engine = SlaEngine(load_policy_set(self.setup.policies))
        until = self.end - round(self.setup.settings.event_time_grace * MICROS_PER_SECOND)
        events = [event_from_dict(e) for e in self.events[:sent]]
        self.oracle = replay_events(engine, events, until)

    def records(self) -> list[Record]:
        out: list[Record] = []
        for event in self.events:
            topic, key, value = record_for(self.setup, event)
            out.append((topic, None, key, value))
        return out

    def end_markers(self) -> list[Record]:
        """One event per input partition at :attr:`end`: it moves that partition's clock."""
        s = self.setup.settings
        at = to_datetime(self.end).astimezone(BEIJING).isoformat(timespec="microseconds")
        out: list[Record] = []
        for p in range(s.partitions):
            sid, tid = f"S-END-{p}", f"T-END-{p}"
            common = {"occurred_at": at, "tenant": "acme", "channel": "web"}
            session = {"event_id": f"{sid}:start", "type": "session.started",
                       "session_id": sid, **common}  # fmt: skip
            ticket = {"event_id": f"{tid}:created", "type": "ticket.created",
                      "ticket_id": tid, "priority": "P4", **common}  # fmt: skip
            out.append((s.topic_chat, p, sid.encode(), orjson.dumps(session)))
            out.append((s.topic_tickets, p, tid.encode(), orjson.dumps(ticket)))
        return out

    def expected_kinds(self) -> dict[str, Kind]:
        return final_kinds(self.oracle)

    def expected_fact_ids(self) -> set[str]:
        return {f.fact_id for f in self.oracle}


class Pacer:
    """Sends a :class:`PacedDay` at a steady rate from a background task (the producer side of
    "under load"), then its end markers; :meth:`finish` waits for every record to be
    acknowledged and replays what was sent (:meth:`PacedDay.settle`).

    :meth:`stop` ends the day early: a test whose faults take longer on a slow machine (or on
    Kafka, whose rebalances wait out the session timeout) gives the pacer more traffic than it
    needs and stops it once the faults are done, so they all happen under load."""

    def __init__(self, day: PacedDay, rate: float) -> None:
        self.day = day
        self.setup = day.setup
        self.rate = rate
        self.sent = 0  # events of the day sent
        self.stopping = False
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        s = self.setup.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            max_batch_size=s.producer_max_batch_size,
            acks=s.producer_acks if s.producer_acks != -1 else "all",
            linger_ms=5,
            **s.aiokafka_security(),
        )
        await producer.start()
        try:
            began = time.monotonic()
            futures = []
            for i, (topic, partition, key, value) in enumerate(self.day.records()):
                if self.stopping:
                    break
                ahead = began + i / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                futures.append(await producer.send(topic, value, key=key, partition=partition))
                self.sent = i + 1
            self.stopping = True
            for topic, partition, key, value in self.day.end_markers():
                futures.append(await producer.send(topic, value, key=key, partition=partition))
            await asyncio.gather(*futures)
            if self.sent < len(self.day.events):
                self.day.settle(self.sent)
        finally:
            await producer.stop()
            self.done.set()

    @property
    def running(self) -> bool:
        """Still sending the day (not yet its end markers)."""
        return not self.stopping

    def stop(self) -> None:
        """Ends the day after the record being sent; the end markers follow."""
        self.stopping = True

    async def finish(self, timeout: float) -> None:
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def fact_topics(setup: LiveSetup) -> list[str]:
    s = setup.settings
    return [s.topic_warnings, s.topic_breaches, s.topic_outcomes]


@dataclass
class Audit:
    """Live output against replay's (see the module doc)."""

    kinds_differ: dict[str, tuple[Kind | None, Kind | None]]
    missing: set[str]
    extra: set[str]
    conflicting: dict[str, list[bytes]]  # fact_id -> payloads differing beyond detected_at
    redetected: int  # fact_ids repeated with another detected_at only (see the module doc)
    repeats: Counter[str]  # topic -> records that repeat a fact_id already on that topic
    facts: int  # distinct fact_ids published

    @property
    def ok(self) -> bool:
        return not (self.kinds_differ or self.missing or self.extra or self.conflicting)

    def __str__(self) -> str:
        def some(items: Any) -> list[Any]:
            return sorted(items)[:5]

        conflicts = [(k, differing_fields(vs)) for k, vs in list(self.conflicting.items())[:5]]
        return (
            f"{len(self.kinds_differ)} final kinds differ (live, replay): "
            f"{some(self.kinds_differ.items())}; {len(self.missing)} fact_ids missing: "
            f"{some(self.missing)}; {len(self.extra)} extra: {some(self.extra)}; "
            f"{len(self.conflicting)} repeated with another payload: {conflicts}; "
            f"repeats per topic {dict(self.repeats)}, {self.redetected} of them with another "
            f"detected_at; {self.facts} distinct facts"
        )


def differing_fields(payloads: list[bytes]) -> dict[str, list[Any]]:
    """The fields that differ between payloads of one ``fact_id``, with their values."""
    docs = [orjson.loads(p) for p in payloads]
    keys = {k for d in docs for k in d}
    return {
        k: [d.get(k) for d in docs]
        for k in sorted(keys)
        if len({orjson.dumps(d.get(k)) for d in docs}) > 1
    }


def audit(reader: TopicReader, day: PacedDay) -> Audit:
    oracle_kinds = day.expected_kinds()
    live = live_kinds(reader, day.setup)
    differ = {
        k: (live.get(k), oracle_kinds.get(k))
        for k in set(live) | set(oracle_kinds)
        if live.get(k) != oracle_kinds.get(k)
    }
    payloads: dict[str, list[bytes]] = {}
    repeats: Counter[str] = Counter()
    for topic in fact_topics(day.setup):
        seen: set[str] = set()
        for record in reader.records[topic]:
            if record.value is None:
                continue
            fact_id = orjson.loads(record.value)["fact_id"]
            if record.value not in payloads.setdefault(fact_id, []):
                payloads[fact_id].append(record.value)
            if fact_id in seen:
                repeats[topic] += 1
            seen.add(fact_id)
    expected = day.expected_fact_ids()
    when = {"detected_at"}
    return Audit(
        kinds_differ=differ,
        missing=expected - set(payloads),
        extra=set(payloads) - expected,
        conflicting={k: sorted(v) for k, v in payloads.items() if set(differing_fields(v)) - when},
        redetected=sum(set(differing_fields(v)) == when for v in payloads.values()),
        repeats=repeats,
        facts=len(payloads),
    )


async def wait_for_oracle(reader: TopicReader, day: PacedDay, timeout: float) -> Audit:
    """Reads the fact topics until live output equals replay's or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    expected = day.expected_kinds()
    while True:
        await reader.poll()
        if time.monotonic() > deadline or live_kinds(reader, day.setup) == expected:
            # A moment more for repeats still in flight, then the verdict.
            for _ in range(3):
                await reader.poll()
            return audit(reader, day)


def holes(*logs: str) -> list[str]:
    """Lines where a worker saw a hole in its input (:mod:`monitor.live.faust_fixes`)."""
    return [ln for log in logs for ln in log.splitlines() if "never reached the worker" in ln]
