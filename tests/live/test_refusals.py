"""A refused start-up leaves nothing on a reachable broker (issue 10, "nothing half-started").

``tests/test_refusals.py`` runs the table of bad policies and settings against a closed port;
here the broker is real and reachable, so a command that got past its checks would create
topics (``topics``) or join the consumer group and create the changelog (``worker``). Both
must stop with exit code 2 and one line, and the broker must hold no topic of the setup.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from monitor.live.broker import Broker
from tests.live.harness import ROOT, LiveSetup

pytestmark = pytest.mark.broker

MAIN = "from monitor.cli import main; raise SystemExit(main())"


async def topics_of(setup: LiveSetup) -> list[str]:
    s = setup.settings
    admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers, **s.aiokafka_security())
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(setup.name))
    finally:
        await admin.close()


def run(setup: LiveSetup, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = setup.env(data_dir) | {"SLA_CONNECT_TIMEOUT": "10"}
    return subprocess.run(
        [sys.executable, "-c", MAIN, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=90,
        check=False,
    )


async def test_a_refused_start_creates_nothing_on_a_reachable_broker(
    broker: Broker, tmp_path: Path
) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(
        "policy: half\napplies_to: chat_session\ntenants: ['*']\ntimezone: Asia/Shanghai\n"
        "working_hours: [['09:00', '18:00']]\n"
        "metrics: {first_response: {targets: [{within: 0s, clock: wall}]}}\n"
    )
    setup = LiveSetup(broker, tmp_path, policies=str(policy))
    data_dir = tmp_path / "data"
    worker = run(setup, data_dir, "worker")
    assert worker.returncode == 2, worker.stderr
    [line] = worker.stderr.splitlines()
    assert f"{policy}: metrics.first_response.targets[0].within: '0s'" in line
    topics = run(setup, data_dir, "topics", "--partitions", "0")
    assert topics.returncode == 2, topics.stderr
    [line] = topics.stderr.splitlines()
    assert "partitions and replication_factor must be at least 1" in line
    assert not data_dir.exists()
    assert await topics_of(setup) == []
    # The same setup with a good policy does create them: the check above could fail.
    good = run(setup, data_dir, "topics")  # (topics reads no policy)
    assert good.returncode == 0, good.stderr
    assert len(await topics_of(setup)) == len(setup.settings.all_topics())
