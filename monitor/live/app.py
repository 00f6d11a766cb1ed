"""The Faust app: input topics in, one table of subject records, SLA facts out.

Who calls what: :func:`create_app` is called by ``sla-monitor worker`` (:mod:`monitor.live.cli`),
by the demo and by tests (several apps per process are fine: nothing is module-global). It
returns a ``faust.App``; its :class:`SlaWorker` (``app.sla_worker``) holds the engine, the
deadline index and the clocks. Faust then calls, on its own event loop:

* the **agent** (:meth:`SlaWorker._process`) for every message of ``chat.sessions``,
  ``tickets`` and the internal ``sla.timeouts`` topic. It alone reads and writes the table, so
  the table (a compacted changelog in Kafka, RocksDB locally) is the single source of truth;
* the **tick** timer (:meth:`SlaWorker._tick`) on every worker, for its own partitions (not
  ``on_leader``): it pops due keys from the deadline index and publishes a timer firing
  ``(key, now)`` to partition N of ``sla.timeouts``, which the agent handles like an event:
  re-read the record, ``engine.advance(state, now)``, store, emit. A Faust table cannot be
  written outside a stream, and routing through the topic keeps every write on partition N of
  the changelog, co-partitioned with the input. Skipped while rebalancing or recovering;
* the **sweep** timer (:meth:`SlaWorker._sweep`), which finds finished subjects past their
  retention (``engine.is_expired``) and sends them the same way, to be deleted by the agent;
* :meth:`SlaWorker._on_rebalance_complete`, after table recovery (``on_partitions_assigned``
  fires before recovery, when the table is still incomplete): it rebuilds the deadline index
  from the records of the actively assigned partitions; revoked partitions' keys are dropped
  in :meth:`SlaWorker._on_revoked`.

The deadline index is a :class:`monitor.engine.DeadlineIndex` per input partition (topic and
partition: a "lane"), because each has its own clock (:mod:`monitor.live.clock`): a lagging
partition must not pop keys a caught-up one would, nor the reverse, and a ticket backlog must
not advance the chat timers beside it.

Delivery is at-least-once by default: Faust flushes the producer (outputs, dead letters,
changelog) before it commits input offsets, so a crash repeats work but loses none, and the
deterministic ``sla_id``/``fact_id`` make repeats harmless downstream. That holds only with
the fixes in :mod:`monitor.live.faust_fixes` (three places where Faust 0.15.3 skips or commits
past input after a restart); :meth:`SlaWorker._advance` counts any hole that still reaches the
agent (``sla_input_skipped_offsets_total``). ``exactly_once`` maps to Faust's
Kafka-transactions mode (real Kafka only; see :mod:`monitor.live.broker`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import faust
import orjson
from faust.types import TP

from monitor.engine import DeadlineIndex, SlaEngine, SubjectState
from monitor.engine.state import state_key
from monitor.errors import CalendarError, InvalidEvent, RejectedEvent
from monitor.events import Event, SubjectType
from monitor.live import faust_fixes
from monitor.live.clock import PartitionClocks, wall_clock
from monitor.live.config import Settings
from monitor.metrics import SlaMetrics
from monitor.sla_event import Kind, SlaEvent
from monitor.timeutil import MICROS_PER_SECOND, Micros, seconds
from monitor.validation import parse_event

log = logging.getLogger(__name__)

FactCallback = Callable[[SlaEvent], None]


def create_app(
    settings: Settings,
    engine: SlaEngine,
    metrics: SlaMetrics,
    *,
    wall: Callable[[], Micros] = wall_clock,
    on_fact: FactCallback | None = None,
) -> Any:
    """Builds a Faust app for ``settings``. ``wall`` is the clock of caught-up partitions
    (the demo fast-forwards it); ``on_fact`` is called for each SLA fact after it is sent."""
    worker = SlaWorker(settings, engine, metrics, wall=wall, on_fact=on_fact)
    # --- issue 8 (contract accounting): the 002 6.2 escalation stage and the agents input ---
    from monitor.live.escalation_agent import register_escalation_stage  # noqa: PLC0415

    worker.app.escalation_stage = register_escalation_stage(worker)
    # --- end issue 8 ---
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
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.wall = wall
        self.on_fact = on_fact
        # Clocks, deadline indexes and lag are per input partition (topic and partition): see
        # monitor.live.clock for why chat and tickets of one partition number keep apart.
        self.clocks: PartitionClocks[TP] = PartitionClocks(seconds(settings.event_time_grace), wall)
        self.index: dict[TP, DeadlineIndex] = {}
        self.active: set[TP] = set()  # input partitions whose index is built (after recovery)
        self.ready = False  # false from a revocation until the next rebalance completes
        self.caught_up: dict[TP, bool] = {}
        self.processed: dict[TP, int] = {}  # last input offset handled, per input partition
        # The memory store does not remember which partition a live-written key belongs to;
        # we do, so the index rebuild and the sweep can go partition by partition.
        self.key_partition: dict[bytes, int] = {}
        self.stats = {"events": 0, "dead_letters": 0, "timeouts": 0, "facts": 0}

        app: Any = faust.App(settings.app_id, **faust_settings(settings))
        app.sla_worker = self
        self.app = app
        self.table: Any = app.Table(
            settings.table_name,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
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
        self.timeouts = _raw_topic(app, settings.topic_timeouts, n)
        self.breaches = _raw_topic(app, settings.topic_breaches)
        self.warnings = _raw_topic(app, settings.topic_warnings)
        self.outcomes = _raw_topic(app, settings.topic_outcomes)
        self.deadletter = _raw_topic(app, settings.topic_deadletter)
        self.routes: dict[Kind, tuple[Any, ...]] = {
            Kind.WARNING: (self.warnings,),
            Kind.BREACH: (self.breaches, self.outcomes),
            Kind.RETRACTION: (self.breaches,),
            Kind.MET: (self.outcomes,),
        }
        self.subject_topic = {
            SubjectType.CHAT_SESSION: settings.topic_chat,
            SubjectType.TICKET: settings.topic_tickets,
        }

        app.agent(self.inputs, name=f"{settings.app_id}.process", concurrency=1)(self._process)
        app.timer(settings.tick_interval, name=f"{settings.app_id}.tick")(self._tick)
        app.timer(settings.retention_interval, name=f"{settings.app_id}.sweep")(self._sweep)
        app.on_partitions_revoked.connect(self._on_revoked, weak=False)
        app.on_rebalance_complete.connect(self._on_rebalance_complete, weak=False)
        faust_fixes.apply(app, fetch_max_wait=settings.fetch_max_wait)

    # -- the agent: every input event and timer firing, in partition order -----------------

    async def _process(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                if message.topic == self.settings.topic_timeouts:
                    await self._on_timeout(message.key, message.value, message.partition)
                else:
                    await self._on_input(message)
            except Exception as exc:  # a bug must not stop the partition: log, dead-letter
                log.exception(
                    "failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                if message.topic != self.settings.topic_timeouts:
                    await self._dead_letter(message, f"internal error: {exc!r}")
            if message.topic != self.settings.topic_timeouts:
                self._advance(TP(message.topic, message.partition), message.offset)

    def _advance(self, tp: TP, offset: int) -> None:
        """Records ``offset`` as handled, and reports a hole since the previous record: input
        the consumer skipped (see :mod:`monitor.live.faust_fixes` for how that happened)."""
        previous = self.processed.get(tp)
        if previous is not None and offset > previous + 1:
            skipped = offset - previous - 1
            self.metrics.offsets_skipped(tp.topic, skipped)
            log.warning(
                "input offsets %s[%s] %d..%d never reached the worker (%d skipped: "
                "transaction markers, or lost input)",
                tp.topic, tp.partition, previous + 1, offset - 1, skipped,
            )  # fmt: skip
        self.processed[tp] = offset

    async def _on_input(self, message: Any) -> None:
        self.stats["events"] += 1
        raw = message.value
        if raw is None:
            await self._dead_letter(message, "empty message value (a tombstone?)")
            return
        try:
            event = parse_event(raw)
        except InvalidEvent as exc:
            await self._dead_letter(message, str(exc))
            return
        problem = self._misrouted(event, message)
        if problem is not None:
            await self._dead_letter(message, problem)
            return
        lane = TP(message.topic, message.partition)
        self.clocks.observe(lane, event.occurred_at)
        now = self.clocks.now(lane, caught_up=self.caught_up.get(lane, False))
        key = self.engine.state_key(event).encode()
        stored = self.table.get(key)
        state = SubjectState.from_bytes(stored) if stored is not None else None
        facts: list[SlaEvent] = []
        try:
            if state is not None:
                # What replay does before each event: fire what the event's own time has
                # passed, so warnings and breaches come out in the same order and kinds.
                facts += self.engine.advance(state, event.occurred_at).events
            step = self.engine.apply(state, event, Micros(max(now, event.occurred_at)))
        except (RejectedEvent, CalendarError) as exc:
            await self._dead_letter(message, str(exc))
            return
        self.metrics.event_consumed(message.topic, event.type.value)
        if step.duplicate and not facts:
            return
        # Outputs first, acknowledged, then the record: see _emit for why.
        await self._emit(facts + step.events, from_timer=False)
        self._store(key, step.state, lane)

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

    async def _on_timeout(self, key: bytes, value: bytes, partition: int) -> None:
        """A timer firing (or a retention check) for ``key``: re-check the stored record."""
        self.stats["timeouts"] += 1
        now = Micros(int(value))
        lane = self._lane(key, partition)
        stored = self.table.get(key)
        if stored is None:
            self._index(lane).schedule(key.decode(), None)
            return
        state = SubjectState.from_bytes(stored)
        step = self.engine.advance(state, now)
        await self._emit(step.events, from_timer=True)
        if self.engine.is_expired(state, now):
            self._store(key, None, lane)
        elif step.events:
            self._store(key, state, lane)
        else:
            self._index(lane).schedule(key.decode(), state.next_due)

    def _lane(self, key: bytes, partition: int) -> TP:
        """The input partition a subject's events arrive on: its topic (from the key's subject
        type prefix, see :func:`monitor.engine.state.state_key`) and ``partition``."""
        chat = key.startswith(state_key(SubjectType.CHAT_SESSION, "").encode())
        return TP(self.settings.topic_chat if chat else self.settings.topic_tickets, partition)

    def _store(self, key: bytes, state: SubjectState | None, lane: TP) -> None:
        if state is None:
            if key in self.table:
                del self.table[key]
            self.key_partition.pop(key, None)
            self._index(lane).schedule(key.decode(), None)
        else:
            self.table[key] = state.to_bytes()
            self.key_partition[key] = lane.partition
            self._index(lane).schedule(key.decode(), state.next_due)
        self.metrics.set_open_timers(sum(len(i) for i in self.index.values()))

    async def _emit(self, facts: list[SlaEvent], *, from_timer: bool) -> None:
        """Publishes facts and waits until the broker has them, *before* the caller stores
        the record that produced them.

        The record remembers the event (its id, for duplicates) and the fired timers, so
        once it is stored (RocksDB writes locally at once; the changelog write may be flushed
        before the outputs) a re-delivery after a crash is a no-op. Were the outputs still in
        the producer's buffer then, a SIGKILL would lose them for good. In this order a crash
        can only lose the record, and reprocessing re-emits the same facts (same fact_id).
        """
        pending = []
        for fact in facts:
            value = orjson.dumps(fact.to_dict(self.engine.timezone_of(fact.policy)))
            key = fact.subject_id.encode()
            for topic in self.routes[fact.kind]:
                pending.append(await topic.send(key=key, value=value))
        for delivery in pending:
            await delivery
        for fact in facts:
            self.stats["facts"] += 1
            self.metrics.observe_sla_event(fact)
            if from_timer and fact.kind is Kind.BREACH:
                self.metrics.observe_detection_delay(
                    (self.wall() - fact.deadline) / MICROS_PER_SECOND
                )
            if self.on_fact is not None:
                self.on_fact(fact)

    async def _dead_letter(self, message: Any, reason: str) -> None:
        self.stats["dead_letters"] += 1
        headers = [
            ("reason", reason.encode()),
            ("topic", str(message.topic).encode()),
            ("partition", str(message.partition).encode()),
            ("offset", str(message.offset).encode()),
        ]
        await self.deadletter.send(key=message.key, value=message.value, headers=headers)
        self.metrics.event_invalid(message.topic, reason)
        log.warning(
            "dead letter %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
        )

    # -- timers: every worker, its own partitions -----------------------------------------

    def _busy(self) -> bool:
        app = self.app
        return not self.ready or bool(app.rebalancing) or bool(getattr(app, "in_recovery", False))

    async def _tick(self) -> None:
        """Publishes a timer firing for every key whose deadline its partition's clock passed."""
        if self._busy():
            return
        for lane in sorted(self.active):
            caught_up = self._is_caught_up(lane)
            if caught_up != self.caught_up.get(lane):
                state = "caught up" if caught_up else "behind"
                log.info("partition %s[%d]: %s", lane.topic, lane.partition, state)
            self.caught_up[lane] = caught_up
            now = self.clocks.now(lane, caught_up=caught_up)
            self.metrics.set_clock_mode(lane.topic, lane.partition, self.clocks.mode(lane))
            if now <= 0:
                continue  # behind, and no event read yet: nothing proves time has moved
            index = self.index.get(lane)
            if index is None:
                continue
            for key in index.pop_due(now):
                await self.timeouts.send(
                    key=key.encode(), value=str(now).encode(), partition=lane.partition
                )
            if self._busy():  # a rebalance began while we were sending: stop here
                return

    def _is_caught_up(self, tp: TP) -> bool:
        """True when the input partition has nothing left to read (lag 0), by the fetch high
        watermark (exact on Kafka and on Tansu, unlike ListOffsets there)."""
        consumer = self.app.consumer
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not (yet) assigned or fetched
            highwater = None
        if highwater is None:
            return False
        committed = getattr(consumer, "_committed_offset", {})
        done = self.processed.get(tp)
        if done is not None:
            position = done + 1
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

    async def _sweep(self) -> None:
        """Sends a retention check for every finished subject past its retention."""
        if self._busy():
            return
        for lane in sorted(self.active):
            now = self.clocks.peek(lane)
            if now is None or now <= 0:
                continue
            for key, value, partition in self._items({lane.partition}):
                if self._lane(key, partition) != lane:
                    continue
                if self.engine.is_expired(SubjectState.from_bytes(value), now):
                    await self.timeouts.send(key=key, value=str(now).encode(), partition=partition)

    # -- rebalancing ----------------------------------------------------------------------

    def _input_partitions(self, tps: Iterable[TP]) -> set[TP]:
        inputs = set(self.settings.input_topics)
        return {TP(tp.topic, tp.partition) for tp in tps if tp.topic in inputs}

    async def _on_revoked(self, sender: Any, revoked: Iterable[TP], **_: Any) -> None:
        """Stops the timers and forgets revoked partitions (their new owner rebuilds them)."""
        self.ready = False
        gone = self._input_partitions(revoked)
        for lane in gone:
            self.index.pop(lane, None)
            self.active.discard(lane)
            self.caught_up.pop(lane, None)
            self.processed.pop(lane, None)
            self.metrics.forget_partition(lane.partition)
        self.clocks.forget(gone)

    async def _on_rebalance_complete(self, sender: Any, **_: Any) -> None:
        """After recovery: rebuild the deadline index from the assigned partitions' records."""
        faust_fixes.drain_on_flush(self.app)
        assigned = self._input_partitions(self.app.consumer.assignment())
        for lane in set(self.index) - assigned:
            self.index.pop(lane, None)
        self.clocks.forget(self.clocks.partitions() - assigned)
        fresh = {lane: DeadlineIndex() for lane in assigned}
        numbers = {lane.partition for lane in assigned}
        count = 0
        for key, value, partition in self._items(numbers):
            due = SubjectState.from_bytes(value).next_due
            lane = self._lane(key, partition)
            if due is not None and lane in fresh:
                fresh[lane].schedule(key.decode(), due)
                count += 1
        self.index = fresh
        self.active = assigned
        self._forget_unassigned_memory_keys(numbers)
        self.metrics.set_open_timers(count)
        self.ready = True
        log.info("deadline index rebuilt: %d pending over partitions %s", count, sorted(numbers))

    def _items(self, partitions: set[int]) -> Iterator[tuple[bytes, bytes, int]]:
        """``(key, record, partition)`` of the table's records on ``partitions``."""
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
            where = self.key_partition.get(key, recovered.get(key))
            if where is not None and where in partitions and value is not None:
                yield key, value, where

    def _forget_unassigned_memory_keys(self, assigned: set[int]) -> None:
        # The memory store keeps keys it wrote live for partitions later revoked; drop them
        # locally (not through the table, which would write tombstones to the changelog).
        store: Any = self.table.data
        if getattr(store, "_dbs", None) is not None:
            return
        recovered = getattr(store, "_key_partition", {})
        for key in list(store.data):
            partition = self.key_partition.get(key, recovered.get(key))
            if partition is not None and partition not in assigned:
                store.data.pop(key, None)
                self.key_partition.pop(key, None)

    def _index(self, lane: TP) -> DeadlineIndex:
        index = self.index.get(lane)
        if index is None:
            index = self.index[lane] = DeadlineIndex()
        return index
