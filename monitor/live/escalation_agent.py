"""The worker's second stage (issue 8): contract 002 6.2 escalations, and the ``agents`` input.

Who calls what: :func:`monitor.live.app.create_app` calls :func:`register_escalation_stage`
once with its :class:`~monitor.live.app.SlaWorker`; that adds two Faust agents and one table
to the same app, and hooks the worker's ``on_fact``. Then:

* the first stage calls :meth:`EscalationStage._forward` (its ``on_fact``) for every fact the
  broker has acknowledged, before it acknowledges the input: the ``met``, ``breach`` and
  ``retraction`` facts of the metrics a policy's 6.2 rules count go to the internal
  ``sla.accounting`` topic **keyed by tenant** (not awaited: Faust flushes the producer
  before it commits input offsets, so a crash repeats a fact, never loses one);
* Faust calls :meth:`EscalationStage._escalate` for ``sla.accounting``: applies the fact
  (:class:`~monitor.accounting.escalation.Escalator`, the same code replay runs with
  ``--escalations``) to the tenant's records in the ``tenants`` table, read on demand
  (:mod:`monitor.accounting.escalation_state`: a fact writes a few hundred bytes, not the
  tenant's whole state), publishes each trip to ``sla.escalations`` (key tenant) and waits
  for the broker's acknowledgement, *then* stores the changed records in the order
  :meth:`~monitor.accounting.escalation_state.TenantState.writes` gives, head before its
  buckets (a crash between the two re-emits the same ``escalation_id``/``fact_id``; a crash
  between two records is covered there, "Crashes"), never loses a trip;
* Faust calls :meth:`EscalationStage._agent_status` for ``agents`` (key ``agent_id``):
  validates each ``agent.status`` event (:func:`monitor.validation.parse_agent_status`) and
  dead-letters invalid or mis-keyed ones with the reason, like every input. Valid events need
  no copy: the retained ``agents`` topic *is* the presence record that ``sla-monitor report
  kafka:`` reads (:mod:`monitor.accounting.kafka_source`, which skips, and counts, what was
  dead-lettered).

Why the internal topic: a Faust table is sharded like its changelog, and a write goes to the
changelog partition of the message being processed. The first stage works per subject, so
one tenant's facts come from every partition; a table keyed by tenant written from there
would put one tenant's records into several changelog partitions, and after a rebalance two
workers would each hold a different half of them. Sending the facts through a topic keyed by
tenant, with the table's partition count, puts all of a tenant's facts on one partition,
owned by one worker, next to its changelog partition: the ``group_by``/``through`` pattern of
Faust, written out as an explicit topic so ``sla-monitor topics`` creates and checks it
(:meth:`monitor.live.config.Settings.copartitioned_topics`). The records' keys
(``tenant \x1f record``) are all written while a message of that tenant is handled, so
they share its partition whatever they are called.

Order: replay applies facts in detection order. Live, one tenant's facts reach the stage as
the first stage's partitions emit them, interleaved, and with a backlog the partitions can be
days apart (10 days measured, the known month on 4 partitions). So each fact carries its
first-stage partition (header ``lane``), and a ``slow_days`` day closes only once every
partition has moved past it (up to the policy's ``partition_patience``, see ``_watermark`` in
:mod:`monitor.accounting.escalation`): the day's figures are then replay's, whatever the
interleaving (a day's mean is an exact ``fsum``). A retraction follows its breach (one
partition emits both, in order). What the interleaving still decides is which breaches make
up each ``breach_count`` trip's evidence when breaches of different partitions race at a trip
boundary: the ids and the number of trips are replay's, the grouping of two consecutive trips
may differ. Grouping by deadline instead would need to hold every trip until all partitions
passed its deadline (up to ``partition_patience``, 2 days by default): a small tenant's
escalation would wait days, so the arrival order is kept, and documented.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from monitor.accounting.escalation import Escalator, TenantState
from monitor.accounting.facts import InvalidFact, fact_from_dict
from monitor.errors import InvalidEvent, Reason
from monitor.events import AGENT_STATUS
from monitor.sla_event import Kind, SlaEvent
from monitor.validation import parse_agent_status

if TYPE_CHECKING:
    from monitor.live.app import SlaWorker

log = logging.getLogger(__name__)

# What the 6.2 rules count: verdicts, and the retractions that undo breaches.
_FORWARDED = frozenset({Kind.MET, Kind.BREACH, Kind.RETRACTION})
# The partition a key goes to, as the producer picks it (Kafka's Java client's murmur2).
_PARTITIONER = DefaultPartitioner()
LANE_HEADER = "lane"
# After each fact the stage sleeps PACE times as long as the fact took: it takes at most a
# fifth of the event loop. Escalations are day-scale facts and may wait seconds; fresh breaches
# may not. Without it, a worker that caught up on a backlog left the stage storing the
# backlog's counted facts while new sessions' breaches waited behind it: `bench --live --kafka`
# detection p99 18.5 s with the stage on (0.51-0.65 s off); paced at a third (2.0), 0.40 s.
# Once the worker drained twice as fast, a third was too much on Tansu: `bench --live` p99 at
# half capacity 0.42-1.72 s at 2.0 (five runs), 0.42-0.48 s at 4.0 (three), 0.37-0.39 s with
# the stage off (BENCHMARKS.md).
PACE = 4.0
# ... of at most this long a fact: a fact takes milliseconds, so a longer time is the event loop
# standing still (a frozen process: the zombie of tests/live/test_faults_rebalance.py slept 18 s
# after a 9 s freeze, and its group's rebalance waited on that sleep: Faust's revocation waits
# for every record handed to an agent).
PACED_AT_MOST = 0.25
# Table keys: tenant, this separator, then the record's name (monitor.accounting.
# escalation_state). A bare tenant key is the first version's one-blob state: ignored.
KEY_SEP = b"\x1f"


def _lane(message: Any) -> str:
    """The ``lane`` header _forward set (Faust hands headers over as a list or a mapping)."""
    headers = message.headers or ()
    items = headers.items() if hasattr(headers, "items") else headers
    for name, value in items:
        if name == LANE_HEADER:
            return bytes(value).decode()
    return ""


def register_escalation_stage(worker: SlaWorker) -> EscalationStage:
    """Adds the escalation stage and the ``agents`` input to ``worker``'s Faust app."""
    return EscalationStage(worker)


