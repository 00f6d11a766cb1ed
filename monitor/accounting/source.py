"""The report's sources: JSONL files (``sla-monitor replay --escalations`` output, optionally
the input events too) or ``kafka:`` (the configured broker's topics, from the beginning).

Called by :mod:`monitor.accounting.cli`. Each line or message is one of: an SLA fact (has a
``kind`` of warning/breach/met/retraction), an escalation (``kind: escalation``), an
``agent.status`` event, or an input event (``message.sent`` from a bot or the system counts
for the ``bot_only`` cause; every valid input event, ``channel.status`` included, feeds the
service-quality KPIs; an invalid one is skipped and counted on stderr, as replay does).
Anything else stops the report with the source and line, so a wrong file is never silently
read as an empty month.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from monitor.accounting.escalation import BREACH_COUNT, SLOW_DAYS, escalation_from_dict
from monitor.accounting.facts import InvalidFact, fact_from_dict
from monitor.accounting.report import Inputs, ReportError
from monitor.errors import InvalidEvent
from monitor.events import AGENT_STATUS, Event
from monitor.sla_event import Kind
from monitor.timeutil import parse_rfc3339
from monitor.validation import agent_status_from_dict, event_from_dict
from monitor.vocabulary import EventType

KAFKA = "kafka:"
_FACT_KINDS = frozenset(k.value for k in Kind)
_INPUT_TYPES = frozenset(t.value for t in EventType)


class Collector:
    """Sorts records into :class:`Inputs`."""

    def __init__(self) -> None:
        self.inputs = Inputs()
        self._bots: dict[str, list[int]] = {}
        self._saw_events = False
        self._events: list[Event] = []
        self.invalid: list[str] = []  # input events the KPIs cannot take: where and why

    def add(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise ReportError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        kind = obj.get("kind")
        try:
            if kind == "escalation":
                # 002 6.2 trips; other escalations on the topic (003 3.4 tier escalations of
                # tickets, SLA facts of kind escalation) are not part of this report. Checked
                # before the SLA kinds, which include the tiers' ``escalation``.
                if obj.get("rule") in (BREACH_COUNT, SLOW_DAYS):
                    self.inputs.escalations.append(escalation_from_dict(obj))
            elif kind in _FACT_KINDS:
                self.inputs.facts.append(fact_from_dict(obj))
            elif obj.get("type") == AGENT_STATUS:
                self.inputs.statuses.append(agent_status_from_dict(obj))
            elif obj.get("type") in _INPUT_TYPES:
                self._input_event(obj, where)
            else:
                raise ReportError(
                    f"{where}: not an SLA fact, escalation, agent status or input event "
                    f"(no known `kind` or `type`): is this replay's output?"
                )
        except (InvalidFact, InvalidEvent) as exc:
            raise ReportError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportError(f"{where}: malformed {kind or obj.get('type')}: {exc!r}") from None

    def _input_event(self, obj: dict[str, Any], where: str) -> None:
        self._saw_events = True
        if obj.get("type") == EventType.MESSAGE_SENT and obj.get("sender") in ("bot", "system"):
            at = parse_rfc3339(obj["occurred_at"])
            bisect.insort(self._bots.setdefault(str(obj["session_id"]), []), at)
        try:
            self._events.append(event_from_dict(obj))
        except InvalidEvent as exc:
            # replay reports and skips it, the worker dead-letters it: the KPIs never saw it
            self.invalid.append(f"{where}: {exc}")

    def finish(self) -> Inputs:
        self.inputs.bot_messages = self._bots if self._saw_events else None
        self.inputs.events = self._events if self._saw_events else None
        if self.invalid:
            print(
                f"report: skipped {len(self.invalid)} invalid input event(s) for the KPIs "
                f"(replay and the worker skip them too); first: {self.invalid[0]}",
                file=sys.stderr,
            )
        return self.inputs


def read_sources(sources: Iterable[str], settings: Any = None, progress: bool = True) -> Inputs:
    collector = Collector()
    for source in sources:
        collector.inputs.sources.append(source)
        if source == KAFKA or source.startswith(KAFKA):
            from monitor.accounting.kafka_source import read_kafka  # noqa: PLC0415

            _read_kafka_records(collector, settings, read_kafka(settings, progress=progress))
        else:
            for number, obj in _read_jsonl(Path(source)):
                collector.add(obj, f"{source}:{number}")
    return collector.finish()


def _read_kafka_records(
    collector: Collector, settings: Any, records: Iterable[tuple[str, int, int, bytes]]
) -> None:
    """Adds the broker's records. An input record (``agents``, ``chat.sessions``,
    ``tickets``) the report cannot read was dead-lettered by the worker with its reason: it is
    skipped and counted on stderr, as the worker did, rather than stopping the report. A
    record of the ``sla.*`` topics the report cannot read is an error, as in a file."""
    inputs = (settings.topic_agents, settings.topic_chat, settings.topic_tickets)
    skipped: list[str] = []
    for topic, partition, offset, raw in records:
        where = f"kafka {topic}[{partition}]@{offset}"
        try:
            obj = orjson.loads(raw)
            if topic == settings.topic_agents:
                agent_status_from_dict(obj)
            elif topic in inputs[1:] and not _chat_event(obj):
                raise InvalidEvent("not an input event (no known type, or fields missing)")
        except orjson.JSONDecodeError as exc:
            if topic not in inputs:
                raise ReportError(f"{where}: not JSON ({exc.msg})") from None
            skipped.append(f"{where}: not JSON ({exc.msg})")
            continue
        except InvalidEvent as exc:
            skipped.append(f"{where}: {exc}")
            continue
        collector.add(obj, where)
    if skipped:
        print(
            f"report: skipped {len(skipped)} invalid input record(s) of "
            f"{' and '.join(inputs)} (the worker dead-letters them to "
            f"{settings.topic_deadletter}); first: {skipped[0]}",
            file=sys.stderr,
        )


def _chat_event(obj: Any) -> bool:
    """Enough of a chat event for the report (what :meth:`Collector._input_event` reads)."""
    if not isinstance(obj, dict) or obj.get("type") not in _INPUT_TYPES:
        return False
    if obj.get("type") != EventType.MESSAGE_SENT:
        return True
    try:
        parse_rfc3339(obj["occurred_at"])
    except (KeyError, TypeError, ValueError):
        return False
    return isinstance(obj.get("session_id"), str)


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        stream = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    except OSError as exc:
        raise ReportError(f"{path}: {exc.strerror}") from None
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ReportError(f"{path}:{number}: not JSON ({exc.msg})") from None
