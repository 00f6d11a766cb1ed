"""Agent presence: who was online serving which channel, when (contract 002 3.3 服务人员在线情况).

Built by :mod:`monitor.accounting.report` from ``agent.status`` events (topic ``agents``)
and asked by :mod:`monitor.accounting.causes` about a breach's window. Pure; instants in
microseconds. An agent is *serving* channel C from an ``online`` status listing C until its
next status (any); ``away`` and ``offline`` serve nothing. The statuses before the month
matter (an agent online since the 30th is online on the 1st), so callers pass them all.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from monitor.calendar import WorkingTime
from monitor.events import AgentPresence, AgentStatus


@dataclass
class ChannelPresence:
    """The online intervals of one channel's agents, and the step function of how many."""

    intervals: list[tuple[int, int, str]] = field(default_factory=list)  # start, end, agent
    _times: list[int] = field(default_factory=list)  # change points of the count, sorted
    _counts: list[int] = field(default_factory=list)  # agents online from _times[i]

    def finish(self) -> None:
        deltas: dict[int, int] = defaultdict(int)
        for start, end, _ in self.intervals:
            deltas[start] += 1
            deltas[end] -= 1
        count = 0
        self._times, self._counts = [], []
        for at in sorted(deltas):
            count += deltas[at]
            self._times.append(at)
            self._counts.append(count)

    def online_at(self, at: int) -> int:
        """Agents serving the channel at instant ``at``."""
        i = bisect.bisect_right(self._times, at) - 1
        return self._counts[i] if i >= 0 else 0

    def max_online(self, start: int, end: int) -> int:
        """The most agents serving the channel at once during ``[start, end)``."""
        best = self.online_at(start)
        lo = bisect.bisect_right(self._times, start)
        hi = bisect.bisect_left(self._times, end)
        for i in range(lo, hi):
            best = max(best, self._counts[i])
        return best

    def covered(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` when at least one agent served the channel."""
        out: list[tuple[int, int]] = []
        current = self.online_at(start)
        open_at = start if current > 0 else None
        lo = bisect.bisect_right(self._times, start)
        for i in range(lo, len(self._times)):
            at = self._times[i]
            if at >= end:
                break
            count = self._counts[i]
            if count > 0 and open_at is None:
                open_at = at
            elif count == 0 and open_at is not None:
                out.append((open_at, at))
                open_at = None
        if open_at is not None:
            out.append((open_at, end))
        return out

    def agent_seconds(self, start: int, end: int) -> float:
        """Online agent-time in ``[start, end)``, in seconds."""
        total = 0
        for a, b, _ in self.intervals:
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += hi - lo
        return total / 1_000_000


@dataclass
class Presence:
    """One tenant's presence: per channel, built from its agent statuses."""

    channels: dict[str, ChannelPresence]
    agents: frozenset[str]

    @property
    def known(self) -> bool:
        """Whether any agent status was seen (else presence-based causes do not apply)."""
        return bool(self.agents)

    def of(self, channel: str | None) -> ChannelPresence:
        return self.channels.get(channel or "", _EMPTY)

    def uncovered_working_seconds(
        self, channel: str, working: WorkingTime, start: int, end: int
    ) -> float:
        """Working time in ``[start, end)`` with no agent serving ``channel``, in seconds."""
        total: int = working.between(start, end)
        for a, b in self.of(channel).covered(start, end):
            total -= working.between(a, b)
        return total / 1_000_000


_EMPTY = ChannelPresence()


def build_presence(statuses: Iterable[AgentStatus], until: int) -> Presence:
    """Presence from one tenant's statuses (any order; repeats of an ``event_id`` ignored).
    An agent still online at the last status stays online until ``until``."""
    by_agent: dict[str, list[AgentStatus]] = defaultdict(list)
    seen: set[str] = set()
    for status in statuses:
        if status.event_id in seen:
            continue
        seen.add(status.event_id)
        by_agent[status.agent_id].append(status)
    channels: dict[str, ChannelPresence] = defaultdict(ChannelPresence)
    for agent, timeline in by_agent.items():
        timeline.sort(key=lambda s: (s.occurred_at, s.event_id))
        for i, status in enumerate(timeline):
            if status.status is not AgentPresence.ONLINE:
                continue
            end = timeline[i + 1].occurred_at if i + 1 < len(timeline) else until
            if end <= status.occurred_at:
                continue
            for channel in status.channels:
                channels[channel].intervals.append((status.occurred_at, end, agent))
    for presence in channels.values():
        presence.finish()
    return Presence(dict(channels), frozenset(by_agent))
