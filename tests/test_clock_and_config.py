"""Unit tests of the live worker's pure parts: the hybrid clock and the settings loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.live.clock import ClockMode, PartitionClocks
from monitor.live.config import Settings, load_settings
from monitor.metrics import CLOCK_MODES
from monitor.timeutil import Micros

S = 1_000_000


class FakeWall:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> Micros:
        return Micros(self.now)


def test_caught_up_partition_follows_the_wall_clock_with_no_traffic() -> None:
    wall = FakeWall(100 * S)
    clocks: PartitionClocks[int] = PartitionClocks(Micros(5 * S), wall)
    assert clocks.now(0, caught_up=True) == 100 * S
    wall.now = 160 * S
    assert clocks.now(0, caught_up=True) == 160 * S
    assert clocks.mode(0) == "wall"


def test_caught_up_time_runs_no_further_than_the_last_fetch_response() -> None:
    """A network cut: the stale high watermark says "caught up", but only the instant of the
    broker's last answer is vouched for; the answers sent since wait beyond the cut."""
    wall = FakeWall(100 * S)
    clocks: PartitionClocks[int] = PartitionClocks(Micros(5 * S), wall)
    assert clocks.now(0, caught_up=True, heard=100 * S) == 100 * S
    wall.now = 130 * S  # 30 s into the cut: still the last response's instant
    assert clocks.now(0, caught_up=True, heard=101 * S) == 101 * S
    assert clocks.mode(0) == "wall"
    wall.now = 140 * S  # the link is back: the next response vouches up to its own instant
    assert clocks.now(0, caught_up=True, heard=139 * S) == 139 * S
    assert clocks.now(0, caught_up=True, heard=150 * S) == 140 * S  # never past the wall
    assert clocks.now(0, caught_up=True, heard=90 * S) == 140 * S  # and never backwards


def test_records_in_flight_count_as_caught_up_only_as_of_the_last_fetch_response() -> None:
    wall = FakeWall(1_000 * S)
    clocks: PartitionClocks[int] = PartitionClocks(Micros(5 * S), wall)
    clocks.observe(0, 997 * S)  # read 3 s ago, then the link went silent at 998 s
    assert clocks.now(0, caught_up=False, heard=998 * S) == 998 * S


def test_lagging_partition_uses_event_time_minus_grace() -> None:
    wall = FakeWall(1_000 * S)  # an outage: the backlog is far behind the wall clock
    clocks: PartitionClocks[int] = PartitionClocks(Micros(5 * S), wall)
    clocks.observe(3, 100 * S)
    assert clocks.now(3, caught_up=False) == 95 * S
    clocks.observe(3, 90 * S)  # out of order: event time does not go back
    assert clocks.now(3, caught_up=False) == 95 * S
    assert clocks.mode(3) == "event"


def test_records_in_flight_on_a_live_partition_are_not_a_backlog() -> None:
    wall = FakeWall(1_000 * S)
    clocks: PartitionClocks[int] = PartitionClocks(Micros(5 * S), wall)
    clocks.observe(0, 997 * S)  # lag > 0, but what was just read is 3 s old: live traffic
    assert clocks.now(0, caught_up=False) == 1_000 * S
    assert clocks.mode(0) == "wall"
    wall.now = 1_010 * S  # the same partition, now 13 s behind its newest record: a backlog
    assert clocks.now(0, caught_up=False) == 1_000 * S  # holds (never backwards), no wall
    assert clocks.mode(0) == "event"


def test_clock_never_moves_backwards_when_a_partition_falls_behind() -> None:
    wall = FakeWall(500 * S)
    clocks: PartitionClocks[int] = PartitionClocks(Micros(5 * S), wall)
    clocks.observe(1, 499 * S)
    assert clocks.now(1, caught_up=True) == 500 * S
    clocks.observe(1, 480 * S)
    assert clocks.now(1, caught_up=False) == 500 * S


def test_behind_with_no_event_read_proves_nothing() -> None:
    clocks: PartitionClocks[int] = PartitionClocks(Micros(5 * S), FakeWall(10 * S))
    assert clocks.now(2, caught_up=False) is None
    assert clocks.peek(2) is None  # nothing handed out: 0 is no instant the timers may use
    assert clocks.mode(2) is ClockMode.EVENT


