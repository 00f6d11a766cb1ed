"""Working-time arithmetic (monitor.calendar.working_time): every boundary, by example."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.calendar import (
    ChinaCalendar,
    CountryCalendar,
    Overrides,
    WorkingTime,
    make_day_calendar,
)
from monitor.errors import CalendarError, ConfigError
from monitor.timeutil import Micros, format_rfc3339, parse_rfc3339, seconds
from monitor.vocabulary import Period

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
H = seconds(3600)
M = seconds(60)
LUNCH = [(time(9), time(12)), (time(13), time(17))]
NINE_TO_SIX = [(time(9), time(18))]


def t(text: str) -> Micros:
    """An instant from RFC 3339; bare local times are read as Shanghai (+08:00)."""
    return parse_rfc3339(text if text[-6] in "+-" or text.endswith("Z") else text + "+08:00")


def local(instant: int, tz: ZoneInfo = SHANGHAI) -> str:
    return format_rfc3339(instant, tz)


@pytest.fixture(scope="module")
def lunch() -> WorkingTime:
    return WorkingTime(ChinaCalendar(), SHANGHAI, LUNCH)


@pytest.fixture(scope="module")
def nine_six() -> WorkingTime:
    return WorkingTime(ChinaCalendar(), SHANGHAI, NINE_TO_SIX)


# -- period_of / is_working --------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "period"),
    [
        ("2026-05-11T08:59:59.999999", Period.AFTER_HOURS),
        ("2026-05-11T09:00:00", Period.WORKING_HOURS),
        ("2026-05-11T17:59:59", Period.WORKING_HOURS),
        ("2026-05-11T17:59:59.999999", Period.WORKING_HOURS),
        ("2026-05-11T18:00:00", Period.AFTER_HOURS),
        ("2026-05-11T00:00:00", Period.AFTER_HOURS),
        ("2026-05-16T10:00:00", Period.REST_DAY),  # ordinary Saturday
        ("2026-02-28T10:00:00", Period.WORKING_HOURS),  # make-up Saturday
        ("2026-02-28T20:00:00", Period.AFTER_HOURS),
        ("2026-10-01T10:00:00", Period.REST_DAY),  # National Day, a Thursday
        ("2026-10-08T09:00:00", Period.WORKING_HOURS),  # the day after
        ("2026-01-01T10:00:00", Period.REST_DAY),  # New Year
        ("2026-02-17T10:00:00", Period.REST_DAY),  # Spring Festival
    ],
)
def test_period_of_nine_to_six(nine_six: WorkingTime, when: str, period: Period) -> None:
    assert nine_six.period_of(t(when)) is period


def test_lunch_break_counts_as_working_hours(lunch: WorkingTime) -> None:
    assert lunch.period_of(t("2026-05-11T12:00:00")) is Period.WORKING_HOURS
    assert lunch.period_of(t("2026-05-11T12:59:59")) is Period.WORKING_HOURS
    assert lunch.period_of(t("2026-05-11T17:00:00")) is Period.AFTER_HOURS


@pytest.mark.parametrize(
    ("when", "working"),
    [
        ("2026-05-11T08:59:59.999999", False),
        ("2026-05-11T09:00:00", True),
        ("2026-05-11T11:59:59.999999", True),
        ("2026-05-11T12:00:00", False),
        ("2026-05-11T12:59:59.999999", False),
        ("2026-05-11T13:00:00", True),
        ("2026-05-11T16:59:59.999999", True),
        ("2026-05-11T17:00:00", False),
        ("2026-02-28T09:00:00", True),
        ("2026-10-01T10:00:00", False),
    ],
)
def test_is_working(lunch: WorkingTime, when: str, working: bool) -> None:
    assert lunch.is_working(t(when)) is working


# -- next_working_start -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-05-11T10:00:00.5", "2026-05-11T10:00:00.500000+08:00"),  # itself
        ("2026-05-11T12:00:00", "2026-05-11T13:00:00+08:00"),  # break start
        ("2026-05-11T12:30:00", "2026-05-11T13:00:00+08:00"),
        ("2026-05-11T06:00:00", "2026-05-11T09:00:00+08:00"),
        ("2026-05-15T17:00:00", "2026-05-18T09:00:00+08:00"),  # Friday night -> Monday
        ("2026-02-27T17:00:00", "2026-02-28T09:00:00+08:00"),  # -> make-up Saturday
        ("2026-09-30T17:00:00", "2026-10-08T09:00:00+08:00"),  # over National Day
        ("2026-09-19T10:00:00", "2026-09-20T09:00:00+08:00"),  # -> make-up Sunday
    ],
)
def test_next_working_start(lunch: WorkingTime, when: str, expected: str) -> None:
    assert local(lunch.next_working_start(t(when))) == expected


# -- add -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2026-05-11T11:00:00", H, "2026-05-11T12:00:00+08:00"),  # ends on the break: 12:00
        ("2026-05-11T11:00:00", H + 1, "2026-05-11T13:00:00.000001+08:00"),
        ("2026-05-11T12:30:00", 0, "2026-05-11T13:00:00+08:00"),  # 0 in a break
        ("2026-05-11T12:30:00", H, "2026-05-11T14:00:00+08:00"),  # clock starts at 13:00
        ("2026-05-11T08:00:00", H, "2026-05-11T10:00:00+08:00"),  # clock starts at 09:00
        ("2026-05-11T09:00:00", 7 * H, "2026-05-11T17:00:00+08:00"),  # a whole day
        ("2026-05-11T09:00:00", 7 * H + 1, "2026-05-12T09:00:00.000001+08:00"),
        ("2026-05-11T10:00:00", 0, "2026-05-11T10:00:00+08:00"),
        ("2026-05-15T16:00:00", 2 * H, "2026-05-18T10:00:00+08:00"),  # over a weekend
        # National Day 2026-10-01..07 (Thursday to Wednesday), back on Thursday 10-08.
        ("2026-09-30T16:30:00", H, "2026-10-08T09:30:00+08:00"),
        ("2026-10-01T10:00:00", H, "2026-10-08T10:00:00+08:00"),
        # Spring Festival: make-up Saturday 02-14, rest 02-15..23, back 02-24.
        ("2026-02-13T16:00:00", 2 * H, "2026-02-14T10:00:00+08:00"),
        ("2026-02-14T16:00:00", 2 * H, "2026-02-24T10:00:00+08:00"),
        ("2026-02-27T16:00:00", 2 * H, "2026-02-28T10:00:00+08:00"),  # make-up Saturday
        # New Year: 2026-01-01..03 rest, Sunday 01-04 a make-up working day.
        ("2025-12-31T16:00:00", 2 * H, "2026-01-04T10:00:00+08:00"),
        ("2026-01-01T00:00:00", 30 * M, "2026-01-04T09:30:00+08:00"),
    ],
)
def test_add(lunch: WorkingTime, start: str, duration: int, expected: str) -> None:
    deadline = lunch.add(t(start), duration)
    assert local(deadline) == expected
    assert lunch.between(t(start), deadline) == duration


def test_add_nine_to_six_boundaries(nine_six: WorkingTime) -> None:
    assert local(nine_six.add(t("2026-05-11T17:00:00"), H)) == "2026-05-11T18:00:00+08:00"
    assert local(nine_six.add(t("2026-05-11T18:00:00"), H)) == "2026-05-12T10:00:00+08:00"
    assert local(nine_six.add(t("2026-05-11T17:59:59"), 1)) == "2026-05-11T17:59:59.000001+08:00"


def test_add_rejects_negative_duration(lunch: WorkingTime) -> None:
    with pytest.raises(ValueError, match="negative"):
        lunch.add(t("2026-05-11T10:00:00"), -1)


def test_inputs_with_any_utc_offset(lunch: WorkingTime) -> None:
    # 09:00 in Shanghai, written three ways: the instant is what counts.
    for text in ("2026-05-11T01:00:00+00:00", "2026-05-11T01:00:00Z", "2026-05-10T20:00:00-05:00"):
        start = parse_rfc3339(text)
        assert lunch.period_of(start) is Period.WORKING_HOURS
        assert format_rfc3339(lunch.add(start, H)) == "2026-05-11T02:00:00Z"
    # Thursday 2026-10-01 05:30 in New York is already 17:30 in Shanghai on a holiday.
    late = parse_rfc3339("2026-09-30T05:30:00-05:00")  # 18:30 in Shanghai on 09-30
    assert lunch.period_of(late) is Period.AFTER_HOURS
    assert local(lunch.next_working_start(late)) == "2026-10-08T09:00:00+08:00"
    assert lunch.between(late, parse_rfc3339("2026-10-08T03:00:00+00:00")) == 2 * H


# -- between -------------------------------------------------------------------------------


def test_between(lunch: WorkingTime) -> None:
    # Friday 10-12 and 13-17, Monday 9-10.
    assert lunch.between(t("2026-05-15T10:00:00"), t("2026-05-18T10:00:00")) == 7 * H
    assert lunch.between(t("2026-05-11T12:00:00"), t("2026-05-11T13:00:00")) == 0
    assert lunch.between(t("2026-05-11T11:00:00"), t("2026-05-11T14:00:00")) == 2 * H
    assert lunch.between(t("2026-09-30T16:00:00"), t("2026-10-08T10:00:00")) == 2 * H
    assert lunch.between(t("2026-05-11T14:00:00"), t("2026-05-11T10:00:00")) == 0
    assert lunch.between(t("2026-05-11T14:00:00"), t("2026-05-11T14:00:00")) == 0
    # A whole 2026 year: working days times 7 hours.
    days = ChinaCalendar()
    working = sum(days.is_working_day(date.fromordinal(o)) for o in range(739617, 739982))
    assert lunch.between(t("2026-01-01T00:00:00"), t("2027-01-01T00:00:00")) == working * 7 * H


# -- the year end, with and without an override file covering the new year ------------------


def test_year_end_into_2027_needs_overrides(tmp_path: Path) -> None:
    start = t("2026-12-31T16:30:00")
    plain = WorkingTime(ChinaCalendar(), SHANGHAI, LUNCH)
    assert local(plain.add(start, 30 * M)) == "2026-12-31T17:00:00+08:00"  # no 2027 needed
    with pytest.raises(CalendarError, match="2027-01-01"):
        plain.add(start, 2 * H)
    with pytest.raises(CalendarError, match="years: \\[2027\\]"):
        plain.next_working_start(t("2026-12-31T17:00:00"))

    path = tmp_path / "cn-2027.yaml"
    path.write_text("years: [2027]\nholidays: [2027-01-01]\n", encoding="utf-8")
    covered = WorkingTime(make_day_calendar("CN", overrides_path=str(path)), SHANGHAI, LUNCH)
    # 30 min on 12-31; 2027-01-01 (Friday) a holiday, then a weekend: Monday 01-04 10:30.
    assert local(covered.add(start, 2 * H)) == "2027-01-04T10:30:00+08:00"
    assert covered.period_of(t("2027-01-04T10:00:00")) is Period.WORKING_HOURS
    assert covered.period_of(t("2027-01-01T10:00:00")) is Period.REST_DAY


def test_year_end_with_example_file(nine_six: WorkingTime) -> None:
    example = Path(__file__).resolve().parents[1] / ("deploy/calendars/cn-overrides.example.yaml")
    wt = WorkingTime(make_day_calendar(overrides_path=str(example)), SHANGHAI, NINE_TO_SIX)
    assert local(wt.add(t("2026-12-31T17:30:00"), H)) == "2027-01-04T09:30:00+08:00"


# -- daylight saving time ------------------------------------------------------------------

# Sundays made working days by override, so that DST days carry working time.
DST_DAYS = Overrides(working_days=[date(2026, 3, 29), date(2026, 10, 25)])


def test_dst_europe_regular_hours() -> None:
    wt = WorkingTime(CountryCalendar("DE", overrides=DST_DAYS), BERLIN, NINE_TO_SIX)
    assert local(wt.add(parse_rfc3339("2026-03-28T17:00:00+01:00"), 2 * H), BERLIN) == (
        "2026-03-29T11:00:00+02:00"  # Saturday is a rest day: Sunday 09:00 CEST + 2 h
    )
    assert (
        wt.between(
            parse_rfc3339("2026-03-28T00:00:00+01:00"), parse_rfc3339("2026-03-30T00:00:00+02:00")
        )
        == 9 * H
    )
    # The fall-back Sunday is 25 hours long; working hours are still 9.
    assert (
        wt.between(
            parse_rfc3339("2026-10-25T00:00:00+02:00"), parse_rfc3339("2026-10-26T00:00:00+01:00")
        )
        == 9 * H
    )
    assert wt.period_of(parse_rfc3339("2026-10-25T09:00:00+01:00")) is Period.WORKING_HOURS
    assert wt.period_of(parse_rfc3339("2026-10-25T08:59:59+01:00")) is Period.AFTER_HOURS


def test_dst_gap_resolves_to_the_jump() -> None:
    # 02:00-03:00 does not exist on 2026-03-29 in Berlin (clocks jump 02:00 CET -> 03:00 CEST).
    intervals = [(time(1), time(2, 30)), (time(2, 45), time(4))]
    wt = WorkingTime(CountryCalendar("DE", overrides=DST_DAYS), BERLIN, intervals)
    day_start = parse_rfc3339("2026-03-29T00:00:00+01:00")
    jump = parse_rfc3339("2026-03-29T01:00:00Z")  # 03:00 CEST
    # 01:00-"02:30" is 01:00 CET up to the jump; "02:45"-04:00 is the jump to 04:00 CEST.
    assert wt.between(day_start, day_start + 24 * H) == 2 * H
    assert wt.is_working(jump - 1)
    assert wt.is_working(jump)
    assert wt.is_working(parse_rfc3339("2026-03-29T03:59:59+02:00"))
    assert not wt.is_working(parse_rfc3339("2026-03-29T04:00:00+02:00"))
    assert local(wt.add(day_start, H), BERLIN) == "2026-03-29T03:00:00+02:00"


def test_dst_ambiguous_time_is_first_occurrence() -> None:
    # 02:00-03:00 happens twice on 2026-10-25 in Berlin: CEST first, then CET.
    wt = WorkingTime(CountryCalendar("DE", overrides=DST_DAYS), BERLIN, [(time(2), time(2, 30))])
    first = parse_rfc3339("2026-10-25T02:00:00+02:00")
    second = parse_rfc3339("2026-10-25T02:00:00+01:00")
    assert wt.is_working(first)
    assert not wt.is_working(second)
    assert wt.add(first, 30 * M) == first + 30 * M


def test_dst_at_midnight_santiago() -> None:
    # Chile moves clocks at midnight: 2026-09-06 00:00 does not exist (00:00 -> 01:00).
    santiago = ZoneInfo("America/Santiago")
    overrides = Overrides(working_days=[date(2026, 9, 6)])
    wt = WorkingTime(CountryCalendar("CL", overrides=overrides), santiago, [(time(0), time(6))])
    saturday_night = parse_rfc3339("2026-09-05T23:00:00-04:00")
    assert local(wt.next_working_start(saturday_night), santiago) == "2026-09-06T01:00:00-03:00"
    assert wt.between(saturday_night, saturday_night + 48 * H) == 5 * H + 6 * H  # Sun + Mon


# -- configuration and guards --------------------------------------------------------------


def test_working_seconds_per_day(lunch: WorkingTime, nine_six: WorkingTime) -> None:
    assert lunch.working_seconds_per_day == 7 * 3600
    assert nine_six.working_seconds_per_day == 9 * 3600
    full = WorkingTime(ChinaCalendar(), SHANGHAI, [(time(0), time(0))])
    assert full.working_seconds_per_day == 86_400
    assert full.between(t("2026-05-11T00:00:00"), t("2026-05-12T00:00:00")) == 24 * H
    assert local(full.add(t("2026-05-11T23:00:00"), H)) == "2026-05-12T00:00:00+08:00"


def test_adjacent_intervals_merge() -> None:
    wt = WorkingTime(ChinaCalendar(), SHANGHAI, [(time(9), time(12)), (time(12), time(18))])
    assert wt.intervals == ((time(9), time(18)),)


@pytest.mark.parametrize(
    "intervals",
    [
        [],
        [(time(12), time(9))],
        [(time(9), time(9))],
        [(time(13), time(17)), (time(9), time(12))],
        [(time(9), time(13)), (time(12), time(17))],
        [(time(9), time(0)), (time(1), time(2))],
        [(time(9, tzinfo=SHANGHAI), time(17))],
        [(time(9), time(17, 0, 0, 5))],
    ],
    ids=["empty", "inverted", "zero", "unsorted", "overlap", "midnight", "tz", "micros"],
)
def test_bad_intervals_are_config_errors(intervals: list[tuple[time, time]]) -> None:
    with pytest.raises(ConfigError):
        WorkingTime(ChinaCalendar(), SHANGHAI, intervals)


class _NeverWorking:
    name = "closed"

    def is_working_day(self, day: date) -> bool:
        return False


def test_no_working_day_in_a_year_is_a_calendar_error() -> None:
    wt = WorkingTime(_NeverWorking(), SHANGHAI, NINE_TO_SIX)
    with pytest.raises(CalendarError, match="closed"):
        wt.next_working_start(t("2026-05-11T10:00:00"))
    with pytest.raises(CalendarError, match="closed"):
        wt.add(t("2026-05-11T10:00:00"), H)
    assert wt.period_of(t("2026-05-11T10:00:00")) is Period.REST_DAY


def test_construction_asks_the_calendar_nothing() -> None:
    class Exploding:
        name = "exploding"

        def is_working_day(self, day: date) -> bool:
            raise CalendarError(f"asked about {day}")

    WorkingTime(Exploding(), SHANGHAI, NINE_TO_SIX)
