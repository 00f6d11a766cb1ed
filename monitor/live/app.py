"""The Faust app: input topics in, one table of subject records, SLA facts out.

Who calls what: :func:`create_app` is called by ``sla-monitor worker`` (:mod:`monitor.live.cli`),
by the demo and by tests (several apps per process are fine: nothing is module-global). It
returns a ``faust.App``; its :class:`SlaWorker` (``app.sla_worker``) holds the engine, the
deadline index and the clocks. Faust then calls, on its own event loop:

* the **agent** (:meth:`SlaWorker._process`) for every message of ``chat.sessions``,
  ``tickets`` and the internal ``sla.timeouts`` topic, gathered into batches of what Faust has
  already fetched, lingering up to ``batch_linger`` for more (:meth:`SlaWorker.process_batch`,
  :mod:`monitor.live.batch`). A batch goes through three steps, each a task taking batches in
  order, so the next batch is handled while earlier ones wait for the broker: *handle* (every
  record in memory, facts sent), *complete* (the facts acknowledged, then each changed subject
  record written once) and *settle* (the records acknowledged in the changelog, then the
  input acknowledged to Faust, eligible for commit). It alone reads and writes the table
  (:mod:`monitor.live.table_store`), so the table (a compacted changelog in Kafka, RocksDB
  locally) is the single source of truth;
* the **tick** timer (:meth:`SlaWorker._tick`) on every worker, for its own partitions (not
  ``on_leader``): it pops due keys from the deadline index and publishes a timer firing
  ``(key, now)`` to partition N of ``sla.timeouts``, which the agent handles like an event:
  re-read the record, ``engine.advance(state, now)``, store, emit. A Faust table cannot be
  written outside a stream, and routing through the topic keeps every write on partition N of
  the changelog, co-partitioned with the input. Skipped while rebalancing or recovering;
* the **sweep** timer (:meth:`SlaWorker._sweep`), which finds finished subjects past their
  retention (``engine.is_expired``) and, once the input that led to them is committed, sends
  them a retention check the same way, to be deleted by the agent;
* :meth:`SlaWorker._on_assigned` (``on_partitions_assigned``, before table recovery): drops
  from memory the keys of partitions this worker no longer owns, by the new assignment itself;
* :meth:`SlaWorker._on_rebalance_complete`, after table recovery, only for the consumer's
  current generation (fix 7 in :mod:`monitor.live.faust_fixes`): it rebuilds the deadline
  index from the records of the actively assigned partitions.

The deadline index is a :class:`monitor.engine.DeadlineIndex` per input partition (topic and
partition: a "lane", :mod:`monitor.live.lane`), because each has its own clock
(:mod:`monitor.live.clock`): a lagging partition must not pop keys a caught-up one would, nor
the reverse, and a ticket backlog must not advance the chat timers beside it.

Delivery is at-least-once: a batch's input is acknowledged only after the broker has its
outputs and, after them, its records in the changelog, so a crash repeats work but loses none;
the deterministic ``sla_id``/``fact_id`` make repeats harmless downstream. That holds only with
the fixes in :mod:`monitor.live.faust_fixes` (places where Faust 0.15.3 skips or commits past
input after a restart); :meth:`SlaWorker._advance` counts any hole that still reaches the
agent (``sla_input_skipped_offsets_total``). Input dropped unacknowledged (a batch made stale
by a revocation or a stall fence) holds back the rest of its partition until it is read again
(:meth:`SlaWorker._holds`), and a stall fence withdraws the changelog records and timer firings
its producer had not sent yet (:mod:`monitor.live.send_gate`). ``exactly_once`` is refused at
start-up (:mod:`monitor.live.config` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any

import faust
import orjson
from faust.types import TP
from faust.types.tuples import ack_lock

from monitor.engine import SlaEngine, SubjectState
from monitor.engine.state import state_key
from monitor.errors import CalendarError, InvalidEvent, Reason, RejectedEvent
from monitor.events import Event
from monitor.kpi.metrics import KpiMetrics
from monitor.kpi.tracker import KpiTracker
from monitor.live import direct_delivery, end_offsets, faust_fixes, send_gate
from monitor.live.batch import Batch, Pending
from monitor.live.clock import PartitionClocks, wall_clock
from monitor.live.config import Settings
from monitor.live.direct_delivery import take_waiting
from monitor.live.fence import BEAT, StallFence
from monitor.live.lane import Lane
from monitor.live.send_gate import WithdrawnWrite
from monitor.live.table_store import SubjectTable
from monitor.metrics import SlaMetrics
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import MICROS_PER_SECOND, Micros, seconds
from monitor.validation import parse_event
from monitor.vocabulary import SubjectType

log = logging.getLogger(__name__)

FactCallback = Callable[[SlaEvent], None]


def create_app(
    settings: Settings,
    engine: SlaEngine,
    metrics: SlaMetrics,
    *,
    wall: Callable[[], Micros] = wall_clock,
    on_fact: FactCallback | None = None,
    kpi_metrics: KpiMetrics | None = None,
) -> Any:
    """Builds a Faust app for ``settings``. ``wall`` is the clock of caught-up partitions
    (the demo fast-forwards it); ``on_fact`` is called for each SLA fact after it is sent;
    ``kpi_metrics`` receives the 004 3.3-3.5 KPIs (availability, FCR, CSAT) as they change."""
    worker = SlaWorker(
        settings, engine, metrics, wall=wall, on_fact=on_fact, kpi_metrics=kpi_metrics
    )
    worker.routes[Kind.ESCALATION] = (settings.topic_escalations,)  # 003 3.4 tiers
    if settings.escalation_stage:  # 002 6.2 escalations and the agents input (issue 8)
        from monitor.live.escalation_agent import register_escalation_stage  # noqa: PLC0415

        worker.app.escalation_stage = register_escalation_stage(worker)
    return worker.app


def faust_settings(settings: Settings) -> dict[str, Any]:
    """The Faust configuration for ``settings`` (also what the README documents)."""
    conf: dict[str, Any] = {
        "broker": settings.broker_url,
        "store": settings.store,
        "datadir": settings.data_dir,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        # Topics are created by `sla-monitor topics` with checked partition counts; the
        # leader topic only serves on_leader timers, which this app deliberately avoids.
        "topic_disable_leader": True,
        # Standbys would keep revoked partitions' records warm; the index covers actives only,
        # and recovery from the changelog is what restarts rely on anyway.
        "table_standby_replicas": 0,
        "processing_guarantee": settings.processing_guarantee,
        "consumer_auto_offset_reset": "earliest",  # a new group reads the retained input
        "broker_rebalance_timeout": settings.rebalance_timeout,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": settings.heartbeat_interval,
        "broker_commit_interval": settings.commit_interval,
        "producer_max_batch_size": settings.producer_max_batch_size,
        "producer_acks": settings.producer_acks,
        "producer_linger": settings.producer_linger,
        "web_enabled": False,  # metrics are served by prometheus_client on metrics_port
        "autodiscover": False,
    }
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    return conf


def _credentials(settings: Settings) -> Any:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    security = settings.aiokafka_security()
    ssl_context = security.get("ssl_context")
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    mechanism = settings.sasl_mechanism or "PLAIN"
    if mechanism == "GSSAPI":
        return faust.GSSAPICredentials(ssl_context=ssl_context)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        ssl_context=ssl_context,
        mechanism=mechanism,
    )


def _raw_topic(app: Any, name: str, partitions: int | None = None) -> Any:
    # Explicit raw serializers: with only key_type/value_type=bytes, Faust still falls back to
    # the app's default JSON codec when decoding, and every event would fail to decode.
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


class SlaWorker:
    """The live worker's state and handlers, bound to one Faust app (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        engine: SlaEngine,
        metrics: SlaMetrics,
        *,
        wall: Callable[[], Micros] = wall_clock,
        on_fact: FactCallback | None = None,
        kpi_metrics: KpiMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.wall = wall
        self.on_fact = on_fact
        # Clocks are per input partition (topic and partition): see monitor.live.clock for why
        # chat and tickets of one partition number keep apart. The rest of a lane's state is
        # in `lanes`, present only for partitions whose index is built (after recovery).
        self.clocks: PartitionClocks[TP] = PartitionClocks(seconds(settings.event_time_grace), wall)
        self.lanes: dict[TP, Lane] = {}
        # 004 3.3-3.5 and 001 3.2-3.3 as Prometheus metrics, from the records this worker
        # handles (its partitions). In memory: after a restart the counters start again, as
        # every Prometheus counter does; the monthly figures of record come from the report.
        self.kpis = KpiTracker(engine.policies, kpi_metrics)
        # False from a revocation until the next rebalance completes. Records reaching the agent
        # meanwhile are dropped unacknowledged (read again after it), not handled. Handled, one
        # (a timer firing, say) settles a write to its changelog partition and moves the local
        # store's changelog offset past the records of batches that revocation made stale
        # (in the changelog, not in the store); a kept partition's recovery then starts after
        # them, and they are lost. The likely cause of "no session.started was seen" right
        # after a rebalance in which the worker kept the partition, its recovery reading
        # nothing (tests/live/test_faults_crash.py on Tansu, RocksDB store: "active offsets at
        # start of reading" equal to the highwater).
        self.ready = False
        # Records that handled batches changed, as bytes (None: deleted), until their batch
        # is completed and they are in the table: the next batch reads them from here.
        self.overlay: dict[bytes, bytes | None] = {}
        # How many revocations this worker has seen. A batch handled in an earlier epoch is
        # stale: its partitions may have moved, and a new owner may have written their records
        # since (seen: a worker frozen past the session timeout wrote an old state over the new
        # owner's, tests/live/test_faults_rebalance.py). Its records are not stored and its
        # input not acknowledged; after every rebalance Faust seeks to the committed offsets, so
        # that input is read again, by this worker or the new owner (at-least-once).
        self.epoch = 0
        # Per partition, the lowest offset this worker dropped unacknowledged (``_release``):
        # nothing beyond it is handled until the read from the committed offset, after the
        # rebalance, comes back to it. Records fetched before the rebalance can still reach the
        # agent after it; handled, they put a subject's later events before its earlier ones
        # (the released ones, read again later: "no session.started was seen"), and their
        # acknowledgements let Faust commit past the gap (``Consumer._new_offset`` checks the
        # gap against the committed offset only when there is one, and allows one record).
        self.held: dict[TP, int] = {}
        self.held_since: dict[TP, float] = {}  # loop time each hold began (_HOLD_LIMIT)
        # The records the agent has gathered for its next batch, not yet handled (``_process``
        # fills and empties this one list; ``_revocation_starts`` releases it).
        self._gathered: list[Any] = []
        # Input and timer-firing partitions whose first record since the last rebalance has
        # not come yet: it must be the one at the committed offset (``_skipped_ahead``).
        self.resuming: set[TP] = set()
        # The partitions of the latest assignment (Faust's, as passed to ``_on_assigned``):
        # only those are held, so that a partition that moved away is not held when it
        # comes back from another owner (it then starts from wherever that owner committed).
        self.assigned: set[TP] = set()
        # A loop that stood still for half the session timeout may have been evicted: fence
        # (drop batches in flight, handle and fire nothing) until the group has rebalanced.
        self.fence = StallFence(limit=settings.session_timeout / 2)
        # The rejoin request a fence made, held so the task is not garbage-collected mid-way.
        self._rejoining: asyncio.Future[None] | None = None
        self._seeking: asyncio.Future[None] | None = None  # the same, for _seek_back

        app: Any = faust.App(settings.app_id, **faust_settings(settings))
        app.sla_worker = self
        self.app = app
        self.table = SubjectTable(
            app.Table(
                settings.table_name,
                default=None,
                key_type=bytes,
                value_type=bytes,
                partitions=settings.partitions,
                options=settings.table_options(),
            )
        )
        n = settings.partitions
        self.inputs = app.topic(
            settings.topic_chat,
            settings.topic_tickets,
            settings.topic_timeouts,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=n,
        )
        self.deadletter = _raw_topic(app, settings.topic_deadletter)  # also the escalation stage's
        breaches, outcomes = settings.topic_breaches, settings.topic_outcomes
        self.routes: dict[Kind, tuple[str, ...]] = {
            Kind.WARNING: (settings.topic_warnings,),
            Kind.BREACH: (breaches, outcomes),
            Kind.RETRACTION: (breaches,),
            Kind.MET: (outcomes,),
            # issue 9 (003 3.4): tier escalations; create_app routes them to issue 8's
            # sla.escalations (the escalation stage's topic).
            Kind.ESCALATION: (breaches,),
        }
        self.subject_topic = {
            SubjectType.CHAT_SESSION: settings.topic_chat,
            SubjectType.TICKET: settings.topic_tickets,
            # 004 3.3: channel.status, keyed by channel, on the tickets topic; it feeds the
            # availability KPI (self.kpis), not the engine.
            SubjectType.CHANNEL: settings.topic_tickets,
        }

        app.agent(self.inputs, name=f"{settings.app_id}.process", concurrency=1)(self._process)
        app.timer(settings.tick_interval, name=f"{settings.app_id}.tick")(self._tick)
        app.timer(settings.retention_interval, name=f"{settings.app_id}.sweep")(self._sweep)
        app.on_partitions_revoked.connect(self._on_revoked, weak=False)
        app.on_partitions_assigned.connect(self._on_assigned, weak=False)
        app.on_rebalance_complete.connect(self._on_rebalance_complete, weak=False)
        faust_fixes.apply(app, fetch_max_wait=settings.fetch_max_wait)
        faust_fixes.on_revocation_start(app, self._revocation_starts)
        direct_delivery.install(app)  # issue 7: no four tasks per record (the module says why)
        end_offsets.install(app, by_fetch=settings.end_offsets_by_fetch)  # recovery, on Tansu

    # -- the agent: every input event and timer firing, in partition order -----------------

    async def _process(self, stream: Any) -> None:
        """Gathers the records Faust has already fetched into a batch (up to ``batch_max``;
        fewer as soon as none is waiting, so an idle worker adds no delay), handles it, and
        hands it down a pipeline of two more tasks, each taking batches in the order they were
        handled: :meth:`_complete` (waits for the outputs, then stores the records) and
        :meth:`_settle` (waits for the stored records, then acknowledges the input). Up to
        ``batches_in_flight`` batches wait at each step while the next is handled."""
        stream.enable_acks = False
        waiting = stream.channel.queue
        limit = self.settings.batch_max
        linger = self.settings.batch_linger
        loop = asyncio.get_running_loop()
        completing: asyncio.Queue[Batch | None] = asyncio.Queue(self.settings.batches_in_flight)
        settling: asyncio.Queue[Batch | None] = asyncio.Queue(self.settings.batches_in_flight)
        steps = [
            asyncio.ensure_future(self._in_order(completing, self._complete, settling)),
            asyncio.ensure_future(self._in_order(settling, partial(self._settle, stream))),
        ]
        watchdog = asyncio.ensure_future(self._watch_stalls())
        await self._gate_producer()
        events = self._gathered  # one list, never rebound: a revocation releases it
        opened, epoch = 0.0, self.epoch
        try:
            async for first in stream.events():
                # The record the stream yielded, and those already waiting behind it, taken
                # without a loop turn each (monitor.live.direct_delivery says what it saves).
                for event in (first, *take_waiting(stream, limit - len(events) - 1)):
                    if self.resuming and self._skipped_ahead(event):
                        continue
                    if self.held and self._holds(event):
                        continue
                    if self.fence.fenced or not self.ready:  # read again after the rebalance
                        self._release([*events, event])
                        events.clear()
                        continue
                    if events and epoch != self.epoch:  # gathered before a revocation: stale
                        self._release(events)
                        events.clear()
                    events.append(event)
                    if len(events) == 1:
                        opened, epoch = loop.time(), self.epoch
                if not events:
                    continue
                if len(events) < limit:
                    if not waiting.empty():  # one the stream must see itself, or more came
                        continue
                    # Nothing waiting: on a backlog the next fetch is about to arrive. Wait up
                    # to `batch_linger` from the batch's first record for it (issue 7: batches
                    # of 1-4 records became ~100).
                    left = opened + linger - loop.time()
                    if left > 0:
                        await asyncio.sleep(min(left, _LINGER_STEP))
                        if not waiting.empty():
                            continue
                if epoch != self.epoch or self.fence.fenced or not self.ready:
                    self._release(events)  # a revocation or a fence came while it lingered
                    events.clear()
                    continue
                for step in steps:  # one failed: surface its error, do not pile up batches
                    if step.done():
                        step.result()
                batch = events.copy()  # out of reach of a revocation while it is handled
                events.clear()
                await completing.put(await self.handle_batch(batch))
        finally:
            watchdog.cancel()
            await completing.put(None)
            await asyncio.gather(*steps)

    async def _gate_producer(self) -> None:
        """Makes the producer's sender check for a stall before it sends anything
        (:mod:`monitor.live.send_gate`); aiokafka producers only (not ``memory://``)."""
        await self.app.producer.maybe_start()
        client = self._aiokafka_producer()
        if client is not None:
            send_gate.install(client, self._check_stall)

    def _aiokafka_producer(self) -> Any:
        """The aiokafka producer under Faust's (None on ``memory://``, or before it started):
        the one :mod:`monitor.live.send_gate` gates and withdraws from."""
        client = getattr(self.app.producer, "_producer", None)
        return client if hasattr(client, "_message_accumulator") else None

    async def _watch_stalls(self) -> None:
        """Turns every :data:`~monitor.live.fence.BEAT` seconds, so that a stall of the event
        loop shows as a late turn (see :mod:`monitor.live.fence`)."""
        loop = asyncio.get_running_loop()
        while True:
            stalled = self.fence.beat(loop.time())
            if stalled is not None:
                self._on_stall(stalled)
            await asyncio.sleep(BEAT)

    def _check_stall(self) -> None:
        """Fences now if the loop stood still past the limit and the watchdog has not turned
        since (it may run after the step that calls this, once the loop turns again)."""
        stalled = self.fence.check(asyncio.get_running_loop().time())
        if stalled is not None:
            self._on_stall(stalled)

    def _on_stall(self, stalled: float) -> None:
        """A stall of ``stalled`` seconds: while owning partitions, fence (once) and ask the
        group to rebalance; batches handled until now are stale, as after a revocation."""
        if not self.ready or not self.fence.close():
            return  # rebalancing or recovering already (nothing to protect), or fenced
        self._stop_in_flight()
        client = self._aiokafka_producer()
        withdrawn = 0 if client is None else send_gate.withdraw(client, self._fenced_topics)
        self.metrics.stall_fenced()
        log.warning(
            "the event loop stood still for %.1f s (over %.1f s, half the session timeout): "
            "this worker may have been evicted from its group, so it drops its batches in "
            "flight (their input is read again), withdraws the %d records they had not yet "
            "sent, and rejoins; if this repeats, find what freezes the process (CPU limits, "
            "swapping, VM pauses)",
            stalled, self.fence.limit, withdrawn,
        )  # fmt: skip
        self._rejoining = asyncio.ensure_future(self._rejoin())

    @property
    def _fenced_topics(self) -> set[str]:
        """The topics whose unsent records a stall fence withdraws: the table's changelog (a
        stale record behind the new owner's is the one a recovery reads last) and the timer
        firings (decided on a clock the group has moved past). Facts are left to go: one
        decided before the freeze is true, and a repeat carries the same ``fact_id``."""
        return {self.table.changelog, self.settings.topic_timeouts}

    def _stop_in_flight(self) -> None:
        """Until the next rebalance completes: no ticks, and every batch handled until now is
        stale (see ``__init__``), its records read again from the table, not the overlay.

        Caller: a revocation (:meth:`_on_revoked`) and a stall fence (:meth:`_on_stall`)."""
        self.ready = False
        self.epoch += 1
        self.overlay.clear()

    def _revocation_starts(self) -> None:
        """Releases (``_release``) the records the agent has gathered but not handled, and
        hands nothing more on until the rebalance completes.

        Why: Faust's revocation suspends the stream, clears its queue and then waits until
        every record the agent took is acknowledged (``stream_wait_empty``); only after that
        does it send ``on_partitions_revoked`` (:meth:`_on_revoked`). The agent, gathering a
        batch, waits for a next record before it hands the batch on, and none comes: seen, a
        worker waiting so for good ("wait_empty: Waiting for tasks"), evicted from the group
        at the rebalance timeout while still holding every partition
        (``test_two_workers_share_the_partitions[kafka]`` in a clean-clone CI run). Batches
        already handled are left to finish: their outputs may be out, so they must reach the
        changelog and be acknowledged (the wait is for them), not be read again.

        Caller: the first step of every revocation (fix 9 in :mod:`monitor.live.faust_fixes`).
        Affects: ``ready``, ``_gathered``, ``held``."""
        self.ready = False
        if self._gathered:
            log.info(
                "a revocation begins: %d records gathered for the next batch are released, "
                "to be read again after the rebalance", len(self._gathered),
            )  # fmt: skip
            self._release(self._gathered)
            self._gathered.clear()

    async def _rejoin(self) -> None:
        """Asks aiokafka's group coordinator, on the consumer's own thread, to rejoin."""
        try:
            thread = self.app.consumer._thread
            coordinator = thread._ensure_consumer()._coordinator

            async def request() -> None:
                coordinator.request_rejoin()

            await thread.call_thread(request)
        except Exception:  # stopping, or no group: a failed heartbeat rejoins in any case
            log.exception("could not ask the consumer group to rebalance after a stall")

    @staticmethod
    async def _in_order(
        queue: asyncio.Queue[Batch | None],
        step: Callable[[Batch], Awaitable[None]],
        then: asyncio.Queue[Batch | None] | None = None,
    ) -> None:
        """Runs ``step`` on each batch of ``queue`` in order until ``None``, passing each on to
        ``then`` (and the ``None`` too)."""
        while (batch := await queue.get()) is not None:
            await step(batch)
            if then is not None:
                await then.put(batch)
        if then is not None:
            await then.put(None)

    async def process_batch(self, events: Sequence[Any]) -> Batch:
        """Handles Faust ``events`` (input records and timer firings, in partition order) as one
        batch and completes it: every record handled in memory, then the facts and dead
        letters published and awaited, then each changed subject record stored once.

        Caller: tests, on a ``memory://`` app (the agent pipelines the same three steps).
        Affects: the table, the output topics, the lanes' deadline indexes, the metrics.
        """
        batch = await self.handle_batch(events)
        await self._complete(batch)
        await self._settle(None, batch)
        return batch

    async def handle_batch(self, events: Sequence[Any]) -> Batch:
        """Step 1 of a batch: handles every record in memory (reading records that earlier
        batches changed but have not stored yet from the overlay), sends the facts and dead
        letters without waiting for them, and moves the changed records into the overlay.

        Caller: the agent and :meth:`process_batch`. Affects: the overlay, the lanes' deadline
        indexes and hole detector; outputs are in the producer, not yet acknowledged.
        """
        self.metrics.observe_batch(len(events))
        batch = Batch(events=list(events), epoch=self.epoch)
        timeouts_topic = self.settings.topic_timeouts
        for event in events:
            message = event.message
            timer = message.topic == timeouts_topic
            try:
                if timer:
                    self._on_timeout(batch, event)
                else:
                    self._on_input(batch, event)
            except Exception as exc:  # a bug must not stop the partition: log, dead-letter
                log.exception(
                    "failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                if not timer:
                    batch.dead_letters.append(
                        (message, f"internal error: {exc!r}", Reason.INTERNAL)
                    )
            if not timer:
                self._advance(TP(message.topic, message.partition), message.offset)
        await self._send(batch)
        for key, value, pending in batch.changed():
            batch.writes.append((key, value, pending.event))
            self.overlay[key] = value
            lane = self.lanes.get(pending.lane)
            if lane is not None:
                due = pending.state.next_due if pending.state is not None else None
                lane.index.schedule(key.decode(), due)
        return batch

    async def _complete(self, batch: Batch) -> None:
        """Step 2 of a batch: waits until the broker has every output, *then* sends the
        batch's records to the changelog (not yet acknowledged). The order is what makes a
        SIGKILL lose nothing: a record in the changelog says its facts went out."""
        try:
            if batch.deliveries:
                await asyncio.gather(*batch.deliveries)
            self._observe(batch)
            self._check_stall()  # a frozen worker must not store what it handled before
            if batch.epoch != self.epoch:
                return  # stale (see SlaWorker.epoch): the input will be read and handled again
            batch.stored = await self.table.send(batch.writes, self.app.producer)
        except WithdrawnWrite:  # the stall fence took them back: the batch is stale
            batch.stored = {}

    async def _settle(self, stream: Any, batch: Batch) -> None:
        """Step 3 of a batch: waits until the broker has its records in the changelog, then
        writes them to the local store (never ahead of the changelog: see
        :meth:`SubjectTable.settle`) and acknowledges its input records to Faust (eligible for
        commit). A separate step so that the next batch's outputs and records are not held up
        by this wait; until it, the next batches read the records from the overlay."""
        try:
            offsets = await self.table.delivered(batch.stored)
        except WithdrawnWrite:  # the stall fence took them back (so the batch is stale)
            offsets = {}
        if batch.epoch != self.epoch:  # stale: a kept partition recovers them from the log
            if stream is not None:
                self._release(batch.events)
            return
        self.table.settle(batch.writes, offsets)
        for key, value, _ in batch.writes:
            if self.overlay.get(key, _ABSENT) is value:  # no later batch changed it since
                del self.overlay[key]
        self.metrics.set_open_timers(sum(len(lane.index) for lane in self.lanes.values()))
        if stream is not None:
            for event in batch.events:
                await stream.ack(event)

    def _skipped_ahead(self, event: Any) -> bool:
        """True (and the event released) when ``event`` is the first record of its partition
        since the rebalance and lies past the committed offset: the records in between were
        fetched, then lost on the way to the agent (fix 8 in :mod:`monitor.live.faust_fixes`;
        seen on Tansu: first record 149 after a rebalance with 93 committed, the sessions
        started in 93..148 dead-lettered or missing). The partition is sought back to the
        committed offset through Faust (which also resets its read offset, below which it
        drops records as already read) and held until the records come again.

        Even one past: a transaction marker may sit at the committed offset, but so may a
        record lost the same way (seen on Kafka, clean-clone CI at ``2c9922b``: ``tickets[2]``
        resumed at 6 with 5 committed, the record at 5 never handled, then "ticket.transferred
        for 'T-0000065', but no ticket.created was seen" and two ``met`` facts missing; a
        one-offset allowance had let it through). So that the re-read lifts the hold whether
        it begins at the committed offset or just after a marker there, that case is held at
        the first record's own offset (committed + 1); further past, at the committed offset,
        where the re-read must begin (a record of the rebalance's own re-read, still on its
        way, may lie in between).

        With nothing committed, a partition this worker dropped records of (``held``) is
        checked against the first of them instead: the re-read must come back to it.

        Caller: the agent, for every record while a partition is resuming. Affects:
        ``resuming``, ``held``."""
        message = event.message
        tp = TP(message.topic, message.partition)
        if tp not in self.resuming:
            return False
        self.resuming.discard(tp)
        committed = self.app.consumer._committed_offset.get(tp)
        dropped = self.held.get(tp)
        if committed:
            if message.offset <= committed:
                return False
            origin, back = "committed offset", committed
            hold = committed if message.offset > committed + 1 else message.offset
        elif dropped is not None and message.offset > dropped:
            origin, back = "first record it dropped", dropped
            hold = dropped
        else:
            return False
        log.warning(
            "partition %s[%d]: the first record after the rebalance is offset %d, past the "
            "%s %d: reading again from %d",
            tp.topic, tp.partition, message.offset, origin, back, back,
        )  # fmt: skip
        self._release([event])
        self.held[tp] = hold
        self._seeking = asyncio.ensure_future(self._seek_back(tp, back))
        return True

    async def _seek_back(self, tp: TP, offset: int) -> None:
        """Seeks ``tp`` to ``offset`` through Faust's consumer, forgetting the gap Faust noted
        (it would count the records never handled as acknowledged: ``Consumer._add_gap``).

        Unless the topic's retention deleted ``offset`` (a worker stopped for longer than the
        topic keeps records): the broker would answer "out of range", the consumer would reset
        to the partition's first record, and the hold would wait for ``offset`` for good (the
        worker asking for a rebalance every :data:`_HOLD_LIMIT`, handling nothing). The read
        then begins at the first record, the hold moves there, and the deleted offsets are
        counted as skipped input and as a gap, so that commits go past them.

        Caller: :meth:`_skipped_ahead`. Affects: ``held``, Faust's read offset and gaps."""
        consumer = self.app.consumer
        consumer._gap.pop(tp, None)
        try:
            first = (await consumer.earliest_offsets(tp)).get(tp, 0)
            if first > offset:
                log.warning(
                    "partition %s[%d]: offsets %d..%d are gone (the topic's retention deleted "
                    "them before this group read them): reading from %d; if this worker was "
                    "not stopped that long, the topic's retention is shorter than its lag",
                    tp.topic, tp.partition, offset, first - 1, first,
                )  # fmt: skip
                self.metrics.offsets_skipped(tp.topic, first - offset)
                if self.held.get(tp, first) < first:
                    self.held[tp] = first
                await consumer._add_gap(tp, offset, first - 1)
                offset = first
            await consumer.seek(tp, offset)
        except Exception:  # revoked meanwhile: the next owner reads from the committed offset
            log.exception("could not seek %s[%d] back to %d", tp.topic, tp.partition, offset)

    def _holds(self, event: Any) -> bool:
        """True (and the event released) when ``event`` lies beyond an offset of its partition
        this worker dropped: it was fetched before the rebalance, and the dropped records come
        first (``held``). The first record at or before that offset is the read from the
        committed offset: the partition flows again. So does a partition whose committed
        offset is now past the dropped one: another owner handled it meanwhile (seen: a
        zombie, evicted while frozen, got its partitions back a generation later and held
        them for good, since it never saw the assignment that took them away).

        Caller: the agent, for every record while anything is held. Affects: ``held``."""
        message = event.message
        tp = TP(message.topic, message.partition)
        start = self.held.get(tp)
        if start is None:
            return False
        if message.offset > start:
            committed = self.app.consumer._committed_offset.get(tp)
            if committed is None or committed <= start:
                self._release([event])
                self._check_hold(tp, start)
                return True
        del self.held[tp]
        self.held_since.pop(tp, None)
        return False

    def _check_hold(self, tp: TP, start: int) -> None:
        """A hold that lasted :data:`_HOLD_LIMIT` means the read from the committed offset is
        not coming (something moved Faust's read offset past it again): ask the group to
        rebalance, whose seek reads it, instead of leaving the partition stalled until some
        other rebalance.

        Checked for each later record the hold drops, and on every tick: on a partition of
        timer firings no later record may come (each key's next firing waits for the one
        dropped), and the hold would stand for good.

        Caller: :meth:`_holds` and :meth:`_tick`. Affects: ``held_since``."""
        now = asyncio.get_running_loop().time()
        since = self.held_since.setdefault(tp, now)
        if now - since <= _HOLD_LIMIT:
            return
        self.held_since[tp] = now
        log.error(
            "partition %s[%d]: held for %.0f s and offset %d has not been read again; asking "
            "the group to rebalance, which reads it from the committed offset",
            tp.topic, tp.partition, now - since, start,
        )  # fmt: skip
        self._rejoining = asyncio.ensure_future(self._rejoin())

    def _release(self, events: Iterable[Any]) -> None:
        """Lets Faust stop waiting for ``events`` that a revocation or a fence made stale,
        *without* acknowledging them: their offsets are never committed by this worker, so
        they are read again after the rebalance seeks to the committed offsets.

        Why: Faust's revocation first waits until every record it handed to the agent is
        acknowledged (``stream_wait_empty``). A fence drops its batches before the revocation
        comes, and the wait then never ended (seen: "wait_empty: Waiting for tasks" on the
        zombie of tests/live/test_faults_rebalance.py, and no rejoin within 120 s)."""
        unacked = self.app.consumer._unacked_messages
        assigned, held = self.assigned, self.held
        with ack_lock:  # Faust's own guard of these fields (faust.types.tuples)
            for event in events:
                message = event.message
                message.acked = True
                unacked.discard(message)
                tp = TP(message.topic, message.partition)
                if tp in assigned and message.offset < held.get(tp, message.offset + 1):
                    if tp not in held:
                        log.info(
                            "partition %s[%d]: records after offset %d wait until it is read "
                            "again from the committed offset",
                            tp.topic, tp.partition, message.offset,
                        )  # fmt: skip
                        self.held_since[tp] = asyncio.get_running_loop().time()
                    held[tp] = message.offset

    def _advance(self, tp: TP, offset: int) -> None:
        """Records ``offset`` as handled, and reports a hole since the previous record: input
        the consumer skipped (see :mod:`monitor.live.faust_fixes` for how that happened).
        The first record after a rebalance (a revocation drops every lane) is compared with
        the committed offset the group resumed from."""
        lane = self.lanes.get(tp)
        if lane is None:  # a record before the rebalance that builds its lane completed
            lane = self.lanes[tp] = Lane()
        previous = lane.processed
        if previous is None:
            committed = self.app.consumer._committed_offset.get(tp)
            previous = None if not committed else committed - 1
        if previous is not None and offset > previous + 1:
            skipped = offset - previous - 1
            self.metrics.offsets_skipped(tp.topic, skipped)
            log.warning(
                "input offsets %s[%s] %d..%d never reached the worker (%d skipped: "
                "transaction markers, or lost input)",
                tp.topic, tp.partition, previous + 1, offset - 1, skipped,
            )  # fmt: skip
        lane.processed = offset

    def _pending(self, batch: Batch, key: bytes, event: Any, lane: TP) -> Pending:
        """The batch's copy of ``key``'s record, read from the table the first time."""
        pending = batch.records.get(key)
        if pending is None:
            stored = self.overlay.get(key, _ABSENT)
            if stored is _ABSENT:
                stored = self.table.get(key, event)
            state = SubjectState.from_bytes(stored, key) if stored is not None else None
            pending = batch.records[key] = Pending(stored, state, event, lane)
        else:
            pending.event = event
        return pending

    def _on_input(self, batch: Batch, event: Any) -> None:
        message = event.message
        raw = message.value
        if raw is None:
            batch.dead_letters.append(
                (message, "empty message value (a tombstone?)", Reason.TOMBSTONE)
            )
            return
        try:
            parsed = parse_event(raw)
        except InvalidEvent as exc:
            batch.dead_letters.append((message, str(exc), exc.code))
            return
        problem = self._misrouted(parsed, message)
        if problem is not None:
            batch.dead_letters.append((message, problem, Reason.MISROUTED))
            return
        if parsed.subject_type is SubjectType.CHANNEL:  # 004 3.3: availability, no SLA clock
            try:
                self.kpis.observe(parsed)
            except RejectedEvent as exc:
                batch.dead_letters.append((message, str(exc), exc.code))
                return
            self.metrics.event_consumed(message.topic, parsed.type.value)
            return
        lane_tp = TP(message.topic, message.partition)
        self.clocks.observe(lane_tp, parsed.occurred_at)
        lane = self.lanes.get(lane_tp)
        if lane is None:
            now = self.clocks.now(lane_tp, caught_up=False)
        else:
            now = self.clocks.now(lane_tp, caught_up=lane.caught_up, heard=lane.heard)
        key = state_key(parsed.subject_type, parsed.subject_id).encode()
        pending = self._pending(batch, key, event, lane_tp)
        state = pending.state
        facts: list[SlaEvent] = []
        try:
            if state is not None:
                # What replay does before each event: fire what the event's own time has
                # passed, so warnings and breaches come out in the same order and kinds.
                facts += self.engine.advance(state, parsed.occurred_at).events
            step = self.engine.apply(state, parsed, Micros(max(now or 0, parsed.occurred_at)))
        except (RejectedEvent, CalendarError) as exc:
            batch.dead_letters.append((message, str(exc), exc.code))
            return
        self.metrics.event_consumed(message.topic, parsed.type.value)
        if not step.duplicate:
            self.kpis.observe(parsed)
        pending.state = step.state
        batch.facts += [(fact, False) for fact in facts + step.events]

    def _misrouted(self, event: Event, message: Any) -> str | None:
        """Reasons an otherwise valid event cannot be processed where it arrived: a subject's
        events must share one partition (the key) and belong to the topic's kind."""
        expected_topic = self.subject_topic[event.subject_type]
        if message.topic != expected_topic:
            return f"a {event.subject_type.value} event on topic {message.topic!r}"
        if message.key != event.subject_id.encode():
            return (
                f"message key {message.key!r} is not the subject id {event.subject_id!r} "
                "(a subject's events must share one partition)"
            )
        return None

    def _on_timeout(self, batch: Batch, event: Any) -> None:
        """A timer firing (or a retention check) for the key: re-check the stored record.

        Only a retention check deletes an expired record: :meth:`_sweep` sends one once no
        input that led to the record can be read again. A timer firing deleted it too, and a
        worker that crashed before its input was committed then read that input again with
        no record for it (see :meth:`_sweep`)."""
        message = event.message
        key: bytes = message.key
        value: bytes = message.value
        retention = value.startswith(_RETENTION_CHECK)
        now = Micros(int(value[len(_RETENTION_CHECK) :] if retention else value))
        lane = self._lane(key, message.partition)
        # Nothing later than this worker's own clock of the subject's partition has proved.
        # A firing sent before a crash is read again after it, while the input that had moved
        # the clock that far is still to be read again; applied at its instant to the stored
        # record, older than the one it was sent for, it fired a breach the re-read answer
        # then retracted (seen: tests/live/test_recovery.py, killed at a quarter of the day's
        # facts). The rebuilt deadline index fires the key again when the clock gets there.
        proved = self.clocks.peek(lane)
        if proved is None:
            return
        now = min(now, proved)
        pending = self._pending(batch, key, event, lane)
        state = pending.state
        if state is None:
            return
        step = self.engine.advance(state, now)
        batch.facts += [(fact, True) for fact in step.events]
        if retention and self.engine.is_expired(state, now):
            pending.state = None
            # Retention deletes the record; the KPI tracker lets go of the subject too (else a
            # long run keeps every subject it saw: tests/live/test_soak.py).
            self.kpis.forget(state.subject_type, state.subject_id)

    def _lane(self, key: bytes, partition: int) -> TP:
        """The input partition a subject's events arrive on: its topic (from the key's subject
        type prefix, see :func:`monitor.engine.state.state_key`) and ``partition``."""
        chat = key.startswith(_CHAT_PREFIX)
        return TP(self.settings.topic_chat if chat else self.settings.topic_tickets, partition)

    async def _send(self, batch: Batch) -> None:
        """Hands the batch's facts and dead letters to the producer (no wait for delivery).

        Straight to Faust's producer, not through ``Topic.send``: its channel, sensor and
        callback layers cost as much as the send itself (py-spy, BENCHMARKS.md), and nothing
        here needs them.
        """
        producer = self.app.producer
        await producer.maybe_start()
        send = producer.send
        deliveries = batch.deliveries
        for fact, _ in batch.facts:
            value = orjson.dumps(fact.to_dict(self.engine.timezone_of(fact.policy)))
            key = fact.subject_id.encode()
            for topic in self.routes[fact.kind]:
                deliveries.append(await send(topic, key, value, None, None, None))
        for message, reason, code in batch.dead_letters:
            headers = [
                ("reason", reason.encode()),
                ("code", code.value.encode()),  # machine-readable (monitor.errors.Reason)
                ("topic", str(message.topic).encode()),
                ("partition", str(message.partition).encode()),
                ("offset", str(message.offset).encode()),
            ]
            topic = self.settings.topic_deadletter
            deliveries.append(await send(topic, message.key, message.value, None, None, headers))

    def _observe(self, batch: Batch) -> None:
        """Metrics and callbacks of a batch whose outputs the broker has acknowledged."""
        wall = self.wall()
        for fact, from_timer in batch.facts:
            self.metrics.observe_sla_event(fact)
            if from_timer and fact.kind is Kind.BREACH:
                self.metrics.observe_detection_delay((wall - fact.deadline) / MICROS_PER_SECOND)
            if self.on_fact is not None:
                self.on_fact(fact)
        for message, reason, code in batch.dead_letters:
            self.metrics.event_invalid(message.topic, reason, code)
            where = f"{message.topic}[{message.partition}]@{message.offset}"
            log.warning("dead letter %s: %s", where, reason)

    # -- timers: every worker, its own partitions -----------------------------------------

    def _busy(self) -> bool:
        app = self.app
        return not self.ready or bool(app.rebalancing) or bool(getattr(app, "in_recovery", False))

    async def _tick(self) -> None:
        """Publishes a timer firing for every key whose deadline its partition's clock passed,
        and accounts channel service time (availability) up to now."""
        self._check_stall()  # thawed: its index is stale if the group moved on
        if self._busy():
            return
        for tp, start in list(self.held.items()):  # a re-read that will not come (_check_hold)
            self._check_hold(tp, start)
        self.kpis.advance(self.wall())
        for tp in sorted(self.lanes):
            lane = self.lanes.get(tp)
            if lane is None:
                continue  # revoked while we were sending
            caught_up = self._is_caught_up(tp, lane)
            if caught_up != lane.caught_up:
                log.info(
                    "partition %s[%d]: %s", tp.topic, tp.partition,
                    "caught up" if caught_up else "behind",
                )  # fmt: skip
            lane.caught_up = caught_up
            now = self.clocks.now(tp, caught_up=caught_up, heard=lane.heard)
            self.metrics.set_clock_mode(tp.topic, tp.partition, self.clocks.mode(tp))
            if now is None:
                continue  # behind, and no event read yet: nothing proves time has moved
            firing = str(now).encode()
            for key in lane.index.pop_due(now):
                await self._fire(key.encode(), firing, tp.partition)
            if self._busy():  # a rebalance began while we were sending: stop here
                return

    def _is_caught_up(self, tp: TP, lane: Lane) -> bool:
        """True when the input partition has nothing left to read (lag 0), by the fetch high
        watermark (exact on Kafka and on Tansu, unlike ListOffsets there)."""
        highwater = self._highwater(tp)
        if highwater is None:
            return False
        lane.heard = self._heard(tp)
        committed = getattr(self.app.consumer, "_committed_offset", {})
        if lane.processed is not None:
            position = lane.processed + 1
        elif committed.get(tp) is not None:
            position = committed[tp]
        else:
            # A new group that has handled nothing yet: the fetch position runs ahead of
            # processing (prefetched records), so only an empty partition is caught up.
            # Anything else waits for its first processed record, which sets `processed`.
            position = 0
        lag: int = max(highwater - position, 0)
        self.metrics.set_partition_lag(tp.topic, tp.partition, lag)
        return lag == 0

    def _highwater(self, tp: TP) -> int | None:
        """The input partition's end as of the last fetch response (None: not yet fetched)."""
        try:
            highwater: int | None = self.app.consumer.highwater(tp)
        except Exception:  # not (yet) assigned or fetched
            return None
        return highwater

    def _heard(self, tp: TP) -> int | None:
        """When the broker last answered a fetch for ``tp`` (µs since the epoch, aiokafka's
        record of the response that set the high watermark); None where the transport keeps
        no such record (the in-memory one). Read each tick, for the clock (monitor.live.clock:
        a high watermark is only as fresh as the response that carried it)."""
        thread = getattr(self.app.consumer, "_thread", None)
        try:
            polled = thread._ensure_consumer().last_poll_timestamp(tp)  # type: ignore[union-attr]
        except Exception:  # no aiokafka consumer (memory://), or tp not assigned to it
            return None
        return None if polled is None else int(polled) * 1000

    async def _sweep(self) -> None:
        """Deletes (through a retention check on ``sla.timeouts``) every finished subject past
        its retention, once no input that led to its record can be read again.

        In two steps, one sweep apart: a sweep notes the subjects it finds expired and the
        lane's end offset then (``Lane.expired``, ``swept_to``); a later sweep deletes those
        still expired once the input is committed past that end. Every event of a subject in
        the table lies before it. Deleted at once, a subject whose last events were handled
        but not yet committed lost its record, and a worker that crashed before the commit
        read those events again with no record for them: dead letters ("no ticket.created was
        seen"), a fresh SLA clock from a re-read ``session.started``, facts replay never made
        (seen: tests/live/test_recovery.py killed at a quarter of the day's facts, once the
        worker drained a backlog faster than the 2.8 s commit interval)."""
        if self._busy():
            return
        committed = getattr(self.app.consumer, "_committed_offset", {})
        for tp in sorted(self.lanes):
            lane, now, end = self.lanes.get(tp), self.clocks.peek(tp), self._highwater(tp)
            if lane is None or now is None or end is None:
                continue  # revoked while we were sending, no time proved, or no end yet
            done = committed.get(tp)
            if lane.swept_to is not None and (done is None or done < lane.swept_to):
                continue  # the input up to the last sweep's end is not committed yet
            expired = set()
            for key, value, partition in self.table.items({tp.partition}):
                if self._lane(key, partition) != tp:
                    continue
                if self.engine.is_expired(SubjectState.from_bytes(value, key), now):
                    expired.add(key)
            firing = _RETENTION_CHECK + str(now).encode()
            for key in sorted(expired & lane.expired):
                await self._fire(key, firing, tp.partition)
            lane.expired, lane.swept_to = expired - lane.expired, end

    async def _fire(self, key: bytes, now: bytes, partition: int) -> None:
        """Sends a timer firing (or a retention check) for ``key`` to partition ``partition``
        of ``sla.timeouts``, straight to the producer as :meth:`_send` does (``Topic.send``
        cost 0.8 ms a call; a backlog's deadlines fire thousands at a time)."""
        producer = self.app.producer
        await producer.maybe_start()
        # WithdrawnWrite: it waited for room and a stall fence came; the rebalance's rebuild
        # of the deadline index schedules the key again.
        with contextlib.suppress(WithdrawnWrite):
            await producer.send(self.settings.topic_timeouts, key, now, partition, None, None)

    # -- rebalancing ----------------------------------------------------------------------

    def _processed(self, tp: TP) -> int | None:
        lane = self.lanes.get(tp)
        return lane.processed if lane is not None else None

    def _input_partitions(self, tps: Iterable[TP]) -> set[TP]:
        return _of_topics(tps, self.settings.input_topics)

    def _timer_partitions(self, tps: Iterable[TP]) -> set[TP]:
        return _of_topics(tps, (self.settings.topic_timeouts,))

    async def _on_revoked(self, sender: Any, revoked: Iterable[TP], **_: Any) -> None:
        """Stops the timers and forgets revoked partitions (their new owner rebuilds them)."""
        self._stop_in_flight()
        gone = self._input_partitions(revoked)
        for tp in gone:
            self.lanes.pop(tp, None)
            self.metrics.forget_partition(tp.partition)
        self.clocks.forget(gone)

    async def _on_assigned(self, sender: Any, assigned: Iterable[TP], **_: Any) -> None:
        """Drops, from the memory store, the keys of partitions not in the new ``assigned``.

        Here, with the assignment Faust passes, and not after recovery from
        ``consumer.assignment()``: Faust sends ``on_rebalance_complete`` for a recovery even when
        a newer rebalance has begun (fix 7 now holds it back), and by then the consumer's
        assignment belongs to that newer rebalance. Forgetting by it dropped the records of a
        partition this worker kept, while Faust's recovery of a kept partition resumes from
        where the previous one stopped (memory store: ``Recovery.active_offsets``), so they
        never came back: the likely cause of "no session.started was seen" after a rebalance
        (issue 10, ``tests/live/test_faults_rebalance.py``)."""
        self.assigned = {TP(tp.topic, tp.partition) for tp in assigned}
        inputs = self._input_partitions(self.assigned)
        self.table.forget_unassigned({tp.partition for tp in inputs})
        # A partition that moved away starts, when it comes back, from its committed offset,
        # wherever its other owner left it.
        self.held = {tp: start for tp, start in self.held.items() if tp in self.assigned}
        self.held_since = {tp: t for tp, t in self.held_since.items() if tp in self.held}

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        """After recovery: rebuild the deadline index from the assigned partitions' records."""
        faust_fixes.drain_on_flush(self.app)
        assigned = self._input_partitions(self.app.consumer.assignment())
        self.clocks.forget(self.clocks.partitions() - assigned)
        # A revocation drops its partitions' lanes, so `processed` is mostly None here: the
        # hole detector then compares the first record with the committed offset (_advance).
        fresh = {tp: Lane(processed=self._processed(tp)) for tp in assigned}
        numbers = {tp.partition for tp in assigned}
        count = 0
        for key, value, partition in self.table.items(numbers):
            due = SubjectState.from_bytes(value, key).next_due
            lane = fresh.get(self._lane(key, partition))
            if due is not None and lane is not None:
                lane.index.schedule(key.decode(), due)
                count += 1
        self.lanes = fresh
        # And the timer firings' partitions this worker dropped records of: a firing lost on
        # its way to the agent is a key that never fires again (it is scheduled anew only
        # once its firing is handled). Not the others: a timer partition's committed offset
        # may be gone (one day's retention, a worker down longer), and sought back to it the
        # partition would be held for good.
        timers = self._timer_partitions(self.app.consumer.assignment())
        self.resuming = assigned | (timers & self.held.keys())
        self.metrics.set_open_timers(count)
        self.fence.lift(asyncio.get_running_loop().time())  # also: the rebuild's stall is ours
        self.ready = True
        log.info("deadline index rebuilt: %d pending over partitions %s", count, sorted(numbers))


def _of_topics(tps: Iterable[TP], topics: Iterable[str]) -> set[TP]:
    """The partitions of ``tps`` that belong to ``topics``, as Faust ``TP`` tuples."""
    wanted = set(topics)
    return {TP(tp.topic, tp.partition) for tp in tps if tp.topic in wanted}


_ABSENT: Any = object()
# How a retention check on ``sla.timeouts`` differs from a timer firing: its value is this,
# then the instant (a timer firing's value is the instant alone).
_RETENTION_CHECK = b"retention "
# How long the agent sleeps at a time while a batch lingers: short enough that an idle worker
# hands a lone record on after one step, long enough for Faust to deliver a few records.
_LINGER_STEP = 0.002
# Seconds a partition may stay held (SlaWorker._holds) while later records keep coming before
# the worker asks for a rebalance. The re-read it waits for comes one fetch after the seek
# (well under a second in every run of tests/live/test_faults_crash.py); 30 s is far past that
# and far below what lag alerts tolerate.
_HOLD_LIMIT = 30.0
_CHAT_PREFIX = state_key(SubjectType.CHAT_SESSION, "").encode()
