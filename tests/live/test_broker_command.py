"""``sla-monitor broker``: a development broker in the foreground, as the README tells users.

The command is run as a user would (a subprocess): it prints ``bootstrap: HOST:PORT`` once
clients can connect, stops on SIGTERM with exit code 0, and with ``--kafka --data-dir`` keeps
its topics and records across a restart. A wrong combination stops with one line and exit 2.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from monitor.live.broker import free_port
from tests.live.harness import ROOT

pytestmark = pytest.mark.broker

CLI = [sys.executable, "-c", "from monitor.cli import main; raise SystemExit(main())", "broker"]


def start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()  # blocks until ready (or exit)
    assert line.startswith("bootstrap: "), (line, proc.stderr.read() if proc.stderr else b"")
    return proc, line.removeprefix("bootstrap: ")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


async def write_one(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"kept", key=b"k")
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batch = await consumer.getmany(tp, timeout_ms=5000)
        return [r.value for r in batch.get(tp, []) if r.value is not None]
    finally:
        await consumer.stop()


def test_kafka_broker_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "kafka-data"
    proc, bootstrap = start("--kafka", "--port", str(port), "--data-dir", str(data))
    try:
        assert bootstrap == f"127.0.0.1:{port}"
        asyncio.run(write_one(bootstrap, "kept-topic"))
    finally:
        assert stop(proc) == 0
    proc, bootstrap = start("--kafka", "--port", str(port), "--data-dir", str(data))
    try:
        assert asyncio.run(read_all(bootstrap, "kept-topic")) == [b"kept"]
    finally:
        assert stop(proc) == 0


def test_embedded_broker_by_default(tmp_path: Path) -> None:
    port = free_port()
    proc, bootstrap = start("--port", str(port))
    try:
        assert bootstrap == f"127.0.0.1:{port}"
        asyncio.run(write_one(bootstrap, "tansu-topic"))
    finally:
        assert stop(proc) == 0


def test_data_dir_needs_kafka(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 2
    assert "--data-dir needs --kafka" in done.stderr
    assert done.stdout == ""
