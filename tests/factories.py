"""Builders of input events and a small replay driver for engine tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from monitor.engine import SlaEngine
from monitor.events import Event
from monitor.policy import PolicySet, load_policy_set
from monitor.replay import Replay
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import parse_rfc3339
from monitor.vocabulary import Actor, EventType, Metric, SubjectType, TicketStatus

_ids = itertools.count(1)
_DEFAULT: PolicySet | None = None


def default_policies() -> PolicySet:
    global _DEFAULT  # noqa: PLW0603 - loaded once per test session; policies are immutable
    if _DEFAULT is None:
        _DEFAULT = load_policy_set()
    return _DEFAULT


def t(text: str) -> int:
    """An instant from Beijing local time 'YYYY-MM-DD HH:MM[:SS]' or a full RFC 3339 string."""
    if "+" in text[10:] or text.endswith("Z") or "-" in text[10:]:
        return parse_rfc3339(text)
    if len(text) == 16:
        text += ":00"
    return parse_rfc3339(text.replace(" ", "T") + "+08:00")


def ev(type_: str, subject: str, at: str, **fields: Any) -> Event:
    etype = EventType(type_)
    chat = etype in (EventType.SESSION_STARTED, EventType.MESSAGE_SENT, EventType.SESSION_CLOSED)
    if "actor" in fields and isinstance(fields["actor"], str):
        fields["actor"] = Actor(fields["actor"])
    if "status" in fields and isinstance(fields["status"], str):
        fields["status"] = TicketStatus(fields["status"])
    if etype is EventType.SESSION_STARTED:
        fields.setdefault("channel", "web")
    if etype is EventType.TICKET_CREATED:
        fields.setdefault("channel", "email")
        fields.setdefault("priority", "P3")
    return Event(
        event_id=fields.pop("event_id", f"e{next(_ids)}"),
        type=etype,
        occurred_at=t(at),
        tenant=fields.pop("tenant", "acme"),
        subject_type=SubjectType.CHAT_SESSION if chat else SubjectType.TICKET,
        subject_id=subject,
        **fields,
    )


@dataclass
class Run:
    """Feeds events through a Replay and keeps every fact."""

    policies: PolicySet = field(default_factory=default_policies)
    facts: list[SlaEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.replay = Replay(SlaEngine(self.policies))

    def feed(self, *events: Event) -> Run:
        for e in events:
            self.facts.extend(self.replay.feed(e))
        return self

    def until(self, at: str) -> Run:
        self.facts.extend(self.replay.advance_to(t(at)))
        return self

    def kinds(self, metric: Metric | None = None) -> list[tuple[str, str]]:
        return [
            (f.metric.value, f.kind.value)
            for f in self.facts
            if metric is None or f.metric is metric
        ]

    def only(self, kind: Kind, metric: Metric = Metric.FIRST_RESPONSE) -> SlaEvent:
        found = [f for f in self.facts if f.kind is kind and f.metric is metric]
        assert len(found) == 1, f"expected one {metric} {kind}, got {self.kinds()}"
        return found[0]
