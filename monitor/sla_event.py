"""Output: one SLA fact (warning, breach, met, retraction), as published to Kafka.

The JSON shape is specified in ``schemas/sla-event.schema.json``. Two identifiers serve two
kinds of consumer:

* ``sla_id`` names one SLA *target instance* (say, the first response of ticket T-1). It is
  derived from the input alone, so replay and every live worker agree on it. A penalty service
  keeps one row per ``sla_id``: a ``breach`` then, maybe, a ``retraction`` of that breach (and
  maybe a second breach, and so on: the latest breach or retraction is the verdict).
* ``fact_id`` names one fact about it (``sla_id`` + kind + warning share, + ``round`` from the
  second breach of a target on), so an at-least-once consumer can drop exact repeats of any
  message, warnings included.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from monitor.timeutil import MICROS_PER_SECOND, format_rfc3339
from monitor.vocabulary import AnyMetric, Penalty, Period


class Kind(StrEnum):
    WARNING = "warning"  # near breach: a share of the target elapsed with no response
    BREACH = "breach"  # the deadline passed with no response
    MET = "met"  # the response came in time
    RETRACTION = "retraction"  # a late event proved an emitted breach wrong
    ESCALATION = "escalation"  # 003 3.4: not solved in time, goes to a higher tier


def make_sla_id(tenant: str, subject_type: str, subject_id: str, metric: str, seq: int) -> str:
    """A stable id for the ``seq``-th target of ``metric`` on one subject."""
    hasher = _BLAKE2B_16.copy()
    hasher.update(f"{tenant}\x1f{subject_type}\x1f{subject_id}\x1f{metric}\x1f{seq}".encode())
    return hasher.hexdigest()


# Runs for every SLA fact: copying a prepared hasher skips blake2b's keyword parsing and
# set-up. Never updated itself, only copied.
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)


class SlaEvent(NamedTuple):
    """One SLA fact. Immutable; a named tuple rather than a frozen dataclass because the
    engine builds one for every fact it emits, and a frozen dataclass's ``__init__`` sets its
    21 fields one ``object.__setattr__`` call at a time (several times slower)."""

    sla_id: str
    kind: Kind
    metric: AnyMetric
    seq: int  # 0 for first_response/resolution; n-th next_response / periodic_update
    subject_type: str
    subject_id: str
    tenant: str
    channel: str | None
    priority: str | None
    policy: str
    clause: str  # the contract clause (or policy setting) that set the target
    target_seconds: float
    clock: str  # "wall" (calendar time) or "working" (working time)
    period: Period
    started_at: int  # instants: microseconds since the epoch (monitor.timeutil)
    deadline: int
    detected_at: int
    responded_at: int | None = None
    share: float | None = None  # warnings: the share of the target that has elapsed
    penalty: Penalty | None = None  # breaches (and their retractions): what the contract charges
    reason: str | None = None  # retractions: what proved the breach wrong
    tier: str | None = None  # tier_escalation facts: the tier the ticket goes to (003 3.4)
    # Breaches (escalations) and their retractions: which breach of the target this is, 2 for
    # the one after a retraction (a priority change back, a pause, ...). Part of ``fact_id``:
    # without it the second breach repeated the first one's id with another payload, and a
    # consumer dropping repeats by id dropped it (seen: tests/live/test_faults_crash.py, a
    # P1 ticket breached, retracted by a change to P2, breached again under P2).
    round: int = 1

    @property
    def fact_id(self) -> str:
        if self.kind is Kind.WARNING:
            return f"{self.sla_id}:{self.kind}:{self.share}"
        if self.round > 1:
            return f"{self.sla_id}:{self.kind}:{self.round}"
        return f"{self.sla_id}:{self.kind}"

    @property
    def elapsed_seconds(self) -> float | None:
        """Time from the start to the response, on the wall clock (as the contracts measure)."""
        if self.responded_at is None:
            return None
        return (self.responded_at - self.started_at) / MICROS_PER_SECOND

    def to_dict(self, tz: ZoneInfo) -> dict[str, Any]:
        """The published JSON object; timestamps in the policy's time zone ``tz``."""
        out: dict[str, Any] = {
            "sla_id": self.sla_id,
            "fact_id": self.fact_id,
            "kind": self.kind.value,
            "metric": self.metric.value,
            "seq": self.seq,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "tenant": self.tenant,
            "channel": self.channel,
            "priority": self.priority,
            "policy": self.policy,
            "clause": self.clause,
            "target_seconds": self.target_seconds,
            "clock": self.clock,
            "period": self.period.value,
            "started_at": format_rfc3339(self.started_at, tz),
            "deadline": format_rfc3339(self.deadline, tz),
            "detected_at": format_rfc3339(self.detected_at, tz),
        }
        if self.responded_at is not None:
            out["responded_at"] = format_rfc3339(self.responded_at, tz)
            out["elapsed_seconds"] = self.elapsed_seconds
        if self.share is not None:
            out["share"] = self.share
        if self.penalty is not None:
            out["penalty"] = {"amount": self.penalty.amount, "currency": self.penalty.currency}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.round > 1:
            out["round"] = self.round
        if self.tier is not None:
            # The sla.escalations topic carries 6.2 escalations (monitor.accounting) too; both
            # name their rule, and both are kind "escalation".
            out["rule"] = "tier_escalation"
            out["tier"] = self.tier
        return out
