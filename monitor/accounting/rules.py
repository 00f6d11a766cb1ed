"""A policy's ``accounting`` section: the report, breach-cause and escalation settings.

Called by :mod:`monitor.policy.loader` (``parse_accounting`` on the schema-valid document)
and read by :mod:`monitor.accounting.escalation`, :mod:`monitor.accounting.causes` and
:mod:`monitor.accounting.report`. The JSON shape is ``$defs/accounting`` in
``schemas/policy.schema.json``. Contract 002 leaves every figure blank (``[例如: 3次]``), so
each is a setting; the defaults are the contract's examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from monitor.errors import PolicyError
from monitor.timeutil import Micros
from monitor.vocabulary import Metric


class DayKind(StrEnum):
    """How the explanation deadline of 6.2 counts days."""

    CALENDAR = "calendar"
    WORKING = "working"  # the policy's business calendar


class Window(StrEnum):
    """What "累计 N 次" (N breaches in total) counts over."""

    MONTH = "month"  # each calendar month of the policy's time zone starts from zero
    CONTRACT = "contract"  # never resets


@dataclass(frozen=True, slots=True)
class EscalationRules:
    """Contract 002 6.2: after ``breaches`` breaches in total, or ``consecutive_days`` days
    in a row whose mean first response exceeds the standard by ``margin``, a written
    explanation is due within ``explain_within`` days."""

    clause: str
    metrics: frozenset[Metric]  # whose breaches and responses count (6.2 refers to article 2)
    breaches: int  # N
    window: Window
    consecutive_days: int  # D
    margin: float  # 0.2 = 20 % over the standard
    # A breach detected at its deadline carries no response time (the engine stops the clock
    # at the breach and emits nothing for the late reply); it enters the day's mean as this
    # ratio of its target. See monitor.accounting.escalation.
    unanswered_ratio: float
    explain_within: int  # E
    explain_days: DayKind
    # A day's mean is final once a fact of a session started this long after the day's end
    # arrives (later facts of the day are counted as late and ignored, in replay and live).
    day_closes_after: Micros
    # Live, days close on the slowest first-stage partition, except partitions this far behind
    # the most advanced one (monitor.accounting.escalation._watermark says why).
    partition_patience: Micros


@dataclass(frozen=True, slots=True)
class AccountingRules:
    """Everything the monthly report (3.3) and the escalations (6.2) need from a policy."""

    report_clause: str
    report_due_working_days: int  # 3.3: within 5 working days after the month
    penalty_clause: str  # the clause the ledger cites (6.1)
    overloaded_above: float  # waiting sessions per online agent (breach cause "overloaded")
    escalation: EscalationRules | None


DEFAULT_ESCALATION: dict[str, Any] = {
    "clause": "002 6.2",
    "metrics": ["first_response"],
    "breaches": 3,
    "window": "month",
    "consecutive_days": 3,
    "margin": 0.2,
    "unanswered_ratio": 2.0,
    "explain_within": 7,
    "explain_days": "calendar",
    "day_closes_after": "1h",
    "partition_patience": "2d",
}


def parse_accounting(
    doc: dict[str, Any] | None, fail: Callable[[str, str], PolicyError]
) -> AccountingRules | None:
    """Builds the rules from a schema-valid ``accounting`` section (None if absent)."""
    if doc is None:
        return None
    report = doc.get("report", {})
    causes = doc.get("causes", {})
    escalation: EscalationRules | None = None
    if "escalation" in doc:
        # Imported here: monitor.policy's loader imports this module.
        from monitor.policy.durations import parse_duration  # noqa: PLC0415

        spec = {**DEFAULT_ESCALATION, **doc["escalation"]}
        durations: dict[str, Micros] = {}
        for name in ("day_closes_after", "partition_patience"):
            try:
                durations[name] = parse_duration(spec[name])
            except ValueError as exc:
                raise fail(f"accounting.escalation.{name}", str(exc)) from None
        escalation = EscalationRules(
            clause=spec["clause"],
            metrics=frozenset(Metric(m) for m in spec["metrics"]),
            breaches=int(spec["breaches"]),
            window=Window(spec["window"]),
            consecutive_days=int(spec["consecutive_days"]),
            margin=float(spec["margin"]),
            unanswered_ratio=float(spec["unanswered_ratio"]),
            explain_within=int(spec["explain_within"]),
            explain_days=DayKind(spec["explain_days"]),
            day_closes_after=durations["day_closes_after"],
            partition_patience=durations["partition_patience"],
        )
    return AccountingRules(
        report_clause=str(report.get("clause", "002 3.3")),
        report_due_working_days=int(report.get("due_working_days", 5)),
        penalty_clause=str(report.get("penalty_clause", "002 6.1")),
        overloaded_above=float(causes.get("overloaded_above", 3.0)),
        escalation=escalation,
    )
