"""``sla-monitor topics``: create every topic with the configured partitions, check the rest.

Who calls what: :func:`monitor.live.cli.cmd_topics` (the one-shot ``topics`` service of
``docker-compose.yml``), the demo and the test session call :func:`ensure_topics` before any
worker starts.

Why the check matters: a Faust table is only correct when a subject's input events, its timer
firings and its changelog record share one partition number, so the input topics, the timeouts
topic and the changelog must all have exactly ``partitions`` partitions. A mismatch is an error
(exit code 2), never "fixed" by adding partitions: that would move existing keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from monitor.errors import ConfigError
from monitor.live.config import Settings
from monitor.live.preflight import check_broker

# Topic-level configs. The changelog is compacted (Faust's default for tables): only the last
# record per key matters. Timer firings are worthless after a day: the index is rebuilt from
# the table anyway.
_DAY_MS = 24 * 3600 * 1000
# What `sla-monitor report kafka:` reads from the beginning must outlive the month it reports
# on plus the 5 working days of 002 3.3: Kafka's default retention (7 days) would silently
# give a report of the last week only. 100 days covers the previous month with room for a
# late report; operators wanting a year of history raise it on the topics themselves.
_REPORT_RETENTION_MS = 100 * _DAY_MS


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    configs = {
        name: {"cleanup.policy": "delete", "retention.ms": str(_REPORT_RETENTION_MS)}
        for name in settings.report_topics
    }
    configs.update(
        {
            settings.changelog_topic: {"cleanup.policy": "compact"},
            settings.tenant_changelog_topic: {"cleanup.policy": "compact"},  # issue 8
            settings.topic_timeouts: {"cleanup.policy": "delete", "retention.ms": str(_DAY_MS)},
        }
    )
    return configs


@dataclass
class TopicReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created {name}" for name in self.created]
        out += [f"ok      {name}" for name in self.existing]
        out += [f"ERROR   {problem}" for problem in self.problems]
        return out


async def ensure_topics(
    settings: Settings, *, create: bool = True, timeout: float = 30.0
) -> TopicReport:
    """Creates the missing topics (unless ``create`` is false) and checks existing ones.

    Raises ConfigError when a co-partitioned topic has the wrong partition count (or any topic
    is missing with ``create=False``); the report then lists every problem, not just the first.
    """
    report = TopicReport()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=int(timeout * 1000),
        **settings.aiokafka_security(),
    )
    await check_broker(settings, timeout)
    await admin.start()
    try:
        wanted = settings.all_topics()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing and create:
            configs = topic_configs(settings)
            new = [
                NewTopic(
                    name,
                    num_partitions=settings.partitions,
                    replication_factor=settings.replication_factor,
                    topic_configs=configs.get(name, {}),
                )
                for name in missing
            ]
            response = await admin.create_topics(new)
            for name, code, message in _errors(response):
                # Another process (a second worker, a re-run) may have won the race.
                if code not in (0, TopicAlreadyExistsError.errno):
                    report.problems.append(f"{name}: cannot create (error {code}: {message})")
                elif code == 0:
                    report.created.append(name)
        elif missing:
            report.problems += [f"{name}: missing" for name in missing]
        check = [n for n in wanted if create or n not in missing]
        counts = await _partition_counts(admin, check, timeout) if check else {}
        for name in check:
            count = counts.get(name)
            if count is None:
                report.problems.append(f"{name}: not found after creation")
            elif name in settings.copartitioned_topics() and count != settings.partitions:
                report.problems.append(
                    f"{name}: has {count} partitions, {settings.partitions} configured "
                    "(input, timeouts and changelog topics must be co-partitioned)"
                )
            elif name not in report.created:
                report.existing.append(name)
    finally:
        await admin.close()
    if report.problems:
        raise ConfigError("; ".join(report.problems))
    return report


async def _partition_counts(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float
) -> dict[str, int]:
    """Partition count per topic, waiting (up to ``timeout``) for every one of them to appear.

    Kafka answers CreateTopics once the controller has the topics, before the broker's metadata
    cache does: a Describe straight after it missed all eight topics in one run of the suite.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(names)
        counts = {
            d["topic"]: len(d["partitions"])
            for d in described
            if d.get("error_code", 0) == 0 and d.get("partitions")
        }
        if len(counts) == len(names) or loop.time() >= deadline:
            return counts
        await asyncio.sleep(0.1)


def _errors(response: Any) -> list[tuple[str, int, str | None]]:
    out = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((name, code, message))
    return out
