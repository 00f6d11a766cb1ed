"""Why a breach happened (contract 002 3.3 "未达标次数及原因分析"). Pure.

Called by :mod:`monitor.accounting.report` for each breach of the month. The first rule
that holds names the cause; the window is the breached clock's ``[started_at, deadline)``:

``no_agent_online``
    The tenant has presence data, and no agent serving the breach's channel was online at
    any instant of the window.
``overloaded``
    When the clock started, the clocks of the same tenant, channel and metric waiting for
    their response (started at or before that instant; answered after it, or never answered
    and not yet at their deadline — the breach's own clock included) per agent serving the
    channel (the most online at once during the window) exceeded the policy's
    ``accounting.causes.overloaded_above`` (default 3).
``bot_only``
    The subject got bot or system messages before the deadline but no agent reply (needs the
    input events among the report's sources: SLA facts do not carry messages).
``slow_response``
    Otherwise: agents were online and not overloaded, yet the human reply came late.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from enum import StrEnum

from monitor.accounting.presence import Presence
from monitor.sla_event import SlaEvent


class Cause(StrEnum):
    NO_AGENT_ONLINE = "no_agent_online"
    OVERLOADED = "overloaded"
    BOT_ONLY = "bot_only"
    SLOW_RESPONSE = "slow_response"


class WaitingIndex:
    """For one tenant: per (channel, metric), the waiting intervals of every clock."""

    def __init__(self, verdicts: Iterable[SlaEvent]) -> None:
        spans: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        for fact in verdicts:
            end = fact.responded_at if fact.responded_at is not None else fact.deadline
            spans[(fact.channel or "", fact.metric)].append((fact.started_at, end))
        self._starts: dict[tuple[str, str], list[int]] = {}
        self._spans: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for key, items in spans.items():
            items.sort()
            self._spans[key] = items
            self._starts[key] = [s for s, _ in items]

    def waiting_at(self, channel: str | None, metric: str, at: int) -> int:
        """Clocks started at or before ``at`` still waiting at ``at`` (ends after it)."""
        key = (channel or "", metric)
        starts = self._starts.get(key)
        if not starts:
            return 0
        upto = bisect.bisect_right(starts, at)
        return sum(1 for _, end in self._spans[key][:upto] if end > at)


def classify(
    breach: SlaEvent,
    presence: Presence,
    waiting: WaitingIndex,
    overloaded_above: float,
    bot_messages: dict[str, list[int]] | None,
) -> Cause:
    """The cause of one breach. ``bot_messages``: per subject id, the sorted instants of its
    bot and system messages, when the input events are known (None: bot_only undecidable).
    A breach means no agent reply came by the deadline, so any bot message in the window
    means the customer heard only from a bot."""
    start, deadline = breach.started_at, breach.deadline
    if presence.known:
        channel = presence.of(breach.channel)
        online = channel.max_online(start, deadline)
        if online == 0:
            return Cause.NO_AGENT_ONLINE
        queue = waiting.waiting_at(breach.channel, breach.metric, start)
        if queue / online > overloaded_above:
            return Cause.OVERLOADED
    if bot_messages is not None:
        instants = bot_messages.get(breach.subject_id, [])
        i = bisect.bisect_left(instants, start)
        if i < len(instants) and instants[i] <= deadline:
            return Cause.BOT_ONLY
    return Cause.SLOW_RESPONSE
