"""Working time: SLA clocks that run only during a team's working hours.

:class:`WorkingTime` combines a :class:`~monitor.calendar.days.DayCalendar` (which dates are
working days), a time zone and the working day's intervals in local wall time (say 09:00–12:00
and 13:00–17:00). The SLA engine calls :meth:`WorkingTime.add` to turn "4 working hours from
ticket creation" into a deadline, :meth:`WorkingTime.between` to report elapsed working time,
and :meth:`WorkingTime.period_of` to classify when a clock started.

Instants are :data:`monitor.timeutil.Micros`; results are exact to the microsecond. The
replay target is 100k events/s in one process, so the hot path is integer arithmetic only:
each local date is turned into ``(start, end)`` microsecond pairs once, by datetime
arithmetic, and kept in a bounded per-instance LRU cache; the day an instant falls in is found
by comparing integers, starting from the last day used (events arrive roughly in time order).

Daylight saving time: a local interval bound is resolved to one instant, deterministically:

* an *ambiguous* wall time (it occurs twice when clocks go back) means its first occurrence
  (PEP 495 ``fold=0``, the earlier instant);
* a *non-existent* wall time (skipped when clocks go forward) means the instant the clock
  jumps, i.e. the end of the gap: a shift "from 02:30" on a spring-forward day in Berlin
  starts at 03:00 CEST. So working time never covers a wall time outside the intervals.

The same rule gives each day's bounds (its local midnights), so days tile the time line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple

from monitor.calendar.days import DayCalendar
from monitor.errors import CalendarError, ConfigError
from monitor.timeutil import MICROS_PER_SECOND, Micros, from_datetime, to_datetime
from monitor.vocabulary import Period

_MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# A calendar with no working time for a whole year is misconfigured (or an override file says
# every day is a holiday); fail loudly instead of scanning forever.
MAX_IDLE_DAYS = 366
# Dates kept in the cache: more than a year of days, a few hundred KiB at most.
_CACHE_DAYS = 1024
_MIDNIGHT = time(0, 0)


class _Day(NamedTuple):
    """One local date on the time line: its bounds and its working intervals, as instants."""

    ordinal: int  # date.toordinal() of the local date
    start: int  # local midnight starting the date
    end: int  # local midnight starting the next date
    working_day: bool  # what the day calendar said
    intervals: tuple[tuple[int, int], ...]  # half-open [start, end) pairs, sorted, non-empty


class WorkingTime:
    """Working-time arithmetic for one team: a day calendar, a zone and daily intervals.

    Built once per policy at start-up and shared; methods are pure (the cache aside) and
    never read the clock. Every method may raise :class:`monitor.errors.CalendarError` when
    the day calendar cannot answer for a date it needs.
    """

    __slots__ = (
        "_bounds_cached",
        "_day_cached",
        "_days",
        "_intervals",
        "_last",
        "_tz",
        "_working_seconds",
    )

    def __init__(
        self, days: DayCalendar, tz: tzinfo, intervals: Sequence[tuple[time, time]]
    ) -> None:
        """Raises ConfigError unless ``intervals`` are sorted, non-overlapping, start < end.

        Intervals are local wall times within one day; an end of ``time(0, 0)`` means 24:00
        (the next midnight) and is allowed on the last interval only. Adjacent intervals
        (12:00–13:00, 13:00–17:00) are merged: they mean the same working time.
        """
        self._days = days
        self._tz = tz
        self._intervals = _validate(intervals)
        total = 0
        for start, end in self._intervals:
            end_s = 86_400 if end == _MIDNIGHT else _seconds_of(end)
            total += end_s - _seconds_of(start)
        # Nominal: a DST day's intervals may be an hour shorter or longer on the time line.
        self._working_seconds = total
        # Per-instance, bounded: a module-level cache would pin every WorkingTime forever.
        self._day_cached = lru_cache(maxsize=_CACHE_DAYS)(self._compute_day)
        self._bounds_cached = lru_cache(maxsize=_CACHE_DAYS)(self._compute_bounds)
        # An empty sentinel, so construction asks the day calendar nothing (it may be strict
        # and have no data for the epoch's year).
        self._last = _Day(0, 0, 0, False, ())

    @property
    def days(self) -> DayCalendar:
        return self._days

    @property
    def tz(self) -> tzinfo:
        return self._tz

    @property
    def working_seconds_per_day(self) -> int:
        """The sum of the intervals' nominal lengths, in seconds (9 h for 09:00–18:00)."""
        return self._working_seconds

    @property
    def intervals(self) -> tuple[tuple[time, time], ...]:
        return self._intervals

    # -- queries -------------------------------------------------------------------------

    def is_working(self, instant: int) -> bool:
        """Whether ``instant`` is in working time (interval starts in, ends out)."""
        for start, end in self._locate(instant).intervals:
            if instant < end:
                return instant >= start
        return False

    def next_working_start(self, instant: int) -> Micros:
        """``instant`` if it is in working time, else the start of the next working interval."""
        day = self._locate(instant)
        for start, end in day.intervals:
            if instant < end:
                return Micros(start if start > instant else instant)
        return Micros(self._next_working_day(day).intervals[0][0])

    def period_of(self, instant: int) -> Period:
        """Classifies ``instant`` as the contracts do (the SLA engine records it on start).

        REST_DAY on a non-working day; WORKING_HOURS on a working day from the first
        interval's start to the last interval's end (a lunch break counts); else AFTER_HOURS.
        """
        day = self._locate(instant)
        if not day.working_day:
            return Period.REST_DAY
        if day.intervals and day.intervals[0][0] <= instant < day.intervals[-1][1]:
            return Period.WORKING_HOURS
        return Period.AFTER_HOURS

    def between(self, start: int, end: int) -> Micros:
        """Working time in ``[start, end)``; 0 if ``end <= start``."""
        if end <= start:
            return Micros(0)
        total = 0
        day = self._locate(start)
        while True:
            for a, b in day.intervals:
                lo = a if a > start else start
                hi = b if b < end else end
                if hi > lo:
                    total += hi - lo
            if end <= day.end:
                return Micros(total)
            day = self._day(day.ordinal + 1)

    def add(self, start: int, duration: int) -> Micros:
        """The earliest instant ``x`` with ``between(start, x) == duration``: the deadline.

        Outside working time the clock starts at the next working start (after a break, at
        its end). ``duration`` 0 gives :meth:`next_working_start`. A deadline landing exactly
        on an interval's end is that end (12:00, not 13:00): the earliest such instant.
        Raises ValueError for a negative duration.
        """
        if duration < 0:
            raise ValueError(f"negative working-time duration {duration} µs")
        if duration == 0:
            return self.next_working_start(start)
        remaining = duration
        day = self._locate(start)
        idle = 0
        while True:
            for a, b in day.intervals:
                if b <= start:
                    continue
                lo = a if a > start else start
                available = b - lo
                if remaining <= available:
                    return Micros(lo + remaining)
                remaining -= available
            if day.intervals:
                idle = 0
            else:
                idle += 1
                if idle > MAX_IDLE_DAYS:
                    raise self._no_working_time(day)
            day = self._day(day.ordinal + 1)

    # -- the day cache -------------------------------------------------------------------

    def _day(self, ordinal: int) -> _Day:
        day = self._day_cached(ordinal)
        self._last = day
        return day

    def _locate(self, instant: int) -> _Day:
        """The local date containing ``instant``: integer comparisons on cached days."""
        day = self._last
        if day.start <= instant < day.end:
            return day
        # A UTC offset is under 24 h, so the local date is the UTC date or a neighbour. The
        # walk uses bounds only, so that it never asks the day calendar about a neighbour
        # (which might be in a year it has no data for). It also steps over zero-length
        # dates (a date a zone skipped, like Samoa's 2011-12-30).
        ordinal = _EPOCH_ORDINAL + instant // _MICROS_PER_DAY
        start, end = self._bounds_cached(ordinal)
        while instant < start:
            ordinal -= 1
            start, end = self._bounds_cached(ordinal)
        while instant >= end:
            ordinal += 1
            start, end = self._bounds_cached(ordinal)
        return self._day(ordinal)

    def _next_working_day(self, day: _Day) -> _Day:
        """The first day after ``day`` with working time; CalendarError after a year of none."""
        for _ in range(MAX_IDLE_DAYS):
            day = self._day(day.ordinal + 1)
            if day.intervals:
                return day
        raise self._no_working_time(day)

    def _no_working_time(self, day: _Day) -> CalendarError:
        last = date.fromordinal(day.ordinal).isoformat()
        return CalendarError(
            f"calendar {self._days.name}: no working time in the {MAX_IDLE_DAYS} days up to "
            f"{last} (every day a holiday, or intervals lost to a time-zone change?); check "
            "the calendar's overrides and the working intervals"
        )

    def _compute_bounds(self, ordinal: int) -> tuple[int, int]:
        """The instants of the local midnights that start and end date ``ordinal``."""
        day = date.fromordinal(ordinal)
        return _resolve(day, _MIDNIGHT, self._tz), _resolve(
            day + timedelta(days=1), _MIDNIGHT, self._tz
        )

    def _compute_day(self, ordinal: int) -> _Day:
        """The slow path, once per date: datetime arithmetic and one calendar lookup."""
        day = date.fromordinal(ordinal)
        start, end = self._bounds_cached(ordinal)
        working = self._days.is_working_day(day)
        pairs: list[tuple[int, int]] = []
        if working:
            previous_end = start
            for a, b in self._intervals:
                lo = _resolve(day, a, self._tz)
                hi = end if b == _MIDNIGHT else _resolve(day, b, self._tz)
                # DST resolution keeps order, but clamp anyway so that pairs stay sorted,
                # disjoint and inside the day whatever a zone's rules do.
                lo = max(lo, previous_end)
                hi = min(hi, end)
                if hi > lo:
                    pairs.append((lo, hi))
                    previous_end = hi
        return _Day(ordinal, start, end, working, tuple(pairs))

    def __repr__(self) -> str:
        spans = ", ".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in self._intervals)
        return f"WorkingTime({self._days.name}, {self._tz}, [{spans}])"


