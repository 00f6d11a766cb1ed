"""Channel availability (004 3.3): the share of the contracted service time a channel is up.

"服务渠道在规定服务时间内正常运作的时间百分比" (004 1, 3.3): only service time counts, so an
outage from 17:30 to 18:30 on a 09:00-18:00 day costs 30 minutes, not 60, and an outage on a
Sunday costs nothing. Service time is the tenant's policy's working time (``service_time:
working``, the default) or the whole clock (``always``, 7x24).

A channel's status holds from its ``channel.status`` event until the next one; before its
first event a channel is not measured at all (no guess). Status events of one channel must
come in time order: a late one (older than the newest already accounted) would rewrite time
already counted, so it is rejected with a reason instead (and dead-lettered by the caller).

Callers: :class:`monitor.kpi.tracker.KpiTracker` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo

from monitor.errors import RejectedEvent
from monitor.kpi.months import split_by_month
from monitor.timeutil import format_rfc3339
from monitor.vocabulary import ChannelStatus

ServiceTime = Callable[[int, int], int]
"""Service time in ``[start, end)``, microseconds: ``WorkingTime.between`` or wall time."""


def wall_time(start: int, end: int) -> int:
    """``service_time: always`` (7x24)."""
    return max(end - start, 0)


@dataclass
class ChannelAvailability:
    """One tenant's channel: its current status and its time per month, in microseconds."""

    service: ServiceTime
    tz: tzinfo
    up: bool
    since: int  # accounted up to here
    service_time: dict[str, int] = field(default_factory=dict)  # month -> service time
    down_time: dict[str, int] = field(default_factory=dict)  # month -> service time down

    def account(self, until: int) -> tuple[int, int]:
        """Adds ``[since, until)`` to the months; returns (service, down) added."""
        if until <= self.since:
            return 0, 0
        added = down = 0
        for month, a, b in split_by_month(self.since, until, self.tz):
            length = self.service(a, b)
            self.service_time[month] = self.service_time.get(month, 0) + length
            added += length
            if not self.up:
                self.down_time[month] = self.down_time.get(month, 0) + length
                down += length
        self.since = until
        return added, down


class AvailabilityLedger:
    """Every (tenant, channel)'s availability; :meth:`status` and :meth:`advance` return the
    (service, down) microseconds each call added, per channel, for the metrics."""

    def __init__(self) -> None:
        self.channels: dict[tuple[str, str], ChannelAvailability] = {}

    def status(  # noqa: PLR0917 - the event's fields and the policy's service time
        self,
        tenant: str,
        channel: str,
        status: ChannelStatus,
        at: int,
        service: ServiceTime,
        tz: tzinfo,
    ) -> tuple[int, int]:
        known = self.channels.get((tenant, channel))
        if known is None:
            self.channels[(tenant, channel)] = ChannelAvailability(
                service, tz, status is ChannelStatus.UP, at
            )
            return 0, 0
        if at < known.since:
            raise RejectedEvent(
                f"channel.status {status} of {tenant}/{channel} at {format_rfc3339(at, tz)} is "
                f"older than the time already accounted ({format_rfc3339(known.since, tz)}); "
                "send a channel's status changes in time order"
            )
        added = known.account(at)
        known.up = status is ChannelStatus.UP
        return added

    def advance(self, now: int) -> dict[tuple[str, str], tuple[int, int]]:
        """Accounts every channel up to ``now`` (the caller's clock)."""
        return {key: ch.account(now) for key, ch in self.channels.items() if now > ch.since}
