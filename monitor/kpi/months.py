"""Calendar months in a policy's time zone, as instants: the KPI periods (004 3.5 评估周期)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, tzinfo

from monitor.timeutil import from_datetime, to_datetime


def month_of(instant: int, tz: tzinfo) -> str:
    """``YYYY-MM`` of ``instant`` in ``tz``."""
    local = to_datetime(instant, tz)
    return f"{local.year:04}-{local.month:02}"


def quarter_of(month: str) -> str:
    """``YYYY-Qn`` of a ``YYYY-MM`` month."""
    return f"{month[:4]}-Q{(int(month[5:]) - 1) // 3 + 1}"


def next_month_start(instant: int, tz: tzinfo) -> int:
    local = to_datetime(instant, tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return from_datetime(datetime(year, month, 1, tzinfo=tz))


def split_by_month(start: int, end: int, tz: tzinfo) -> Iterator[tuple[str, int, int]]:
    """``[start, end)`` cut at month starts: (month, piece start, piece end)."""
    while start < end:
        cut = min(next_month_start(start, tz), end)
        yield month_of(start, tz), start, cut
        start = cut
