"""The index of pending deadlines: which subject needs attention next.

The index is *derived* state. The source of truth is each subject's record
(:attr:`monitor.engine.state.SubjectState.next_due`); the index only says when to look at a
record again, so it can always be rebuilt from the records (after a restart, after a
rebalance).

Callers: :class:`monitor.replay.Replay` keeps one for the whole replay; the live worker keeps
one per input partition (:class:`monitor.live.lane.Lane`), so a revoked partition's keys go
with its lane and a rebalance rebuilds each lane's index from the table.
"""

from __future__ import annotations

import heapq

from monitor.timeutil import Micros

_NEVER = 2**63  # after any instant


class DeadlineIndex:
    """Each key's next deadline, and the keys in deadline order.

    A binary heap of ``(due, key)`` with lazy deletion: rescheduling a key pushes a new entry
    and leaves the old one to be skipped when it surfaces (it no longer matches ``_due``), so
    every update is O(log n); the heap is rebuilt from ``_due`` once it holds more than twice
    as many entries as there are keys (plus 1024). ``due_bound`` lets a caller that polls
    before every event skip the heap while nothing can be due.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}  # the live entries: key -> its one pending deadline
        self.due_bound: int = _NEVER
        """No pending deadline is earlier than this (it may be earlier than all of them): a
        caller that polls for every event reads it, and calls :meth:`pop_due` only once its
        clock has passed it."""

    def __len__(self) -> int:
        """The number of keys with a pending deadline."""
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def due_of(self, key: str) -> Micros | None:
        due = self._due.get(key)
        return None if due is None else Micros(due)

    def schedule(self, key: str, due: int | None) -> None:
        """Sets (or, with ``due=None``, clears) the next deadline of ``key``."""
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        if due < self.due_bound:  # noqa: PLR1730 - min() would be a call on every reschedule
            self.due_bound = due
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._compact()

    def next_due(self) -> Micros | None:
        """The earliest pending deadline, or None when nothing is pending."""
        self._skip_stale()
        return Micros(self._heap[0][0]) if self._heap else None

    def pop_due(self, now: int) -> list[str]:
        """Removes and returns every key whose deadline ``now`` has passed (due < now).

        "Passed" is strict so that a response exactly at the deadline is still in time.
        Keys come out in deadline order (ties by key), which keeps replay deterministic.
        """
        out: list[str] = []
        heap = self._heap
        # Called before every event in replay, and usually nothing is due: one comparison.
        # A stale entry on top is left until it is due (then skipped); _compact bounds them.
        while heap and heap[0][0] < now:
            due, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        self.due_bound = heap[0][0] if heap else _NEVER
        return out

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()
        self.due_bound = _NEVER

    def _skip_stale(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [(due, key) for key, due in self._due.items()]
        heapq.heapify(self._heap)
        self.due_bound = self._heap[0][0] if self._heap else _NEVER
