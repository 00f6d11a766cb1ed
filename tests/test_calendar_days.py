"""Day calendars and operator overrides (monitor.calendar.days, monitor.calendar.overrides)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from monitor.calendar import (
    ChinaCalendar,
    CountryCalendar,
    DayCalendar,
    Overrides,
    load_overrides,
    make_day_calendar,
)
from monitor.errors import CalendarError, ConfigError, PolicyError

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy/calendars/cn-overrides.example.yaml"


def d(text: str) -> date:
    return date.fromisoformat(text)


# -- ChinaCalendar -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"],
)
def test_china_make_up_weekend_days_are_working(day: str) -> None:
    assert d(day).weekday() >= 5
    assert ChinaCalendar().is_working_day(d(day))


@pytest.mark.parametrize(
    "day",
    [
        "2026-01-01",  # New Year
        "2026-01-02",
        "2026-02-16",  # Spring Festival (Monday)
        "2026-02-23",
        *[f"2026-10-0{n}" for n in range(1, 8)],  # National Day
    ],
)
def test_china_statutory_holidays_are_rest_days(day: str) -> None:
    assert not ChinaCalendar().is_working_day(d(day))


def test_china_ordinary_days() -> None:
    cal = ChinaCalendar()
    assert cal.is_working_day(d("2026-10-08"))  # the day after National Day
    assert cal.is_working_day(d("2026-12-31"))
    assert not cal.is_working_day(d("2026-03-07"))  # an ordinary Saturday
    assert cal.name == "CN"
    assert isinstance(cal, DayCalendar)


def test_china_unknown_year_is_a_calendar_error_naming_date_calendar_and_fix() -> None:
    with pytest.raises(CalendarError) as info:
        ChinaCalendar().is_working_day(d("2027-01-04"))
    message = str(info.value)
    assert "2027-01-04" in message
    assert "CN" in message
    assert "years: [2027]" in message
    assert "override" in message


def test_china_non_strict_falls_back_to_mon_fri() -> None:
    cal = ChinaCalendar(strict=False)
    assert cal.is_working_day(d("2027-01-04"))  # Monday
    assert not cal.is_working_day(d("2027-01-09"))  # Saturday
    assert not cal.is_working_day(d("2026-10-01"))  # known years still use the library


def test_china_overrides_are_consulted_first() -> None:
    overrides = Overrides(holidays=[d("2026-10-08")], working_days=[d("2026-10-03")])
    cal = ChinaCalendar(overrides)
    assert not cal.is_working_day(d("2026-10-08"))
    assert cal.is_working_day(d("2026-10-03"))
    assert cal.is_working_day(d("2026-10-09"))


def test_china_fully_specified_year_follows_weekday_rule() -> None:
    overrides = Overrides(holidays=[d("2027-01-01")], working_days=[d("2027-02-20")], years=[2027])
    cal = ChinaCalendar(overrides)
    assert not cal.is_working_day(d("2027-01-01"))  # Friday, listed
    assert cal.is_working_day(d("2027-01-04"))  # Monday, weekday rule
    assert not cal.is_working_day(d("2027-01-02"))  # Saturday, weekday rule
    assert cal.is_working_day(d("2027-02-20"))  # Saturday, listed
    # A year listed in `years` overrides the library even where it has data.
    full_2026 = ChinaCalendar(Overrides(years=[2026]))
    assert full_2026.is_working_day(d("2026-10-01"))
    with pytest.raises(CalendarError):
        cal.is_working_day(d("2028-01-03"))


# -- CountryCalendar ----------------------------------------------------------------------


def test_country_calendar_uses_holidays_library() -> None:
    us = CountryCalendar("US")
    assert not us.is_working_day(d("2026-07-03"))  # Independence Day observed (Friday)
    assert not us.is_working_day(d("2026-12-25"))
    assert us.is_working_day(d("2026-12-24"))
    assert not us.is_working_day(d("2026-12-26"))  # Saturday
    assert us.name == "US"


def test_country_calendar_subdivision_and_weekend() -> None:
    by = CountryCalendar("DE", "BY")
    assert by.name == "DE-BY"
    assert not by.is_working_day(d("2026-01-06"))  # Epiphany in Bavaria
    assert CountryCalendar("DE", "BE").is_working_day(d("2026-01-06"))  # not in Berlin
    fri_sat = CountryCalendar("US", weekend=frozenset({4, 5}))
    assert not fri_sat.is_working_day(d("2026-03-06"))  # Friday
    assert fri_sat.is_working_day(d("2026-03-08"))  # Sunday


def test_country_calendar_overrides_first() -> None:
    overrides = Overrides(holidays=[d("2026-03-09")], working_days=[d("2026-12-25")])
    us = CountryCalendar("US", overrides=overrides)
    assert not us.is_working_day(d("2026-03-09"))
    assert us.is_working_day(d("2026-12-25"))
    full = CountryCalendar("US", overrides=Overrides(years=[2026]))
    assert full.is_working_day(d("2026-12-25"))  # the file lists all exceptions of 2026
    assert not full.is_working_day(d("2026-12-26"))  # still a weekend


@pytest.mark.parametrize(
    ("country", "subdivision"), [("XX", None), ("US", "ZZ")], ids=["country", "subdivision"]
)
def test_country_calendar_unknown_is_config_error(country: str, subdivision: str | None) -> None:
    with pytest.raises(ConfigError):
        CountryCalendar(country, subdivision)


def test_country_calendar_rejects_bad_weekend() -> None:
    with pytest.raises(ConfigError):
        CountryCalendar("US", weekend=frozenset({7}))
    with pytest.raises(ConfigError):
        CountryCalendar("US", weekend=frozenset(range(7)))


# -- make_day_calendar -------------------------------------------------------------------


def test_factory_builds_china_and_countries() -> None:
    assert isinstance(make_day_calendar(), ChinaCalendar)
    assert isinstance(make_day_calendar("cn"), ChinaCalendar)
    us = make_day_calendar("US", "CA")
    assert isinstance(us, CountryCalendar)
    assert us.name == "US-CA"
    with pytest.raises(ConfigError):
        make_day_calendar("CN", "SH")


def test_factory_loads_overrides_file() -> None:
    cal = make_day_calendar("CN", overrides_path=str(EXAMPLE))
    assert not cal.is_working_day(d("2027-01-01"))
    assert cal.is_working_day(d("2027-01-04"))
    assert cal.is_working_day(d("2027-02-20"))
    assert not make_day_calendar("CN", strict=False).is_working_day(d("2027-01-02"))


# -- overrides files ---------------------------------------------------------------------


def test_example_file_is_consistent() -> None:
    overrides = load_overrides(EXAMPLE)
    assert overrides.years == frozenset({2027})
    assert all(day.weekday() < 5 for day in overrides.holidays)
    assert all(day.weekday() >= 5 for day in overrides.working_days)
    assert all(day.year == 2027 for day in overrides.holidays | overrides.working_days)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overrides.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_accepts_quoted_dates_and_empty_lists(tmp_path: Path) -> None:
    path = write(tmp_path, "holidays: ['2027-01-01']\nworking_days:\nyears: []\n")
    overrides = load_overrides(path)
    assert overrides.holidays == frozenset({d("2027-01-01")})
    assert overrides.working_days == frozenset()
    assert overrides.decide(d("2027-01-01")) is False
    assert overrides.decide(d("2027-01-04")) is None
    assert overrides.source == str(path)


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("holidays: [2027-13-01]\n", "holidays[0]", "not a date"),
        ("holidays: [tomorrow]\n", "holidays[0]", "not a date"),
        ("holidays: [2027-01-01 09:00:00]\n", "holidays[0]", "not a date"),
        ("working_days: [20270101]\n", "working_days[0]", "not a date"),
        ("holidays: 2027-01-01\n", "holidays", "expected a list"),
        ("holidays: [2027-01-01, 2027-01-01]\n", "holidays[1]", "listed twice"),
        (
            "holidays: [2027-02-20]\nworking_days: [2027-02-20]\n",
            "holidays/working_days",
            "2027-02-20 listed as both",
        ),
        ("years: ['2027']\n", "years[0]", "not a year"),
        ("years: [27]\n", "years[0]", "outside"),
        ("holiday: [2027-01-01]\n", "holiday", "unknown field"),
        ("- 2027-01-01\n", "<file>", "expected a mapping"),
        ("", "<file>", "empty file"),
        ("holidays: [2027-01-01\n", "<file>", "not valid YAML"),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, text: str, field: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_overrides(path)
    error = info.value
    assert isinstance(error, PolicyError)
    assert error.file == str(path)
    assert error.field == field
    assert problem in error.problem
    assert str(path) in str(error)


def test_load_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_overrides(tmp_path / "absent.yaml")


def test_overrides_from_python_validate_too() -> None:
    with pytest.raises(ConfigError, match="both"):
        Overrides(holidays=[d("2027-01-01")], working_days=[d("2027-01-01")])
    with pytest.raises(ConfigError):
        Overrides(years=[True])
    assert not Overrides()
    assert Overrides(years=[2027]).covers_year(2027)
