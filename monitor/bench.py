"""``sla-monitor bench``: throughput and state-size figures for BENCHMARKS.md.

Figures are printed, never asserted: machines differ, and a timed test is a flaky test. What
is measured, on generated realistic traffic (:mod:`monitor.traffic`):

* replay throughput end to end (bytes -> validated events -> engine -> SLA facts), in one
  process, against the 100k events/s target;
* the engine alone, on pre-parsed events;
* the size of an open timer: the serialised record of every subject with a pending deadline
  (what the Faust table and its changelog hold), against the 1 KiB target.
"""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from monitor import traffic
from monitor.engine import SlaEngine
from monitor.policy import load_policy_set
from monitor.replay import Replay
from monitor.validation import parse_event


def run_bench(hours: float = 24.0, scale: float = 20.0) -> int:
    start = datetime(2026, 10, 8, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    print(f"generating {hours:g} h of traffic at {scale:g}x the sample's rate ...")
    dicts = traffic.generate(
        start, hours, seed=7, chats_per_hour=20.0 * scale, tickets_per_hour=8.0 * scale
    )
    lines = [orjson.dumps(d) for d in dicts]
    n = len(lines)
    engine = SlaEngine(load_policy_set())

    began = time.perf_counter()
    events = [parse_event(line) for line in lines]
    parse_s = time.perf_counter() - began

    replay = Replay(engine)
    began = time.perf_counter()
    facts = 0
    for event in events:
        facts += len(replay.feed(event))
    engine_s = time.perf_counter() - began

    open_records = [s.to_bytes() for s in replay.states.values() if s.next_due is not None]
    sizes = sorted(len(r) for r in open_records)

    print(f"events:                  {n:,} ({facts:,} SLA facts)")
    print(f"validation:              {n / parse_s:,.0f} events/s")
    print(f"engine (replay):         {n / engine_s:,.0f} events/s")
    print(f"replay end to end:       {n / (parse_s + engine_s):,.0f} events/s  (target >= 100,000)")
    if sizes:
        p50, p99 = sizes[len(sizes) // 2], sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))]
        print(
            f"open timer record:       p50 {p50} B, p99 {p99} B, max {sizes[-1]} B "
            f"over {len(sizes):,} open subjects  (target <= 1024 B)"
        )
    return 0