def test_clock_modes_are_the_metric_label_values() -> None:
    assert sorted(ClockMode) == sorted(CLOCK_MODES)


def test_event_time_ahead_of_the_wall_clock_still_drives_timers() -> None:
    clocks: PartitionClocks[int] = PartitionClocks(Micros(1 * S), FakeWall(10 * S))
    clocks.observe(0, 60 * S)  # the demo's fast-forwarded traffic
    assert clocks.now(0, caught_up=True) == 59 * S


def test_forget_drops_a_revoked_partition() -> None:
    clocks: PartitionClocks[int] = PartitionClocks(Micros(0), FakeWall(10 * S))
    clocks.observe(4, 50 * S)
    clocks.now(4, caught_up=False)
    clocks.forget([4])
    assert clocks.peek(4) is None
    assert clocks.now(4, caught_up=False) is None


def test_settings_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sla.toml"
    path.write_text('broker = "file:9092"\npartitions = 3\ntopic_chat = "from-file"\n')
    env = {"SLA_PARTITIONS": "6", "SLA_EVENT_TIME_GRACE": "2.5", "SLA_POLICIES": ""}
    settings = load_settings(str(path), env, overrides={"broker": "cli:9092"})
    assert settings.broker == "cli:9092"
    assert settings.partitions == 6
    assert settings.topic_chat == "from-file"
    assert settings.event_time_grace == 2.5
    assert settings.policies is None
    assert settings.broker_url == "kafka://cli:9092"


def test_settings_reject_typos_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "sla.toml"
    path.write_text("partitons = 3\n")
    with pytest.raises(ConfigError, match="partitons"):
        load_settings(str(path), {})
    with pytest.raises(ConfigError, match="SLA_PARTITIONS"):
        load_settings(None, {"SLA_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="processing_guarantee"):
        Settings(processing_guarantee="at_most_once")
    with pytest.raises(ConfigError, match="distinct"):
        Settings(topic_breaches="same", topic_warnings="same")
    with pytest.raises(ConfigError, match="SLA_ESCALATION_STAGE: expected true or false"):
        load_settings(None, {"SLA_ESCALATION_STAGE": "maybe"})
    with pytest.raises(ConfigError, match="'exactly_once' is not offered"):
        Settings(processing_guarantee="exactly_once")


def test_switches_read_from_the_environment() -> None:
    assert load_settings(None, {"SLA_ESCALATION_STAGE": "yes"}).escalation_stage is True
    assert load_settings(None, {"SLA_ESCALATION_STAGE": "False"}).escalation_stage is False
    assert load_settings(None, {}).escalation_stage is True  # the default (config.py says why)


def test_settings_survive_the_environment_round_trip() -> None:
    settings = Settings(
        broker="b:1", partitions=3, policies="/p", tick_interval=0.1, producer_acks=1,
        sasl_mechanism="PLAIN", sasl_username="u", escalation_stage=True,
    )  # fmt: skip
    env = settings.to_env()
    assert env["SLA_PARTITIONS"] == "3"
    assert "SLA_SSL_CAFILE" not in env  # unset stays unset
    assert load_settings(None, env) == settings


def test_namespaced_settings_prefix_the_group_and_every_topic() -> None:
    settings = Settings.namespaced("t1", partitions=2)
    assert settings.app_id == "t1-app"
    assert settings.topic_chat == "t1.chat.sessions"
    assert all(t.startswith("t1") for t in settings.all_topics())
    assert settings.partitions == 2


def test_copartitioned_topics_include_the_changelog() -> None:
    settings = Settings(app_id="x")
    assert settings.changelog_topic == "x-subjects-changelog"
    assert settings.changelog_topic in settings.copartitioned_topics()
    assert settings.topic_timeouts in settings.copartitioned_topics()


def test_the_escalation_stage_topics_are_created_and_its_table_is_copartitioned() -> None:
    """Issue 8: a tenant's re-keyed facts and its escalation record share partition N."""
    settings = Settings(app_id="x")
    assert settings.tenant_changelog_topic == "x-tenants-changelog"
    for name in (settings.topic_accounting, settings.tenant_changelog_topic):
        assert name in settings.copartitioned_topics()
    for name in (settings.topic_agents, settings.topic_escalations, settings.topic_accounting):
        assert name in settings.all_topics()
        assert name not in settings.input_topics  # the first stage's agent never reads them
