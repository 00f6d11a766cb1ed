"""RocksDB's memory bounds (``rocksdb_*`` settings, :meth:`Settings.table_options`) reach
every table's databases as opened, in-process and without a broker: the worker's app is built
(:func:`monitor.live.app.create_app`) and one partition of each table opened, as Faust opens
them on assignment. Read back from RocksDB itself: the block cache's capacity (a DB property)
and the memtable options (the ``OPTIONS`` file RocksDB writes in each database)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.errors import ConfigError
from monitor.live.app import create_app
from monitor.live.config import Settings
from monitor.live.worker import build_engine
from monitor.metrics import SlaMetrics

MIB = 1024 * 1024


def opened_options(path: Path) -> dict[str, str]:
    """``key=value`` lines of the newest OPTIONS file of the RocksDB database at ``path``."""
    newest = max(path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    return dict(re.findall(r"^\s*(\w+)=(\S*)$", newest.read_text(), re.MULTILINE))


def test_every_table_partition_opens_with_the_settings_memory_bounds(tmp_path: Path) -> None:
    settings = Settings(
        store="rocksdb://", data_dir=str(tmp_path), partitions=2,
        rocksdb_write_buffer_mib=3, rocksdb_write_buffers=4, rocksdb_block_cache_mib=5,
    )  # fmt: skip
    metrics = SlaMetrics(CollectorRegistry(), topics=settings.input_topics)
    app = create_app(settings, build_engine(settings), metrics)
    tables = list(app.tables.values())
    assert {t.name for t in tables} == {settings.table_name, settings.tenant_table_name}
    for table in tables:
        store = table.data
        db = store._db_for_partition(1)
        assert db.property_value("rocksdb.block-cache-capacity") == str(5 * MIB)
        options = opened_options(store.partition_path(1))
        assert options["write_buffer_size"] == str(3 * MIB)
        assert options["max_write_buffer_number"] == "4"
        db.close()


def test_the_defaults_are_kafka_streams_and_the_bounds_are_checked() -> None:
    assert Settings().table_options() == {
        "write_buffer_size": 16 * MIB,
        "max_write_buffer_number": 3,
        "block_cache_size": 50 * MIB,
    }
    with pytest.raises(ConfigError, match="rocksdb_write_buffers must be at least 2"):
        Settings(rocksdb_write_buffers=1)
    with pytest.raises(ConfigError, match="rocksdb_block_cache_mib"):
        Settings(rocksdb_block_cache_mib=0)
