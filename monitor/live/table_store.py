"""The worker's table of subject records, seen through Faust's stores (RocksDB and memory).

Who calls what: :class:`monitor.live.app.SlaWorker` reads records with :meth:`SubjectTable.get`
while it handles a batch, sends each changed record once per batch to the changelog with
:meth:`SubjectTable.send`, waits for the broker with :meth:`SubjectTable.delivered` and only
then writes the local store with :meth:`SubjectTable.settle`; after a rebalance it lists
the records of its partitions with
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
* **Writing without Faust's per-record layers.** ``table[key] = value`` sends each record to
  the changelog through Faust's ``Topic.send_soon``, its producer buffer (a queue drained by a
  task, one ``send`` at a time) and a per-record callback that stores the changelog offset:
  in ``bench --live --kafka`` that path was an eighth of the worker's CPU (py-spy, issue 7).
  This adapter does the same three things directly, in Kafka Streams' order: one
  ``producer.send`` per record to the key's changelog partition (:meth:`send`), one wait for
  the broker per partition and batch (:meth:`delivered`), then the local store (RocksDB or
  memory) and the changelog offset recorded in RocksDB (:meth:`settle`; what Faust's
  ``Table._on_changelog_sent`` does per record, so that a restart recovers only what came
  after it). The local store is thus never ahead of the changelog, which a crash could leave
  it with Faust's order (fix 6 in :mod:`monitor.live.faust_fixes`). The worker acknowledges a
  batch's input only after that wait, so a record is in the changelog before its input can be
  committed, whatever Faust's commit flushes.
* **Listing a partition's records.** RocksDB keeps one database per partition (``_dbs``); the
  memory store keeps one dict and remembers the partition only for keys it *recovered*
  (``_key_partition``). Keys written live are remembered here.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from faust.streams import _current_event
from faust.types import TP


class SubjectTable:
    """One Faust table of ``bytes -> bytes`` records (see the module doc)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.changelog: str = table.changelog_topic.get_topic_name()
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

    async def send(
        self, writes: Iterable[tuple[bytes, bytes | None, Any]], producer: Any
    ) -> dict[int, Any]:
        """Sends each ``(key, value, event)`` (``None``: a tombstone) to the changelog partition
        of ``event`` (the key's own input partition) without waiting; returns each changelog
        partition's last delivery, for :meth:`settle`. The local store is written only once the
        broker has them (:meth:`settle`), so it is never ahead of the changelog.

        Affects: the changelog."""
        topic = self.changelog
        last: dict[int, Any] = {}
        for key, value, event in writes:
            partition: int = event.message.partition
            last[partition] = await producer.send(topic, key, value, partition, None, None)
        return last

    async def delivered(self, sent: dict[int, Any]) -> dict[int, int]:
        """Waits until the broker has the records :meth:`send` sent (a partition's records
        complete in order, so its last one stands for all); returns each changelog
        partition's last offset."""
        if not sent:
            return {}
        done = await asyncio.gather(*sent.values())
        return {partition: meta.offset for partition, meta in zip(sent, done, strict=True)}

    def settle(
        self, writes: Iterable[tuple[bytes, bytes | None, Any]], offsets: dict[int, int]
    ) -> None:
        """Writes each ``(key, value, event)`` the changelog now has (:meth:`delivered`) to the
        local store, as if ``event`` were being handled (its partition picks the RocksDB
        database), then records each partition's changelog offset in RocksDB as Faust's
        ``Table._on_changelog_sent`` does: recovery after a restart reads the changelog from
        there on (memory store: no-op). Synchronous, so no revocation comes in between.

        Why this order (Kafka Streams' too): a local store written first is ahead of its
        changelog until the broker answers, and a SIGKILL then leaves it ahead for good: the
        restarted worker finds every event already applied and never sends the lost record
        (seen, fix 6 in :mod:`monitor.live.faust_fixes`). Written after, it never is, so this
        table's RocksDB files survive a crash and a restart reads only the changelog's tail.

        Affects: the local store and the changelog offsets RocksDB keeps."""
        data: Any = self.table.data
        for key, value, event in writes:
            token = _current_event.set(weakref.ref(event))
            try:
                if value is None:
                    self._key_partition.pop(key, None)
                    if key in data:
                        del data[key]
                else:
                    data[key] = value
                    self._key_partition[key] = event.message.partition
            finally:
                _current_event.reset(token)
        for partition, offset in offsets.items():
            data.set_persisted_offset(TP(self.changelog, partition), offset)

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
