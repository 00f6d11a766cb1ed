"""The domain vocabulary: the words every layer shares, and nothing else.

What an SLA is measured on (:class:`SubjectType`), what happens to it (:class:`EventType`,
:class:`Actor`, :class:`TicketStatus`, :class:`ChannelStatus`), which targets the contracts
set (:class:`Metric`, :class:`EscalationMetric`), how they classify time (:class:`Period`) and
what a breach costs (:class:`Penalty`).

Who imports it: every layer. The calendar (periods), the policy model, the engine and its
records, the input events (:mod:`monitor.events`), the output facts (:mod:`monitor.sla_event`),
validation, the KPIs and the reports. It imports nothing of the monitor itself, so the lower
layers (calendar, policy, engine state) need neither the input nor the output module for
their words. The values are the strings of the JSON schemas in ``schemas/`` and of the
policy files.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# --- subjects and input events (schemas/events/) ---------------------------------------------


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


# --- targets, time, penalties (policy files, schemas/sla-event.schema.json) ------------------


class Metric(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    PERIODIC_UPDATE = "periodic_update"
    RESOLUTION = "resolution"


class EscalationMetric(StrEnum):
    """Targets whose "breach" is published as kind ``escalation``, not as a breach.

    003 3.4: a ticket not solved within N working days escalates to a higher tier; the fact
    names the tier (:attr:`SlaEvent.tier`). A separate enum from :class:`Metric`, whose
    members are the response-time metrics every policy may enable (and which reports and
    tests enumerate); clocks, facts and policies take either (:data:`AnyMetric`).
    """

    TIER_ESCALATION = "tier_escalation"


AnyMetric = Metric | EscalationMetric


class Period(StrEnum):
    """When an SLA clock started, as the contracts classify time."""

    WORKING_HOURS = "working_hours"
    AFTER_HOURS = "after_hours"
    REST_DAY = "rest_day"


@dataclass(frozen=True, slots=True)
class Penalty:
    amount: float
    currency: str
