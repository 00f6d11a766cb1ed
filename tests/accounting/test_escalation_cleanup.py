"""What the 6.2 state forgets, and when (monitor.accounting.escalation_state, "Crashes" and
"Final windows"): a closed day's buckets, a final month's ``breach_count`` buckets, and the
buckets a crash between a fact's writes left behind.

The store is a dict, as in test_escalation_state; a crash is simulated by storing only a prefix
of a fact's writes. A tenant's October of chat first responses (180 s targets), then November:

* every day 10:00, 11:00, 12:00: answered after 60 s (met, ratio 1/3);
* 5-7 Oct: 4 unanswered breaches a day (ratio 2.0): each day's mean (1 + 8) / 7 = 1.29 > 1.2,
  so one ``slow_days`` trip, and 12 breaches = 4 ``breach_count`` trips (N = 3);
* 20, 28 and 31 Oct: one breach each, 28 Oct's retracted: 2 breaches pending at the month's
  end, so one more October breach would trip a fifth time;
* 1 Nov-2 Dec: the same met sessions, and one breach on 2 Nov. October's window closes once
  November is final too (a month of grace): once a fact of a clock started after 1 Dec 01:00
  (November's end plus ``day_closes_after``, 1 h) has arrived.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from monitor.accounting.escalation import Escalator, TenantState
from monitor.accounting.escalation_state import PolicyHead, head_key
from monitor.policy import load_policy_set
from monitor.policy.loader import BUNDLED_POLICIES
from monitor.sla_event import Kind, SlaEvent, make_sla_id
from monitor.vocabulary import Metric, Period
from tests.accounting.known_month import BEIJING
from tests.accounting.test_escalation_state import Store, apply_stored, store_writes

OCT_1 = 1_790_784_000_000_000  # 2026-10-01T00:00:00+08:00
HOUR = 3_600_000_000
DAY = 24 * HOUR
TARGET = 180.0
POLICY = "online-chat"
HEAD = head_key(POLICY)


def chat(kind: Kind, subject: str, start: int, elapsed: float | None = None) -> SlaEvent:
    """A first-response fact of tenant ``t``: met or breached (unanswered at its deadline when
    ``elapsed`` is None), or the retraction of that breach."""
    deadline = start + int(TARGET * 1e6)
    responded = None if elapsed is None else start + int(elapsed * 1e6)
    detected = {Kind.MET: responded, Kind.BREACH: deadline}.get(kind, deadline + 30_000_000)
    assert detected is not None
    return SlaEvent(
        make_sla_id("t", "chat_session", subject, "first_response", 0),
        kind,
        Metric.FIRST_RESPONSE,
        0,
        "chat_session",
        subject,
        "t",
        "web",
        "normal",
        POLICY,
        "2.2(1)",
        TARGET,
        "wall",
        Period.WORKING_HOURS,
        start,
        deadline,
        detected,
        responded,
    )


def traffic() -> list[SlaEvent]:
    """October to 2 December as the module doc says, in detection order (replay's)."""
    facts = []
    for day in range(63):  # 1 Oct .. 2 Dec
        base = OCT_1 + day * DAY
        for hour in (10, 11, 12):
            facts.append(chat(Kind.MET, f"M-{day}-{hour}", base + hour * HOUR, 60.0))
        breaches = 4 if day + 1 in (5, 6, 7) else int(day + 1 in (20, 28, 31) or day == 32)
        for i in range(breaches):
            facts.append(chat(Kind.BREACH, f"B-{day}-{i}", base + (13 + i) * HOUR))
        if day + 1 == 28:
            facts.append(chat(Kind.RETRACTION, f"B-{day}-0", base + 13 * HOUR))
    facts.sort(key=lambda f: f.detected_at)
    return facts


def late_october_breach() -> SlaEvent:
    """Detected after October is final: a breach of 30 Oct that reached the stage late."""
    return chat(Kind.BREACH, "B-late", OCT_1 + 29 * DAY + 15 * HOUR)


def head_of(store: Store) -> PolicyHead:
    head: PolicyHead = TenantState(store.get).get(HEAD)
    return head


def orphans(store: Store) -> list[str]:
    """Buckets of a day or window that is no longer open: nothing will read them again."""
    head = head_of(store)
    out = []
    for key in store:
        parts = key.split("\x1f")
        if parts[1] == "b" and parts[2] not in head.open_days:
            out.append(key)
        if parts[1] == "w" and parts[2] not in head.windows:
            out.append(key)
    return out


def run_stored(escalator: Escalator, facts: list[SlaEvent]) -> Iterator[tuple[Store, list[str]]]:
    """Applies ``facts`` one by one as the live stage does; yields the store and the trips'
    ids after each."""
    store: Store = {}
    for fact in facts:
        trips, writes = apply_stored(escalator, store, fact, "")
        store_writes(store, writes)
        yield store, [str(t["escalation_id"]) for t in trips]


def policies_with_contract_window(tmp: Path) -> Path:
    folder = tmp / "contract-window"
    folder.mkdir()
    for source in BUNDLED_POLICIES.glob("*.yaml"):
        text = source.read_text()
        if source.name == f"{POLICY}.yaml":
            assert "    window: month" in text
            text = text.replace("    window: month", "    window: contract")
        (folder / source.name).write_text(text)
    return folder


def test_a_final_month_forgets_its_breaches_and_counts_later_ones_as_late() -> None:
    facts = traffic()
    escalator = Escalator(load_policy_set(None))
    final_at = OCT_1 + 61 * DAY + HOUR  # 1 Dec 01:00: November's end plus day_closes_after
    grace_checked = False
    memory, in_memory = TenantState(), []
    for fact in facts:
        in_memory += [e.to_dict(BEIJING) for e in escalator.apply(memory, fact)]
    rules = [(e["rule"], e["window"], e["ordinal"]) for e in in_memory]
    assert rules == [
        ("breach_count", "2026-10", 1),  # 5 Oct
        ("breach_count", "2026-10", 2),  # 6 Oct
        ("breach_count", "2026-10", 3),  # 7 Oct, twice
        ("breach_count", "2026-10", 4),
        ("slow_days", "2026-10", 1),  # 7 Oct closes on 8 Oct's first fact
    ]
    stored: list[str] = []
    window_keys_before_final = 0
    for fact, (store, trips) in zip(facts, run_stored(escalator, facts), strict=True):
        stored += trips
        october = [k for k in store if "\x1fw\x1f2026-10\x1f" in k]
        head = head_of(store)
        if fact.started_at < final_at:
            window_keys_before_final = len(october)
            if not grace_checked and fact.started_at > OCT_1 + 45 * DAY:  # mid-November
                # A partition lagging two weeks (past partition_patience) still has its
                # October breach counted: with the 2 pending, it trips a fifth time.
                lagging = dict(store)
                late, _ = apply_stored(escalator, lagging, late_october_breach(), "")
                assert [(t["window"], t["ordinal"]) for t in late] == [("2026-10", 5)]
                grace_checked = True
            assert ("2026-10" in head.windows) == (fact.started_at >= OCT_1 + 4 * DAY + 13 * HOUR)
            assert head.windows_closed_through is None
        else:  # the first fact past the point, and every later one
            assert october == [], october
            assert "2026-10" not in head.windows
            assert head.windows_closed_through == "2026-10"
        assert orphans(store) == []  # closed days' buckets are gone too
    assert grace_checked
    assert window_keys_before_final >= 10  # 15 breaches and a retraction, hashed
    assert stored == [str(e["escalation_id"]) for e in in_memory]
    # The late breach: counted as late and ignored, as for a closed day. (Before windows
    # closed, two October breaches were still pending here: it tripped a fifth time.)
    late_before = head_of(store).late
    trips, writes = apply_stored(escalator, store, late_october_breach(), "")
    store_writes(store, writes)
    assert trips == []
    assert head_of(store).late == late_before + 1  # once, though its day is final too
    assert "2026-10" not in head_of(store).windows  # not reopened
    assert orphans(store) == []
    assert not any("\x1f2026-10" in k for k in store)
    assert escalator.apply(memory, late_october_breach()) == []
    # A November breach still counts in its own window.
    nov = chat(Kind.BREACH, "B-nov", OCT_1 + 33 * DAY + 15 * HOUR)
    store_writes(store, apply_stored(escalator, store, nov, "")[1])
    assert sorted(head_of(store).windows["2026-11"].pending) == sorted(
        [nov.sla_id, chat(Kind.BREACH, "B-32-0", 0).sla_id]
    )


def test_the_whole_contract_window_is_never_closed(tmp_path: Path) -> None:
    escalator = Escalator(load_policy_set(str(policies_with_contract_window(tmp_path))))
    stored = list(run_stored(escalator, traffic()))
    store = stored[-1][0]  # one dict, changed in place
    trips = [trip for _, new in stored for trip in new]
    head = head_of(store)
    assert len(trips) == 6  # 5 breach_count (14 net October breaches and 2 Nov's), slow_days
    assert list(head.windows) == ["contract"]
    assert head.windows_closed_through is None
    assert head.windows["contract"].pending == {}
    assert sum("\x1fw\x1fcontract\x1f" in k for k in store) >= 10
    late = late_october_breach()
    trip, writes = apply_stored(escalator, store, late, "")
    store_writes(store, writes)
    assert trip == []
    assert list(head_of(store).windows["contract"].pending) == [late.sla_id]  # counted
    assert head_of(store).late == head.late + 1  # its day is final: slow_days ignores it


@pytest.mark.parametrize("seed", range(6))
def test_a_crash_between_a_closing_facts_writes_leaves_no_bucket_behind(seed: int) -> None:
    """The live stage stores a fact's records one by one: head first, then buckets, then the
    closed days' and months' deletions. A SIGKILL can keep any prefix; the stage then applies
    the same fact again (its offset was not committed), or, if the crash came after the last
    put, it is as if the stage had gone on to the next fact. Here every fact that deletes
    something (closes a day or a month, or drains what a crash left) crashes once, after its
    head. After the following fact is stored, no bucket of
    a closed day or month remains, and the trips are those of a run without crashes."""
    facts = [*traffic(), late_october_breach()]
    escalator = Escalator(load_policy_set(None))
    memory = TenantState()
    expected = [e.to_dict(BEIJING) for f in facts for e in escalator.apply(memory, f)]
    rng = random.Random(seed)
    store: Store = {}
    got: dict[str, dict[str, object]] = {}
    crashes = left_behind = 0
    i, crashed_at = 0, -1
    while i < len(facts):
        trips, writes = apply_stored(escalator, store, facts[i], "")
        for trip in trips:
            assert got.setdefault(str(trip["escalation_id"]), trip) == trip
        keys = [key for key, _ in writes]
        head_at = keys.index(HEAD) if HEAD in keys else len(keys)  # unchanged: not written
        # Deletions: of the days and months this fact closes, or (before the head) drains of
        # what an earlier crash left.
        deletions = any(raw is None for _, raw in writes)
        if deletions and crashed_at != i and head_at + 1 < len(writes):
            cut = rng.randint(head_at + 1, len(writes) - 1)  # the head, not the last write
            store_writes(store, writes[:cut])
            crashes += 1
            left_behind += bool(orphans(store))
            crashed_at = i
            if any(raw is not None for _, raw in writes[cut:]) or rng.random() < 0.5:
                continue  # the same fact again (it lost a put: it must be re-read)
        else:
            store_writes(store, writes)
            assert orphans(store) == [], (i, orphans(store)[:3])
        i += 1
    store_writes(store, apply_stored(escalator, store, chat(Kind.MET, "last", 0, 1.0), "")[1])
    assert orphans(store) == []
    assert crashes > 40, crashes  # measured 44-52 (every seed)
    assert left_behind > 30, left_behind  # each closing day's and month's crash: 33
    assert list(got.values()) == expected


def test_a_head_stored_before_this_version_reads_as_having_nothing_to_drain() -> None:
    """The byte layout stays readable: a head written without ``draining`` and
    ``windows_closed_through`` (the previous version's) loads with none of either, and the
    next fact goes on from it."""
    old = {
        "lanes": {"": OCT_1 + 10 * HOUR},
        "closed_through": None,
        "open_days": {"2026-10-01": "1"},
        "run": [],
        "run_tripped": False,
        "slow_trips": {},
        "late": 0,
        "windows": {},
    }
    store: Store = {HEAD: orjson.dumps(old)}
    head = head_of(store)
    assert head.draining == []
    assert head.windows_closed_through is None
    fact = chat(Kind.MET, "next", OCT_1 + 11 * HOUR, 60.0)
    store_writes(store, apply_stored(Escalator(load_policy_set(None)), store, fact, "")[1])
    assert head_of(store).lanes == {"": fact.started_at}