class EscalationStage:
    """The agents, table and topics of the second stage (see the module doc)."""

    def __init__(self, worker: SlaWorker) -> None:
        from monitor.live.app import _raw_topic  # noqa: PLC0415 - app imports this module

        self.worker = worker
        s = self.settings = worker.settings
        app = worker.app
        # Every sla.outcomes partition is a lane (created with `partitions`, like all topics).
        lanes = [str(p) for p in range(worker.settings.partitions)]
        self.escalator = Escalator(worker.engine.policies, lanes)
        self.stats = {
            "rekeyed": 0,
            "facts": 0,
            "escalations": 0,
            "agent_statuses": 0,
            "records_written": 0,
            "bytes_written": 0,  # table keys and values: about 700 per fact at 20k a day
        }
        n = s.partitions
        self.table: Any = app.Table(
            s.tenant_table_name,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=n,
            options=s.table_options(),
        )
        self.accounting = _raw_topic(app, s.topic_accounting, n)
        self.escalations = _raw_topic(app, s.topic_escalations)
        agents = _raw_topic(app, s.topic_agents)
        # Stage 2a: the first stage hands each fact over once the broker has it (and before
        # it acknowledges the input that caused it: see _forward).
        previous = worker.on_fact

        def on_fact(fact: SlaEvent) -> None:
            self._forward(fact)
            if previous is not None:
                previous(fact)

        worker.on_fact = on_fact
        self._partitions = list(range(n))
        app.agent(self.accounting, name=f"{s.app_id}.escalate", concurrency=1)(self._escalate)
        app.agent(agents, name=f"{s.app_id}.agents", concurrency=1)(self._agent_status)

    async def _dead_letter(self, message: Any, reason: str, code: Reason) -> None:
        """As the first stage does: the original bytes and key, the reason in a header;
        ``code`` is the reason's label on ``sla_input_invalid_total``."""
        headers = [
            ("reason", reason.encode()),
            ("topic", str(message.topic).encode()),
            ("partition", str(message.partition).encode()),
            ("offset", str(message.offset).encode()),
        ]
        delivery = await self.worker.deadletter.send(
            key=message.key, value=message.value, headers=headers
        )
        await delivery
        self.worker.metrics.event_invalid(message.topic, reason, code)
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        log.warning("dead letter %s: %s", where, reason)

    # -- stage 2a: re-key the facts by tenant ---------------------------------------------

    def _forward(self, fact: SlaEvent) -> None:
        """Sends ``fact`` to ``sla.accounting`` keyed by its tenant, if a 6.2 rule counts it.

        Called by the first stage (its ``on_fact``) after the broker acknowledged the fact
        and before the input that caused it is acknowledged; not awaited: Faust flushes its
        producer before it commits input offsets, so a crash repeats the fact here, never
        loses it (repeats are de-duplicated by the rules). The first version read the facts
        back from ``sla.outcomes`` and ``sla.breaches``: every fact of every metric, and each
        breach twice, went through Faust again for the few the rules count. Measured with
        steady traffic (5 answered sessions/s and 400 breaches in 5 s, Kafka): detection p99
        1.3 s with the stage off, 3.9 s with that re-reading stage on."""
        if fact.kind not in _FORWARDED:
            return
        found = self.escalator.rules_of(fact.policy)
        if found is None or fact.metric not in found[1].metrics or not fact.tenant:
            return
        # The lane: which first-stage partition's ordered stream the fact belongs to (the
        # subject's partition, murmur2 of its id as for every topic here), so the stage
        # closes a day only once every partition has moved past it (_watermark in
        # monitor.accounting.escalation). Retractions move no lane.
        lane = ""
        if fact.kind is not Kind.RETRACTION:
            lane = str(_PARTITIONER(fact.subject_id.encode(), self._partitions, None))
        value = orjson.dumps(fact.to_dict(self.worker.engine.timezone_of(fact.policy)))
        self.accounting.send_soon(
            key=fact.tenant.encode(), value=value, headers=[(LANE_HEADER, lane.encode())]
        )
        self.stats["rekeyed"] += 1

    # -- stage 2b: one tenant's 6.2 state, in the tenants table ---------------------------

    async def _escalate(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            began = time.perf_counter()
            try:
                await self._apply(message)
            except Exception as exc:
                log.exception(
                    "failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                await self._dead_letter(message, f"internal error: {exc!r}", Reason.INTERNAL)
            await asyncio.sleep(PACE * min(time.perf_counter() - began, PACED_AT_MOST))

    async def _apply(self, message: Any) -> None:
        try:
            fact = fact_from_dict(orjson.loads(message.value))
        except (InvalidFact, orjson.JSONDecodeError, TypeError) as exc:
            await self._dead_letter(message, f"not an SLA fact: {exc}", Reason.SCHEMA)
            return
        key = fact.tenant.encode()
        if message.key != key:
            # Only _rekey writes here; another writer would split a tenant across partitions.
            await self._dead_letter(
                message,
                f"message key {message.key!r} is not the fact's tenant {fact.tenant!r}",
                Reason.MISROUTED,
            )
            return
        self.stats["facts"] += 1
        # The tenant's 6.2 state is many small records under ``tenant \x1f``: read on demand,
        # and only the few this fact changed are written (monitor.accounting.escalation_state).
        prefix = key + KEY_SEP
        state = TenantState(lambda name: self.table.get(prefix + name.encode()))
        trips = self.escalator.apply(state, fact, _lane(message))
        pending = []
        for trip in trips:
            value = orjson.dumps(trip.to_dict(self.worker.engine.timezone_of(trip.policy)))
            pending.append(await self.escalations.send(key=key, value=value))
        for delivery in pending:
            await delivery
        for name, raw in state.writes():  # after the broker has the trips: see the module doc
            table_key = prefix + name.encode()
            if raw is None:
                del self.table[table_key]  # writes() deletes only records it read
            else:
                self.table[table_key] = raw
            self.stats["records_written"] += 1
            self.stats["bytes_written"] += len(table_key) + len(raw or b"")
        for trip in trips:
            self.stats["escalations"] += 1
            self.worker.metrics.observe_escalation(trip.tenant, trip.rule)
            log.info(
                "escalation %s: tenant %s, %s #%d of %s, explanation due %s",
                trip.escalation_id, trip.tenant, trip.rule, trip.ordinal, trip.window,
                trip.explanation_due,
            )  # fmt: skip

    # -- the agents input -----------------------------------------------------------------

    async def _agent_status(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                await self._check_status(message)
            except Exception as exc:
                log.exception(
                    "failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                await self._dead_letter(message, f"internal error: {exc!r}", Reason.INTERNAL)

    async def _check_status(self, message: Any) -> None:
        raw = message.value
        if raw is None:
            await self._dead_letter(message, "empty message value (a tombstone?)", Reason.TOMBSTONE)
            return
        try:
            status = parse_agent_status(raw)
        except InvalidEvent as exc:
            await self._dead_letter(message, str(exc), exc.code)
            return
        if message.key != status.agent_id.encode():
            await self._dead_letter(
                message,
                f"message key {message.key!r} is not the agent id {status.agent_id!r} "
                "(an agent's events must share one partition, in order)",
                Reason.MISROUTED,
            )
            return
        self.stats["agent_statuses"] += 1
        self.worker.metrics.event_consumed(message.topic, AGENT_STATUS)
