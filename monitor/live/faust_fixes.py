"""Nine fixes to faust-streaming 0.15.3 that at-least-once delivery depends on.

All were found by the recovery tests (``tests/live/test_recovery.py``: SIGKILL a worker
mid-stream, restart it, compare with replay; ``tests/live/test_kafka.py``: SIGKILL the broker)
and each loses input for good, so the worker applies them to its own app
(per instance, never to the classes: other apps in the process keep Faust's behaviour).

1. **Recovery resumes input before it seeks** (:func:`seek_before_resume`). After table
   recovery, ``Recovery.on_recovery_completed`` resumes the input partitions, *then* awaits
   ``consumer.perform_seek()`` (eight ``committed()`` round trips, ~80 ms here). In between, the
   fetcher delivers records; some are dropped on the way to the agent while the seek is in
   flight, and the seek rewinds Faust's read offset to the committed one. The next record the
   fetcher yields is then far ahead of that read offset, and Faust's gap bookkeeping
   (``Consumer._add_gap``) marks everything in between as *acknowledged*. The next commit moves
   past records that were never processed. Seen: records 103-105 of a partition fetched, never
   handed to the agent, and committed over ("gap 88..106"). The fix seeks while the input is
   still paused and resumes afterwards, the order ``_resume_streams`` already uses since
   faust-streaming#217.
2. **A fetch for no partitions returns every partition** (:func:`fetch_only_active`). Faust
   hands its *live* set of active partitions to the consumer thread. When recovery pauses the
   changelog partitions while a fetch is in flight, that set becomes empty, and aiokafka's
   ``fetched_records`` treats an empty set as "all partitions": it returns (and moves the
   position past) the input records of partitions still paused, and Faust then drops them for
   not being active. Seen: every input record of a restarted worker gone, with nothing
   committed to seek back to. The fix passes a copy, and fetches nothing for an empty one.
3. **The fetch wait is hard-coded** (:func:`set_fetch_max_wait`): 1.5 s in Faust's worker
   consumer. Kafka answers a fetch as soon as data arrives, but Tansu (the embedded broker)
   holds a fetch over several partitions for the whole wait. Timer firings reach the agent
   through the ``sla.timeouts`` topic, so on Tansu every breach came up to that long after its
   deadline. The wait becomes the ``fetch_max_wait`` setting.
4. **Flush gives up with records still buffered** (:func:`drain_on_flush`). Faust commits input
   offsets after ``producer.flush()``, which is what makes a table write (a changelog record,
   sent through the producer buffer) durable before the event that caused it is committed. But
   ``ProducerBuffer.flush`` returns after 0.1 s without a send, *with records still
   buffered*, and the commit goes ahead; a SIGKILL then loses changelog records of committed
   events.
5. **Nothing committed means "wherever the fetcher got to"** (in :func:`seek_before_resume`).
   aiokafka's ``seek_to_committed`` seeks only partitions with a committed offset above 0. A
   partition with none keeps its fetch position, and records fetched there before a rebalance
   (then dropped by Faust, the partition not yet active) are never read again. Seen on Kafka
   4.1.1 after the broker was SIGKILLed and restarted: the worker rejoined, ``chat.sessions[2]``
   was fetched at offsets 0-1 during the rejoin, never reached the agent, and the next fetch
   asked for offset 2; that session's breach never came. The fix seeks such partitions to
   their beginning, which is what ``auto_offset_reset="earliest"`` promises for a group that
   has committed nothing.
6. **A RocksDB store outlives a crash ahead of its changelog** (:func:`rebuild_store_after_crash`).
   Under at-least-once Faust writes a record to the local RocksDB at once and to the changelog
   through the producer; a SIGKILL loses the changelog records still in flight, not the local
   ones (RocksDB's log is in the page cache). The restarted worker keeps its local record,
   re-reads its uncommitted input, finds every event already applied (the engine drops
   duplicates by event id), changes nothing and writes nothing, so the changelog never gets the
   lost record. The next owner of that partition (another worker, a memory store, a new pod)
   recovers the older record from the changelog and goes on from it. Seen on Kafka 4.1.1 with
   ``tests/live/test_faults_crash.py`` (seed 20261201): ticket T-0000050's
   ``ticket.transferred`` (to its designated channel) was in the changelog of no record, the
   memory-store worker that took the partition over recovered the ticket as still on a
   non-designated channel, and both its ``met`` facts (first response, resolution) never came.
   The fix: a worker on RocksDB marks its data directory while it runs and clears the mark
   only after a clean stop (Faust flushed the producer); finding the mark at start-up, it
   deletes its table files and recovers them from the changelog, which then holds only what
   the broker acknowledged, and reprocessing the uncommitted input writes the lost records
   again. The SLA table is spared: it has since been written in Kafka Streams' order, local
   store only after the changelog acknowledged (``SubjectTable.settle``), so it is never
   ahead and a crash costs only its changelog's tail. The escalation stage's tables, written
   through Faust's ``table[key]``, are rebuilt (small: a few records per tenant and day).
7. **"Rebalance complete" for a rebalance already superseded** (in :func:`seek_before_resume`).
   ``on_recovery_completed`` sends ``on_rebalance_complete`` first and checks whether the
   consumer's generation is still the one it recovered for only afterwards (then returns
   without resuming). A worker that acts on the signal (rebuilds its deadline index, reads
   ``consumer.assignment()``, marks itself ready) did so in the middle of the next rebalance.
   The signal is now sent after the generation check: only for the current generation, after
   the tables' own ``on_recovery_completed`` callbacks.
8. **Records fetched before a rebalance are handled first after it** (in
   :func:`seek_before_resume`, with ``SlaWorker._skipped_ahead``). Fix 1 seeks while the
   input is paused, yet the first record a worker handled after a rebalance was often far
   past the committed offset: ``chat.sessions[1]`` at 149 with 93 committed (Tansu), 118
   with 83 (Kafka 4.1.1). Records read ahead before the rebalance still reach the agent and
   raise Faust's read offset, below which Faust drops the records of the re-read as already
   read (and ``_add_gap`` counts them acknowledged). The records in between were never
   handled: a session started among them was dead-lettered ("no session.started was seen")
   or missing altogether (``tests/live/test_faults_crash.py``, about one run in three). Now
   ``on_rebalance_complete`` is sent after the seek, so the committed offsets are the
   broker's when a worker marks itself ready; the worker checks each partition's first
   record against them and, past even by one offset (a lost record, or a transaction
   marker: the hold tells them apart), seeks the partition back through Faust's
   ``Consumer.seek`` (which resets the read offset too) and holds it until the records come
   again.
9. **An agent learns of a revocation only after Faust has waited for it**
   (:func:`on_revocation_start`). A revocation suspends the streams, clears their queues and
   waits until every record an agent has taken is acknowledged; only then does it send
   ``on_partitions_revoked``. An agent that takes several records before it handles them
   (the worker's batches) waits for a next one that the suspended stream never delivers, and
   the revocation waits for the agent. Seen once in a clean-clone CI run on Kafka 4.1.1
   (``test_two_workers_share_the_partitions``): the worker sat in ``wait_empty`` until the
   group evicted it, both workers then claiming all four partitions. The fix gives the app a
   callback at the revocation's first step (``TableManager.on_partitions_revoked``, called
   before the wait), where the worker releases what it gathered.
Not fixed: **exactly-once.** ``processing_guarantee="exactly_once"`` is refused at start-up
(:mod:`monitor.live.config`). Three faults were found and fixed on the way (commit
``a38f5a4``): the consumer decides once, when created, whether it commits through
transactions, and touching ``app.consumer`` before a ``Worker`` has started (as fix 3 must)
made it commit plain offsets with ``exactly_once`` configured; Faust's transaction manager
routes a send by the consumer's metadata of the *output* topic, which the consumer does not
subscribe to, so outputs went outside any transaction; and commits ran half-way through an
event. With all three fixed, a ``read_committed`` reader still saw facts missing (36 of
~400 per topic), repeated (26) and not in replay after three SIGKILLs of the worker on Kafka
4.1.1 (``tests/live/test_kafka.py`` at ``a38f5a4``): table recovery, the changelog and the
input offsets do not move together across aborted transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from monitor.errors import ConfigError

log = logging.getLogger(__name__)

#: The mark of a running worker in its data directory (fix 6); a clean stop removes it.
RUNNING_MARK = "sla-monitor.running"

#: The faust-streaming release whose code :func:`seek_before_resume`, :func:`fetch_only_active`,
#: :func:`set_fetch_max_wait`, :func:`drain_on_flush` and :func:`on_revocation_start` copy, wrap
#: or rely on the order of. Another release may have moved or fixed what they replace, and
#: patching it blindly could lose input silently.
FAUST_VERSION = "0.15.3"


def check_faust_version() -> None:
    """Raises :class:`ConfigError` unless the installed faust-streaming is :data:`FAUST_VERSION`.

    Called by :func:`apply`, so the worker (and ``bench``'s bare Faust agent) stop at start-up."""
    try:
        version = metadata.version("faust-streaming")
    except metadata.PackageNotFoundError:
        version = None
    if version != FAUST_VERSION:
        found = "is not installed" if version is None else f"{version} is installed"
        raise ConfigError(
            f"faust-streaming {found}, but monitor.live.faust_fixes copies "
            f"faust-streaming {FAUST_VERSION} code: install faust-streaming=={FAUST_VERSION} "
            "(pyproject.toml pins it), or port each fix in monitor/live/faust_fixes.py to the "
            "new release, rerun tests/live/test_recovery.py and tests/live/test_kafka.py, and "
            "update FAUST_VERSION"
        )


def apply(app: Any, *, fetch_max_wait: float) -> None:
    """Applies the fixes that can be applied to a freshly built ``app`` (idempotent);
    :func:`drain_on_flush` needs a started producer and is applied by the worker later.

    Raises :class:`ConfigError` first if faust-streaming is not the release the fixes copy."""
    check_faust_version()
    seek_before_resume(app)
    fetch_only_active(app)
    set_fetch_max_wait(app, fetch_max_wait)


def seek_before_resume(app: Any) -> None:
    """Replaces this app's ``Recovery.on_recovery_completed`` with one that seeks the input
    partitions to their committed offsets *before* resuming them (see the module doc).

    Otherwise line for line Faust 0.15.3's method, so the rebalance signals, table callbacks
    and log lines stay the same.
    """
    recovery = app.tables.recovery
    if getattr(recovery, "_sla_seeks_first", False):
        return

    async def on_recovery_completed(generation_id: int = 0) -> None:
        consumer = app.consumer
        recovery.log.info("Restore complete!")
        recovery._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    recovery.actives_for_table[table], recovery.standbys_for_table[table]
                )
            )
            for table in recovery.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if app.consumer_generation_id != generation_id:
            recovery.log.warning(
                "Recovery rebalancing again app id %s param %s",
                app.consumer_generation_id,
                generation_id,
            )
            return
        if assignment:
            recovery.log.info("Seek stream partitions to committed offsets.")
            await recovery._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
            # Fix 5: with nothing committed (or 0), read from the beginning, not from wherever
            # a fetch before this rebalance left the position.
            fresh = [
                TopicPartition(tp.topic, tp.partition)
                for tp in assignment
                if not recovery._is_changelog_tp(tp) and not consumer._committed_offset.get(tp)
            ]
            if fresh:
                await recovery._wait(
                    consumer._thread.seek_to_beginning(*fresh),
                    timeout=app.conf.broker_request_timeout,
                )
        recovery.completed.set()
        app.flow_control.resume()
        consumer.resume_flow()
        if app.consumer_generation_id != generation_id:
            return  # a newer rebalance began during the seek: its own recovery completes it
        # Fix 7: only for the current generation; and after the seek, so that the committed
        # offsets are the broker's when a worker marks itself ready on it (fix 8).
        await app.on_rebalance_complete.send()
        # Only now: nothing of the input is fetched until its position is the committed one.
        consumer.resume_partitions({tp for tp in assignment if not recovery._is_changelog_tp(tp)})
        await app._fetcher.maybe_start()
        recovery.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            recovery.tables.on_standbys_ready()
        app.on_rebalance_end()
        recovery.log.info("Worker ready")

    recovery.on_recovery_completed = on_recovery_completed
    recovery._sla_seeks_first = True


