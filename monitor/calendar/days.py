"""Day calendars: is a given local date a working day?

A :class:`DayCalendar` answers for whole dates only; :class:`monitor.calendar.WorkingTime`
turns its answers into working intervals on the time line. Both calendars here consult the
operator's :class:`~monitor.calendar.overrides.Overrides` first, then a maintained library:

* :class:`ChinaCalendar`: ``chinese_calendar`` (PRC statutory holidays *and* make-up working
  days, which a weekday rule plus a holiday list cannot express);
* :class:`CountryCalendar`: ``holidays`` (every other country, for global support teams).

Callers: the policy loader / CLI build one calendar per policy with :func:`make_day_calendar`
at start-up. No method reads the clock; only :func:`make_day_calendar` reads a file.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol, runtime_checkable

import chinese_calendar
import holidays as holidays_lib

from monitor.calendar.overrides import Overrides, load_overrides
from monitor.errors import CalendarError, ConfigError

_EXAMPLE = "deploy/calendars/cn-overrides.example.yaml"
MON_FRI_WEEKEND: frozenset[int] = frozenset({5, 6})
"""``date.weekday()`` numbers of Saturday and Sunday."""


@runtime_checkable
class DayCalendar(Protocol):
    """Whether a local date is a working day. Implementations must be pure and cheap."""

    @property
    def name(self) -> str:
        """A short label for messages and metrics, e.g. ``"CN"`` or ``"US-CA"``."""
        ...

    def is_working_day(self, day: date) -> bool:
        """Raises :class:`monitor.errors.CalendarError` if the calendar cannot answer."""
        ...


class ChinaCalendar:
    """PRC working days: overrides first, then ``chinese_calendar``.

    ``chinese_calendar`` raises NotImplementedError for years it has no schedule for (1.11:
    2004–2026). Such a date raises :class:`CalendarError` unless an override answers for it.
    With ``strict=False`` it falls back to Mon–Fri instead: a *guess* that misses the Spring
    Festival and National Day, which is why it is off by default (a silently wrong deadline is
    worse than a loud start-up failure).
    """

    __slots__ = ("_overrides", "_strict", "name")

    def __init__(self, overrides: Overrides | None = None, strict: bool = True) -> None:
        self._overrides = overrides if overrides is not None else Overrides()
        self._strict = strict
        self.name = "CN"

    def is_working_day(self, day: date) -> bool:
        decided = self._overrides.decide(day)
        if decided is not None:
            return decided
        if self._overrides.covers_year(day.year):
            return day.weekday() not in MON_FRI_WEEKEND
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError as exc:
            if not self._strict:
                return day.weekday() not in MON_FRI_WEEKEND
            raise CalendarError(
                f"calendar {self.name}: cannot tell whether {day.isoformat()} is a working day: "
                f"chinese_calendar has no data for {day.year} ({exc}) and no override covers "
                f"it. Fix: add an overrides file listing the {day.year} holidays and make-up "
                f"working days with 'years: [{day.year}]' (see {_EXAMPLE}), or upgrade "
                f"chinese-calendar."
            ) from None

    def __repr__(self) -> str:
        return f"ChinaCalendar(overrides={self._overrides!r}, strict={self._strict})"


class CountryCalendar:
    """Another country's working days: overrides first, then the ``holidays`` library.

    ``weekend`` holds ``date.weekday()`` numbers (Mon=0): {5, 6} by default, {4, 5} for a
    Friday–Saturday weekend. The library computes holidays by rule for any year, so this
    calendar never raises CalendarError; its data quality is the library's.
    """

    __slots__ = ("_holidays", "_overrides", "_weekend", "name")

    def __init__(
        self,
        country: str,
        subdivision: str | None = None,
        overrides: Overrides | None = None,
        weekend: frozenset[int] = MON_FRI_WEEKEND,
    ) -> None:
        """Raises ConfigError for an unknown country, subdivision or weekday number."""
        if not weekend <= frozenset(range(7)) or len(weekend) == 7:
            raise ConfigError(f"weekend {sorted(weekend)}: expected weekday numbers 0..6, not all")
        try:
            # The object expands lazily, one year per first lookup in it; observed days
            # (a Sunday holiday moved to Monday) are included, as offices close then.
            self._holidays = holidays_lib.country_holidays(country, subdiv=subdivision)
        except NotImplementedError as exc:
            raise ConfigError(f"calendar {country!r}/{subdivision!r}: {exc}") from None
        self._overrides = overrides if overrides is not None else Overrides()
        self._weekend = frozenset(weekend)
        self.name = country if subdivision is None else f"{country}-{subdivision}"

    def is_working_day(self, day: date) -> bool:
        decided = self._overrides.decide(day)
        if decided is not None:
            return decided
        if day.weekday() in self._weekend:
            return False
        if self._overrides.covers_year(day.year):
            return True
        return day not in self._holidays

    def __repr__(self) -> str:
        return f"CountryCalendar({self.name!r}, weekend={sorted(self._weekend)})"


class WeekdaysLessHolidays:
    """A reading of "working day" as Monday to Friday, statutory holidays excepted (002 1.4).

    Contract 002 1.4 defines 工作日 as "周一至周五(法定节假日除外)": read literally, a make-up
    working Saturday or Sunday (调休上班) is *not* a working day, while the State Council's
    schedule (the ``statutory`` reading, the default) makes it one. Which reading a contract
    means is the operator's choice (policy ``calendar.working_days``), so this wraps the
    statutory calendar: a day is a working day when it is not a weekend day *and* the
    statutory calendar (overrides first, then the library) calls it one. Hence a weekday
    holiday stays a rest day, and a weekend day is a rest day even when an override or the
    library lists it as a make-up working day.
    """

    __slots__ = ("_inner", "_weekend", "name")

    def __init__(self, inner: DayCalendar, weekend: frozenset[int] = MON_FRI_WEEKEND) -> None:
        self._inner = inner
        self._weekend = weekend
        self.name = f"{inner.name}/weekdays"

    def is_working_day(self, day: date) -> bool:
        return day.weekday() not in self._weekend and self._inner.is_working_day(day)

    def __repr__(self) -> str:
        return f"WeekdaysLessHolidays({self._inner!r})"


WORKING_DAY_READINGS = ("statutory", "weekdays")
"""Values of the policy's ``calendar.working_days`` (see :func:`make_day_calendar`)."""


