"""A realistic, deterministic customer-service traffic generator (Beijing time).

Used for the committed sample (``monitor/data/sample-day.jsonl``, replayed by
``make replay-sample`` and the tests), for benchmarks (:mod:`monitor.bench`) and for the live
demo (:func:`iter_live`, paced by its caller).

What it models, so the monitor has something to find:

* load follows the Beijing day: busy 09:00-18:00 on working days, a lunch dip, thin evenings
  and nights, and much less on rest days (the sample starts on the last evening of the 2026
  National Day holiday);
* chat: bots auto-reply first and system notices appear (neither counts as a response), most
  agents answer promptly, some slowly (breaches of the 180 s / 300 s targets), a few urgent
  sessions, sessions closed before any reply, customers writing again after an agent reply;
* tickets P1-P4: bot comments, private agent notes and public replies, customer comments,
  priority changes, pending / on_hold / solved / closed, tickets recorded on a non-designated
  channel (``designated: false``) and transferred later;
* a small share of exact duplicates (the same event re-sent, as at-least-once producers do);
* most timestamps in +08:00, some in Z, and some producer metadata the monitor ignores.

Determinism: everything derives from ``seed`` (each subject gets its own ``random.Random`` seeded
from the seed and its number), nothing reads the clock or sleeps, so the same arguments give the
same events, byte for byte once written with :func:`write_jsonl`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import orjson

from monitor.timeutil import MICROS_PER_SECOND, Micros, from_datetime, to_datetime

BEIJING = timezone(timedelta(hours=8))
"""China Standard Time: a fixed offset (no daylight saving since 1991)."""

SAMPLE_START = datetime(2026, 10, 7, 20, 0, tzinfo=BEIJING)
SAMPLE_HOURS = 24.0
SAMPLE_SEED = 20261008
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "sample-day.jsonl"

_S = MICROS_PER_SECOND
_MIN = 60 * _S
_HOUR = 3600 * _S

# Only shapes the load and staffing here; the SLA calendar (monitor.calendar) is the authority.
# The 2026 National Day holiday and its make-up working days (State Council schedule); outside
# these, Saturdays and Sundays are rest days.
_HOLIDAYS = frozenset(date(2026, 10, d) for d in range(1, 8))
_MAKEUP_WORKDAYS = frozenset({date(2026, 9, 20), date(2026, 10, 10)})

# Share of peak load by local hour.
_WORKDAY_LOAD = (
    (0.05,) * 7 + (0.15, 0.4) + (1.0,) * 3 + (0.7,) + (1.0,) * 5 + (0.45,) * 2 + (0.3,) * 2
) + (0.12,) * 2
_RESTDAY_LOAD = (0.04,) * 8 + (0.2, 0.2) + (0.35,) * 11 + (0.15,) * 3

_CHAT_CHANNELS = (("web", 45), ("app", 30), ("wechat", 25))
_TICKET_CHANNELS = (("email", 40), ("web", 30), ("app", 15), ("phone", 10), ("wechat", 5))
_OTHER_CHANNELS = ("weibo", "douyin", "sales-email")  # not designated for support requests
_PRIORITIES = (("P1", 5), ("P2", 20), ("P3", 50), ("P4", 25))
_FIRST_RESPONSE_TARGET = {"P1": 30 * _MIN, "P2": 2 * _HOUR, "P3": 4 * _HOUR, "P4": 8 * _HOUR}


def generate(
    start: datetime,
    hours: float,
    seed: int,
    *,
    tenants: Sequence[str] = ("acme", "globex"),
    chats_per_hour: float = 20.0,
    tickets_per_hour: float = 8.0,
    duplicate_rate: float = 0.015,
    presence: bool = False,
) -> list[dict[str, Any]]:
    """Events occurring in ``[start, start + hours)``, in occurred_at order.

    ``start`` must be aware. Rates are at peak (a working day, 09:00-18:00); other hours get a
    share of them. Subjects still open at the end are cut off there, as a stream snapshot is.
    ``presence`` adds the agents' ``agent.status`` events (:func:`_presence`); without it the
    output is exactly what it always was (the committed sample and tests/golden rely on that).
    """
    begin = from_datetime(start)
    end = begin + round(hours * _HOUR)
    out: list[dict[str, Any]] = []
    for at, event in _stream(
        begin,
        seed,
        tenants=tenants,
        chats_per_hour=chats_per_hour,
        tickets_per_hour=tickets_per_hour,
        duplicate_rate=duplicate_rate,
        presence=presence,
    ):
        if at >= end:
            break
        out.append(event)
    return out


def iter_live(
    start: Micros,
    seed: int,
    *,
    speedup: float = 1.0,
    tenants: Sequence[str] = ("acme", "globex"),
    chats_per_hour: float = 20.0,
    tickets_per_hour: float = 8.0,
    duplicate_rate: float = 0.015,
    presence: bool = False,
) -> Iterator[tuple[Micros, dict[str, Any]]]:
    """Endless ``(due, event)`` pairs for the live demo, in due order.

    The caller (the demo producer) passes ``start`` (usually now), waits until ``due`` on its
    own clock and publishes ``event``. Simulated time runs ``speedup`` times faster than the
    due times: ``occurred_at`` is simulated time, so at speedup 1 it equals ``due``.
    """
    if speedup <= 0:
        raise ValueError(f"speedup must be positive, got {speedup}")
    for at, event in _stream(
        start,
        seed,
        tenants=tenants,
        chats_per_hour=chats_per_hour,
        tickets_per_hour=tickets_per_hour,
        duplicate_rate=duplicate_rate,
        presence=presence,
    ):
        yield Micros(start + round((at - start) / speedup)), event


def write_jsonl(events: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Writes one compact JSON object per line (keys in insertion order); returns the count.

    Called by :func:`main` and tests; the output is byte-identical for identical events.
    """
    lines = [orjson.dumps(event) + b"\n" for event in events]
    Path(path).write_bytes(b"".join(lines))
    return len(lines)