def _seconds_of(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def _validate(intervals: Sequence[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
    if not intervals:
        raise ConfigError("working intervals: empty (a working day needs at least one)")
    merged: list[tuple[time, time]] = []
    for index, pair in enumerate(intervals):
        where = f"working intervals[{index}]"
        if len(pair) != 2 or not all(isinstance(t, time) for t in pair):
            raise ConfigError(f"{where}: expected a (start, end) pair of times, got {pair!r}")
        start, end = pair
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ConfigError(f"{where}: use wall times without a zone (the zone is separate)")
        if start.microsecond or end.microsecond:
            raise ConfigError(f"{where}: bounds must be whole seconds")
        if end == _MIDNIGHT and index != len(intervals) - 1:
            raise ConfigError(f"{where}: only the last interval may end at 00:00 (24:00)")
        if end != _MIDNIGHT and not start < end:
            raise ConfigError(
                f"{where}: start {start} is not before end {end} (an interval cannot cross "
                "midnight; split it across days or end it at 00:00)"
            )
        if merged:
            prev_start, prev_end = merged[-1]
            if start < prev_end:
                raise ConfigError(
                    f"{where}: {start}-{end} overlaps or precedes {prev_start}-{prev_end} "
                    "(intervals must be sorted and disjoint)"
                )
            if start == prev_end:
                merged[-1] = (prev_start, end)
                continue
        merged.append((start, end))
    return tuple(merged)


def _resolve(day: date, wall: time, tz: tzinfo) -> int:
    """The instant of local ``day`` at ``wall`` in ``tz``, by the rules in the module doc."""
    local = datetime.combine(day, wall, tzinfo=tz)  # fold=0: first occurrence if ambiguous
    instant = from_datetime(local)
    # A wall time exists iff it survives the round trip through UTC.
    if to_datetime(instant, tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # Non-existent: fold=0 read it with the offset before the jump (an instant after the
    # jump), fold=1 with the offset after (an instant before it). The jump lies between;
    # find the first instant whose offset is the post-jump one by bisection (≤ 37 steps,
    # once per affected date thanks to the day cache).
    before: int = from_datetime(local.replace(fold=1))
    after: int = instant
    lo, hi = min(before, after), max(before, after)
    target = _offset_at(hi, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(mid, tz) == target:
            hi = mid
        else:
            lo = mid
    return hi


def _offset_at(instant: int, tz: tzinfo) -> timedelta | None:
    return to_datetime(instant, tz).utcoffset()
