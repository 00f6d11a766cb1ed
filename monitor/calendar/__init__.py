"""Business calendars and working time: the pure core the SLA engine measures clocks with.

* :mod:`monitor.calendar.days`: which local dates are working days (PRC via
  ``chinese_calendar``, other countries via ``holidays``), operator overrides first;
* :mod:`monitor.calendar.overrides`: the operator's override file (the only I/O here);
* :mod:`monitor.calendar.working_time`: deadlines and elapsed time in working hours, on
  integer-microsecond instants.

Callers build a :class:`DayCalendar` with :func:`make_day_calendar` and a
:class:`WorkingTime` per policy at start-up, then call :meth:`WorkingTime.add` /
:meth:`WorkingTime.between` per event. Nothing here reads the clock.
"""

from monitor.calendar.days import (
    MON_FRI_WEEKEND,
    ChinaCalendar,
    CountryCalendar,
    DayCalendar,
    WeekdaysLessHolidays,
    make_day_calendar,
)
from monitor.calendar.overrides import Overrides, load_overrides
from monitor.calendar.working_time import MAX_IDLE_DAYS, WorkingTime

__all__ = [
    "MAX_IDLE_DAYS",
    "MON_FRI_WEEKEND",
    "ChinaCalendar",
    "CountryCalendar",
    "DayCalendar",
    "Overrides",
    "WeekdaysLessHolidays",
    "WorkingTime",
    "load_overrides",
    "make_day_calendar",
]
