"""Operator overrides of a day calendar: extra rest days, extra working days, whole years.

Why this exists: the PRC State Council publishes next year's holiday schedule (with its
make-up working Saturdays and Sundays) late in the year, and ``chinese_calendar`` releases
lag behind it. Operators must be able to ship the new schedule as a file, without a code
release. Other countries' company holidays (a site closure, an extra day off) go here too.

File format (YAML; see ``deploy/calendars/cn-overrides.example.yaml``)::

    years: [2027]            # this file fully specifies the exceptions of these years
    holidays: [2027-01-01]   # extra rest days
    working_days: [2027-02-20]  # extra working days (make-up Saturdays)

Callers: :func:`monitor.calendar.days.make_day_calendar` loads a file with
:func:`load_overrides`; the calendars in :mod:`monitor.calendar.days` ask :meth:`Overrides.decide`
before their library. Tests build :class:`Overrides` directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from monitor.errors import PolicyError, yaml_problem

_FIELDS = ("years", "holidays", "working_days")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as text.

    PyYAML turns ``2027-13-01`` into a bare ValueError without a position; kept as text, the
    value is parsed here and the error names the field.
    """


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
# A year outside this range is a typo (2207, 27), not a calendar someone means.
_MIN_YEAR = 1970
_MAX_YEAR = 2200


class Overrides:
    """Exceptions to a day calendar, consulted before the calendar's library.

    * a date in ``holidays`` is a rest day, whatever the library says;
    * a date in ``working_days`` is a working day, whatever the library says;
    * any other date of a year in ``years`` follows the calendar's plain weekday rule (for
      China, Mon–Fri working): the operator declared the listed dates to be *all* the
      exceptions of that year, so the library is not asked (it may have no data for it).

    Immutable: built once at start-up, shared by every lookup. Every validation error is a
    :class:`monitor.errors.PolicyError`, a :class:`monitor.errors.ConfigError`.
    """

    __slots__ = ("_holidays", "_working_days", "_years", "source")

    def __init__(
        self,
        holidays: Iterable[date] = (),
        working_days: Iterable[date] = (),
        years: Iterable[int] = (),
        source: str = "<overrides>",
    ) -> None:
        """Raises ConfigError for a bad value or a date both a holiday and a working day.

        ``source`` names where the overrides came from (a file path), for error messages.
        """
        self.source = source
        self._holidays = frozenset(_check_dates(holidays, source, "holidays"))
        self._working_days = frozenset(_check_dates(working_days, source, "working_days"))
        self._years = frozenset(_check_years(years, source))
        both = sorted(self._holidays & self._working_days)
        if both:
            listed = ", ".join(d.isoformat() for d in both)
            raise PolicyError(
                source, "holidays/working_days", f"{listed} listed as both holiday and working day"
            )

    @property
    def holidays(self) -> frozenset[date]:
        return self._holidays

    @property
    def working_days(self) -> frozenset[date]:
        return self._working_days

    @property
    def years(self) -> frozenset[int]:
        return self._years

    def decide(self, day: date) -> bool | None:
        """True (working) or False (rest) if a list names ``day``; None if it does not.

        A None for a date in a fully specified year (see :meth:`covers_year`) means "plain
        weekday rule"; the calendar applies it, because only it knows its weekend.
        """
        if day in self._working_days:
            return True
        if day in self._holidays:
            return False
        return None

    def covers_year(self, year: int) -> bool:
        """Whether this file lists every exception of ``year`` (``years:`` field)."""
        return year in self._years

    def __bool__(self) -> bool:
        return bool(self._holidays or self._working_days or self._years)

    def __repr__(self) -> str:
        return (
            f"Overrides(source={self.source!r}, holidays={len(self._holidays)}, "
            f"working_days={len(self._working_days)}, years={sorted(self._years)})"
        )


def load_overrides(path: str | Path) -> Overrides:
    """Reads an overrides YAML file (the only I/O of the calendar package).

    Called once at start-up by :func:`monitor.calendar.days.make_day_calendar`. Raises
    :class:`monitor.errors.PolicyError` (a ConfigError) naming the file, the field and the
    problem, so an operator can fix the file without reading code.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(name, "<file>", f"cannot read: {exc.strerror or exc}") from None
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise PolicyError(name, "<file>", f"not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(doc, dict):
        # An empty file is rejected too: it is more likely a wrong path or a truncated
        # deploy than a deliberate "no overrides" (for that, pass no file at all).
        got = "an empty file" if doc is None else type(doc).__name__
        raise PolicyError(name, "<file>", f"expected a mapping with {_FIELDS}, got {got}")
    unknown = sorted(str(k) for k in doc if k not in _FIELDS)
    if unknown:
        raise PolicyError(name, unknown[0], f"unknown field (allowed: {', '.join(_FIELDS)})")
    return Overrides(
        holidays=_field_list(doc, "holidays", name),
        working_days=_field_list(doc, "working_days", name),
        years=_field_list(doc, "years", name),
        source=name,
    )


def _field_list(doc: dict[Any, Any], field: str, source: str) -> list[Any]:
    value = doc.get(field)
    if value is None:  # absent, or present and empty ("holidays:")
        return []
    if not isinstance(value, list):
        raise PolicyError(source, field, f"expected a list, got {value!r}")
    return value


def _check_dates(values: Iterable[Any], source: str, field: str) -> list[date]:
    """Accepts date objects (YAML turns unquoted 2027-01-01 into one) and ISO strings."""
    out: list[date] = []
    seen: set[date] = set()
    for index, value in enumerate(values):
        where = f"{field}[{index}]"
        # datetime is a subclass of date: 2027-01-01T09:00 is a timestamp, not a day.
        if isinstance(value, datetime):
            raise PolicyError(source, where, f"{value!r} is not a date (write YYYY-MM-DD)")
        if isinstance(value, date):
            day = value
        elif isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                raise PolicyError(
                    source, where, f"{value!r} is not a date (write YYYY-MM-DD)"
                ) from None
        else:
            raise PolicyError(source, where, f"{value!r} is not a date (write YYYY-MM-DD)")
        if day in seen:
            raise PolicyError(source, where, f"{day.isoformat()} is listed twice")
        seen.add(day)
        out.append(day)
    return out


def _check_years(values: Iterable[Any], source: str) -> list[int]:
    out: list[int] = []
    for index, value in enumerate(values):
        where = f"years[{index}]"
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(source, where, f"{value!r} is not a year (write e.g. 2027)")
        if not _MIN_YEAR <= value <= _MAX_YEAR:
            raise PolicyError(
                source, where, f"{value} is outside {_MIN_YEAR}..{_MAX_YEAR} (a typo?)"
            )
        out.append(value)
    return out


__all__ = ["Overrides", "load_overrides"]
