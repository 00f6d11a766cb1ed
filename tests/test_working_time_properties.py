"""Property tests of WorkingTime against its own laws and a brute-force reference.

Dates stay within 2025-2026 so that chinese_calendar answers for every day they touch.
"""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.calendar import ChinaCalendar, CountryCalendar, WorkingTime
from monitor.timeutil import Micros, parse_rfc3339, seconds, to_datetime

H = seconds(3600)
M = seconds(60)
# Module-level and shared: their day caches warm up over the examples, as in production.
CALENDARS = [
    WorkingTime(
        ChinaCalendar(), ZoneInfo("Asia/Shanghai"), [(time(9), time(12)), (time(13), time(18))]
    ),
    WorkingTime(ChinaCalendar(), ZoneInfo("Asia/Shanghai"), [(time(9), time(18))]),
    # A DST zone; its intervals avoid the 02:00-03:00 transition hour, so the wall-clock
    # reference below stays valid on DST days.
    WorkingTime(
        CountryCalendar("DE", "BY"),
        ZoneInfo("Europe/Berlin"),
        [(time(8), time(12)), (time(12, 30), time(16, 45))],
    ),
    WorkingTime(CountryCalendar("US", "NY"), ZoneInfo("America/New_York"), [(time(9), time(17))]),
]
LO = parse_rfc3339("2025-01-01T00:00:00Z")
HI = parse_rfc3339("2026-12-15T00:00:00Z")  # room for adds without reaching 2027

working_time = st.sampled_from(CALENDARS)
any_instant = st.integers(LO, HI)
# Instants on a minute grid hit interval bounds exactly, where the bugs live.
minute_instant = st.integers(0, (HI - LO) // M).map(lambda n: LO + n * M)
instants = st.one_of(any_instant, minute_instant)
durations = st.one_of(
    st.integers(0, 5 * 9 * H),
    st.integers(0, 5 * 9 * 60).map(lambda n: n * M),
    st.sampled_from([0, 1, H - 1, H, 3 * H, 4 * H, 9 * H, 9 * H + 1]),
)

FAST = settings(max_examples=300, deadline=None)


@FAST
@given(working_time, instants, durations)
def test_between_inverts_add(wt: WorkingTime, start: int, duration: int) -> None:
    deadline = wt.add(start, duration)
    assert deadline >= start
    assert wt.between(start, deadline) == duration
    if duration > 0:  # the earliest such instant
        assert wt.between(start, deadline - 1) == duration - 1


@FAST
@given(working_time, instants, durations, durations)
def test_add_is_monotonic(wt: WorkingTime, start: int, d1: int, d2: int) -> None:
    d1, d2 = sorted((d1, d2))
    if d1 < d2:
        assert wt.add(start, d1) < wt.add(start, d2)
    else:
        assert wt.add(start, d1) == wt.add(start, d2)


@FAST
@given(
    working_time, instants, st.integers(0, 3 * 86_400 * 10**6), st.integers(0, 3 * 86_400 * 10**6)
)
def test_between_is_additive(wt: WorkingTime, a: int, gap1: int, gap2: int) -> None:
    b, c = a + gap1, a + gap1 + gap2
    assert wt.between(a, b) + wt.between(b, c) == wt.between(a, c)


@FAST
@given(working_time, instants, durations)
def test_add_lands_in_working_time_or_on_an_interval_end(
    wt: WorkingTime, start: int, duration: int
) -> None:
    deadline = wt.add(start, duration)
    if duration == 0:
        assert wt.is_working(deadline)
        assert deadline == wt.next_working_start(start)
    else:
        assert wt.is_working(deadline - 1)  # the last microsecond counted was working
        assert wt.is_working(deadline) or wt.next_working_start(deadline) > deadline


@FAST
@given(working_time, instants)
def test_next_working_start_and_period(wt: WorkingTime, instant: int) -> None:
    nxt = wt.next_working_start(instant)
    assert nxt >= instant
    assert wt.is_working(nxt)
    assert wt.between(instant, nxt) == 0
    assert (nxt == instant) == wt.is_working(instant)


# -- brute force: step minute by minute on the wall clock -------------------------------------


def wall_working(wt: WorkingTime, instant: int) -> bool:
    """The definition, without the cache: a working date and a wall time in an interval."""
    moment = to_datetime(instant, wt.tz)
    if not wt.days.is_working_day(moment.date()):
        return False
    wall = moment.time()
    return any(start <= wall < end for start, end in wt.intervals)


SPAN_MINUTES = 2 * 24 * 60


@settings(max_examples=60, deadline=None)
@given(working_time, minute_instant, st.integers(0, SPAN_MINUTES))
def test_between_agrees_with_minute_stepping(wt: WorkingTime, start: int, minutes: int) -> None:
    expected = sum(wall_working(wt, start + k * M) for k in range(minutes)) * M
    assert wt.between(start, start + minutes * M) == expected


@settings(max_examples=60, deadline=None)
@given(working_time, minute_instant, st.integers(0, 9 * 60))
def test_add_agrees_with_minute_stepping(wt: WorkingTime, start: int, minutes: int) -> None:
    # Step until `minutes` working minutes are counted (or, for 0, to a working minute).
    instant, counted = start, 0
    while True:
        working = wall_working(wt, instant)
        if minutes == 0 and working:
            expected = instant
            break
        instant += M
        counted += working
        if minutes and counted == minutes:
            expected = instant
            break
    assert wt.add(start, minutes * M) == Micros(expected)
