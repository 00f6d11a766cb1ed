"""First-contact resolution (004 3.4, 001 3.2) and satisfaction (004 3.5, 001 3.3).

* **FCR** (首次接触解决率: "在首次与客户接触时即成功解决客户问题的服务请求数量占总服务请求数量的
  百分比"). A ticket counts in the month it is first solved (or closed), under its channel
  then. It was resolved at first contact when exactly one public agent reply preceded that
  solve and it is never reopened afterwards (a status back to open, pending or on hold, or an
  accepted appeal, 003 5.1). A reopen after the month was counted takes the ticket out of the
  FCR count of its month again (the metrics count it in ``..._reopened_total``).
* **CSAT** (客户满意度, 1-5 scale): per channel and month of the rating, the mean score and
  the share of good ratings (4 or 5). A subject's channel is the one the monitor knows for it
  (a session's start channel, a ticket's channel at rating time).

Callers: :class:`monitor.kpi.tracker.KpiTracker` only; it passes only events the engine
accepted, so every rated subject exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GOOD_SCORE = 4  # 004 3.5 "满意度好评率": 4 and 5 on the 1-5 scale


@dataclass(slots=True)
class TicketRecord:
    tenant: str
    channel: str | None
    replies: int = 0  # public agent replies before the first solve
    solved_month: str | None = None
    first_contact: bool = False  # counted as resolved at first contact
    reopened: bool = False


@dataclass
class Counts:
    """One (tenant, channel, month): FCR and CSAT raw counts (sums, so they aggregate)."""

    solved: int = 0
    first_contact: int = 0  # net of reopens
    ratings: int = 0
    points: int = 0  # sum of scores
    good: int = 0  # ratings of 4 or 5
    scores: dict[int, int] = field(default_factory=dict)


Key = tuple[str, str | None, str]  # tenant, channel, month


class QualityLedger:
    """Per-subject facts FCR and CSAT need, and their counts per (tenant, channel, month)."""

    def __init__(self) -> None:
        self.tickets: dict[str, TicketRecord] = {}
        self.sessions: dict[str, tuple[str, str | None]] = {}  # id -> (tenant, channel)
        self.counts: dict[Key, Counts] = {}

    def _at(self, key: Key) -> Counts:
        found = self.counts.get(key)
        if found is None:
            found = self.counts[key] = Counts()
        return found

    def ticket_created(self, ticket: str, tenant: str, channel: str | None) -> None:
        self.tickets.setdefault(ticket, TicketRecord(tenant, channel))

    def ticket_channel(self, ticket: str, channel: str | None) -> None:
        record = self.tickets.get(ticket)
        if record is not None and channel:
            record.channel = channel

    def agent_replied(self, ticket: str) -> None:
        record = self.tickets.get(ticket)
        if record is not None and record.solved_month is None:
            record.replies += 1

    def solved(self, ticket: str, month: str) -> TicketRecord | None:
        """First solve: counts the ticket; returns its record if this counted it."""
        record = self.tickets.get(ticket)
        if record is None or record.solved_month is not None:
            return None
        record.solved_month = month
        record.first_contact = record.replies == 1
        counts = self._at((record.tenant, record.channel, month))
        counts.solved += 1
        counts.first_contact += record.first_contact
        return record

    def reopened(self, ticket: str) -> TicketRecord | None:
        """After a solve: the ticket was not resolved at first contact after all. Returns the
        record if this took it out of an FCR count."""
        record = self.tickets.get(ticket)
        if record is None or record.solved_month is None or record.reopened:
            return None
        record.reopened = True
        if not record.first_contact:
            return None
        record.first_contact = False
        self._at((record.tenant, record.channel, record.solved_month)).first_contact -= 1
        return record

    def session_started(self, session: str, tenant: str, channel: str | None) -> None:
        self.sessions.setdefault(session, (tenant, channel))

    def forget(self, subject: str, *, ticket: bool) -> None:
        """Drops one subject's record (its counts stay): see :meth:`KpiTracker.forget`."""
        (self.tickets if ticket else self.sessions).pop(subject, None)

    def rated(self, tenant: str, channel: str | None, month: str, score: int) -> None:
        counts = self._at((tenant, channel, month))
        counts.ratings += 1
        counts.points += score
        counts.good += score >= GOOD_SCORE
        counts.scores[score] = counts.scores.get(score, 0) + 1
