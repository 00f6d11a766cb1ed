"""Durations in policy files: ``180s``, ``30m``, ``1h30m``, ``7d``, and ``1wd`` (working days)."""

from __future__ import annotations

import re

from monitor.timeutil import MICROS_PER_SECOND, Micros

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(wd|d|h|m|s)")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str, working_day: Micros | None = None) -> Micros:
    """Parses a duration; ``wd`` needs ``working_day``, the working time in one working day.

    Raises ValueError with a message fit for a policy error.
    """
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 180s, 30m, 1h30m, 7d or 1wd")
    total = 0.0
    for number, unit in parts:
        if unit == "wd":
            if working_day is None:
                raise ValueError(f"{text!r}: working days (wd) only apply to the working clock")
            total += float(number) * working_day / MICROS_PER_SECOND
        else:
            total += float(number) * _UNIT_SECONDS[unit]
    if total <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return Micros(round(total * MICROS_PER_SECOND))