def set_fetch_max_wait(app: Any, seconds: float) -> None:
    """Makes this app's worker consumer wait at most ``seconds`` for fetch data (see the
    module doc); applied when Faust creates the aiokafka consumer, before it starts."""
    thread = app.consumer._thread
    if getattr(thread, "_sla_fetch_wait", None) is not None:
        thread._sla_fetch_wait = seconds
        return
    create = thread._create_worker_consumer
    thread._sla_fetch_wait = seconds

    def _create_worker_consumer(transport: Any) -> Any:
        consumer = create(transport)
        consumer._fetch_max_wait_ms = int(thread._sla_fetch_wait * 1000)
        return consumer

    thread._create_worker_consumer = _create_worker_consumer


def fetch_only_active(app: Any) -> None:
    """Makes this app's consumer fetch for a snapshot of its active partitions, and for none
    when there are none (see the module doc)."""
    consumer = app.consumer
    if getattr(consumer, "_sla_fetches_snapshot", False):
        return
    fetch = consumer._getmany

    async def _getmany(active_partitions: set[Any] | None, timeout: float) -> Any:
        if active_partitions is None:  # client-only apps: Faust's own meaning, unchanged
            return await fetch(active_partitions=None, timeout=timeout)
        snapshot = set(active_partitions)
        if not snapshot:
            await asyncio.sleep(min(timeout, 0.1))  # release the loop, as Faust does
            return {}
        return await fetch(active_partitions=snapshot, timeout=timeout)

    consumer._getmany = _getmany
    consumer._sla_fetches_snapshot = True


