"""The penalty ledger (contract 002 6.1): one row per breached ``sla_id``, net of retractions.

Called by :mod:`monitor.accounting.report` with the month's verdicts (the last verdict of
each ``sla_id``: a breach that a retraction proved wrong has a ``retraction`` or a ``met``
as its verdict and is not charged; one that was breached again after a retraction is). The
amount and currency are those the breach fact carries (the policy's ``penalty``, clause
6.1); a breach of a metric without a penalty is not in the ledger.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.sla_event import Kind, SlaEvent


@dataclass(frozen=True, slots=True)
class LedgerRow:
    sla_id: str
    subject_id: str
    channel: str | None
    metric: str
    started_at: int
    deadline: int
    amount: float
    currency: str
    clause: str  # the penalty clause of the policy (6.1), else the target's clause
    cause: str


@dataclass(frozen=True, slots=True)
class Ledger:
    rows: tuple[LedgerRow, ...]
    totals: dict[str, float]  # currency -> total
    retracted: int  # breaches a retraction proved wrong (not charged)

    def total_text(self) -> str:
        return ", ".join(f"{amount:,.2f} {cur}" for cur, amount in sorted(self.totals.items()))


def build_ledger(
    verdicts: Iterable[SlaEvent],
    retracted: int,
    causes: dict[str, str],
    penalty_clauses: dict[str, str],
) -> Ledger:
    """``verdicts``: the final fact of each ``sla_id``; ``causes``: sla_id -> cause;
    ``penalty_clauses``: policy name -> the clause of its penalty."""
    rows: list[LedgerRow] = []
    totals: dict[str, float] = defaultdict(float)
    for fact in verdicts:
        if fact.kind is not Kind.BREACH or fact.penalty is None:
            continue
        rows.append(
            LedgerRow(
                fact.sla_id,
                fact.subject_id,
                fact.channel,
                fact.metric.value,
                fact.started_at,
                fact.deadline,
                fact.penalty.amount,
                fact.penalty.currency,
                penalty_clauses.get(fact.policy, fact.clause),
                causes.get(fact.sla_id, ""),
            )
        )
        totals[fact.penalty.currency] += fact.penalty.amount
    rows.sort(key=lambda r: (r.deadline, r.sla_id))
    return Ledger(tuple(rows), dict(totals), retracted)
