"""The worker's second stage (issue 8): contract 002 6.2 escalations, and the ``agents`` input.

Who calls what: :func:`monitor.live.app.create_app` calls :func:`register_escalation_stage`
once with its :class:`~monitor.live.app.SlaWorker`; that adds three Faust agents and one table
to the same app. Faust then calls, for each message:

* :meth:`EscalationStage._rekey` for ``sla.outcomes`` (``met``, ``breach``) and
  ``sla.breaches`` (``retraction``; its breaches are the outcomes' copies): forwards the fact's
  bytes unchanged to the internal ``sla.accounting`` topic **keyed by tenant**, only for the
  metrics a policy's 6.2 rules count;
* :meth:`EscalationStage._escalate` for ``sla.accounting``: reads the tenant's
  :class:`~monitor.accounting.escalation.TenantState` from the ``tenants`` table, applies the
  fact (:class:`~monitor.accounting.escalation.Escalator`, the same code replay runs with
  ``--escalations``), publishes each trip to ``sla.escalations`` (key tenant) and waits for the
  broker's acknowledgement, *then* stores the state, as the first stage does (a crash between
  the two re-emits the same ``escalation_id``/``fact_id``, never loses a trip);
* :meth:`EscalationStage._agent_status` for ``agents`` (key ``agent_id``): validates each
  ``agent.status`` event (:func:`monitor.validation.parse_agent_status`) and dead-letters
  invalid or mis-keyed ones with the reason, like every input. Valid events need no copy: the
  retained ``agents`` topic *is* the presence record that ``sla-monitor report kafka:`` reads
  (:mod:`monitor.accounting.kafka_source`, which skips, and counts, what was dead-lettered).

Why the internal topic: a Faust table is sharded like its changelog, and a write goes to the
changelog partition of the message being processed. The first stage's facts are keyed by
subject id, so one tenant's facts sit on every partition of ``sla.outcomes``; a table keyed by
tenant updated from there would write one tenant's record into several changelog partitions,
and after a rebalance two workers would each hold a different half of it. Re-keying through a
topic with the table's partition count puts all of a tenant's facts on one partition, owned
by one worker, next to its changelog partition: the ``group_by``/``through`` pattern of Faust,
written out as an explicit topic so ``sla-monitor topics`` creates and checks it
(:meth:`monitor.live.config.Settings.copartitioned_topics`) instead of Faust inventing a name.

Order: replay applies facts in detection order. Live, one tenant's facts reach the stage in the
order the re-keying agent read them: each first-stage partition's order, interleaved, and with
a backlog the partitions can be days apart (10 days measured, the known month on 4
partitions). So each re-keyed fact carries its ``sla.outcomes`` partition (header ``lane``),
and a ``slow_days`` day closes only once every partition has moved past it (up to the
policy's ``partition_patience``, see ``_watermark`` in :mod:`monitor.accounting.escalation`):
the day's figures are then replay's. A retraction may arrive before its breach (different
topics): both rules handle either order. What arrival order still decides is which breaches
make up each ``breach_count`` trip's evidence (ids and number of trips are replay's, unless a
retraction arrives only after its breach was counted into a trip: a trip made stands).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson

from monitor.accounting.escalation import Escalator, TenantState
from monitor.accounting.facts import InvalidFact, fact_from_dict
from monitor.errors import InvalidEvent, Reason
from monitor.events import AGENT_STATUS
from monitor.sla_event import Kind
from monitor.validation import parse_agent_status

if TYPE_CHECKING:
    from monitor.live.app import SlaWorker

log = logging.getLogger(__name__)

# Which kinds each first-stage topic contributes: a breach is on both, taken from outcomes
# (with its met, in order on one partition); sla.breaches adds only the retractions.
_WANTED = {"outcomes": frozenset({Kind.MET.value, Kind.BREACH.value})}
_RETRACTION = frozenset({Kind.RETRACTION.value})
LANE_HEADER = "lane"
# Table keys: tenant, this separator, then the record's name (monitor.accounting.
# escalation_state). A bare tenant key is the first version's one-blob state: ignored.
KEY_SEP = b"\x1f"


def _lane(message: Any) -> str:
    """The ``lane`` header _rekey set (Faust hands headers over as a list or a mapping)."""
    headers = message.headers or ()
    items = headers.items() if hasattr(headers, "items") else headers
    for name, value in items:
        if name == LANE_HEADER:
            return bytes(value).decode()
    return ""


async def _yield() -> None:
    """Lets the event loop run the first stage and its deadline tick between two of this
    stage's messages. Faust hands a queued message over without suspending, so an agent with
    a backlog (a worker catching up) otherwise runs message after message while ticks wait:
    measured, breach detection p99 from 0.6 s to no breach at all within 38 s of its deadline
    (`bench --live --kafka`, this stage catching up on the backlog's facts)."""
    await asyncio.sleep(0)


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
            s.tenant_table_name, default=None, key_type=bytes, value_type=bytes, partitions=n
        )
        facts = app.topic(
            s.topic_outcomes,
            s.topic_breaches,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.accounting = _raw_topic(app, s.topic_accounting, n)
        self.escalations = _raw_topic(app, s.topic_escalations)
        agents = _raw_topic(app, s.topic_agents)
        app.agent(facts, name=f"{s.app_id}.rekey", concurrency=1)(self._rekey)
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

    async def _rekey(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                await self._forward(message)
            except Exception as exc:  # a bug must not stop the partition: log, dead-letter
                log.exception(
                    "failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                await self._dead_letter(message, f"internal error: {exc!r}", Reason.INTERNAL)
            await _yield()

    async def _forward(self, message: Any) -> None:
        raw = message.value
        if raw is None:
            return  # nothing the first stage writes; a tombstone from elsewhere
        try:
            obj = orjson.loads(raw)
            kind, policy, metric, tenant = obj["kind"], obj["policy"], obj["metric"], obj["tenant"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            await self._dead_letter(message, f"not an SLA fact: {exc!r}", Reason.SCHEMA)
            return
        wanted = (
            _WANTED["outcomes"] if message.topic == self.settings.topic_outcomes else (_RETRACTION)
        )
        if kind not in wanted:
            return
        found = self.escalator.rules_of(str(policy))
        if found is None or metric not in found[1].metrics:
            return
        if not isinstance(tenant, str) or not tenant:
            await self._dead_letter(
                message, f"tenant: {tenant!r} is not a tenant name", Reason.SCHEMA
            )
            return
        # Not awaited one by one: nothing is stored here, and Faust flushes the producer
        # before it commits the input offsets (at-least-once; repeats are de-duplicated).
        # The lane: which first-stage partition's ordered stream the fact belongs to, so the
        # stage can close a day only once every partition has moved past it (_watermark in
        # monitor.accounting.escalation). Retractions move no lane.
        lane = str(message.partition) if kind != Kind.RETRACTION.value else ""
        await self.accounting.send(
            key=tenant.encode(), value=raw, headers=[(LANE_HEADER, lane.encode())]
        )
        self.stats["rekeyed"] += 1

    # -- stage 2b: one tenant's 6.2 state, in the tenants table ---------------------------

    async def _escalate(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                await self._apply(message)
            except Exception as exc:
                log.exception(
                    "failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                await self._dead_letter(message, f"internal error: {exc!r}", Reason.INTERNAL)
            await _yield()

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
