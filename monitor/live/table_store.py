"""The worker's table of subject records, seen through Faust's stores (RocksDB and memory).

Who calls what: :class:`monitor.live.app.SlaWorker` reads records with :meth:`SubjectTable.get`
while it handles a batch, writes each changed record once at the end of the batch with
:meth:`SubjectTable.write`, and after a rebalance lists the records of its partitions with
:meth:`SubjectTable.items` (to rebuild the deadline index) and drops revoked keys from memory
with :meth:`SubjectTable.forget_unassigned`.

Why an adapter: everything here touches Faust internals that the rest of the worker should not
know about, and each piece was needed for a reason seen in this project:

* **Reading and writing outside the event that caused it.** Faust picks a record's changelog
  partition (and, for RocksDB, the database it reads and writes) from the *current event*, a
  context variable the stream sets to the record it yielded last. In a batch that is the
  batch's last record, often of another partition: reads then missed records written a batch
  earlier (seen: every session's second event dead-lettered as "no session.started was
  seen"). :meth:`get` and :meth:`write` set the current event to the key's own event first
  (the same partition: a subject's events, timer firings and record are co-partitioned).
  Faust's own ``take()`` has no such step, which is why it refuses table writes unless the
  table uses the partitioner (that would put records on the changelog partition of a hash of
  the table key, not of the input partition, and break recovery after a rebalance).
* **Listing a partition's records.** RocksDB keeps one database per partition (``_dbs``); the
  memory store keeps one dict and remembers the partition only for keys it *recovered*
  (``_key_partition``). Keys written live are remembered here.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from faust.streams import _current_event


class SubjectTable:
    """One Faust table of ``bytes -> bytes`` records (see the module doc)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        # The memory store does not remember which partition a live-written key belongs to.
        self._key_partition: dict[bytes, int] = {}

    def get(self, key: bytes, event: Any) -> bytes | None:
        """The stored record of ``key``, looked up as if ``event`` were being handled: RocksDB
        reads the database of the current event's partition (else it searches them all)."""
        token = _current_event.set(weakref.ref(event))
        try:
            value: bytes | None = self.table.get(key)
        finally:
            _current_event.reset(token)
        return value

    def write(self, key: bytes, value: bytes | None, event: Any) -> None:
        """Stores ``value`` (``None`` deletes) as if ``event`` were being handled: its
        partition decides the changelog partition and the RocksDB database."""
        token = _current_event.set(weakref.ref(event))
        try:
            if value is None:
                if key in self.table:
                    del self.table[key]
                self._key_partition.pop(key, None)
            else:
                self.table[key] = value
                self._key_partition[key] = event.message.partition
        finally:
            _current_event.reset(token)

    def items(self, partitions: set[int]) -> Iterator[tuple[bytes, bytes, int]]:
        """``(key, record, partition)`` of the records on ``partitions``."""
        store: Any = self.table.data
        dbs = getattr(store, "_dbs", None)
        if dbs is not None:  # RocksDB: one database per partition
            for partition in sorted(partitions):
                db = dbs.get(partition)
                if db is not None:
                    for key, value in store._visible_items(db):
                        yield key, value, partition
            return
        recovered = getattr(store, "_key_partition", {})
        for key, value in list(store.data.items()):
            where = self._key_partition.get(key, recovered.get(key))
            if where is not None and where in partitions and value is not None:
                yield key, value, where

    def forget_unassigned(self, assigned: set[int]) -> None:
        """Drops, from the memory store, keys of partitions this worker no longer owns.

        Locally only: deleting through the table would write tombstones to the changelog and
        erase the new owner's records. RocksDB needs nothing (Faust closes revoked databases).
        """
        store: Any = self.table.data
        if getattr(store, "_dbs", None) is not None:
            return
        recovered = getattr(store, "_key_partition", {})
        for key in list(store.data):
            partition = self._key_partition.get(key, recovered.get(key))
            if partition is not None and partition not in assigned:
                store.data.pop(key, None)
                self._key_partition.pop(key, None)
