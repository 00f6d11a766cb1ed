"""Settings of the live worker: environment variables and/or a TOML config file.

Who calls what: :mod:`monitor.live.cli` builds one :class:`Settings` with :func:`load_settings`
(``--config FILE`` or ``SLA_CONFIG``, then ``SLA_*`` environment variables, then command-line
overrides) and hands it to :func:`monitor.live.app.create_app`, :mod:`monitor.live.topics` and
the demo. Tests build ``Settings(...)`` directly.

Precedence, lowest first: the defaults below, the config file, the environment, explicit
overrides. Every field has one environment variable, ``SLA_`` + the field name in upper case
(``SLA_BROKER``, ``SLA_TOPIC_CHAT``, ``SLA_PARTITIONS``...), and one key of the same name in
the file's top-level table, so the README can document both in one list. Durations are seconds
(floats).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError

ENV_PREFIX = "SLA_"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
GUARANTEES = ("at_least_once", "exactly_once")


@dataclass(frozen=True)
class Settings:
    """Everything the worker, ``topics`` and ``demo`` need to know. Defaults suit production
    against a local Kafka; tests and the demo shorten the timings."""

    # -- the broker ---------------------------------------------------------------------
    broker: str = "localhost:9092"  # host:port[,host:port...]; a kafka:// prefix is accepted
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    # -- topics -------------------------------------------------------------------------
    app_id: str = "sla-monitor"  # the consumer group; prefixes the changelog topic
    topic_chat: str = "chat.sessions"
    topic_tickets: str = "tickets"
    topic_breaches: str = "sla.breaches"
    topic_warnings: str = "sla.warnings"
    topic_outcomes: str = "sla.outcomes"
    topic_deadletter: str = "sla.deadletter"
    topic_timeouts: str = "sla.timeouts"  # internal: timer firings, co-partitioned
    topic_agents: str = "agents"  # issue 8: agent.status input (key agent_id)
    topic_escalations: str = "sla.escalations"  # issue 8: 002 6.2 escalation facts
    # issue 8, internal: met/breach/retraction facts re-keyed by tenant, co-partitioned with
    # the escalation stage's table (monitor.live.escalation_agent says why it exists)
    topic_accounting: str = "sla.accounting"
    partitions: int = 8
    replication_factor: int = 1

    # -- the engine and the store -------------------------------------------------------
    policies: str | None = None  # file or directory; None = the bundled deploy/policies
    store: str = "rocksdb://"  # or memory:// (tests: state then lives in the changelog only)
    data_dir: str = "sla-monitor-data"
    # RocksDB's memory, per table partition (each is a database of its own): memtables of
    # `rocksdb_write_buffer_mib`, at most `rocksdb_write_buffers` of them, and a block cache of
    # `rocksdb_block_cache_mib`. Kafka Streams' defaults for a state store. Faust's own (64 MiB
    # memtables x 3 and a 2 GiB cache, per partition) put no useful bound on a worker: a soak
    # at 10 sessions/s grew +0.81 MiB/min with them, +0.05 with memtables small enough to
    # flush within the run (BENCHMARKS.md, "Soak: RocksDB's memory"). Memtables take memory
    # as they fill and the cache as blocks are read: a small table (the escalation stage's)
    # costs far less than this.
    rocksdb_write_buffer_mib: int = 16
    rocksdb_write_buffers: int = 3
    rocksdb_block_cache_mib: int = 50
    metrics_port: int = 9108  # 0 disables the Prometheus endpoint
    log_level: str = "info"

    # -- delivery -----------------------------------------------------------------------
    processing_guarantee: str = "at_least_once"  # exactly_once is refused (see __post_init__)
    producer_max_batch_size: int = 16384
    # Read a partition's end from the fetch high watermark, not ListOffsets alone: on for the
    # embedded Tansu broker, whose ListOffsets is wrong for multi-record batches
    # (monitor.live.end_offsets says why and what it cost before).
    end_offsets_by_fetch: bool = False
    producer_acks: int = -1  # -1 = all in-sync replicas
    # The 002 6.2 escalation stage (monitor.live.escalation_agent) in this worker. On by default
    # since its state is small records and it is paced (escalation_agent.PACE): measured on
    # Kafka under a backlog, detection p99 0.48 s on against 0.31 s off (first version: 8.6 s),
    # and nothing measurable with steady traffic (BENCHMARKS.md). SLA_ESCALATION_STAGE=false
    # leaves 6.2 escalations to `replay --escalations`; the report is unaffected.
    escalation_stage: bool = True
    batch_max: int = 1000  # records handled, published and stored together (fewer when idle)
    # Longest a batch waits for more records when none is waiting (seconds; 0 = never wait).
    # The agent takes what is waiting (monitor.live.direct_delivery), but on a backlog the
    # next fetch is often a moment away: without a wait batches held 1-4 records and every
    # record paid a table write and a produce request of its own (BENCHMARKS.md, issue 7).
    # Bounded by tick_interval in the delay it adds.
    batch_linger: float = 0.02
    batches_in_flight: int = 32  # handled batches waiting for their deliveries
    producer_linger: float = 0.005  # seconds a produce request waits to gather more records

    # -- time ---------------------------------------------------------------------------
    tick_interval: float = 0.25  # how often each worker checks its deadlines (p99 detection ≤ 1 s)
    event_time_grace: float = 5.0  # event-time clock = newest occurred_at - grace
    retention_interval: float = 300.0  # how often finished subjects are swept out
    rebalance_timeout: float = 60.0
    session_timeout: float = 30.0
    heartbeat_interval: float = 3.0
    commit_interval: float = 2.8
    fetch_max_wait: float = 0.5  # longest wait for fetch data (Kafka's default; Tansu: 0.05)
    connect_timeout: float = 60.0  # start-up gives up when no broker answers for this long

    def __post_init__(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                f"not {self.security_protocol!r}"
            )
        if self.sasl_mechanism is not None and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}, "
                f"not {self.sasl_mechanism!r}"
            )
        if self.processing_guarantee not in GUARANTEES:
            raise ConfigError(
                f"processing_guarantee must be one of {', '.join(GUARANTEES)}, "
                f"not {self.processing_guarantee!r}"
            )
        if self.processing_guarantee == "exactly_once":
            # Faust 0.15.3's transactional mode lost and repeated facts across worker crashes
            # on Kafka 4.1.1 even with three of its faults fixed (monitor.live.faust_fixes).
            raise ConfigError(
                "processing_guarantee 'exactly_once' is not offered: Faust's transactional mode "
                "loses and repeats facts when a worker crashes (README, 'Delivery'); use "
                "at_least_once and de-duplicate on fact_id downstream"
            )
        if self.batch_max < 1 or self.batches_in_flight < 1:
            raise ConfigError("batch_max and batches_in_flight must be at least 1")
        if not 0 <= self.batch_linger <= 1:
            raise ConfigError(f"batch_linger must be 0 to 1 second, not {self.batch_linger}")
        if self.partitions < 1 or self.replication_factor < 1:
            raise ConfigError("partitions and replication_factor must be at least 1")
        if not self.store.startswith(("rocksdb://", "memory://")):
            raise ConfigError(f"store must be rocksdb:// or memory://, not {self.store!r}")
        if self.rocksdb_write_buffer_mib < 1 or self.rocksdb_block_cache_mib < 1:
            raise ConfigError(
                "rocksdb_write_buffer_mib and rocksdb_block_cache_mib must be at least 1"
            )
        if self.rocksdb_write_buffers < 2:  # with one, every flush stalls the table's writes
            raise ConfigError(
                f"rocksdb_write_buffers must be at least 2 (one is written while another is "
                f"flushed to disk), not {self.rocksdb_write_buffers}"
            )
        names = self.all_topics()
        if len(set(names)) != len(names):
            raise ConfigError(f"topic names must be distinct: {', '.join(names)}")
        for name in (
            "tick_interval", "rebalance_timeout", "session_timeout", "fetch_max_wait",
            "connect_timeout",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.event_time_grace < 0:
            raise ConfigError("event_time_grace must not be negative")

    # -- views used by the app and the topics command ------------------------------------

    def table_options(self) -> dict[str, int]:
        """The options of every table's store (``app.Table(options=...)``): RocksDB's memory
        bounds, ignored by ``memory://``. A new dict each call: Faust's RocksDB store pops
        keys from the one it is given."""
        mib = 1024 * 1024
        return {
            "write_buffer_size": self.rocksdb_write_buffer_mib * mib,
            "max_write_buffer_number": self.rocksdb_write_buffers,
            "block_cache_size": self.rocksdb_block_cache_mib * mib,
        }

    @property
    def bootstrap_servers(self) -> str:
        """``host:port,...`` for aiokafka (the admin client, test producers)."""
        return ",".join(
            part.removeprefix("kafka://").strip() for part in self.broker.split(",") if part
        )

    @property
    def broker_url(self) -> str:
        """``kafka://host:port;host:port`` for Faust."""
        return ";".join(f"kafka://{host}" for host in self.bootstrap_servers.split(","))

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.topic_chat, self.topic_tickets)

    @property
    def output_topics(self) -> tuple[str, str, str, str]:
        return (
            self.topic_breaches,
            self.topic_warnings,
            self.topic_outcomes,
            self.topic_deadletter,
        )

    @property
    def table_name(self) -> str:
        return "subjects"

    @property
    def changelog_topic(self) -> str:
        """Faust's name for the table's changelog: ``<app id>-<table>-changelog``."""
        return f"{self.app_id}-{self.table_name}-changelog"

    @property
    def tenant_table_name(self) -> str:
        """The escalation stage's table (one 6.2 state per tenant, issue 8)."""
        return "tenants"

    @property
    def tenant_changelog_topic(self) -> str:
        return f"{self.app_id}-{self.tenant_table_name}-changelog"

    @property
    def report_topics(self) -> tuple[str, ...]:
        """What ``sla-monitor report kafka:`` reads from the beginning: kept for months. The
        chat input too: its bot and system messages decide the ``bot_only`` breach cause; and
        the ticket input, whose tickets, ratings and ``channel.status`` events the KPIs of
        004 3.3-3.5 are measured from (session ratings are on the chat input)."""
        return (
            self.topic_chat,
            self.topic_tickets,
            self.topic_outcomes,
            self.topic_breaches,
            self.topic_escalations,
            self.topic_agents,
        )

    @classmethod
    def namespaced(cls, prefix: str, **fields: Any) -> Settings:
        """Settings whose consumer group and every topic name start with ``prefix``: an
        isolated deployment on a shared broker (tests, benchmarks, a staging tenant)."""
        defaults = cls()
        topics = {
            f.name: f"{prefix}.{getattr(defaults, f.name)}"
            for f in dataclasses.fields(cls)
            if f.name.startswith("topic_")
        }
        return cls(**{"app_id": f"{prefix}-app", **topics, **fields})

    def to_env(self) -> dict[str, str]:
        """These settings as ``SLA_*`` environment variables (unset fields left out), for
        starting a worker process with exactly them; :func:`load_settings` reads them back."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[ENV_PREFIX + f.name.upper()] = str(value)
        return env

    def all_topics(self) -> tuple[str, ...]:
        """Every topic the worker reads or writes; ``topics`` creates exactly these."""
        return (
            *self.input_topics,
            self.topic_timeouts,
            *self.output_topics,
            self.changelog_topic,
            # issue 8: agent presence in, the escalation stage's topics
            self.topic_agents,
            self.topic_accounting,
            self.topic_escalations,
            self.tenant_changelog_topic,
        )

    def copartitioned_topics(self) -> tuple[str, ...]:
        """Topics whose partition count must equal ``partitions``: a subject's input events,
        its timer firings and its table record all live on partition N of their topics; and
        a tenant's re-keyed facts and its escalation record (issue 8) likewise."""
        return (
            *self.input_topics,
            self.topic_timeouts,
            self.changelog_topic,
            self.topic_accounting,
            self.tenant_changelog_topic,
        )

    def aiokafka_security(self) -> dict[str, Any]:
        """Security keyword arguments for aiokafka clients (admin, producers, consumers)."""
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context  # noqa: PLC0415 - heavy import

            out["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        if self.security_protocol.startswith("SASL_"):
            out["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            out["sasl_plain_username"] = self.sasl_username
            out["sasl_plain_password"] = self.sasl_password
        return out

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def load_settings(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < config file (``config_file`` or ``$SLA_CONFIG``) < ``SLA_*`` < overrides.

    Raises ConfigError naming the key for an unknown key or an unparsable value, so a typo in
    a deployment fails at start-up instead of silently running with a default.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        values.update(_read_file(path))
    known = {f.name: f for f in fields(Settings)}
    for name, spec in known.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(ENV_PREFIX + name.upper(), raw, spec.type)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return Settings(**values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


def _read_file(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    known = {f.name: f for f in fields(Settings)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        out[key] = _coerce(f"{path}: {key}", value, known[key].type)
    return out


def _coerce(where: str, raw: object, annotation: object) -> object:
    """Converts an environment string (or a TOML value) to the field's type."""
    kind = str(annotation)
    if raw == "" and "None" in kind:
        return None
    if kind.startswith("bool"):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    try:
        if kind.startswith("int"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)  # type: ignore[call-overload]
        if kind.startswith("float"):
            return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: expected a string, got {raw!r}")
    return raw
