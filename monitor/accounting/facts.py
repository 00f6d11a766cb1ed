"""SLA facts read back from JSON (replay's output, the ``sla.*`` topics) into typed records.

Called by :mod:`monitor.accounting.source` (the report's sources) and by the live
escalation stage (:mod:`monitor.live.escalation_agent`) for each consumed fact. The checks
are structural and cheap (a month of facts is hundreds of thousands of lines); the full
shape is ``schemas/sla-event.schema.json``. A line that is not an SLA fact raises
:class:`InvalidFact` naming the field.
"""

from __future__ import annotations

from typing import Any

from monitor.errors import SlaMonitorError
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import parse_rfc3339
from monitor.vocabulary import Metric, Penalty, Period


class InvalidFact(SlaMonitorError):
    """A record that should be an SLA fact is not one."""


_KINDS = {k.value: k for k in Kind}
_METRICS = {m.value: m for m in Metric}
_PERIODS = {p.value: p for p in Period}


def fact_from_dict(obj: Any) -> SlaEvent:
    """The :class:`SlaEvent` a published fact (``SlaEvent.to_dict``) describes."""
    if not isinstance(obj, dict):
        raise InvalidFact(f"expected a JSON object, got {type(obj).__name__}")
    try:
        kind = _KINDS[obj["kind"]]
        metric = _METRICS[obj["metric"]]
        period = _PERIODS[obj["period"]]
        penalty = obj.get("penalty")
        responded = obj.get("responded_at")
        return SlaEvent(
            _text(obj, "sla_id"),
            kind,
            metric,
            int(obj["seq"]),
            _text(obj, "subject_type"),
            _text(obj, "subject_id"),
            _text(obj, "tenant"),
            obj.get("channel"),
            obj.get("priority"),
            _text(obj, "policy"),
            str(obj.get("clause", "")),
            float(obj["target_seconds"]),
            _text(obj, "clock"),
            period,
            _instant(obj, "started_at"),
            _instant(obj, "deadline"),
            _instant(obj, "detected_at"),
            _instant(obj, "responded_at") if responded is not None else None,
            obj.get("share"),
            Penalty(float(penalty["amount"]), str(penalty["currency"])) if penalty else None,
            obj.get("reason"),
            obj.get("tier"),
            int(obj.get("round", 1)),
        )
    except KeyError as exc:
        name = exc.args[0]
        if name in obj:
            raise InvalidFact(f"{name}: {obj[name]!r} is not a value an SLA fact has") from None
        raise InvalidFact(f"{name}: missing (an SLA fact carries it)") from None
    except (TypeError, ValueError) as exc:
        raise InvalidFact(f"not an SLA fact: {exc}") from None


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj[name]
    if not isinstance(value, str) or not value:
        raise InvalidFact(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _instant(obj: dict[str, Any], name: str) -> int:
    try:
        return parse_rfc3339(obj[name])
    except ValueError as exc:
        raise InvalidFact(f"{name}: {exc}") from None