def make_day_calendar(
    country: str = "CN",
    subdivision: str | None = None,
    overrides_path: str | None = None,
    strict: bool = True,
    working_days: str = "statutory",
) -> DayCalendar:
    """Builds the day calendar a policy names; called once per policy at start-up.

    ``CN`` uses ``chinese_calendar`` (it has make-up working days; ``holidays`` does not model
    them reliably); any other ISO 3166 code uses ``holidays``. ``strict`` only matters for CN
    (see :class:`ChinaCalendar`). ``working_days`` is the reading of "working day":
    ``statutory`` (the default: the official schedule, make-up working days included) or
    ``weekdays`` (Monday to Friday less statutory holidays, see :class:`WeekdaysLessHolidays`).
    Raises ConfigError for an unknown country or reading, or a bad file.
    """
    if working_days not in WORKING_DAY_READINGS:
        raise ConfigError(
            f"calendar working_days {working_days!r}: expected one of {WORKING_DAY_READINGS}"
        )
    code = country.strip().upper()
    overrides = load_overrides(overrides_path) if overrides_path else None
    days: DayCalendar
    if code == "CN":
        if subdivision:
            raise ConfigError(
                f"calendar CN: subdivision {subdivision!r} is not supported (chinese_calendar "
                "has the national schedule only; use overrides for regional days)"
            )
        days = ChinaCalendar(overrides, strict=strict)
    else:
        days = CountryCalendar(code, subdivision, overrides)
    return days if working_days == "statutory" else WeekdaysLessHolidays(days)
