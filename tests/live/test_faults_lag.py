"""Lag (issue 10): the worker stopped while ten minutes of traffic arrived, then restarted.
Breaches that fell due meanwhile come out once, with their true deadlines, and none is false.

How ten minutes pass without waiting for them: the worker that ran before the outage is a
:class:`~tests.live.probes.ShiftedWorker`, whose wall clock reads ten minutes behind the
host's. It handles phase 1 live (wall-clock mode) "ten minutes ago", emits its warnings and
mets, and is stopped (SIGTERM). Then the traffic of the ten minutes that followed, occurred_at
from the stop up to the present, is produced while no worker runs, and an ordinary worker
starts on it: a backlog whose event time lies in the past and ends at now. It must judge the
backlog on event time (a response still unread is not missing), and once caught up switch to
the wall clock, which fires the deadlines that lie after the backlog's last event.

The traffic (chat, a 120 s first and next response target, a warning at 50 %):

* phase 1, handled live by the first worker: sessions warned before the stop whose deadline
  falls in the outage; sessions met before the stop; sessions opened just before the stop,
  some never answered (breached in the outage), some answered in time during the outage;
* phase 2, the outage: a steady stream of sessions (met; answered late; never answered;
  closed unanswered; a second customer message never answered, a next_response breach);
* the tail: sessions whose deadline lies after the backlog's last event, due by the wall clock.

The oracle is :func:`monitor.replay.replay_events` over the same events in time order (the
order they are produced in, so every partition reads them in time order too, and replay's
single clock and the worker's per-partition clocks reach the same verdicts). Checked: the
breaches and mets are exactly replay's, by ``fact_id``, each published once (the worker was
stopped cleanly: nothing to repeat); every breach's ``deadline`` and ``started_at`` equal
replay's; no retraction (a retraction would mean a false breach); every warning is one of
replay's, published at most once (the first worker's warnings are not repeated).

Long version: ``SLA_LAG_MINUTES=60`` (default 10) makes the outage, and the backlog, an hour
long at the same rate.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from monitor.engine import SlaEngine
from monitor.live.broker import Broker
from monitor.policy import load_policy_set
from monitor.replay import replay_events
from monitor.sla_event import SlaEvent
from monitor.timeutil import MICROS_PER_SECOND, format_rfc3339, parse_rfc3339
from monitor.validation import event_from_dict
from tests.live.harness import (
    BEIJING,
    LiveSetup,
    TopicReader,
    chat,
    chat_policy_dir,
    ev,
    produce,
    session_id,
)
from tests.live.probes import ShiftedWorker

pytestmark = pytest.mark.broker

S = MICROS_PER_SECOND
TARGET = 120 * S
OUTAGE = round(float(os.environ.get("SLA_LAG_MINUTES", "10")) * 60) * S


def now_us() -> int:
    return time.time_ns() // 1000


def at(instant: int) -> str:
    return format_rfc3339(instant, BEIJING)


def say(sid: str, instant: int, sender: str) -> dict[str, Any]:
    return ev(sid, "message.sent", at(instant), sender=sender)


def opened(sid: str, instant: int) -> list[dict[str, Any]]:
    return [ev(sid, "session.started", at(instant), channel="web"), say(sid, instant, "customer")]


def outage_traffic(t1: int, t_stop: int, answered: list[str]) -> list[dict[str, Any]]:
    """What happened while no worker ran: occurred_at in (t_stop, t_stop + OUTAGE).

    Responses in time come late in their target (100-110 s of 120), so in the backlog many
    records lie between a session's start and its response: a worker that judged the backlog
    on the wall clock would find them missing."""
    out = [say(sid, t1 + 110 * S, "agent") for sid in answered]  # opened at t1: in time
    end = t_stop + OUTAGE
    start, i = t_stop + 5 * S, 0
    while start + 210 * S < end:  # every event and deadline of the stream inside the backlog
        sid = session_id(f"lag{i % 5}")
        out += opened(sid, start)
        fate = i % 5
        if fate == 0:  # met, then met again after a second customer message
            out += [say(sid, start + 100 * S, "agent"), say(sid, start + 105 * S, "customer")]
            out.append(say(sid, start + 200 * S, "agent"))
        elif fate == 1:  # answered after the deadline: a breach whatever the clock
            out.append(say(sid, start + 150 * S, "agent"))
        elif fate == 3:  # closed unanswered before the deadline: nothing
            out.append(ev(sid, "session.closed", at(start + 50 * S)))
        elif fate == 4:  # met, then the customer writes again and nobody answers
            out += [say(sid, start + 30 * S, "agent"), say(sid, start + 60 * S, "customer")]
        # fate 2: never answered, a breach by the timer
        start += 3 * S
        i += 1
    # The tail: due after the backlog's last event (end - 5 s), so only the wall clock that
    # takes over once the worker has caught up can fire them.
    for _ in range(4):
        out += opened(session_id("lagtail"), end - TARGET + 10 * S)
    last = session_id("laglast")
    out += [*opened(last, end - 5 * S), say(last, end - 5 * S, "agent")]
    return sorted(out, key=lambda e: parse_rfc3339(e["occurred_at"]))


def by_fact(facts: list[dict[str, Any]], kind: str) -> Counter[str]:
    return Counter(f["fact_id"] for f in facts if f["kind"] == kind)


async def test_breaches_that_fell_due_during_an_outage_come_out_once(
    broker: Broker, tmp_path: Path
) -> None:
    policies = chat_policy_dir(
        tmp_path, "lag-chat", "minute-scale chat targets, so a ten-minute outage holds many",
        within="120s", retention="1h",
    )  # fmt: skip
    # Small batches: a real ten-minute backlog is thousands of batches, so the worker reads it
    # over many ticks of its timer; this one has ~600 records, which Kafka hands over in one
    # or two batches of the default 1000, before the timer ever sees the partition behind.
    setup = LiveSetup(broker, tmp_path, policies=str(policies), overrides={"batch_max": 25})
    s = setup.settings
    await setup.create_topics()
    engine = SlaEngine(load_policy_set(str(policies)))
    tz = engine.timezone_of("lag-chat")

    before = ShiftedWorker(setup.worker(), offset_us=OUTAGE)
    after = setup.worker()
    async with TopicReader(s, [s.topic_warnings, s.topic_breaches, s.topic_outcomes]) as reader:
        try:
            before.start()
            await before.wait_ready(timeout=60)
            t1 = now_us() - OUTAGE  # the first worker's "now"
            warned = [session_id("warned") for _ in range(4)]
            met = [session_id("met") for _ in range(4)]
            unanswered = [session_id("open") for _ in range(6)]
            answered = [session_id("answered") for _ in range(6)]
            phase1 = [e for sid in warned for e in opened(sid, t1 - 70 * S)]  # warned at t1-10
            for sid in met:
                phase1 += [*opened(sid, t1 - 3 * S), say(sid, t1 - 1 * S, "agent")]
            phase1 += [e for sid in unanswered + answered for e in opened(sid, t1)]
            phase1.sort(key=lambda e: parse_rfc3339(e["occurred_at"]))
            await produce(s, [chat(setup, e) for e in phase1])

            def subjects(r: TopicReader, topic: str, kind: str) -> set[str]:
                return {f["subject_id"] for f in r.facts(topic) if f["kind"] == kind}

            await reader.wait_for(
                lambda r: (
                    subjects(r, s.topic_warnings, "warning") >= set(warned)
                    and subjects(r, s.topic_outcomes, "met") >= set(met)
                ),
                timeout=60,
                what="the first worker's warnings and mets",
            )
            before.stop()  # SIGTERM: the outage begins
            t_stop = now_us() - OUTAGE
            assert t_stop < t1 + 50 * S, "phase 1 took so long that its deadlines passed live"
            assert not subjects(reader, s.topic_breaches, "breach"), "a breach before the outage"

            backlog = outage_traffic(t1, t_stop, answered)
            await produce(s, [chat(setup, e) for e in backlog])
            events = phase1 + backlog
            assert parse_rfc3339(backlog[-1]["occurred_at"]) < now_us()  # the past, up to now

            after.start()  # the ordinary wall clock: ten minutes later
            await after.wait_ready(timeout=60)
            oracle = await settle(reader, setup, engine, events, timeout=150)
        finally:
            before.stop()
            after.stop()

    facts = {t: reader.facts(t) for t in (s.topic_warnings, s.topic_breaches, s.topic_outcomes)}
    expected = {f.fact_id: f for f in oracle}
    breaches = by_fact(facts[s.topic_breaches], "breach")
    mets = by_fact(facts[s.topic_outcomes], "met")
    warnings = by_fact(facts[s.topic_warnings], "warning")
    want_breaches = {f.fact_id for f in oracle if f.kind == "breach"}
    assert set(breaches) == want_breaches, (
        f"{len(set(breaches) - want_breaches)} false, {len(want_breaches - set(breaches))} missed"
    )
    assert set(mets) == {f.fact_id for f in oracle if f.kind == "met"}
    assert not [f for f in facts[s.topic_breaches] if f["kind"] == "retraction"]
    assert not [f for f in oracle if f.kind == "retraction"]
    repeated = [k for c in (breaches, mets, warnings) for k, n in c.items() if n > 1]
    assert not repeated, repeated
    assert by_fact(facts[s.topic_outcomes], "breach") == breaches
    assert set(warnings) <= {f.fact_id for f in oracle if f.kind == "warning"}
    for fact in facts[s.topic_breaches]:
        want = expected[fact["fact_id"]].to_dict(tz)
        for field in ("deadline", "started_at", "sla_id", "metric", "target_seconds"):
            assert fact[field] == want[field], (field, fact, want)

    # The scenario is what it says: the first worker warned, the outage held many deadlines
    # (the pre-stop sessions' among them), and some fell after the backlog's last event.
    deadlines = {k: parse_rfc3339(expected[k].to_dict(tz)["deadline"]) for k in breaches}
    in_outage = [k for k, d in deadlines.items() if t_stop < d <= t_stop + OUTAGE]
    last_event = max(parse_rfc3339(e["occurred_at"]) for e in events)
    by_wall = [k for k, d in deadlines.items() if d > last_event]
    pre_stop = {expected[k].subject_id for k in breaches} & set(warned + unanswered)
    assert len(in_outage) >= OUTAGE // (20 * S), len(in_outage)
    assert pre_stop == set(warned + unanswered)
    assert len(by_wall) >= 4  # the tail, and next responses of the stream's last sessions
    assert "caught up" in after.log()  # it logs the switch to the wall clock
    print(
        f"\nlag {OUTAGE // (60 * S)} min, {len(events)} events: {len(breaches)} breaches "
        f"({len(in_outage)} due during the outage, {len(pre_stop)} of sessions opened before "
        f"it, {len(by_wall)} due after the backlog's last event), {len(mets)} met, "
        f"{len(warnings)} warnings; each once, deadlines equal replay's, no retraction"
    )


async def settle(
    reader: TopicReader,
    setup: LiveSetup,
    engine: SlaEngine,
    events: list[dict[str, Any]],
    timeout: float,
) -> list[SlaEvent]:
    """Waits until every deadline has passed on the wall clock and the worker's breaches and
    mets equal replay's up to now (or ``timeout``), and returns replay's facts."""
    s = setup.settings
    parsed = [event_from_dict(e) for e in events]
    # The last deadline that will ever breach (replay's clock a day on): wait past it.
    future = replay_events(SlaEngine(engine.policies), parsed, now_us() + 86_400 * S)
    last_due = max(f.deadline for f in future if f.kind == "breach")
    deadline = time.monotonic() + timeout
    while True:
        await reader.poll()
        until = now_us()
        oracle = replay_events(SlaEngine(engine.policies), parsed, until)
        want = {(f.fact_id, f.kind) for f in oracle if f.kind in ("breach", "met")}
        live = {
            (f["fact_id"], f["kind"])
            for f in reader.facts(s.topic_breaches) + reader.facts(s.topic_outcomes)
        }
        if (until > last_due and live >= want) or time.monotonic() > deadline:
            await asyncio.sleep(1.0)  # anything extra the worker was about to publish
            await reader.poll()
            return oracle