def on_revocation_start(app: Any, callback: Callable[[], None]) -> None:
    """Fix 9 (see the module doc): calls ``callback`` first thing in every revocation, before
    Faust suspends the streams and waits for the records agents have taken. ``App.
    _on_partitions_revoked`` calls the table manager's ``on_partitions_revoked`` (a plain
    function) first, so this app's is wrapped. ``callback`` must not block: the consumer's
    rebalance is waiting."""
    tables = app.tables
    revoking = tables.on_partitions_revoked

    def on_partitions_revoked(revoked: Any) -> Any:
        callback()
        return revoking(revoked)

    tables.on_partitions_revoked = on_partitions_revoked


def drain_on_flush(app: Any) -> None:
    """Makes this app's producer flush wait until its buffer is really empty (see the module
    doc). Needs the producer, so call it once the app has started (the worker does so on every
    completed rebalance; it is idempotent)."""
    buffer = app.producer.buffer
    if getattr(buffer, "_sla_drains", False):
        return

    async def flush() -> None:
        while buffer.size and buffer.state == "running":
            buffer.message_sent.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=0.1)

    buffer.flush = flush
    buffer._sla_drains = True


def rebuild_store_after_crash(app: Any, *, keep: str) -> Callable[[], None]:
    """Fix 6 (see the module doc): before the app starts, deletes its RocksDB table files if
    the last worker on this data directory did not stop cleanly, then marks the directory as
    in use. Returns the function to call once the worker has stopped cleanly (it removes the
    mark). Does nothing for the memory store, which always recovers from the changelog.

    ``keep``: the table whose files survive, because it writes its local store only after its
    changelog acknowledged (:meth:`monitor.live.table_store.SubjectTable.settle`): the SLA
    table, by far the largest, so a crash costs the tail of its changelog, not all of it."""
    if not str(app.conf.store).startswith("rocksdb"):
        return lambda: None
    tabledir = Path(app.conf.tabledir)
    mark = Path(app.conf.datadir) / RUNNING_MARK
    if mark.exists():
        log.warning(
            "%s: the last worker on this data directory did not stop cleanly (pid %s); the "
            "files of tables written before their changelog (all but %r) may hold records "
            "the changelog never got, so they are deleted and recovered from the changelog",
            tabledir, mark.read_text().strip() or "?", keep,
        )  # fmt: skip
        if tabledir.is_dir():
            for entry in tabledir.iterdir():
                if not entry.name.startswith(f"{keep}-"):
                    shutil.rmtree(entry, ignore_errors=True)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(f"{os.getpid()}\n")
    return lambda: mark.unlink(missing_ok=True)
