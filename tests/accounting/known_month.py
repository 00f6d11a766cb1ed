"""A generated month of chat traffic with a known answer (tenant ``known``, October 2026).

Every session is written down with what the contract says about it *by construction*:
its target (from a hand-written table of October 2026's PRC working days, not from the
monitor's calendar), whether it is met or breached, its response time, and the cause of its
breach. Agents' presence is scripted the same way. The tests compute the expected report
(counts, means, penalties, causes, presence) and the expected 6.2 escalations from these
records alone and compare them with what replay, the report and the live worker produce.

Scenarios (contract 002, bundled ``online-chat`` policy):

* every working day: agent A1 online 09:00-18:00 serving web and app (23 Oct: web only), and
  10 web sessions answered after 60 s (met);
* 8 Oct: a reply made in time but delivered late: a breach, then its retraction and a met;
* 9 Oct: a late reply with agents free: ``slow_response``;
* 10 Oct (a make-up working Saturday): evening sessions, 300 s target: a met at 240 s, and an
  app session answered after 400 s with nobody online: ``no_agent_online``;
* 11 Oct (Sunday, rest day): answered after 250 s: met (300 s target);
* 13 Oct: A2 also online for web; 8 sessions 10 s apart: the first 6 answered at 120 s, the
  last 2 at 200 s with 7 and 8 waiting for 2 agents: ``overloaded``;
* 15 Oct: a bot answers, the agent only after 250 s: ``bot_only``;
* 19-21 Oct: 12 extra web breaches a day (answered at 240 s): each day's mean of elapsed /
  target is (10 x 1/3 + 12 x 2.0) / 22 = 1.2424 > 1.2 -> one ``slow_days`` escalation;
* 23 Oct: an app session at 10:00 with nobody serving app: ``no_agent_online``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

BEIJING = timezone(timedelta(hours=8))
TENANT = "known"
# October 2026, by hand (State Council schedule): 1-7 National Day holiday, 10 (Sat) a make-up
# working day, weekends otherwise rest days.
WORKING_DAYS = (8, 9, 10, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 26, 27, 28, 29, 30)
SLOW_DAYS = (19, 20, 21)
EXTRA_PER_SLOW_DAY = 12


@dataclass(frozen=True)
class Session:
    session_id: str
    channel: str
    started: datetime
    period: str
    target: int  # seconds
    reply_after: int  # seconds to the agent's reply
    outcome: str  # "met" or "breach" (final verdict)
    cause: str | None = None
    retracted: bool = False  # breached first, then a late-delivered reply retracted it

    @property
    def deadline(self) -> datetime:
        return self.started + timedelta(seconds=self.target)


@dataclass
class KnownMonth:
    events: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    agent_hours: dict[str, float] = field(default_factory=dict)
    uncovered_hours: dict[str, float] = field(default_factory=dict)


class _Builder:
    def __init__(self, days: tuple[int, ...]) -> None:
        self.days = days
        self.out = KnownMonth()
        self.rows: list[tuple[datetime, int, dict[str, Any]]] = []  # sort key, seq, event
        self.n = 0

    def emit(self, at: datetime, kind: str, sort_at: datetime | None = None, **fields: Any) -> None:
        self.n += 1
        event = {
            "event_id": f"k-{self.n}",
            "type": kind,
            "occurred_at": at.isoformat(),
            "tenant": TENANT,
            **fields,
        }
        self.rows.append((sort_at or at, self.n, event))

    def agent(self, agent: str, day: date, channels: list[str]) -> None:
        on = datetime(day.year, day.month, day.day, 9, tzinfo=BEIJING)
        self.emit(on, "agent.status", agent_id=agent, status="online", channels=channels)
        self.emit(
            on + timedelta(hours=9), "agent.status", agent_id=agent, status="offline", channels=[]
        )
        for channel in channels:
            self.out.agent_hours[channel] = self.out.agent_hours.get(channel, 0.0) + 9.0

    def session(
        self,
        at: datetime,
        channel: str,
        period: str,
        target: int,
        reply_after: int,
        *,
        cause: str | None = None,
        bot_after: int | None = None,
        late_delivery: int | None = None,
    ) -> None:
        sid = f"{channel}-{at:%m%d-%H%M%S}"
        self.emit(at, "session.started", session_id=sid, channel=channel)
        self.emit(at + timedelta(seconds=1), "message.sent", session_id=sid, sender="customer")
        if bot_after is not None:
            self.emit(
                at + timedelta(seconds=bot_after), "message.sent", session_id=sid, sender="bot"
            )
        reply = at + timedelta(seconds=reply_after)
        delivered = reply + timedelta(seconds=late_delivery) if late_delivery else None
        self.emit(reply, "message.sent", sort_at=delivered, session_id=sid, sender="agent")
        self.emit(at + timedelta(minutes=30), "session.closed", session_id=sid)
        outcome = "met" if reply_after <= target else "breach"
        self.out.sessions.append(
            Session(
                sid,
                channel,
                at,
                period,
                target,
                reply_after,
                outcome,
                cause,
                retracted=late_delivery is not None,
            )
        )

    def build(self) -> KnownMonth:
        for d in self.days:
            day = date(2026, 10, d)

            def at(h: int, m: int = 0, s: int = 0, day: date = day) -> datetime:
                return datetime(day.year, day.month, day.day, h, m, s, tzinfo=BEIJING)

            if d in WORKING_DAYS:
                self.agent("A1", day, ["web"] if d == 23 else ["web", "app"])
                for k in range(10):
                    self.session(
                        at(9, 30) + timedelta(minutes=20 * k), "web", "working_hours", 180, 60
                    )
            if d == 8:  # replied at 60 s, delivered 9 min later: breach, retraction, met
                self.session(at(10, 15), "web", "working_hours", 180, 60, late_delivery=540)
            elif d == 9:
                self.session(at(14), "web", "working_hours", 180, 200, cause="slow_response")
            elif d == 10:
                self.session(at(19), "web", "after_hours", 300, 240)
                self.session(at(20), "app", "after_hours", 300, 400, cause="no_agent_online")
            elif d == 11:
                self.session(at(11), "web", "rest_day", 300, 250)
            elif d == 13:
                self.agent("A2", day, ["web"])
                for k in range(8):
                    late = k >= 6
                    self.session(
                        at(11) + timedelta(seconds=10 * k),
                        "web",
                        "working_hours",
                        180,
                        200 if late else 120,
                        cause="overloaded" if late else None,
                    )
            elif d == 15:
                self.session(
                    at(14), "web", "working_hours", 180, 250, cause="bot_only", bot_after=5
                )
            elif d in SLOW_DAYS:
                for k in range(EXTRA_PER_SLOW_DAY):
                    self.session(
                        at(15) + timedelta(minutes=10 * k),
                        "web",
                        "working_hours",
                        180,
                        240,
                        cause="slow_response",
                    )
            elif d == 23:
                self.session(at(10), "app", "working_hours", 180, 300, cause="no_agent_online")
        self.rows.sort(key=lambda r: (r[0], r[1]))
        self.out.events = [event for _, _, event in self.rows]
        working = [d for d in self.days if d in WORKING_DAYS]
        covered_app = [d for d in working if d != 23]
        month_working_hours = 9.0 * len(WORKING_DAYS)
        self.out.uncovered_hours = {
            "web": month_working_hours - 9.0 * len(working),
            "app": month_working_hours - 9.0 * len(covered_app),
        }
        return self.out


def known_month(days: tuple[int, ...] = tuple(range(1, 32))) -> KnownMonth:
    """The events and the answer for the given days of October 2026 (all by default)."""
    return _Builder(days).build()
