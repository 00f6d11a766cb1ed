"""The producer's side of the stall fence: what a worker handed to its producer before its
event loop stood still does not reach the broker after it.

Who calls what: :class:`monitor.live.app.SlaWorker` calls :func:`install` on its aiokafka
producer once the producer has started, with its own stall check. aiokafka's sender task then
runs that check before every drain of the producer's accumulator, so a thawed worker fences
(``SlaWorker._on_stall``) before its sender has sent a single batch, whichever of the two
tasks the loop wakes first. The fence calls :func:`withdraw` for the topics the worker writes:
their batches not yet sent fail with :class:`WithdrawnWrite`, which the worker's pipeline
takes as "this batch is stale" (its input is read again after the rebalance, at-least-once).

Why (issue 10, the zombie of ``tests/live/test_faults_rebalance.py``): a worker frozen past
the session timeout (SIGSTOP here; a VM pause in production) is evicted, and the new owner of
its partitions writes their records to the changelog. The fence alone stopped the zombie from
handling anything more after the thaw, but records it had given its producer before the
freeze (a batch waiting behind an in-flight request to the same partition) went out after
the thaw, behind the new owner's. A later recovery of that partition then read the old
record last and lost what the new owner had stored: 2 of 4 runs on Kafka 4.1.1 failed so,
with breaches missing. Withdrawn, they never reach the log; the facts among them are
emitted again by whoever handles their input next (the same ``fact_id``), and a withdrawn
timer firing is scheduled again when the rebalance rebuilds the deadline index.

What this cannot withdraw: a request already on the wire before the freeze. The broker
appends it when it arrives, which is before the session timeout ends and so before the new
owner writes anything. Kafka transactions would fence at the broker instead; they are refused
today (``monitor.live.faust_fixes``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from monitor.errors import SlaMonitorError


class WithdrawnWrite(SlaMonitorError):
    """A record was withdrawn from the producer by the stall fence before it was sent."""

    code = "withdrawn_write"


_WITHDRAWN = (
    "withdrawn before it was sent: the worker's event loop stood still past half the session "
    "timeout (see monitor.live.fence)"
)


def install(producer: Any, check: Callable[[], None]) -> None:
    """Makes aiokafka's sender run ``check`` before each drain of ``producer``'s accumulator
    (``producer``: an ``aiokafka.AIOKafkaProducer``). Installing again replaces the check.

    Affects: the accumulator's ``drain_by_nodes``."""
    accumulator = producer._message_accumulator
    if getattr(accumulator, "_sla_check", None) is not None:
        accumulator._sla_check = check
        return
    accumulator._sla_check = check
    drain = accumulator.drain_by_nodes

    def drain_by_nodes(*args: Any, **kwargs: Any) -> Any:
        accumulator._sla_check()
        return drain(*args, **kwargs)

    accumulator.drain_by_nodes = drain_by_nodes


def withdraw(producer: Any, topics: Collection[str]) -> int:
    """Fails every batch of ``topics`` that ``producer`` holds and has not sent yet with
    :class:`WithdrawnWrite`; returns how many records that was. Batches already sent (awaiting
    the broker's answer) are left to complete.

    Caller: the worker, when its stall fence closes. Affects: the accumulator's batches."""
    accumulator = producer._message_accumulator
    withdrawn = 0
    for tp in [tp for tp in accumulator._batches if tp.topic in topics]:
        for batch in accumulator._batches.pop(tp):
            withdrawn += batch.record_count
            batch.failure(WithdrawnWrite(_WITHDRAWN))  # aiokafka copies it per record
            # Marked as seen, or asyncio logs "Future exception was never retrieved" for those
            # nobody awaits: the batch's drain waiter, a timer firing's record.
            for future in (batch._drain_waiter, *(f for f, _ in batch._msg_futures)):
                if future.done() and not future.cancelled():
                    future.exception()
    return withdrawn
