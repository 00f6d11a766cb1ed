"""The worker's own guards against input loss, without a broker: the hole detector of the agent
and the fixes of :mod:`monitor.live.faust_fixes` (the live tests in tests/live/test_recovery.py show
the end-to-end effect: a SIGKILLed worker loses nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from monitor.engine import SlaEngine
from monitor.errors import ConfigError
from monitor.live import faust_fixes
from monitor.live.app import SlaWorker
from monitor.live.config import Settings
from monitor.metrics import SlaMetrics
from monitor.policy import load_policy_set


@pytest.fixture
def worker(tmp_path: Path) -> tuple[SlaWorker, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = Settings(broker="kafka://127.0.0.1:1", data_dir=str(tmp_path), store="memory://")
    metrics = SlaMetrics(registry, topics=settings.input_topics)
    return SlaWorker(settings, SlaEngine(load_policy_set(None)), metrics), registry


def test_a_hole_in_an_input_partition_is_counted_and_logged(
    worker: tuple[SlaWorker, CollectorRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    sla, registry = worker
    topic = sla.settings.topic_chat
    tp = TP(topic, 2)

    def skipped() -> float | None:
        return registry.get_sample_value("sla_input_skipped_offsets_total", {"topic": topic})

    assert skipped() == 0  # the series exists before the first hole
    for offset in (10, 11, 12):
        sla._advance(tp, offset)
    sla._advance(tp, 12)  # a redelivery is not a hole
    assert skipped() == 0
    sla._advance(tp, 16)
    assert skipped() == 3
    assert "13..15 never reached the worker" in caplog.text
    sla._advance(TP(topic, 3), 40)  # another partition's first record: nothing to compare
    assert skipped() == 3


def test_each_input_topic_partition_is_its_own_lane(
    worker: tuple[SlaWorker, CollectorRegistry],
) -> None:
    sla, _ = worker
    s = sla.settings
    assert sla._lane(b"c:S-1", 3) == TP(s.topic_chat, 3)
    assert sla._lane(b"t:T-1", 3) == TP(s.topic_tickets, 3)


async def test_fetch_uses_a_snapshot_and_skips_an_empty_set() -> None:
    app: Any = faust.App("fixes-test", broker="kafka://127.0.0.1:1")
    calls: list[set[TP]] = []

    async def fetch(active_partitions: set[TP] | None, timeout: float) -> dict[TP, list[int]]:
        assert active_partitions is not None
        seen = active_partitions
        calls.append(seen)
        live.clear()  # Faust pauses partitions while the fetch is in flight
        return {tp: [1] for tp in seen}

    app.consumer._getmany = fetch
    faust_fixes.fetch_only_active(app)
    faust_fixes.fetch_only_active(app)  # idempotent: not wrapped twice

    live = {TP("a", 0), TP("a", 1)}
    records = await app.consumer._getmany(active_partitions=live, timeout=0.01)
    assert set(records) == {TP("a", 0), TP("a", 1)}
    assert calls[0] == {TP("a", 0), TP("a", 1)}  # the copy kept what was asked for

    # An empty set means "nothing", never "everything": the fetch is not even made.
    assert await app.consumer._getmany(active_partitions=set(), timeout=0.01) == {}
    assert len(calls) == 1


def test_the_fixes_refuse_another_faust_release(monkeypatch: pytest.MonkeyPatch) -> None:
    app: Any = faust.App("fixes-version-test", broker="kafka://127.0.0.1:1")
    faust_fixes.check_faust_version()  # the installed release is the one the fixes copy
    original_fetch = app.consumer._getmany

    def version(name: str) -> str:
        assert name == "faust-streaming"
        return "0.16.0"

    monkeypatch.setattr(faust_fixes.metadata, "version", version)
    with pytest.raises(ConfigError) as raised:
        faust_fixes.apply(app, fetch_max_wait=0.1)
    message = str(raised.value)
    assert "faust-streaming 0.16.0 is installed," in message
    assert "faust-streaming==0.15.3" in message
    assert app.consumer._getmany == original_fetch  # nothing was patched blindly


def test_the_fixes_name_a_missing_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    def version(name: str) -> str:
        raise faust_fixes.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(faust_fixes.metadata, "version", version)
    with pytest.raises(ConfigError, match="faust-streaming is not installed, "):
        faust_fixes.check_faust_version()


def test_a_rocksdb_store_left_by_a_crash_is_rebuilt_from_the_changelog(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = faust.App("fix6", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=tmp_path)
    tables = Path(app.conf.tabledir)
    # The escalation stage's table is written before its changelog (Faust's table[key]); the
    # SLA table ("subjects") only after it (SubjectTable.settle), so it is never ahead.
    ahead = tables / "tenants-0.db" / "000004.log"
    behind = tables / "subjects-0.db" / "000004.log"
    for table_file in (ahead, behind):
        table_file.parent.mkdir(parents=True)
        table_file.write_bytes(b"a record")

    # A first start: nothing says the last run crashed; the local files are kept.
    stopped_cleanly = faust_fixes.rebuild_store_after_crash(app, keep="subjects")
    assert ahead.exists()
    assert behind.exists()
    # Killed (no clean stop): the next start deletes the stage's files, and says why; the SLA
    # table's stay (a restart reads only its changelog's tail).
    faust_fixes.rebuild_store_after_crash(app, keep="subjects")
    assert not ahead.parent.exists()
    assert behind.exists()
    assert [p.name for p in tables.iterdir()] == ["subjects-0.db"]
    assert "did not stop cleanly" in caplog.text
    # A clean stop clears the mark: the start after it keeps the files again.
    ahead.parent.mkdir(parents=True)
    ahead.write_bytes(b"flushed")
    stopped_cleanly()
    faust_fixes.rebuild_store_after_crash(app, keep="subjects")
    assert ahead.exists()


def test_a_memory_store_needs_no_mark(tmp_path: Path) -> None:
    app = faust.App("fix6m", broker="kafka://127.0.0.1:1", store="memory://", datadir=tmp_path)
    faust_fixes.rebuild_store_after_crash(app, keep="subjects")()
    assert not (Path(app.conf.datadir) / faust_fixes.RUNNING_MARK).exists()