def sample_events() -> list[dict[str, Any]]:
    """The events of the committed sample file (2026-10-07 20:00 to 2026-10-08 20:00 +08:00)."""
    return generate(SAMPLE_START, SAMPLE_HOURS, SAMPLE_SEED)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.traffic``: regenerates the sample, or writes a custom day."""
    parser = argparse.ArgumentParser(prog="python -m monitor.traffic", description=__doc__)
    parser.add_argument("--start", help="RFC 3339 start with offset (default: the sample's)")
    parser.add_argument("--hours", type=float, default=SAMPLE_HOURS)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    parser.add_argument("--out", type=Path, default=SAMPLE_PATH)
    parser.add_argument(
        "--presence", action="store_true", help="add agents' agent.status events (issue 8)"
    )
    args = parser.parse_args(argv)
    start = datetime.fromisoformat(args.start) if args.start else SAMPLE_START
    if start.tzinfo is None:
        parser.error("--start needs a UTC offset")
    count = write_jsonl(generate(start, args.hours, args.seed, presence=args.presence), args.out)
    print(f"wrote {count} events to {args.out}")
    return 0


# --- the model ------------------------------------------------------------------------------


def _local(at: int) -> datetime:
    return to_datetime(at, BEIJING)


def _is_working_day(day: date) -> bool:
    if day in _MAKEUP_WORKDAYS:
        return True
    return day not in _HOLIDAYS and day.weekday() < 5


def _in_working_hours(at: int) -> bool:
    local = _local(at)
    return _is_working_day(local.date()) and 9 <= local.hour < 18


def _load(at: int) -> float:
    local = _local(at)
    table = _WORKDAY_LOAD if _is_working_day(local.date()) else _RESTDAY_LOAD
    return table[local.hour]


def _next_working_start(at: int) -> int:
    """09:00 Beijing of the next working day at or after ``at`` (today's if still ahead)."""
    local = _local(at)
    day = local.date()
    if local.hour >= 9:
        day += timedelta(days=1)
    while not _is_working_day(day):
        day += timedelta(days=1)
    return from_datetime(datetime(day.year, day.month, day.day, 9, tzinfo=BEIJING))


def _arrivals(
    start: int, seed: int, chats_per_hour: float, tickets_per_hour: float
) -> Iterator[tuple[int, bool, int]]:
    """``(time, is_chat, number)`` of each new subject: a Poisson process thinned by load."""
    rng = random.Random(f"arrivals:{seed}")
    peak = (chats_per_hour + tickets_per_hour) / _HOUR  # per microsecond
    chat_share = chats_per_hour / (chats_per_hour + tickets_per_hour)
    at = start
    for number in itertools.count(1):
        while True:
            at += max(1, round(rng.expovariate(peak)))
            if rng.random() < _load(at):
                break
        yield _ms(at), rng.random() < chat_share, number


def _stream(
    start: int,
    seed: int,
    *,
    tenants: Sequence[str],
    chats_per_hour: float,
    tickets_per_hour: float,
    duplicate_rate: float,
    presence: bool = False,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every event from ``start`` on, in occurred_at order; with ``presence``, the agents'
    status events merged in (a separate RNG: the subjects' events stay the same)."""
    subjects = _subjects(
        start,
        seed,
        tenants=tenants,
        chats_per_hour=chats_per_hour,
        tickets_per_hour=tickets_per_hour,
        duplicate_rate=duplicate_rate,
    )
    if not presence:
        return subjects
    # Ties: the subjects' event first (heapq.merge is stable in argument order).
    return heapq.merge(subjects, _presence(start, seed, tenants), key=lambda item: item[0])


def _subjects(
    start: int,
    seed: int,
    *,
    tenants: Sequence[str],
    chats_per_hour: float,
    tickets_per_hour: float,
    duplicate_rate: float,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every subject event from ``start`` on, in occurred_at order (ties: generation order).

    Each subject's whole script is drawn when it arrives. Its events are never earlier than its
    arrival, and arrivals come in order, so everything queued before the next arrival is final.
    """
    if not tenants:
        raise ValueError("at least one tenant is needed")
    queue: list[tuple[int, int, dict[str, Any]]] = []
    order = itertools.count()
    for arrival, is_chat, number in _arrivals(start, seed, chats_per_hour, tickets_per_hour):
        while queue and queue[0][0] < arrival:
            at, _, event = heapq.heappop(queue)
            yield at, event
        script = _Script(random.Random(f"subject:{seed}:{number}"), tenants)
        if is_chat:
            script.chat(arrival, number)
        else:
            script.ticket(arrival, number)
        for at, event in script.events:
            heapq.heappush(queue, (at, next(order), event))
            if script.rng.random() < duplicate_rate:
                # An at-least-once producer re-sends the very same event.
                heapq.heappush(queue, (at, next(order), dict(event)))


# --- agent presence (issue 8: the monthly report's 服务人员在线情况 and breach causes) -------

# Each tenant's roster: (agents, first hour, last hour, chat channels served) per shift, by
# kind of day. The day shift is staffed for the 09:00-18:00 peak; evenings thinner; nights
# and rest-day mornings nobody, and wechat only by day: the report then has both covered
# hours and breaches with no agent online to show.
_WORKDAY_SHIFTS = ((6, 9, 18, ("web", "app", "wechat")), (2, 18, 23, ("web", "app")))
_RESTDAY_SHIFTS = ((2, 10, 20, ("web", "app")),)


def _presence(
    start: int, seed: int, tenants: Sequence[str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Endless ``agent.status`` events from the day of ``start`` on, in time order: per tenant
    and shift, each agent goes online (a few minutes late or early), takes an hour's lunch
    ``away`` on a day shift, and goes offline at the shift's end. Key: ``agent_id``."""
    rng = random.Random(f"presence:{seed}")
    day = _local(start).date()
    while True:
        shifts = _WORKDAY_SHIFTS if _is_working_day(day) else _RESTDAY_SHIFTS
        events: list[tuple[int, dict[str, Any]]] = []
        for tenant in tenants:
            number = 0
            for agents, first, last, channels in shifts:
                for _ in range(agents):
                    number += 1
                    agent = f"{tenant}-agent-{number:02d}"
                    events += _shift(
                        rng, tenant, agent, day, hours=(first, last), channels=channels
                    )
        events.sort(key=lambda item: item[0])  # stable: ties keep generation order
        # Who is already on shift at ``start`` says so at ``start`` (a stream joined midway).
        before: dict[str, dict[str, Any]] = {}
        for at, event in events:
            if at < start:
                before[event["agent_id"]] = event
        for event in before.values():
            if event["status"] != "offline":
                at_start = _format(start, BEIJING)
                yield (
                    start,
                    {**event, "event_id": f"{event['event_id']}:start", "occurred_at": at_start},
                )
        for at, event in events:
            if at >= start:
                yield at, event
        day += timedelta(days=1)


def _shift(
    rng: random.Random,
    tenant: str,
    agent: str,
    day: date,
    *,
    hours: tuple[int, int],
    channels: Sequence[str],
) -> list[tuple[int, dict[str, Any]]]:
    """One agent's status changes over one shift of ``day`` (local hours ``first, last``)."""
    first, last = hours
    base = datetime(day.year, day.month, day.day, tzinfo=BEIJING)
    on = from_datetime(base + timedelta(hours=first)) + _jitter(rng)
    off = from_datetime(base + timedelta(hours=last)) + _jitter(rng)
    changes: list[tuple[int, str, Sequence[str]]] = [(on, "online", channels)]
    if first < 12 < last:
        lunch = from_datetime(base + timedelta(hours=11.5)) + _jitter(rng, 30)
        changes += [(lunch, "away", channels), (lunch + _HOUR, "online", channels)]
    changes.append((off, "offline", ()))
    return [
        (
            at,
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "type": "agent.status",
                "occurred_at": _format(at, BEIJING),
                "tenant": tenant,
                "agent_id": agent,
                "status": status,
                "channels": list(served),
            },
        )
        for at, status, served in changes
    ]


def _jitter(rng: random.Random, minutes: int = 10) -> int:
    """Whole seconds within ``minutes`` either way: people log in a little early or late."""
    return rng.randint(-minutes * 60, minutes * 60) * _S


def _ms(at: float) -> int:
    """Rounds to whole milliseconds, as most producers stamp."""
    return round(at / 1000) * 1000


def _format(at: int, tz: tzinfo) -> str:
    """RFC 3339 as producers write it: whole seconds or milliseconds, Z for UTC."""
    value = to_datetime(at, tz)
    text = value.isoformat(timespec="seconds" if value.microsecond == 0 else "milliseconds")
    return text[:-6] + "Z" if tz is UTC else text


def _pick(rng: random.Random, weighted: Sequence[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


class _Script:
    """The events of one subject (a chat session or a ticket), drawn from its own RNG."""

    def __init__(self, rng: random.Random, tenants: Sequence[str]) -> None:
        self.rng = rng
        # The first tenant is the biggest customer: weights 3, 2, 1, 1, ...
        weights = [max(1, 3 - i) for i in range(len(tenants))]
        self.tenant = rng.choices(list(tenants), weights)[0]
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.last = 0

    def emit(self, at: float, event_type: str, subject: tuple[str, str], **fields: Any) -> int:
        """Appends one event at ``at`` (kept strictly after the previous one); returns its time."""
        when = max(_ms(at), self.last + 1000)
        if self.rng.random() < 0.6:  # many producers stamp whole seconds only
            # Rounded up: never before the subject's arrival, which _stream relies on.
            when = -(-when // _S) * _S
        self.last = when
        # Most producers stamp Beijing time; some (cloud help desks) stamp UTC.
        tz = UTC if self.rng.random() < 0.12 else BEIJING
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": event_type,
            "occurred_at": _format(when, tz),
            "tenant": self.tenant,
            subject[0]: subject[1],
        }
        event.update(fields)
        self.events.append((when, event))
        return when

    def agent(self) -> str:
        return f"agent-{self.rng.randint(1, 40):03d}"

    # --- chat -------------------------------------------------------------------------------

    def chat_delay(self, at: int, urgent: bool) -> float:
        """Seconds until an agent answers a customer message sent at ``at``."""
        rng = self.rng
        if _in_working_hours(at):
            slow, typical, slow_range = 0.15, 40.0, (150.0, 600.0)
        else:  # thin evening and rest-day staffing: slower, more 300 s breaches
            slow, typical, slow_range = 0.25, 90.0, (240.0, 900.0)
        if rng.random() < slow:
            delay = rng.uniform(*slow_range)
        else:
            delay = max(4.0, rng.lognormvariate(math.log(typical), 0.6))
        return delay * (0.3 if urgent else 1.0)

    def chat(self, at: int, number: int) -> None:
        rng = self.rng
        subject = ("session_id", f"S-{number:07d}")
        urgent = rng.random() < 0.06
        started: dict[str, Any] = {"channel": _pick(rng, _CHAT_CHANNELS)}
        if urgent:
            started["priority"] = "urgent"
        elif rng.random() < 0.5:
            started["priority"] = "normal"  # else left to the schema default
        t = self.emit(at, "session.started", subject, **started)
        t = self.emit(t + rng.uniform(0.5, 4) * _S, "message.sent", subject, sender="customer")
        asked = t
        if rng.random() < 0.75:  # bot auto-reply: does not stop the clock
            self.emit(t + rng.uniform(1, 3) * _S, "message.sent", subject, sender="bot")
        if rng.random() < 0.25:  # "you are number 3 in the queue"
            self.emit(t + rng.uniform(3, 8) * _S, "message.sent", subject, sender="system")
        delay = self.chat_delay(asked, urgent) * _S
        if rng.random() < (0.06 if _in_working_hours(asked) else 0.1):
            # The customer gives up before anyone answers.
            self.emit(asked + rng.uniform(0.1, 1.0) * delay + 15 * _S, "session.closed", subject)
            return
        agent = self.agent()
        t = self.emit(asked + delay, "message.sent", subject, sender="agent", agent_id=agent)
        for _ in range(rng.choices((0, 1, 2, 3), (35, 35, 20, 10))[0]):
            # The customer writes again: a next-response target for the agent.
            t = self.emit(t + rng.uniform(10, 240) * _S, "message.sent", subject, sender="customer")
            if rng.random() < 0.15:
                self.emit(t + rng.uniform(1, 3) * _S, "message.sent", subject, sender="bot")
            t = self.emit(
                t + self.chat_delay(t, urgent) * _S,
                "message.sent",
                subject,
                sender="agent",
                agent_id=agent,
            )
        if rng.random() < 0.5:
            t = self.emit(t + rng.uniform(5, 120) * _S, "message.sent", subject, sender="customer")
        if rng.random() < 0.1:
            t = self.emit(t + 300 * _S, "message.sent", subject, sender="system")  # idle notice
        self.emit(t + rng.uniform(30, 600) * _S, "session.closed", subject)

    # --- tickets ----------------------------------------------------------------------------

    def reply_at(self, at: int, priority: str) -> float:
        """When the first public agent reply comes, for a request on record since ``at``."""
        rng = self.rng
        target = _FIRST_RESPONSE_TARGET[priority]
        share = rng.uniform(0.9, 2.0) if rng.random() < 0.15 else rng.uniform(0.05, 0.8)
        if priority == "P1" or _in_working_hours(at):
            return at + share * target
        # Outside working time, non-urgent requests wait for the next working morning.
        return _next_working_start(at) + rng.uniform(0.02, 1.2) * _HOUR

    def ticket(self, at: int, number: int) -> None:
        rng = self.rng
        subject = ("ticket_id", f"T-{number:07d}")
        priority = _pick(rng, _PRIORITIES)
        created: dict[str, Any] = {"priority": priority}
        designated = rng.random() >= 0.1
        if designated:
            created["channel"] = _pick(rng, _TICKET_CHANNELS)
            if rng.random() < 0.3:
                created["designated"] = True  # else left to the schema default
        else:
            created["channel"] = rng.choice(_OTHER_CHANNELS)
            created["designated"] = False
        t = on_record = self.emit(at, "ticket.created", subject, **created)
        if rng.random() < 0.4:
            at_bot = t + rng.uniform(5, 30) * _S
            self.emit(at_bot, "ticket.comment", subject, author="bot", public=True)
        if not designated:
            # Moved to a designated channel; its clock starts only now (contract 000, 7.3).
            on_record = t = self.emit(
                t + rng.uniform(5 * 60, 2 * 3600) * _S,
                "ticket.transferred",
                subject,
                channel=rng.choice(("email", "web")),
                designated=True,
            )
        agent = self.agent()
        if rng.random() < 0.2:
            t = self.emit(
                t + rng.uniform(60, 1800) * _S,
                "ticket.comment",
                subject,
                author="agent",
                public=False,  # an internal note: not a response to the customer
                agent_id=agent,
            )
        if rng.random() < 0.12:
            moves = {"P1": "P2", "P2": "P1", "P3": "P2", "P4": "P3"}
            priority = moves[priority] if rng.random() < 0.8 else priority
            t = self.emit(
                t + rng.uniform(5, 60) * _MIN, "ticket.priority_changed", subject, priority=priority
            )
        t = self.emit(
            max(self.reply_at(on_record, priority), t + 60 * _S),
            "ticket.comment",
            subject,
            author="agent",
            public=True,
            agent_id=agent,
        )
        t = self.emit(t + rng.uniform(1, 10) * _S, "ticket.status_changed", subject, status="open")
        for _ in range(rng.choices((0, 1, 2), (50, 35, 15))[0]):
            waiting = rng.random()
            if waiting < 0.6:  # the agent asks the customer something
                t = self.emit(t + 5 * _S, "ticket.status_changed", subject, status="pending")
                t = self.emit(
                    t + rng.uniform(10 * 60, 6 * 3600) * _S,
                    "ticket.comment",
                    subject,
                    author="customer",
                    public=True,
                )
            elif waiting < 0.8:  # waiting on a third party
                t = self.emit(t + 5 * _S, "ticket.status_changed", subject, status="on_hold")
                t += round(rng.uniform(30 * 60, 4 * 3600) * _S)
            else:  # a progress update on a long-running request (contract 000, 9.2)
                t += round(rng.uniform(1 * 3600, 3 * 3600) * _S)
            t = self.emit(t + 30 * _S, "ticket.status_changed", subject, status="open")
            t = self.emit(
                t + rng.uniform(5 * 60, 3 * 3600) * _S,
                "ticket.comment",
                subject,
                author="agent",
                public=True,
                agent_id=agent,
            )
        t += round(rng.uniform(10 * 60, 8 * 3600) * _S)
        t = self.emit(t, "ticket.status_changed", subject, status="solved")
        if rng.random() < 0.5:
            self.emit(
                t + rng.uniform(1, 6) * _HOUR, "ticket.status_changed", subject, status="closed"
            )


if __name__ == "__main__":
    raise SystemExit(main())
