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


class SubjectType(StrEnum):
    """What an SLA is measured on."""

    CHAT_SESSION = "chat_session"
    TICKET = "ticket"
    CHANNEL = "channel"  # channel.status (004 3.3): no SLA clock, measured by monitor.kpi


class EventType(StrEnum):
    SESSION_STARTED = "session.started"
    MESSAGE_SENT = "message.sent"
    SESSION_CLOSED = "session.closed"
    TICKET_CREATED = "ticket.created"
    TICKET_COMMENT = "ticket.comment"
    TICKET_PRIORITY_CHANGED = "ticket.priority_changed"
    TICKET_STATUS_CHANGED = "ticket.status_changed"
    TICKET_TRANSFERRED = "ticket.transferred"
    TICKET_APPEALED = "ticket.appealed"  # 003 5.1
    SESSION_RATED = "session.rated"  # 004 3.5, 001 3.3
    TICKET_RATED = "ticket.rated"  # 004 3.5, 001 3.3
    CHANNEL_STATUS = "channel.status"  # 004 3.3


CHAT_EVENT_TYPES = frozenset(
    {
        EventType.SESSION_STARTED,
        EventType.MESSAGE_SENT,
        EventType.SESSION_CLOSED,
        EventType.SESSION_RATED,
    }
)
CHANNEL_EVENT_TYPES = frozenset({EventType.CHANNEL_STATUS})
TICKET_EVENT_TYPES = frozenset(EventType) - CHAT_EVENT_TYPES - CHANNEL_EVENT_TYPES


class Actor(StrEnum):
    """Who wrote a chat message (``sender``) or a ticket comment (``author``)."""

    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"


class TicketStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"  # waiting on the customer
    ON_HOLD = "on_hold"  # waiting on a third party
    SOLVED = "solved"
    CLOSED = "closed"


class ChannelStatus(StrEnum):
    """``channel.status`` ``status``: whether customers can reach the channel (004 3.3)."""

    UP = "up"
    DOWN = "down"


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
