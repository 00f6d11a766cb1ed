"""One batch of the live worker: the records fetched together, handled in memory, written once.

Who calls what: :meth:`monitor.live.app.SlaWorker.handle_batch` builds a :class:`Batch` for
the records the agent has in hand (up to ``batch_max`` of them, or fewer when no more are
buffered), handles every record against it in partition order, hands the batch's facts and
dead letters to the producer and notes each changed record once (:meth:`Batch.changed`).
``SlaWorker._complete`` later waits until the broker has every output and sends the records
to the changelog; ``SlaWorker._settle`` waits until the broker has those, writes them to the
local store and acknowledges the batch's input. Batches pass each step in the order they were
handled; while one waits the next is handled, reading the records not yet in the local store
from the worker's overlay.

Why batches (measured, BENCHMARKS.md): per event, the worker used to await each fact's
delivery and write its record through Faust's producer buffer, which capped it at 0.12 of a
bare Faust agent. In a batch a subject's record is read once, written at most once (not at all
when a duplicate or a no-op event left it unchanged), and one wait covers every delivery.

Crash safety, redone for batches: outputs are acknowledged by the broker *before* any record of
the batch is sent to the changelog (the overlay is memory only), the local store is written
only after the changelog acknowledged, and the batch's input is acknowledged to Faust
(eligible for commit) only after all that; batches complete in order, so no record is stored
before the outputs of every batch before it. A SIGKILL mid-batch therefore loses at
most records whose outputs are already published; reprocessing from the last commit emits the
same facts (same ``fact_id``) again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.engine import SubjectState
from monitor.errors import Reason
from monitor.sla_event import SlaEvent


@dataclass
class Pending:
    """A subject record as the batch has it: where it came from and what it is now."""

    stored: bytes | None  # as read from the table at the start of the batch
    state: SubjectState | None  # as the batch left it (None: deleted or never existed)
    event: Any  # the batch's last Faust event of this subject (its partition)
    lane: Any  # the subject's input lane (topic-partition)


@dataclass
class Batch:
    """The working set of one batch (see the module doc)."""

    events: list[Any] = field(default_factory=list)  # the Faust events, acknowledged last
    epoch: int = 0  # the worker's revocation count when the batch was handled (SlaWorker.epoch)
    records: dict[bytes, Pending] = field(default_factory=dict)
    facts: list[tuple[SlaEvent, bool]] = field(default_factory=list)  # (fact, from a timer)
    dead_letters: list[tuple[Any, str, Reason]] = field(default_factory=list)  # message, why, code
    deliveries: list[Any] = field(default_factory=list)  # producer futures of the outputs
    writes: list[tuple[bytes, bytes | None, Any]] = field(default_factory=list)  # key, bytes, event
    stored: dict[int, Any] = field(default_factory=dict)  # changelog partition -> last delivery

    def changed(self) -> list[tuple[bytes, bytes | None, Pending]]:
        """``(key, new bytes or None, pending)`` of every record the batch changed."""
        out = []
        for key, pending in self.records.items():
            new = pending.state.to_bytes() if pending.state is not None else None
            if new != pending.stored:
                out.append((key, new, pending))
        return out
