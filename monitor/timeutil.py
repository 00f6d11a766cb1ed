"""Instants as integers: microseconds since the Unix epoch (UTC).

The core works on integer microseconds rather than ``datetime`` objects because they are
exact (a response at the deadline compares equal, never off by a float rounding), compact in
state records (an open timer must stay well under 1 KiB) and fast to compare in the deadline
index. They are unambiguous, so they are never "naive". Conversion to and from RFC 3339 text
happens only at the edges, here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import NewType

Micros = NewType("Micros", int)
"""An instant: microseconds since 1970-01-01T00:00:00Z."""

MICROS_PER_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The instants an input event may carry: [1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z).
# Fuzzing (tests/test_fuzz.py, issue 10) found "9999-12-31T23:59:59Z" and
# "0001-01-01T00:00:00+01:00" accepted by the validator and then crashing the engine
# (OverflowError / ValueError in the calendar's local-day arithmetic: datetime ends at years
# 1 and 9999, and a deadline or a time-zone shift steps past them). The lower bound is the
# epoch because instants count from it and the live clock reads 0 as "no event time yet"
# (monitor.live.clock); the upper bound leaves ~1000 years for deadlines and retention.
MIN_INSTANT = 0
MAX_INSTANT = (datetime(9000, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)  # exclusive


def from_datetime(value: datetime) -> Micros:
    """Converts an aware datetime to an instant. A naive datetime is a bug: ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no UTC offset")
    delta = value - _EPOCH
    return Micros((delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds)


def to_datetime(instant: int, tz: tzinfo = UTC) -> datetime:
    """Converts an instant to an aware datetime in ``tz``."""
    return (_EPOCH + timedelta(microseconds=instant)).astimezone(tz)


def parse_rfc3339(text: str) -> Micros:
    """Parses an RFC 3339 timestamp that carries an offset or ``Z``.

    Raises ValueError with a readable message for anything else, naive timestamps included.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 string, got {type(text).__name__}")
    if len(text) < 20 or text[10] not in "Tt ":
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (naive timestamps are ambiguous)")
    instant = from_datetime(value)
    if not MIN_INSTANT <= instant < MAX_INSTANT:
        raise ValueError(
            f"{text!r} is outside the instants this monitor accepts, 1970-01-01T00:00:00Z "
            "up to 9000-01-01T00:00:00Z (a producer clock or a unit error?)"
        )
    return instant


def format_rfc3339(instant: int, tz: tzinfo = UTC) -> str:
    """Formats an instant as RFC 3339 in ``tz``; whole seconds drop the fraction."""
    value = to_datetime(instant, tz)
    spec = "seconds" if value.microsecond == 0 else "microseconds"
    text = value.isoformat(timespec=spec)
    return text[:-6] + "Z" if text.endswith("+00:00") and tz is UTC else text


def seconds(value: float) -> Micros:
    """A duration of ``value`` seconds, in microseconds."""
    return Micros(round(value * MICROS_PER_SECOND))
