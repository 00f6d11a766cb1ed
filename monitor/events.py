"""Input events, after validation: what chat platforms and help desks tell us happened.

One flat, immutable record per event keeps parsing cheap (replay targets 100k events/s) and
lets the engine dispatch on ``type`` alone. It is a named tuple rather than a frozen dataclass:
building one is a single tuple allocation, where a frozen dataclass's ``__init__`` pays an
``object.__setattr__`` call per field (about 1 µs an event, a tenth of replay's budget).
Fields that a type does not carry are ``None``. The JSON shapes are specified in
``schemas/events/``; :mod:`monitor.validation` turns raw bytes into these records or raises
:class:`monitor.errors.InvalidEvent`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from monitor.timeutil import Micros
from monitor.vocabulary import Actor, ChannelStatus, EventType, SubjectType, TicketStatus

__all__ = ["AGENT_STATUS", "AgentPresence", "AgentStatus", "Event"]


class Event(NamedTuple):
    """A validated input event.

    ``subject_id`` is the ``session_id`` of chat events and the ``ticket_id`` of ticket events;
    it is also the Kafka message key, so every event of a subject lands on one partition.
    For ``channel.status`` it is the ``channel`` (subject type ``channel``).
    """

    event_id: str
    type: EventType
    occurred_at: Micros
    tenant: str
    subject_type: SubjectType
    subject_id: str
    channel: str | None = None
    priority: str | None = None
    actor: Actor | None = None  # message.sent ``sender`` / ticket.comment ``author``
    public: bool | None = None  # ticket.comment
    status: TicketStatus | None = None  # ticket.status_changed
    designated: bool | None = None  # ticket.created / ticket.transferred
    score: int | None = None  # session.rated / ticket.rated: 1 (worst) to 5 (best)
    channel_status: ChannelStatus | None = None  # channel.status ``status``


# --- agent presence (topic ``agents``; contract 002 3.3 "服务人员在线情况") ---------------------
# Not an Event: it addresses no SLA subject and never reaches the engine. Read by the monthly
# report (monitor.accounting.presence) for presence figures and breach causes.

AGENT_STATUS = "agent.status"


class AgentPresence(StrEnum):
    ONLINE = "online"  # serving its channels
    AWAY = "away"  # logged in, not serving (a break)
    OFFLINE = "offline"


class AgentStatus(NamedTuple):
    """A validated ``agent.status`` event (``schemas/events/agent.status.schema.json``)."""

    event_id: str
    occurred_at: Micros
    tenant: str
    agent_id: str
    status: AgentPresence
    channels: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        from monitor.timeutil import format_rfc3339  # noqa: PLC0415 - edge-only helper

        return {
            "event_id": self.event_id,
            "type": AGENT_STATUS,
            "occurred_at": format_rfc3339(self.occurred_at),
            "tenant": self.tenant,
            "agent_id": self.agent_id,
            "status": self.status.value,
            "channels": list(self.channels),
        }
