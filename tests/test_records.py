"""The producing side's routing (monitor.live.records) agrees with what the worker accepts."""

from __future__ import annotations

import pytest

from monitor.live.config import Settings
from monitor.live.records import input_record, route

S = Settings.namespaced("r")


@pytest.mark.parametrize(
    ("event", "topic", "key"),
    [
        ({"type": "session.started", "session_id": "S1"}, S.topic_chat, b"S1"),
        ({"type": "message.sent", "session_id": "S1"}, S.topic_chat, b"S1"),
        ({"type": "ticket.created", "ticket_id": "T1"}, S.topic_tickets, b"T1"),
        ({"type": "channel.status", "channel": "web"}, S.topic_tickets, b"web"),
        ({"type": "agent.status", "agent_id": "A1"}, S.topic_agents, b"A1"),
    ],
)
def test_each_kind_goes_to_its_topic_keyed_by_its_subject(
    event: dict[str, str], topic: str, key: bytes
) -> None:
    assert route(S, event) == (topic, key)
    assert input_record(S, event)[:2] == (topic, key)
